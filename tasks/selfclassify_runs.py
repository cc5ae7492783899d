"""Several self-classifier runs trained as one batched model (issue 40: more work per launch).

N runs of one recipe with seeds S, S+1, ..., S+N-1, each with its own model, sample pool, Adam
state and random stream, trained by one trainer in one process. Per iteration each run draws,
from its own stream and in a single run's order, the trainer's step count, its batch (pool
sample, fresh and mutated digits) and every step's noise and fire mask; then one call evaluates
all N rollouts with the runs' parameters stacked:

    params[name]  (N, ...)             torch.stack of the runs' parameters (differentiable: each
                                       run's own Parameter gets its own gradient)
    state         (N, B, H, W, C)      vmap over k of functional_call(model, params[k], rollout)
    loss          sum_k loss_k         d loss / d params_k = d loss_k / d params_k

The trainer's per-parameter gradient normalisation and Adam then act on each run's parameters
alone, as in N single runs, so run k equals the single run with seed S + k to float tolerance
(tests/tasks/test_selfclassify_runs.py). The dense engine only: the alive-cell engine's cell
counts differ from digit to digit and run to run, which vmap cannot stack. A non-finite loss in
any run rolls every run back one iteration (the trainer's guard sees their sum).

The run folder OUT holds the batched checkpoint (``--resume`` continues it); :func:`export_runs`
writes each run's ordinary checkpoint into OUT/run-K (model.safetensors, model.json with the
run's seed, metrics.jsonl with its loss), which ``localrules eval mnist-selfclassify`` loads.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, vmap

from localrules.core import Grid2D
from localrules.train.checkpoint import load_model_files, save_model
from localrules.train.pooled import PooledTask
from localrules.train.rng import rng_state, set_rng_state

from .mnist_selfclassify import ALIVE_THRESHOLD, Config, Engine, SelfClassifyTask, build_model, labels_of, loss_fn


class _Rollout(nn.Module):
    """``nca.rollout`` on the dense grid as a module's forward, for functional_call."""

    def __init__(self, nca):
        super().__init__()
        self.nca = nca

    def forward(self, pixels, state, alive, fires, noises, steps: int, noise_std: float):
        return self.nca.rollout(Grid2D(), pixels, state, alive, steps, noise_std, fires, noises)


class Runs(nn.Module):
    """N models of one architecture; ``runs[k]`` is run k's (its state_dict keys: runs.K.NAME)."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.runs = nn.ModuleList(models)
        for m in models:  # vmap cannot batch the firing rows' data-dependent count (nonzero):
            m.sparse_fire = False  # the masked update, the same values

    def rollout(self, pixels, state, alive, fires, noises, steps: int, noise_std: float) -> torch.Tensor:
        """pixels, alive (N, B, H, W, 1), state (N, B, H, W, C), fires (N, steps, B, H, W, 1),
        noises (N, steps, B, H, W, C) or None -> the N final states (N, B, H, W, C)."""
        template = _Rollout(self.runs[0])

        def stacked(named):
            tables = [dict(named(m)) for m in self.runs]
            return {f"nca.{k}": torch.stack([t[k] for t in tables]) for k in tables[0]}

        weights = {**stacked(lambda m: m.named_parameters()), **stacked(lambda m: m.named_buffers())}

        def one(w, px, st, al, fi, no):
            return functional_call(template, w, (px, st, al, fi, no, steps, noise_std))

        return vmap(one, in_dims=(0, 0, 0, 0, 0, None if noises is None else 0))(weights, pixels, state, alive,
                                                                              fires, noises)


class SelfClassifyRuns(PooledTask):
    """N self-classifier runs as one task of the trainer (see the module's docstring)."""

    NAME = "mnist-selfclassify-runs"

    def __init__(self, cfg: Config, images, labels, device: torch.device, seeds: list[int]):
        if cfg.engine != "dense":
            raise ValueError(f"batched runs train with the dense engine (the alive engine's cell counts differ "
                             f"between runs), not {cfg.engine!r}")
        if len(seeds) < 1:
            raise ValueError("batched runs need at least one seed")
        self.cfg, self.device, self.seeds = cfg.validate(), device, [int(s) for s in seeds]
        self.tasks, self.rngs = [], []
        for s in self.seeds:  # each run made as the command line makes a single run with seed s
            torch.manual_seed(s)
            self.tasks.append(SelfClassifyTask(cfg, images, labels, device) if not self.tasks
                              else self.tasks[0].with_config(cfg))  # the same images, not a copy
            torch.manual_seed(s)  # the trainer seeds a new run's stream once more before iterating
            self.rngs.append(rng_state(device))
        self.model = Runs([t.model for t in self.tasks])

    @property
    def samples_per_iteration(self) -> int:
        return len(self.tasks) * self.cfg.batch_size

    def _draw(self, k: int, steps: int):
        """Run k's draws of one iteration from its own stream: -> (idx, batch, fires, noises)."""
        cfg, dev = self.cfg, self.device
        set_rng_state(self.rngs[k], dev)
        torch.randint(steps, steps + 1, (1,))  # a single run's trainer draws its step count first
        idx, b = self.tasks[k].training_batch()
        B, H, W, _ = b["pixels"].shape
        fires, noises = [], []
        for _ in range(steps):  # as NCA.step draws them: the noise, then the fire mask
            if cfg.noise_std > 0:
                noises.append(torch.randn(B, H, W, cfg.channels, device=dev))
            fires.append(torch.rand(B, H, W, 1, device=dev) <= cfg.fire_rate if cfg.fire_rate < 1
                         else torch.ones(B, H, W, 1, dtype=torch.bool, device=dev))
        self.rngs[k] = rng_state(dev)
        return idx, b, torch.stack(fires), torch.stack(noises) if noises else None

    def training_loss(self, steps: int):
        outer = rng_state(self.device)  # the trainer's own stream is left as it was
        draws = [self._draw(k, steps) for k in range(len(self.tasks))]
        set_rng_state(outer, self.device)
        pixels = torch.stack([b["pixels"] for _, b, _, _ in draws])
        noises = None if draws[0][3] is None else torch.stack([d[3] for d in draws])
        out = self.model.rollout(pixels, torch.stack([b["state"] for _, b, _, _ in draws]),
                                 pixels > ALIVE_THRESHOLD, torch.stack([d[2] for d in draws]), noises,
                                 steps, self.cfg.noise_std)
        total, info, accs = 0, {}, []
        for k, (task, (idx, b, _, _)) in enumerate(zip(self.tasks, draws)):
            eng = Engine("dense", b["pixels"], b["state"])
            logits = labels_of(eng.alive_rows(out[k]))
            target = b["label"][eng.alive_digit()]
            loss = loss_fn(self.cfg.loss, logits, target, len(b["label"]))
            b["state"] = out[k].detach()
            task.commit(task.pool, idx, b)
            total = total + loss
            accs.append((logits.argmax(-1) == target).float().mean().item())
            info[f"loss_{k}"], info[f"cell_accuracy_{k}"] = loss.item(), accs[-1]
        return total, {"cell_accuracy": sum(accs) / len(accs), **info}

    def discard_batch(self) -> None:
        for t in self.tasks:
            t.discard_batch()

    def with_config(self, cfg):
        raise ValueError("batched runs (--runs) train in one process; they cannot be sharded (--nproc)")

    def extra_state(self):
        return {"runs": [t.extra_state() for t in self.tasks], "rngs": self.rngs}

    def load_extra_state(self, state):
        for t, s in zip(self.tasks, state["runs"]):
            t.load_extra_state(s)
        self.rngs = list(state["rngs"])

    def config_dict(self):
        return {"name": self.NAME, **asdict(self.cfg), "seeds": self.seeds}


def export_runs(out: str | Path) -> list[Path]:
    """Split the batched checkpoint in ``out`` into OUT/run-K/{model.safetensors, model.json,
    metrics.jsonl}: each an ordinary mnist-selfclassify checkpoint of run K (its seed in "train",
    the batch it came from in "batched"). Returns the weights files."""
    out = Path(out)
    weights, meta = load_model_files(out / "model")
    task = dict(meta["task"])
    if task.pop("name", None) != SelfClassifyRuns.NAME:
        raise ValueError(f"{out / 'model.json'} is not a batched mnist-selfclassify checkpoint")
    seeds = task.pop("seeds")
    cfg = Config.from_dict(task)
    rows = []
    if (out / "metrics.jsonl").is_file():
        rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    paths = []
    for k, seed in enumerate(seeds):
        model = build_model(cfg)
        prefix = f"runs.{k}."
        model.load_state_dict({n[len(prefix):]: v for n, v in weights.items() if n.startswith(prefix)})
        folder = out / f"run-{k}"
        card = {**meta, "task": {"name": SelfClassifyTask.NAME, **asdict(cfg)},
                "train": {**meta.get("train", {}), "seed": seed},
                "batched": {"runs": len(seeds), "run": k, "seeds": seeds, "folder": str(out)}}
        paths.append(save_model(folder / "model", model, card))
        keep = ("step", "lr", "sec_per_iter")
        (folder / "metrics.jsonl").write_text("".join(
            json.dumps({**{m: r[m] for m in keep if m in r}, "loss": r[f"loss_{k}"],
                        "cell_accuracy": r[f"cell_accuracy_{k}"]}) + "\n" for r in rows if f"loss_{k}" in r))
    return paths
