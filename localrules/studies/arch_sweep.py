"""A MetaNCA rule on arbitrary feed-forward architectures [n_in, h_1, ..., h_k, n_out] against Adam.

Each cell is one architecture (its hidden widths ``hidden`` = (h_1, ..., h_k), depth k): the
mean test accuracy of ``samples`` networks grown for ``steps`` updates from random inits
(:func:`localrules.studies.metanca_studies.grow_accuracy`) and, with ``adam_epochs`` > 0, the
same architecture trained by Adam (:func:`localrules.studies.adam_baseline.train_adam`):

    ratio = mean grown accuracy / Adam accuracy      (None where Adam scores 0)

Two sets of cells: :func:`depth_width_archs`, one cell per depth x width with every hidden layer
that width (``study heatmap --depth --width``), and :func:`random_archs`, depths and per-layer
widths drawn at random (``study architectures --random``). The JSON is written cell by cell and
resumes where it stopped, as the X x Y heatmap's. ``layer_code`` (None: the rule's own) grows
with another layer code (localrules.core.neuron_code.layer_positions), e.g. ``role`` for depths
the index code never named; ``wrap`` > 0 with the wrapped hidden code (hidden neuron i at
i mod wrap, localrules.core.neuron_code.wrapped_positions), e.g. 100 for widths past a rule's
widest trained layer of 100.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from localrules.data.tabular import Split
from localrules.progress import bar as progress_bar
from localrules.studies.adam_baseline import train_adam
from localrules.studies.metanca_studies import finished_cells, grow_accuracy
from localrules.tasks import metanca as mn


def depth_width_archs(depths, widths) -> list[tuple[int, ...]]:
    """Hidden widths of one architecture per (depth, width): (width,) * depth, depth-major."""
    return [(w,) * d for d in depths for w in widths]


def random_archs(n: int, depth_range, width_range, seed: int = 0) -> list[tuple[int, ...]]:
    """``n`` distinct hidden-width tuples: depth uniform in depth_range (lo..hi), each width
    uniform in width_range (lo..hi), drawn with ``seed`` (fewer if the ranges hold fewer)."""
    (dlo, dhi), (wlo, whi) = depth_range, width_range
    if not 1 <= dlo <= dhi or not 1 <= wlo <= whi:
        raise ValueError(f"ranges must be LO,HI with 1 <= LO <= HI, not {depth_range}, {width_range}")
    total = sum((whi - wlo + 1) ** d for d in range(dlo, dhi + 1))
    g = torch.Generator().manual_seed(seed)
    out: list[tuple[int, ...]] = []
    while len(out) < min(n, total):
        d = int(torch.randint(dlo, dhi + 1, (1,), generator=g))
        a = tuple(int(v) for v in torch.randint(wlo, whi + 1, (d,), generator=g))
        if a not in out:
            out.append(a)
    return out


def in_training(cfg: mn.Config, sizes) -> bool:
    """Was ``sizes`` among the rule's meta-training architectures: one of ``cfg.archs``, or (with
    ``cfg.arch_range``) a depth of them with every hidden width in that range."""
    sizes = tuple(sizes)
    if sizes in {tuple(a) for a in cfg.archs}:
        return True
    if not cfg.arch_range:
        return False
    lo, hi = cfg.arch_range
    depths = {len(a) for a in cfg.archs}
    return len(sizes) in depths and all(lo <= v <= hi for v in sizes[1:-1])


def arch_cell(args) -> dict:
    """One architecture: grown (and Adam) test accuracy. args = (checkpoint, data, hidden, samples,
    steps, seed, device, adam_epochs, codes); codes: :func:`localrules.tasks.metanca.code_overrides`."""
    checkpoint, data, hidden, samples, steps, seed, device, adam_epochs, codes = args
    rule, cfg, _ = mn.load(checkpoint, device)
    if codes:
        cfg = replace(cfg, **codes).validate()
    sizes = (data.n_features, *hidden, data.n_classes)
    acc = grow_accuracy(rule, cfg, sizes, data, samples, steps, seed)
    cell = {"hidden": list(hidden), "depth": len(hidden), "mean_accuracy": acc.mean().item(),
            "std": acc.std().item() if samples > 1 else 0.0}
    if adam_epochs > 0:
        adam = train_adam(sizes, data, adam_epochs, activation=cfg.activation, seed=seed)["adam_accuracy"]
        cell.update(adam_accuracy=adam, ratio=cell["mean_accuracy"] / adam if adam > 0 else None)
    return cell


def summary(cells: list[dict]) -> dict:
    """Mean / worst / best over cells; with Adam its mean and the median / worst ratio; per depth."""
    if not cells:
        return {}
    means = [c["mean_accuracy"] for c in cells]
    out = {"mean_over_cells": sum(means) / len(means), "worst_cell": min(means), "best_cell": max(means)}
    if all("ratio" in c for c in cells) and any(c["ratio"] is not None for c in cells):
        ratios = sorted(c["ratio"] for c in cells if c["ratio"] is not None)  # None: Adam at 0
        out.update(adam_mean_over_cells=sum(c["adam_accuracy"] for c in cells) / len(cells),
                   median_ratio=statistics.median(ratios), worst_ratio=ratios[0])
    by_depth = {}
    for d in sorted({c["depth"] for c in cells}):
        sub = [c for c in cells if c["depth"] == d]
        row = {"cells": len(sub), "mean_accuracy": sum(c["mean_accuracy"] for c in sub) / len(sub)}
        if "median_ratio" in out:
            row.update(adam_accuracy=sum(c["adam_accuracy"] for c in sub) / len(sub),
                       median_ratio=statistics.median([c["ratio"] for c in sub if c["ratio"] is not None] or [0.0]))
        by_depth[str(d)] = row
    out["by_depth"] = by_depth
    return out


def sweep(checkpoint, data: Split, archs, samples: int, steps: int, json_path, workers: int = 0, seed: int = 0,
          progress: bool = True, device="cpu", adam_epochs: float = 0.0, layer_code: str | None = None,
          wrap: float = 0.0, ray: str | None = None, mode: str = "architectures", extra: dict | None = None) -> dict:
    """Grow ``samples`` networks for every hidden-width tuple in ``archs``; resumable through
    ``json_path`` (cells of the same settings are kept); ``workers`` / ``ray`` as
    :func:`localrules.studies.metanca_studies.heatmap`. -> the JSON written: settings, ``cells``
    in the order of ``archs`` (each with ``in_training``) and :func:`summary`."""
    _, cfg, _ = mn.load(checkpoint)
    codes = mn.code_overrides(cfg, layer_code, wrap)
    key = {"checkpoint": str(checkpoint), "mode": mode, "samples": samples, "steps": steps, "seed": seed,
           "split_seed": data.seed, "adam_epochs": adam_epochs, "layer_code": layer_code or cfg.layer_code}
    if wrap:  # absent otherwise, so sweeps written before the wrapped code still resume
        key["wrap"] = float(wrap)
    path = Path(json_path)
    done: dict = {}
    if path.is_file():
        old = json.loads(path.read_text())
        if {k: old.get(k) for k in key} == key:
            done = {tuple(c["hidden"]): c for c in old["cells"] + old.get("other_cells", [])}
    archs = [tuple(a) for a in archs]
    todo = [a for a in archs if a not in done]

    def save():
        cells = [done[a] for a in archs if a in done]
        for c in cells:
            c["in_training"] = in_training(cfg, (data.n_features, *c["hidden"], data.n_classes))
            if mode == "depth_width":
                c["width"] = c["hidden"][0]
        out = {**key, **(extra or {}), "trained_archs": [list(a) for a in cfg.archs],
               "trained_width_range": list(cfg.arch_range), "cells": cells,
               "other_cells": [c for a, c in done.items() if a not in set(archs)], **summary(cells)}
        tmp = path.with_suffix(".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(out, indent=1))
        os.replace(tmp, path)
        return out

    jobs = [(str(checkpoint), data, a, samples, steps, seed, str(device), adam_epochs, codes) for a in todo]
    bar = progress_bar(total=len(archs), initial=len(archs) - len(todo), disable=not progress, desc=mode)
    for c in finished_cells(arch_cell, jobs, workers, ray, device):
        done[tuple(c["hidden"])] = c
        save()
        bar.update()
    bar.close()
    return save()


def depth_width(checkpoint, data: Split, depths, widths, samples: int, steps: int, json_path, **kw) -> dict:
    """:func:`sweep` over :func:`depth_width_archs`; each cell also carries its ``width``."""
    return sweep(checkpoint, data, depth_width_archs(depths, widths), samples, steps, json_path,
                 mode="depth_width", extra={"depths": list(depths), "widths": list(widths)}, **kw)


def listed(checkpoint, data: Split, archs, samples: int, steps: int, json_path, seed: int = 0, device="cpu",
           adam_epochs: float = 0.0, progress: bool = True) -> dict:
    """Named architectures, MLP layer sizes or CNNs (``conv:8,16``, ``conv:8,res,16``;
    localrules.core.convgraph), each grown ``samples`` times for ``steps`` updates and (``adam_epochs``
    > 0) trained by Adam: ``study architectures --arch``. -> the JSON written after every cell:
    settings, ``cells`` ({arch, kind: mlp | cnn, mean_accuracy, std, adam_accuracy, ratio, in_training}),
    the best grown MLP and CNN."""
    rule, cfg, _ = mn.load(checkpoint, device)
    trained = {mn.arch_key(a) for a in cfg.archs}
    settings = {"checkpoint": str(checkpoint), "mode": "listed", "samples": samples, "steps": steps, "seed": seed,
                "split_seed": data.seed, "adam_epochs": adam_epochs,
                "trained_archs": [mn.arch_key(a) for a in cfg.archs], "trained_width_range": list(cfg.arch_range)}
    path = Path(json_path)
    cells = []
    for a in progress_bar(archs, disable=not progress, desc="architectures"):
        acc = grow_accuracy(rule, cfg, a, data, samples, steps, seed)
        cell = {"arch": mn.arch_key(a), "kind": "cnn" if isinstance(a, str) else "mlp",
                "mean_accuracy": acc.mean().item(), "std": acc.std().item() if samples > 1 else 0.0,
                "in_training": mn.arch_key(a) in trained or (not isinstance(a, str) and in_training(cfg, a))}
        if adam_epochs > 0:
            adam = train_adam(a, data, adam_epochs, activation=cfg.activation, seed=seed)["adam_accuracy"]
            cell.update(adam_accuracy=adam, ratio=cell["mean_accuracy"] / adam if adam > 0 else None)
        cells.append(cell)
        out = {**settings, "cells": cells}
        for kind in ("mlp", "cnn"):
            sub = [c for c in cells if c["kind"] == kind]
            if sub:
                out[f"best_grown_{kind}"] = max(sub, key=lambda c: c["mean_accuracy"])["arch"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1))
    return out
