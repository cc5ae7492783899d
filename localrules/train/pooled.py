"""What every pool-trained task does the same way (the shared part of the trainer's Task protocol).

A task supplies ``NAME``, ``cfg`` (a dataclass whose batch and pool sizes ``BATCH`` and ``POOL``
name, with their options), ``model``, :meth:`~PooledTask.with_config` and its own
``training_loss`` (sample, perturb, roll out, :meth:`~PooledTask.commit`), ``extra_state`` and
``load_extra_state``; the base gives ``discard_batch``, ``shard`` and ``config_dict``.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import torch

from .pool import SamplePool


def pack_pixels(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels that are k / 255 -> uint8 k (the round trip through :func:`unpack_pixels` is exact)."""
    return (x * 255).round().to(torch.uint8)


def unpack_pixels(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0


class PooledTask:
    NAME = ""
    BATCH = ("batch_size", "--batch-size")  # (Config field, command-line option)
    POOL = ("pool_size", "--pool-size")
    _committed: SamplePool | None = None

    def with_config(self, cfg) -> "PooledTask":
        """A new task on the same data with Config ``cfg`` (its own model and pools)."""
        raise NotImplementedError

    def commit(self, pool: SamplePool, idx: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        """Write the batch back into ``pool`` at ``idx``; :meth:`discard_batch` undoes it."""
        pool.commit(idx, batch)
        self._committed = pool

    def discard_batch(self) -> None:
        """Undo the pool commit of the latest ``training_loss`` (its loss was not finite)."""
        if self._committed is not None:
            self._committed.undo()
            self._committed = None

    def shard(self, k: int) -> "PooledTask":
        """A task over 1/k of the batch and of the pool that trains this task's model."""
        (bf, bopt), (pf, popt) = self.BATCH, self.POOL
        b, p = getattr(self.cfg, bf), getattr(self.cfg, pf)
        if b % k or p % k:
            raise ValueError(f"{bopt} {b} and {popt} {p} must be multiples of the {k} processes (shards)")
        part = self.with_config(replace(self.cfg, **{bf: b // k, pf: p // k}))
        part.use_model(self.model)
        return part

    def use_model(self, model: torch.nn.Module) -> None:
        """Train ``model`` (a shard shares its parent's model)."""
        self.model = model

    def config_dict(self) -> dict[str, Any]:
        return {"name": self.NAME, **asdict(self.cfg)}
