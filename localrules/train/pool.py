"""A pool of persistent samples (Growing / self-classifying NCA "sample pooling").

Slots are tensors with a common first dimension (pool size). ``sample`` draws a batch without
replacement and returns its indices; after training on it, ``commit`` writes the batch back, so
states evolve across iterations and the rule learns to persist.
"""

from __future__ import annotations

import torch


class SamplePool:
    def __init__(self, **slots: torch.Tensor):
        sizes = {len(v) for v in slots.values()}
        if len(sizes) != 1:
            raise ValueError(f"pool slots must share their first dimension, got sizes {sizes}")
        self.slots = dict(slots)
        self.size = sizes.pop()
        self._undo = None  # (idx, the slots' rows before the last commit)

    def sample(self, n: int, generator: torch.Generator | None = None):
        """-> (idx (n,), {slot: tensor (n, ...)}), a copy of n distinct pool entries."""
        if not 0 < n <= self.size:
            raise ValueError(f"cannot sample {n} from a pool of {self.size}")
        idx = torch.randperm(self.size, generator=generator)[:n]
        return idx, {k: v[idx.to(v.device)].clone() for k, v in self.slots.items()}

    def commit(self, idx: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        """Write ``batch`` back into the pool entries ``idx`` (:meth:`undo` reverts the latest)."""
        self._undo = (idx, {k: self.slots[k][idx.to(self.slots[k].device)].clone() for k in batch})
        for k, v in batch.items():
            self.slots[k][idx.to(self.slots[k].device)] = v.detach().to(self.slots[k])

    def undo(self) -> None:
        """Revert the latest :meth:`commit` (a batch that diverged); no-op if already undone."""
        if self._undo is not None:
            idx, old = self._undo
            for k, v in old.items():
                self.slots[k][idx.to(self.slots[k].device)] = v
            self._undo = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.slots)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k in self.slots:
            self.slots[k] = state[k].to(self.slots[k])
