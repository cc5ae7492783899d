"""MetaNCA studies: architecture-generalisation heatmap, zero-out robustness, stability.

- :func:`heatmap`: for every [n_in, X, Y, n_out], grow ``samples`` networks from random
  initialisations with the trained rule and report the mean / std test accuracy (Figure 2),
  optionally beside the same architecture trained with Adam (``adam_accuracy``, ``ratio``).
  Cells run in worker processes and are written to the JSON as they finish, so an interrupted
  run resumes where it stopped.
- :func:`zeroout_curve`: accuracy over rule steps before and after zero-out (Figure 3).
- :func:`stability`: updates to reach the minimum training loss, and updates after it that
  stay within 10 % of it (Table 1); :func:`accuracy_stability`: the same for test accuracy
  (issue 17: within 0.02 of the best accuracy), on curves from :func:`accuracy_curve`.
"""

from __future__ import annotations

import json
import os
import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from localrules.progress import bar as progress_bar

from localrules.data.tabular import Split
from localrules.studies.adam_baseline import train_adam
from localrules.tasks import metanca as mn


def networks_per_chunk(n_cells: int, device) -> int:
    """How many networks of ``n_cells`` weights to grow at once: about 100k weights on a CPU
    (chunks that stay in cache grew 3x faster than 25 networks of 89k weights), 5M on a GPU."""
    return max(1, (100_000 if torch.device(device).type == "cpu" else 5_000_000) // n_cells)


def _topology(cfg: mn.Config, sizes, data: Split, device):
    """The grown network's topology; a data-conditioned rule reads signals from the training split."""
    topo = mn.task_topology(sizes, cfg, data.n_features, data.n_classes)
    return mn.conditioned(topo, cfg, data.x_train.to(device), data.y_train.to(device))


def grow_accuracy(rule, cfg: mn.Config, sizes, data: Split, samples: int, steps: int,
                  seed: int = 0) -> torch.Tensor:
    """(samples,) test accuracies of networks grown for ``steps`` updates from random inits,
    in chunks of ``networks_per_chunk`` networks."""
    torch.manual_seed(seed)
    dev = next(rule.parameters()).device
    topo = _topology(cfg, sizes, data, dev)
    x, y = data.x_test.to(dev), data.y_test.to(dev)
    accs = []
    chunk = networks_per_chunk(topo.n_cells, dev)
    for lo in range(0, samples, chunk):
        n = min(chunk, samples - lo)
        state = mn.init_networks(topo, n, cfg, dev)
        state, _ = mn.grow(rule, mn.coded(topo, cfg, mn.new_positions(topo, n, cfg, dev)), state, steps)
        accs.append(mn.accuracy(mn.task_forward(topo, state, x, cfg.activation), y))
    return torch.cat(accs)


def finished_cells(cell, jobs, workers: int = 0, ray: str | None = None, device="cpu"):
    """Yield ``cell(job)`` for every job as it finishes: as Ray tasks (``ray``), in ``workers``
    one-thread CPU processes (> 1), or one after the other in this process."""
    if ray:
        from .ray_cells import run_cells

        yield from run_cells(cell, jobs, ray, gpu=torch.device(device).type == "cuda")
    elif workers > 1:
        with ProcessPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            for fut in as_completed([pool.submit(cell, j) for j in jobs]):
                yield fut.result()
    else:
        yield from map(cell, jobs)


def _heatmap_cell(args):
    checkpoint, data, x, y, samples, steps, seed, device, adam_epochs, codes = args
    rule, cfg, _ = mn.load(checkpoint, device)
    if codes:
        cfg = replace(cfg, **codes).validate()
    sizes = (data.n_features, x, y, data.n_classes)
    acc = grow_accuracy(rule, cfg, sizes, data, samples, steps, seed)
    cell = {"x": x, "y": y, "mean_accuracy": acc.mean().item(), "std": acc.std().item() if samples > 1 else 0.0}
    if adam_epochs > 0:
        adam = train_adam(sizes, data, adam_epochs, activation=cfg.activation, seed=seed)["adam_accuracy"]
        cell.update(adam_accuracy=adam, ratio=cell["mean_accuracy"] / adam)
    return cell


def heatmap(checkpoint, data: Split, xs, ys, samples: int, steps: int, json_path, workers: int = 0,
            seed: int = 0, progress: bool = True, device="cpu", adam_epochs: float = 0.0,
            ray: str | None = None, wrap: float = 0.0) -> dict:
    """Grow ``samples`` networks for every [n_in, X, Y, n_out]; resumable through ``json_path``.
    ``workers`` > 1 runs cells in that many one-thread CPU processes; ``ray`` (auto or an address)
    runs them as Ray tasks instead (localrules.studies.ray_cells), one CPU or GPU each. ``adam_epochs`` > 0 also
    trains each cell's architecture with Adam for that many epochs (batch 128, lr 1e-3; see
    localrules.studies.adam_baseline): per cell ``adam_accuracy`` and ``ratio`` = grown / Adam.
    ``wrap`` > 0 grows with the wrapped hidden code (:func:`localrules.tasks.metanca.code_overrides`)."""
    if workers > 1 and torch.device(device).type != "cpu":
        raise ValueError("worker processes are for the CPU; on a GPU one process grows every cell")
    _, cfg, _ = mn.load(checkpoint)
    trained = {tuple(a) for a in cfg.archs}
    key = {"checkpoint": str(checkpoint), "samples": samples, "steps": steps, "seed": seed,
           "split_seed": data.seed}
    if adam_epochs > 0:  # absent otherwise, so heatmaps written before the baseline still resume
        key["adam_epochs"] = adam_epochs
    codes = mn.code_overrides(cfg, wrap=wrap)
    if wrap:  # likewise
        key["wrap"] = float(wrap)
    path = Path(json_path)
    done = {}
    if path.is_file():
        old = json.loads(path.read_text())
        if {k: old.get(k) for k in key} == key:
            done = {(c["x"], c["y"]): c for c in old["cells"] + old.get("other_cells", [])}
    grid = {(x, y) for x in xs for y in ys}
    todo = [(x, y) for x in xs for y in ys if (x, y) not in done]

    def save():  # summaries over the asked grid; finished cells outside it are kept, not summarised
        cells = [done[k] for k in sorted(done) if k in grid]
        for c in cells:
            c["in_training"] = (data.n_features, c["x"], c["y"], data.n_classes) in trained or bool(
                cfg.arch_range and all(cfg.arch_range[0] <= v <= cfg.arch_range[1] for v in (c["x"], c["y"])))
        out = {**key, "cells": cells, "other_cells": [done[k] for k in sorted(done) if k not in grid]}
        if cells:
            means = [c["mean_accuracy"] for c in cells]
            out.update(mean_over_cells=sum(means) / len(means), worst_cell=min(means), best_cell=max(means))
            if adam_epochs > 0:
                ratios = sorted(c["ratio"] for c in cells)
                out.update(adam_mean_over_cells=sum(c["adam_accuracy"] for c in cells) / len(cells),
                           median_ratio=statistics.median(ratios), worst_ratio=ratios[0])
        tmp = path.with_suffix(".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(out, indent=1))
        os.replace(tmp, path)
        return out

    jobs = [(str(checkpoint), data, x, y, samples, steps, seed, str(device), adam_epochs, codes) for x, y in todo]
    bar = progress_bar(total=len(grid), initial=len(grid) - len(todo), disable=not progress, desc="heatmap")
    for c in finished_cells(_heatmap_cell, jobs, workers, ray, device):
        done[(c["x"], c["y"])] = c
        save()
        bar.update()
    bar.close()
    return save()


@torch.no_grad()
def zeroout_curve(rule, cfg: mn.Config, sizes, data: Split, samples: int, steps_before: int,
                  steps_after: int, frac: float = 0.3, seed: int = 0) -> dict:
    """Mean test accuracy after every update; zero-out (a whole layer + ``frac``) at ``steps_before``."""
    torch.manual_seed(seed)
    dev = next(rule.parameters()).device
    topo = _topology(cfg, sizes, data, dev)
    x, y = data.x_test.to(dev), data.y_test.to(dev)
    state = mn.init_networks(topo, samples, cfg, dev)
    grown = mn.coded(topo, cfg, mn.new_positions(topo, samples, cfg, dev))  # zero-out keeps the positions
    state, before = mn.grow(rule, grown, state, steps_before, x, y, cfg.activation)
    state = mn.zero_out_networks(topo, state, frac)
    at_zero = mn.accuracy(mn.task_forward(topo, state, x, cfg.activation), y)
    state, after = mn.grow(rule, grown, state, steps_after, x, y, cfg.activation)
    curve = [a.mean().item() for a in before] + [at_zero.mean().item()] + [a.mean().item() for a in after]
    acc_before = curve[steps_before - 1]
    after_curve = curve[steps_before + 1:]
    tol = 0.02  # "recovered": within this of the accuracy before the zero-out
    back = [t for t, a in enumerate(after_curve, 1) if acc_before - a <= tol]
    return {
        "sizes": mn.arch_label(sizes), "samples": samples, "zero_out_at": steps_before, "frac": frac,
        "hidden_clip": mn.hidden_clip(rule),
        "accuracy": curve,  # entry t-1: after t updates; entry steps_before: right after zero-out
        "accuracy_before": acc_before,
        "accuracy_min_after": min(curve[steps_before:]),
        "accuracy_recovered": curve[-1],  # after all steps_after updates
        "recovered_within_0.02": acc_before - curve[-1] <= tol,
        "accuracy_best_after": max(after_curve, default=at_zero.mean().item()),
        "updates_to_within_0.02": back[0] if back else None,  # first update after zero-out that is back
    }


def zeroout_cell(args) -> dict:
    """:func:`zeroout_curve` of the rule in a checkpoint: the cell a Ray task runs for ``study zeroout --ray``.
    args = (checkpoint, sizes, data, samples, steps_before, steps_after, frac, seed, device)."""
    checkpoint, sizes, data, samples, before, after, frac, seed, device = args
    rule, cfg, _ = mn.load(checkpoint, device)
    return zeroout_curve(rule, cfg, sizes, data, samples, before, after, frac, seed)


def stability_row(args) -> dict:
    """One row of ``study stability``: meta-train a rule with pool size ``pool`` (0: no pooling)
    into ``out`` (its own scratch run), then :func:`stability_numbers` of its loss curve.
    args = (dataset, pool, data, sizes, fresh_frac, iterations, steps_max, horizon, samples, seed, out,
    device, progress)."""
    from localrules.train.loop import TrainConfig, train

    dataset, pool, data, sizes, fresh_frac, iterations, steps_max, horizon, samples, seed, out, device, progress = args
    device = torch.device(device)
    torch.manual_seed(seed)
    cfg = mn.Config(dataset=dataset, archs=(tuple(sizes),), pool_size=pool, fresh_frac=fresh_frac)
    task = mn.MetaNCATask(cfg, data, device)
    train(task, TrainConfig(iterations=iterations, lr_milestones=(), steps_min=10, steps_max=steps_max,
                            seed=seed), out, device, overwrite=True, progress=progress)
    losses = loss_curve(task.model, cfg, sizes, data, samples, horizon, seed)
    return {"pool": pool, **stability_numbers(losses), "loss_curve": losses.tolist()}


@torch.no_grad()
def loss_curve(rule, cfg: mn.Config, sizes, data: Split, samples: int, steps: int, seed: int = 0):
    """Mean training cross-entropy of grown networks after every update: (steps,) tensor."""
    torch.manual_seed(seed)
    dev = next(rule.parameters()).device
    topo = _topology(cfg, sizes, data, dev)
    x, y = data.x_train.to(dev), data.y_train.to(dev)
    state = mn.init_networks(topo, samples, cfg, dev)

    def mean_ce(logits, y):
        return F.cross_entropy(logits.flatten(0, 1), y.repeat(len(logits))).item()

    grown = mn.coded(topo, cfg, mn.new_positions(topo, samples, cfg, dev))
    _, losses = mn.grow(rule, grown, state, steps, x, y, cfg.activation, metric=mean_ce)
    return torch.tensor(losses)


def stability_numbers(losses: torch.Tensor, tolerance: float = 0.1) -> dict:
    """Updates to reach the minimum loss, and updates after it with loss <= (1 + tol) * min
    before the first excursion above that band."""
    t_min = int(losses.argmin())
    band = losses[t_min] * (1 + tolerance)
    after = losses[t_min + 1 :]
    over = (after > band).nonzero()
    within = int(over[0]) if len(over) else len(after)
    return {"updates_to_min": t_min + 1, "min_loss": losses[t_min].item(), "updates_within_10pct": within}


@torch.no_grad()
def accuracy_curve(rule, cfg: mn.Config, sizes, data: Split, samples: int, steps: int, seed: int = 0,
                   every: int = 1) -> torch.Tensor:
    """Mean test accuracy of grown networks after every ``every``-th update: (steps / every,)."""
    torch.manual_seed(seed)
    dev = next(rule.parameters()).device
    topo = _topology(cfg, sizes, data, dev)
    x, y = data.x_test.to(dev), data.y_test.to(dev)
    state = mn.init_networks(topo, samples, cfg, dev)
    grown = mn.coded(topo, cfg, mn.new_positions(topo, samples, cfg, dev))
    _, curve = mn.grow(rule, grown, state, steps, x, y, cfg.activation, every=every)
    return torch.stack([a.mean() for a in curve])


def accuracy_stability(acc: torch.Tensor, tolerance: float = 0.02) -> dict:
    """Updates (curve entries) to reach the best accuracy a*, and entries after it with accuracy
    >= a* - tol before the first drop below that band; also the entries anywhere within the band."""
    t_best = int(acc.argmax())
    band = acc[t_best] - tolerance
    after = acc[t_best + 1 :]
    under = (after < band).nonzero()
    return {"updates_to_best": t_best + 1, "best_accuracy": acc[t_best].item(),
            "updates_within_band": int(under[0]) if len(under) else len(after),
            "entries_in_band": int((acc >= band).sum()), "final_accuracy": acc[-1].item()}
