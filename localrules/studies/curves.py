"""Accuracy, agreement and state magnitude over time: the self-classifying paper's protocol.

Digits evolve for ``mutate_at`` steps, are then mutated into other digits of the evaluated set
(new pixel channel, states kept where the new digit is alive, new cells start at zero) and
evolve until ``steps``. Lists are indexed by update: entry ``t - 1`` is after ``t`` updates,
so ``accuracy_at_200 = accuracy[199]``. All counts are pooled over every evaluated digit:

    accuracy[t]  = correct alive cells / alive cells
    agreement[t] = digits whose alive cells all output the same label (right or wrong) / digits
    state_magnitude[t]  = mean |state| over alive cells and mutable channels
    update_magnitude[t] = mean |state_t - state_{t-1}| over alive cells and mutable channels
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from localrules.core import NCA
from localrules.tasks.mnist_selfclassify import ALIVE_THRESHOLD, Engine, labels_of
from localrules.train.perturb import mutate


def mutation_targets(n: int, seed: int = 0) -> torch.Tensor:
    """(n,) index of another digit for each digit (never itself when n > 1)."""
    g = torch.Generator().manual_seed(seed)
    if n == 1:
        return torch.zeros(1, dtype=torch.long)
    return (torch.arange(n) + torch.randint(1, n, (n,), generator=g)) % n


@torch.inference_mode()
def selfclassify_curves(
    model: NCA,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    steps: int = 400,
    mutate_at: int | None = 200,
    batch_size: int = 50,
    engine: str = "alive",
    noise_std: float = 0.0,
    seed: int = 0,
    record: int = 0,
    progress: bool = True,
) -> dict:
    """pixels (N, 28, 28) in [0, 1], labels (N,). Returns per-step lists and a summary.

    ``record`` > 0 also returns ``frames``: (steps, record, 28, 28) int8 predicted labels of
    the first ``record`` digits (-1 on dead cells), for the GIF.
    """
    if mutate_at is not None and not 0 < mutate_at < steps:
        raise ValueError(f"mutate_at must be in (0, steps={steps}), got {mutate_at}")
    dev = next(model.parameters()).device
    n = len(pixels)
    targets = mutation_targets(n, seed)
    torch.manual_seed(seed)
    correct = torch.zeros(steps, dtype=torch.float64)
    alive_total = torch.zeros(steps, dtype=torch.float64)
    agree = torch.zeros(steps, dtype=torch.float64)
    s_mag = torch.zeros(steps, dtype=torch.float64)
    u_mag = torch.zeros(steps, dtype=torch.float64)
    frames = np.full((steps, record, *pixels.shape[1:]), -1, np.int8) if record else None
    bar = tqdm(total=n * steps, disable=not progress, desc="eval", unit="digit-step", unit_scale=True)
    for lo in range(0, n, batch_size):
        idx = torch.arange(lo, min(n, lo + batch_size))
        px = pixels[idx].to(dev, torch.float32)[..., None]
        lab = labels[idx].to(dev)
        B = len(idx)
        dense = torch.zeros(*px.shape[:3], model.rule.mlp[-1].out_features, device=dev)
        eng = Engine(engine, px, dense)
        state = eng.pack(dense)
        for t in range(steps):
            if mutate_at is not None and t == mutate_at:
                dense = eng.unpack(state)
                px = pixels[targets[idx]].to(dev, torch.float32)[..., None]
                lab = labels[targets[idx]].to(dev)
                dense = mutate(dense, px > ALIVE_THRESHOLD)
                eng = Engine(engine, px, dense)
                state = eng.pack(dense)
            new = model.step(eng.topology, eng.fixed, state, eng.alive, noise_std)
            rows, prev = eng.alive_rows(new), eng.alive_rows(state)
            state = new
            digit = eng.alive_digit()
            pred = labels_of(rows).argmax(-1)
            correct[t] += (pred == lab[digit]).sum().item()
            alive_total[t] += len(pred)
            lo_lab = torch.full((B,), 10, device=dev).scatter_reduce(0, digit, pred, "amin")
            hi_lab = torch.full((B,), -1, device=dev).scatter_reduce(0, digit, pred, "amax")
            agree[t] += ((lo_lab == hi_lab) | (hi_lab < 0)).sum().item()  # no alive cell: agrees
            s_mag[t] += rows.abs().mean(-1).sum().item()
            u_mag[t] += (rows - prev).abs().mean(-1).sum().item()
            if frames is not None and lo < record:
                k = min(record - lo, B)
                frames[t, lo : lo + k] = _label_image(eng, state, k)
            bar.update(B)
    bar.close()
    acc = (correct / alive_total.clamp(min=1)).tolist()
    agr = (agree / n).tolist()
    out = {
        "n_digits": n,
        "steps": steps,
        "mutate_at": mutate_at,
        "engine": engine,
        "noise_std": noise_std,
        "accuracy": acc,
        "agreement": agr,
        "state_magnitude": (s_mag / alive_total.clamp(min=1)).tolist(),
        "update_magnitude": (u_mag / alive_total.clamp(min=1)).tolist(),
    }
    out.update(summarize(acc, agr, mutate_at))
    if frames is not None:
        out["frames"] = frames
    return out


def _label_image(eng: Engine, state: torch.Tensor, k: int) -> np.ndarray:
    """(k, H, W) int8 argmax label per cell of the first k digits, -1 where dead."""
    dense = eng.unpack(state)[:k]
    alive = (eng.unpack(eng.alive.to(state.dtype))[:k, ..., 0] > 0)
    lab = labels_of(dense).argmax(-1)
    return torch.where(alive, lab, -1).to(torch.int8).cpu().numpy()


def summarize(acc: list[float], agr: list[float], mutate_at: int | None) -> dict:
    """Summary keys: values after 200 and 400 updates where the run is that long, and the
    best accuracy / agreement before the mutation (the paper's "top" figures)."""
    head = mutate_at or len(acc)
    out = {
        "top_accuracy": max(acc[:head]),
        "top_accuracy_step": int(np.argmax(acc[:head])) + 1,
        "top_agreement": max(agr[:head]),
        "top_agreement_step": int(np.argmax(agr[:head])) + 1,
    }
    for t in (200, 400):
        if len(acc) >= t:
            out[f"accuracy_at_{t}"] = acc[t - 1]
            out[f"agreement_at_{t}"] = agr[t - 1]
    return out
