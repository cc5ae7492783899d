"""Evaluate a self-classifying checkpoint: JSON metrics, the paper's plots and a GIF."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from localrules.studies.curves import selfclassify_curves
from localrules.tasks import mnist_selfclassify as ms
from localrules.viz.plots import plot_curves, plot_magnitudes
from localrules.viz.video import label_frames_to_gif


def selfclassify_report(
    checkpoint: str | Path,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    out_dir: str | Path | None,
    json_path: str | Path | None = None,
    device: torch.device | str = "cpu",
    noise_std: float | None = None,
    gif_digits: int = 16,
    **curve_kwargs,
) -> dict:
    """Run :func:`selfclassify_curves`; ``noise_std=None`` uses the noise the model trained with.

    Writes ``json_path`` (per-step lists + summary) and, when ``out_dir`` is given,
    ``curves.png``, ``magnitudes.png`` and ``cells.gif`` there.
    """
    model, cfg, meta = ms.load(checkpoint, device)
    noise = cfg.noise_std if noise_std is None else noise_std
    t0 = time.perf_counter()
    res = selfclassify_curves(model, pixels, labels, noise_std=noise,
                              record=gif_digits if out_dir else 0, **curve_kwargs)
    res["seconds"] = time.perf_counter() - t0
    res["checkpoint"] = str(checkpoint)
    res["device"] = str(device)
    frames = res.pop("frames", None)
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        label = f"{cfg.loss}{'+noise' if cfg.noise_std else ''}"
        res["plots"] = [str(plot_curves(res, out / "curves.png", label)),
                        str(plot_magnitudes(res, out / "magnitudes.png"))]
        if frames is not None:
            res["plots"].append(str(label_frames_to_gif(frames, out / "cells.gif")))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(res, indent=1))
    return res
