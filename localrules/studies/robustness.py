"""The self-classifier under controlled changes of the digits (size, place, slant, stroke).

For each level of a sweep (``localrules.data.augment.SWEEPS``) every test digit, and the digit it
is mutated into at step 200, is changed by that level, and the paper's protocol runs on them;
``mix`` changes each digit at random (``augment.MIX``) and runs once.
"""

from __future__ import annotations

import torch

from localrules.data.augment import SWEEPS, random_mix, sweep_level

from .curves import SUMMARY
from .report import selfclassify_report


def transform_sweep(checkpoint, pixels: torch.Tensor, labels: torch.Tensor, kind: str, seed: int = 0,
                    progress=None, **report_kwargs) -> dict:
    """pixels (N, H, W) in [0, 1] -> {"transform", "levels": [{"level", summary keys...}]} (a sweep)
    or the summary keys of one changed test set (``kind="mix"``). ``progress(level)`` is called
    before each level."""
    g = torch.Generator().manual_seed(seed)
    if kind == "mix":
        res = selfclassify_report(checkpoint, random_mix(pixels, g), labels, None, seed=seed, **report_kwargs)
        return {"transform": "mix", **{k: res[k] for k in SUMMARY if k in res},
                "n_digits": res["n_digits"], "seconds": res["seconds"]}
    if kind not in SWEEPS:
        raise ValueError(f"--transform must be one of {', '.join(SWEEPS)} or mix, not {kind!r}")
    rows = []
    for level in SWEEPS[kind]:
        if progress:
            progress(level)
        res = selfclassify_report(checkpoint, sweep_level(pixels, kind, level, g), labels, None,
                                  seed=seed, **report_kwargs)
        rows.append({"level": level, **{k: res[k] for k in SUMMARY if k in res}, "seconds": res["seconds"]})
    return {"transform": kind, "n_digits": len(pixels), "levels": rows}
