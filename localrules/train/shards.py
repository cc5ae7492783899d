"""Data-parallel training: the global batch as K shards spread over N processes.

A run with K shards splits the task's batch B and sample pool P into K equal shards (batch B/K,
pool P/K, from ``task.shard(K)``); shard s draws all of its randomness (batches, fresh samples,
fire masks, noise) from its own stream, seeded from (seed, s), while the rollout length comes from
the common stream that every process shares. The N processes (N divides K) own contiguous
blocks of K/N shards; a process's loss is the mean of its shards' losses and
DistributedDataParallel averages the gradients over processes, so for every N

    g = (1/K) sum_s grad L_s        (L_s: shard s's loss on its B/K samples)

and a run gives the same weights, to float rounding, on 1, 2, ... or K processes; it resumes on
any N that divides K (the checkpoint holds every shard's pool and stream). DDP wraps a module
whose forward runs the shards' ``training_loss`` (see :class:`_LocalStep`), so the tasks' own
call patterns (rollouts, ``model.rule``) stay as they are. K = 1 in one process is the plain trainer, untouched.

What differs from the plain one-shard run with batch B: other random numbers (each shard has its
own stream) and pool sampling within a shard's own P/K entries; a loss that is a mean over a
data-dependent count (mnist-selfclassify ``--loss ce``: alive cells) becomes a mean of shard means.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch

from .ranks import Ranks, from_env
from .rng import rng_state, set_rng_state


def shard_seed(seed: int, s: int) -> int:
    """The seed of shard s's random stream."""
    return (seed * 1_000_003 + 7_919 * (s + 1)) % (2**63)


def _cpu(obj: Any) -> Any:
    """``obj`` with every tensor moved to the CPU (for gathering to rank 0)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


class _LocalStep(torch.nn.Module):
    """forward(steps) -> (surrogate, mean shard loss, infos): the module DDP wraps.

    Each local shard's gradient g_s = grad(L_s / n) (n: local shards) is taken on its own
    (torch.autograd.grad, one shard's graph in memory at a time) and summed in shard order; the
    surrogate sum_p <p, sum_s g_s> has exactly that gradient, which DDP then averages over
    processes. So a process computes g_s with the same operations whichever process owns shard s,
    and 1 and N processes agree to the rounding of the final sum. A parameter that no shard uses
    gets a zero gradient (DDP needs one for every parameter).
    """

    def __init__(self, owner: "ShardedTask"):
        super().__init__()
        self.model = owner.model
        self._owner = [owner]  # a plain list: not a submodule

    def forward(self, steps: int):
        owner = self._owner[0]
        params = [p for p in self.model.parameters() if p.requires_grad]
        total = [torch.zeros_like(p) for p in params]
        losses, infos = [], []
        for i, part in enumerate(owner.parts):
            with owner.stream(i):
                loss, info = part.training_loss(steps)
                grads = torch.autograd.grad(loss / len(owner.parts), params, allow_unused=True)
            for t, g in zip(total, grads):
                if g is not None:
                    t.add_(g)
            losses.append(loss.detach())
            infos.append(info)
        surrogate = sum((p * g).sum() for p, g in zip(params, total))
        return surrogate, sum(losses) / len(losses), infos


class ShardedTask:
    """This process's shards of ``task`` (the trainer's Task protocol); see the module docstring."""

    def __init__(self, task, shards: int, ranks: Ranks, seed: int, device: torch.device):
        name = task.config_dict().get("name", type(task).__name__)
        if not hasattr(task, "shard"):
            raise ValueError(f"{name} cannot be split over processes or shards (its task has no shard()); "
                             f"train it in one process")
        if shards < 1 or shards % ranks.world:
            raise ValueError(f"{shards} shard(s) cannot be split evenly over {ranks.world} processes; "
                             f"use a number of processes that divides {shards}")
        self.task, self.model, self.ranks, self.shards, self.device = task, task.model, ranks, shards, device
        per = shards // ranks.world
        self.ids = list(range(ranks.rank * per, (ranks.rank + 1) * per))
        outer = rng_state(device)
        self.parts, self.rngs = [], []
        for s in self.ids:
            torch.manual_seed(shard_seed(seed, s))
            self.parts.append(task.shard(shards))
            self.rngs.append(rng_state(device))
        set_rng_state(outer, device)
        self.step = _LocalStep(self)
        self.forward = self.step
        if ranks.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index if device.index is not None else torch.cuda.current_device()] \
                if device.type == "cuda" else None
            self.forward = DDP(self.step, device_ids=ids)  # broadcasts rank 0's weights now

    @contextmanager
    def stream(self, i: int):
        """Draw from local shard i's random stream inside the block."""
        outer = rng_state(self.device)
        set_rng_state(self.rngs[i], self.device)
        try:
            yield
        finally:
            self.rngs[i] = rng_state(self.device)
            set_rng_state(outer, self.device)

    def training_loss(self, steps: int):
        """-> (loss whose value is the mean over all K shards and whose gradient is this process's
        share, the shards' infos averaged over all K shards)."""
        surrogate, local, infos = self.forward(steps)
        keys = list(infos[0])
        row = [local.item(), *(sum(float(i[k]) for i in infos) / len(infos) for k in keys)]
        mean = self.ranks.mean(torch.tensor(row, dtype=torch.float64))
        loss = surrogate + (float(mean[0]) - surrogate.detach())
        return loss, dict(zip(keys, mean[1:].tolist()))

    def discard_batch(self) -> None:
        for part in self.parts:
            if hasattr(part, "discard_batch"):
                part.discard_batch()

    def extra_state(self) -> dict[str, Any]:
        """All K shards' task state and streams on rank 0 (a collective: every rank calls it)."""
        mine = [{"task": _cpu(p.extra_state()), "rng": _cpu(r)} for p, r in zip(self.parts, self.rngs)]
        every = self.ranks.gather(mine)
        return {"shards": [s for rank in every for s in rank]} if every is not None else {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        check_resume(state, self.shards)
        for i, s in enumerate(self.ids):
            self.parts[i].load_extra_state(state["shards"][s]["task"])
            self.rngs[i] = state["shards"][s]["rng"]

    def config_dict(self) -> dict[str, Any]:
        return self.task.config_dict()


def check_resume(task_state: dict[str, Any], shards: int) -> None:
    """Refuse a saved task state of another shard count than ``shards`` (1: the plain trainer)."""
    saved = len(task_state["shards"]) if isinstance(task_state, dict) and "shards" in task_state else 1
    if saved == shards:
        return
    if saved == 1:
        raise ValueError(f"--resume: this run was trained in one process without shards, so it resumes "
                         f"only that way; leave out --nproc (or start a new run in {shards} processes)")
    divisors = ", ".join(str(d) for d in range(1, saved + 1) if saved % d == 0)
    raise ValueError(f"--resume: this run was trained as {saved} shards and resumes with {saved} shards "
                     f"on {divisors} process(es), not with {shards} shard(s)")


def data_parallel(task, cfg, device: torch.device):
    """-> (the task the trainer trains, the ranks): ``task`` itself in one process without shards,
    else a :class:`ShardedTask` with ``cfg.shards`` (0: one per process; set to K in ``cfg``)."""
    ranks = from_env(device)
    shards = getattr(cfg, "shards", 0) or ranks.world
    if shards == 1 and ranks.world == 1:
        return task, ranks
    cfg.shards = shards
    return ShardedTask(task, shards, ranks, cfg.seed, device), ranks
