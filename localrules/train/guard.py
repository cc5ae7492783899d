"""The divergence guard: a non-finite iteration is skipped and the run goes back to its last good state.

The guard keeps in-memory snapshots of the weights and Adam state (every ``snapshot_every`` good
iterations and at each checkpoint). :meth:`DivergenceGuard.rollback` restores the last one,
undoes the bad batch's pool commit (``task.discard_batch()``) and multiplies the learning rate by
``bad_lr_factor``; after ``max_bad_steps`` bad iterations in a row the trainer stops with
:class:`TrainingDiverged`.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch


class TrainingDiverged(RuntimeError):
    """``max_bad_steps`` iterations in a row had a non-finite loss or gradient; the message says
    where, what was kept and what to try."""


def backward(loss: torch.Tensor, model: torch.nn.Module, normalize: bool) -> str | None:
    """Backpropagate ``loss``; None when loss and every gradient norm are finite (then divide each
    gradient by its norm + 1e-8 if ``normalize``), else what was not finite."""
    value = loss.item()
    if not math.isfinite(value):
        return f"loss {value}"
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norms = [g.norm() for g in grads]
    if norms and not bool(torch.isfinite(torch.stack(norms)).all()):
        return "a gradient norm " + str(next(float(n) for n in norms if not torch.isfinite(n)))
    if normalize:
        for g, n in zip(grads, norms):
            g /= n + 1e-8
    return None


class DivergenceGuard:
    """Snapshots of (weights, Adam state) and the rollback to the last one."""

    def __init__(self, model: torch.nn.Module, opt: torch.optim.Optimizer, task, cfg, iteration: int):
        self.model, self.opt, self.task, self.cfg = model, opt, task, cfg
        self.bad_run: list[int] = []  # the iterations of the current run of bad ones
        self.snapshot(iteration)

    def snapshot(self, iteration: int) -> None:
        self.good: list[Any] = [iteration, copy.deepcopy(self.model.state_dict()),  # good[0]: its iteration
                                copy.deepcopy(self.opt.state_dict())]

    def rollback(self, bad: str, iteration: int) -> dict[str, Any]:
        """Restore the last good snapshot, undo the bad batch's pool commit and lower the lr ->
        the change record ``{"iteration", "lr": [old, new], "reason"}``."""
        self.bad_run.append(iteration)
        self.model.load_state_dict(self.good[1])
        lr_now = self.opt.param_groups[0]["lr"]
        self.opt.load_state_dict(self.good[2])
        lr = lr_now * self.cfg.bad_lr_factor
        for group in self.opt.param_groups:
            group["lr"] = lr
        if hasattr(self.task, "discard_batch"):
            self.task.discard_batch()
        return {"iteration": iteration, "lr": [lr_now, lr], "reason": f"{bad} (rolled back to {self.good[0]})"}

    def gives_up(self, last_one: bool) -> bool:
        """``max_bad_steps`` bad iterations in a row, or the run ends with no good one."""
        return len(self.bad_run) >= self.cfg.max_bad_steps or (last_one and self.good[0] == 0)

    def message(self, bad: str, iteration: int, kept: str) -> str:
        """Why training stopped; ``kept`` says what the run folder holds now."""
        first, n = self.bad_run[0], len(self.bad_run)
        what = (f"{bad} at iteration {iteration}" if n == 1 else
                f"a non-finite loss or gradient at iterations {first}-{iteration} ({bad} at the last)")
        why = (f"{n} in a row (--max-bad-steps {self.cfg.max_bad_steps})"
               if n >= self.cfg.max_bad_steps else f"{n} in a row at the end of the run")
        return (f"training diverged: {what}, {why}; {kept}. Try a lower --lr, residual noise off, or gradient "
                f"normalisation on.")
