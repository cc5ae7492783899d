"""Accuracy, agreement and state magnitude over time: the self-classifying paper's protocol.

Digits evolve for ``mutate_at`` steps, are then mutated into other digits of the evaluated set
(new pixel channel, states kept where the new digit is alive, new cells start at zero) and
evolve until ``steps``. Lists are indexed by update: entry ``t - 1`` is after ``t`` updates,
so ``accuracy_at_200 = accuracy[199]``. All counts are pooled over every evaluated digit:

    accuracy[t]  = correct alive cells / alive cells
    agreement[t] = digits whose alive cells all output the same label (right or wrong) / digits
    connected[t] = digits whose alive cells form one piece (8-connected, the 3x3 neighbourhood)
                   / digits; cells of different pieces never exchange a message
    agreement_connected[t] = agreeing one-piece digits / one-piece digits
    state_magnitude[t]  = mean |state| over alive cells and mutable channels
    update_magnitude[t] = mean |state_t - state_{t-1}| over alive cells and mutable channels
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from localrules.progress import bar as progress_bar

from localrules.core import NCA
from localrules.tasks.mnist_selfclassify import ALIVE_THRESHOLD, Engine, labels_of
from localrules.train.accelerate import compile_model, eager
from localrules.train.perturb import mutate


# the summary keys that evaluations print and keep (cards, transform sweeps)
SUMMARY = ("accuracy_at_200", "agreement_at_200", "accuracy_at_400", "agreement_at_400",
           "top_accuracy", "top_agreement", "connected_at_200", "agreement_connected_at_200")


def mutation_targets(n: int, seed: int = 0) -> torch.Tensor:
    """(n,) index of another digit for each digit (never itself when n > 1)."""
    g = torch.Generator().manual_seed(seed)
    if n == 1:
        return torch.zeros(1, dtype=torch.long)
    return (torch.arange(n) + torch.randint(1, n, (n,), generator=g)) % n


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
    workers: int = 1,
    compile: bool = False,
) -> dict:
    """pixels (N, 28, 28) in [0, 1], labels (N,). Returns per-step lists and a summary;
    ``compile``: the steps compiled (:func:`localrules.train.accelerate.compile_model`, in each worker).

    ``record`` > 0 also returns ``frames``: (steps, record, 28, 28) int8 predicted labels of
    the first ``record`` digits (-1 on dead cells), for the GIF. Every batch of digits draws its
    update masks and noise from its own seed, so ``workers`` > 1 (CPU worker processes, one
    thread each) gives exactly the result of one process.
    """
    if mutate_at is not None and not 0 < mutate_at < steps:
        raise ValueError(f"mutate_at must be in (0, steps={steps}), got {mutate_at}")
    n = len(pixels)
    targets = mutation_targets(n, seed)
    jobs = [(lo, pixels[lo : lo + batch_size], labels[lo : lo + batch_size],
             pixels[targets[lo : lo + batch_size]], labels[targets[lo : lo + batch_size]])
            for lo in range(0, n, batch_size)]
    opts = dict(steps=steps, mutate_at=mutate_at, engine=engine, noise_std=noise_std, seed=seed, record=record)
    # correct, alive, agree, |state|, |update|, one-piece digits, agreeing one-piece digits
    sums = torch.zeros(7, steps, dtype=torch.float64)
    frames = np.full((steps, record, *pixels.shape[1:]), -1, np.int8) if record else None
    bar = progress_bar(total=n * steps, disable=not progress, desc="eval", unit="digit-step", unit_scale=True)

    def collect(result):
        lo, batch_sums, batch_frames = result
        sums.add_(batch_sums)
        if batch_frames is not None:
            frames[:, lo : lo + batch_frames.shape[1]] = batch_frames
        bar.update(len(pixels[lo : lo + batch_size]) * steps)

    dev = next(model.parameters()).device
    if workers > 1 and dev.type == "cpu" and len(jobs) > 1:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(workers, ctx, initializer=_init_worker, initargs=(model, opts, compile)) as pool:
            for result in pool.map(_worker_batch, jobs):
                collect(result)
    else:
        if compile:
            compile_model(model, dev)
        try:
            for job in jobs:
                collect(_run_batch(model, *job, **opts))
        finally:
            eager(model)
    bar.close()
    correct, alive_total, agree, s_mag, u_mag, whole, whole_agree = sums
    acc = (correct / alive_total.clamp(min=1)).tolist()
    agr = (agree / n).tolist()
    agr_whole = (whole_agree / whole.clamp(min=1)).tolist()
    out = {
        "n_digits": n,
        "steps": steps,
        "mutate_at": mutate_at,
        "engine": engine,
        "noise_std": noise_std,
        "accuracy": acc,
        "agreement": agr,
        "connected": (whole / n).tolist(),
        "agreement_connected": agr_whole,
        "state_magnitude": (s_mag / alive_total.clamp(min=1)).tolist(),
        "update_magnitude": (u_mag / alive_total.clamp(min=1)).tolist(),
    }
    out.update(summarize(acc, agr, mutate_at, connected=out["connected"], agreement_connected=agr_whole))
    if frames is not None:
        out["frames"] = frames
    return out


_WORKER: dict = {}


def _init_worker(model: NCA, opts: dict, compile: bool = False) -> None:
    torch.set_num_threads(1)
    if compile:
        compile_model(model, torch.device("cpu"))
    _WORKER.update(model=model, opts=opts)


def _worker_batch(job):
    return _run_batch(_WORKER["model"], *job, **_WORKER["opts"])


@torch.inference_mode()
def _run_batch(model: NCA, lo: int, px, lab, px_next, lab_next, steps: int, mutate_at: int | None,
               engine: str, noise_std: float, seed: int, record: int):
    """One batch of digits starting at index ``lo``: (lo, sums (7, steps), frames or None)."""
    dev = next(model.parameters()).device
    torch.manual_seed(seed * 1_000_003 + lo)
    B = len(px)
    px = px.to(dev, torch.float32)[..., None]
    lab = lab.to(dev)
    sums = torch.zeros(7, steps, dtype=torch.float64, device=dev)
    whole = one_piece(px[..., 0] > ALIVE_THRESHOLD)
    k = min(max(record - lo, 0), B)
    frames = np.full((steps, k, *px.shape[1:3]), -1, np.int8) if k else None
    dense = torch.zeros(*px.shape[:3], model.rule.mlp[-1].out_features, device=dev)
    eng = Engine(engine, px, dense)
    state = eng.pack(dense)
    run = {"t": 0, "prev": state}

    def observe(_, new):  # after every update; eng, lab and whole are those of the current digits
        t, rows, prev = run["t"], eng.alive_rows(new), eng.alive_rows(run["prev"])
        digit = eng.alive_digit()
        pred = labels_of(rows).argmax(-1)
        lo_lab = torch.full((B,), 10, device=dev).scatter_reduce(0, digit, pred, "amin")
        hi_lab = torch.full((B,), -1, device=dev).scatter_reduce(0, digit, pred, "amax")
        sums[0, t] = (pred == lab[digit]).sum()
        sums[1, t] = len(pred)
        agree = (lo_lab == hi_lab) | (hi_lab < 0)  # no alive cell: agrees
        sums[2, t] = agree.sum()
        sums[3, t] = rows.abs().mean(-1).sum()
        sums[4, t] = (rows - prev).abs().mean(-1).sum()
        sums[5, t] = whole.sum()
        sums[6, t] = (agree & whole).sum()
        if frames is not None:
            frames[t] = _label_image(eng, new, k)
        run["t"], run["prev"] = t + 1, new

    first = steps if mutate_at is None else min(mutate_at, steps)
    state = model.rollout(eng.topology, eng.fixed, state, eng.alive, first, noise_std, observe=observe)
    if first < steps:  # the mutation: every digit becomes the next one, the states carried over
        old_alive = px > ALIVE_THRESHOLD
        px, lab = px_next.to(dev, torch.float32)[..., None], lab_next.to(dev)
        dense = mutate(eng.unpack(state), px > ALIVE_THRESHOLD, old_alive)
        eng = Engine(engine, px, dense)
        state = run["prev"] = eng.pack(dense)
        whole = one_piece(px[..., 0] > ALIVE_THRESHOLD)
        model.rollout(eng.topology, eng.fixed, state, eng.alive, steps - first, noise_std, observe=observe)
    return lo, sums.cpu(), frames


def one_piece(alive: torch.Tensor) -> torch.Tensor:
    """alive (B, H, W) bool -> (B,) bool: the alive cells form one 8-connected piece (or none).

    Each alive cell starts with its own index as a tag and repeatedly takes the largest tag in
    its 3x3 neighbourhood among alive cells; at the fixed point each piece carries one tag, so a
    digit is one piece when its smallest and largest tags are equal."""
    _, H, W = alive.shape
    tag = torch.where(alive, torch.arange(1, H * W + 1, device=alive.device).view(1, H, W), 0).float()
    while True:
        new = torch.nn.functional.max_pool2d(tag[:, None], 3, 1, 1)[:, 0] * alive
        if torch.equal(new, tag):
            break
        tag = new
    lo = torch.where(alive, tag, H * W + 1).flatten(1).amin(1)
    return (lo == tag.flatten(1).amax(1)) | ~alive.flatten(1).any(1)


def _label_image(eng: Engine, state: torch.Tensor, k: int) -> np.ndarray:
    """(k, H, W) int8 argmax label per cell of the first k digits, -1 where dead."""
    dense = eng.unpack(state)[:k]
    alive = (eng.unpack(eng.alive.to(state.dtype))[:k, ..., 0] > 0)
    lab = labels_of(dense).argmax(-1)
    return torch.where(alive, lab, -1).to(torch.int8).cpu().numpy()


def summarize(acc: list[float], agr: list[float], mutate_at: int | None, **more: list[float]) -> dict:
    """Summary keys: values after 200 and 400 updates where the run is that long (of ``acc``,
    ``agr`` and each curve in ``more``, by its name), and the best accuracy / agreement before
    the mutation (the paper's "top" figures)."""
    head = mutate_at or len(acc)
    out = {
        "top_accuracy": max(acc[:head]),
        "top_accuracy_step": int(np.argmax(acc[:head])) + 1,
        "top_agreement": max(agr[:head]),
        "top_agreement_step": int(np.argmax(agr[:head])) + 1,
    }
    for t in (200, 400):
        if len(acc) >= t:
            for name, curve in {"accuracy": acc, "agreement": agr, **more}.items():
                out[f"{name}_at_{t}"] = curve[t - 1]
    return out
