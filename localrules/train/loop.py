"""One trainer for every task: the loop, as in the papers' pseudo-code.

    for it in iterations:
        steps      ~ U{steps_min, ..., steps_max}
        loss       = task.training_loss(steps)     sample a batch from the pool, roll the rule out,
                                                   commit the states back to the pool
        g          = grad(loss) / (|grad(loss)| + 1e-8)   per parameter (normalize_grads)
        Adam step under a piecewise-constant learning rate (/ lr_gamma at each milestone)

Around it: a :class:`~localrules.train.checkpointer.Checkpointer` (the run folder, exact resume),
a :class:`~localrules.train.guard.DivergenceGuard` (non-finite iterations are rolled back) and a
:class:`Deadline` (``minutes`` > 0: the run ends after the first iteration past that budget of this
call). Ctrl-C or SIGTERM write a checkpoint of the last finished iteration: ``resume=True`` then
continues exactly, unless the stop fell inside an iteration that had committed to its pool.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from localrules.progress import bar as progress_bar

from .accelerate import mark_step
from .checkpoint import claim_run_folder
from .checkpointer import Checkpointer
from .guard import DivergenceGuard, TrainingDiverged, backward
from .log import MetricLog, NullLog
from .precision import PRECISIONS, autocast
from .ranks import DistributedError
from .rng import rng_state, set_rng_state
from .shards import data_parallel
from .utilisation import watch


@dataclass
class TrainConfig:
    iterations: int = 100_000
    lr: float = 1e-3
    lr_milestones: tuple[int, ...] = (30_000, 70_000)
    lr_gamma: float = 0.1
    steps_min: int = 20
    steps_max: int = 20
    normalize_grads: bool = True
    checkpoint_every: int = 500
    checkpoint_minutes: float = 2.0  # also checkpoint when this long has passed since the last; 0 = off
    log_every: int = 20
    seed: int = 0
    minutes: float = 0.0  # wall-clock budget of one call to train(); 0 = none
    shards: int = 0  # data-parallel shards of batch and pool (localrules.train.shards); 0 = one per process
    max_bad_steps: int = 5  # stop after this many non-finite iterations in a row
    bad_lr_factor: float = 0.5  # the learning rate is multiplied by this after each bad iteration
    snapshot_every: int = 10  # good iterations between in-memory copies of weights + Adam state
    precision: str = "fp32"  # fp32 | bf16: autocast of the forward pass (localrules.train.precision)
    lr_scaling: str = ""  # how lr was scaled from the recipe's batch (localrules.train.lr_rule); "" = as given

    def validate(self) -> "TrainConfig":
        """Refuse values that would train wrongly or crash later; messages name the CLI option."""
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(what)

        need(self.iterations >= 1, f"--iterations must be at least 1, not {self.iterations}")
        need(1 <= self.steps_min <= self.steps_max,
             f"CA steps per iteration need 1 <= --steps-min <= --steps-max, not {self.steps_min} and {self.steps_max}")
        need(self.checkpoint_every >= 1, f"--checkpoint-every must be at least 1, not {self.checkpoint_every}")
        need(self.checkpoint_minutes >= 0, f"checkpoint_minutes must be >= 0, not {self.checkpoint_minutes}")
        need(self.log_every >= 1, f"log_every must be at least 1, not {self.log_every}")
        need(math.isfinite(self.lr) and self.lr >= 0, f"--lr must be a finite number >= 0, not {self.lr}")
        need(math.isfinite(self.lr_gamma) and self.lr_gamma > 0, f"lr_gamma must be positive, not {self.lr_gamma}")
        need(all(m >= 0 for m in self.lr_milestones), f"--milestones must be iterations >= 0, not {self.lr_milestones}")
        need(self.minutes >= 0 and not math.isnan(self.minutes), f"--minutes must be >= 0, not {self.minutes}")
        need(self.max_bad_steps >= 1, f"--max-bad-steps must be at least 1, not {self.max_bad_steps}")
        need(0 < self.bad_lr_factor <= 1, f"bad_lr_factor must be in (0, 1], not {self.bad_lr_factor}")
        need(self.snapshot_every >= 1, f"snapshot_every must be at least 1, not {self.snapshot_every}")
        need(self.precision in PRECISIONS, f"--precision must be one of {PRECISIONS}, not {self.precision!r}")
        return self


class Task(Protocol):
    model: torch.nn.Module

    def training_loss(self, steps: int) -> tuple[torch.Tensor, dict[str, float]]: ...
    def extra_state(self) -> dict[str, Any]: ...
    def load_extra_state(self, state: dict[str, Any]) -> None: ...
    def config_dict(self) -> dict[str, Any]: ...


class Deadline:
    """``minutes`` of wall-clock time from now (0: none)."""

    def __init__(self, minutes: float):
        self.at = time.monotonic() + 60 * minutes if minutes > 0 else math.inf

    def passed(self) -> bool:
        return time.monotonic() >= self.at


def train(
    task: Task,
    cfg: TrainConfig,
    out_dir: str | Path,
    device: torch.device,
    resume: bool = False,
    tensorboard: bool = False,
    progress: bool = True,
    command: str | None = None,
    overwrite: bool = False,
) -> dict[str, float]:
    """Train ``task.model`` in place; writes ``out_dir/{model.safetensors,model.json,
    train_state.pt,metrics.jsonl}``. Returns the last logged metrics ({} when a resumed run had
    nothing left to do). ``command`` (the command line) is recorded in the checkpoint, with every
    later ``--resume`` appended. A new run into a folder that holds a run is refused unless
    ``overwrite``; on ``resume``, changed options are applied as :mod:`.resume` describes."""
    out = Path(out_dir)
    cfg.validate()
    task, ranks = data_parallel(task, cfg, device)  # in one process without shards: task itself
    if not resume:
        ranks.from_main(claim_run_folder, out, overwrite)
    task = watch(task, device, out) if ranks.main else task  # samples/s, FLOP/s, GPU busy: LOCALRULES_UTILISATION
    model = task.model
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.lr_milestones), cfg.lr_gamma)
    ckpt = Checkpointer(out, task, opt, sched, cfg, device, ranks)
    if resume:
        if not ckpt.resume():
            return {}
    else:
        torch.manual_seed(cfg.seed)
    ckpt.record_command(command)
    start = ckpt.start
    log = MetricLog(out / "metrics.jsonl", out / "tensorboard" if tensorboard else None,
                    resume_from=start if resume else None) if ranks.main else NullLog()
    guard = DivergenceGuard(model, opt, task, cfg, start)
    deadline, last, losses, t0 = Deadline(cfg.minutes), {}, [], time.perf_counter()
    bar = progress_bar(range(start, cfg.iterations), initial=start, total=cfg.iterations,
                       disable=not progress or not ranks.main, desc="train")
    done, rng = start, rng_state(device)  # the last finished iteration and the RNG after it
    with _sigterm_as_ctrl_c():
        try:
            for it in bar:
                steps = int(torch.randint(cfg.steps_min, cfg.steps_max + 1, (1,)))
                mark_step()
                with autocast(device, cfg.precision):
                    loss, info = task.training_loss(steps)
                opt.zero_grad(set_to_none=True)
                bad = backward(loss, model, cfg.normalize_grads)
                if bad is None:
                    guard.bad_run.clear()
                    opt.step()
                else:
                    opt.zero_grad(set_to_none=True)
                with warnings.catch_warnings():  # after a bad one: "scheduler stepped before the optimizer"
                    warnings.simplefilter("ignore", UserWarning)
                    sched.step()
                done, rng = it + 1, rng_state(device)
                if bad is not None:
                    _skip(bad, it + 1, guard, ckpt, log)
                    continue
                losses.append(loss.item())
                out_of_time = ranks.any(deadline.passed() and it + 1 < cfg.iterations)
                end = out_of_time or it + 1 == cfg.iterations
                if (it + 1) % cfg.log_every == 0 or end:
                    dt = time.perf_counter() - t0
                    ckpt.seconds += dt
                    last = {"loss": sum(losses) / len(losses), "lr": opt.param_groups[0]["lr"],
                            "sec_per_iter": dt / len(losses), **info}
                    log.write(it + 1, **last)
                    bar.set_postfix(loss=f"{last['loss']:.4g}")
                    t0, losses = time.perf_counter(), []
                if ckpt.due(it + 1, end):
                    ckpt.save(it + 1)
                if ckpt.saved_at == it + 1 or (it + 1) % cfg.snapshot_every == 0:
                    guard.snapshot(it + 1)
                if out_of_time:
                    bar.close()
                    tqdm.write(f"time budget of {cfg.minutes:g} min reached after iteration {it + 1} "
                               f"of {cfg.iterations}; checkpoint in {out}; continue with --resume")
                    break
        except DistributedError as e:  # another process died: the last checkpoint stays as it is
            log.close()
            kept = (f"the last checkpoint (iteration {ckpt.saved_at}) in {out} is intact" if ckpt.saved_at
                    else "no checkpoint was written")
            raise DistributedError(f"{e}; this process stopped too; {kept}; continue with --resume") from e
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep every finished iteration, then stop
            if done > start and ranks.world == 1:  # with several processes: the last checkpoint
                set_rng_state(rng, device)  # an unfinished iteration's random draws leave no trace
                ckpt.save(done)
            log.close()
            if ckpt.saved_at:
                tqdm.write(f"interrupted: checkpoint at iteration {ckpt.saved_at} in {out}; continue with --resume")
            else:
                tqdm.write("interrupted before the first iteration finished: no checkpoint was written")
            raise
    log.close()
    return last


def _skip(bad: str, iteration: int, guard: DivergenceGuard, ckpt: Checkpointer, log) -> None:
    """A non-finite iteration: roll back (recorded in the run's changes), or stop when the guard gives up."""
    change = guard.rollback(bad, iteration)
    ckpt.changes = [*ckpt.changes, change]
    lr = change["lr"][1]
    last_one = iteration == ckpt.cfg.iterations
    if guard.gives_up(last_one):
        if guard.good[0] > 0:  # a trained state (the untrained weights are not worth a checkpoint)
            ckpt.save(iteration)
            kept = (f"kept the weights and Adam state of iteration {guard.good[0]} (the last good one) "
                    f"with lr {lr:.3g}, as the checkpoint at iteration {iteration} in {ckpt.out}; continue with "
                    f"--resume and a lower --lr")
        else:
            kept = ("no iteration finished with a finite loss, so no checkpoint was written"
                    + (f" ({ckpt.out} keeps the one of iteration {ckpt.saved_at})" if ckpt.saved_at else ""))
        log.close()
        raise TrainingDiverged(guard.message(bad, iteration, kept))
    tqdm.write(f"iteration {iteration}: {bad} is not finite; skipped it, restored the weights "
               f"and Adam state of iteration {guard.good[0]} and lowered the lr to {lr:.3g} "
               f"({len(guard.bad_run)} of --max-bad-steps {ckpt.cfg.max_bad_steps} in a row)")
    if last_one:
        ckpt.save(iteration)


@contextmanager
def _sigterm_as_ctrl_c():
    """Within the block SIGTERM raises KeyboardInterrupt, so `kill PID` saves a checkpoint like
    Ctrl-C does (a job started with `&` ignores SIGINT, so `kill -INT` cannot reach it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
