"""The processes of one data-parallel run (torch.distributed), as the trainer sees them.

``torchrun`` (or ``localrules run ... --nproc N``) starts N copies of a command with RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set; :func:`from_env` joins them into one
process group (gloo on CPU, nccl on CUDA). Rank 0 alone writes files and prints (the others'
stdout goes to /dev/null); the others follow its decisions (:meth:`Ranks.any`) and receive what
it reads (:meth:`Ranks.from_main`). One process (no WORLD_SIZE, or 1) gets ``Ranks()``, whose
collectives cost nothing.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import torch

TIMEOUT_ENV = "LOCALRULES_DIST_TIMEOUT"  # seconds a collective waits for a silent peer (default 600)


class DistributedError(RuntimeError):
    """A process of a data-parallel run failed, or the processes could not agree; the message says
    which and what was kept."""


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (e.g. a wall-clock decision of one)."""
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)])
        _collective(torch.distributed.all_reduce, t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a float64 CPU vector (the same on every rank)."""
        if self.world == 1:
            return values
        t = values.clone()
        _collective(torch.distributed.all_reduce, t)
        return t / self.world

    def from_main(self, fn: Callable[..., Any], *args) -> Any:
        """``fn(*args)`` run on rank 0 and sent to every rank; an error there is raised on rank 0
        as it is and ends the other ranks quietly (SystemExit 2: rank 0 says why)."""
        if self.world == 1:
            return fn(*args)
        box: list[Any] = [None]
        error = None
        if self.main:
            try:
                box[0] = ("ok", fn(*args))
            except Exception as e:  # sent on, then raised here
                error, box[0] = e, ("error", f"{type(e).__name__}: {e}")
        _collective(torch.distributed.broadcast_object_list, box, src=0)
        if error is not None:
            raise error
        if box[0][0] == "error":
            raise SystemExit(2)
        return box[0][1]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` (picklable, CPU tensors) as a list on rank 0; None elsewhere."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world if self.main else None
        _collective(torch.distributed.gather_object, obj, out, dst=0)
        return out


def _collective(fn, *args, **kwargs) -> None:
    """Run a collective; a peer that died or hung becomes a DistributedError."""
    try:
        fn(*args, **kwargs)
    except (RuntimeError, ConnectionError) as e:  # gloo / nccl report a lost peer as RuntimeError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DistributedError(f"another process of this {torch.distributed.get_world_size()}-process run "
                               f"stopped or stopped answering ({first[:200]})") from e


def from_env(device: torch.device) -> Ranks:
    """The run's ranks from torchrun's environment, joining the process group on first use."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    dist = torch.distributed
    if not dist.is_available():
        raise DistributedError("this PyTorch build has no torch.distributed; train in one process")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "600")))
        try:
            dist.init_process_group(backend, timeout=timeout)
        except (RuntimeError, ValueError, ConnectionError) as e:
            raise DistributedError(f"could not join the {world}-process group ({backend} at "
                                   f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}): {e}") from e
        atexit.register(_leave)
    ranks = Ranks(dist.get_rank(), dist.get_world_size())
    if not ranks.main and os.environ.get("LOCALRULES_ALL_RANKS_PRINT", "") in ("", "0"):
        sys.stdout = open(os.devnull, "w")  # rank 0 prints for the run; errors still reach stderr
    return ranks


def _leave() -> None:
    """At exit: free what still holds the group, then destroy it, while the interpreter is alive.

    A DistributedDataParallel wrapper left in a reference cycle keeps the gloo group (and its worker
    threads) alive past ``destroy_process_group`` until interpreter finalization, where a worker that
    drops a tensor needs the GIL and the process aborts ("terminate called without an active
    exception", SIGABRT; pytorch/pytorch#190489, #179291): 9 of 100 runs of a 2-process DDP
    reproduction whose peer died, 0 of 100 with this collection first.
    """
    gc.collect()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
