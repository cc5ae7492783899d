"""One trainer for every task.

Each iteration: draw a rollout length in [steps_min, steps_max], ask the task for its loss
(the task samples its batch, rolls out the rule and commits states back to its pool), then
backpropagate, divide each parameter's gradient by (its norm + 1e-8), and take an Adam step
under a piecewise-constant learning-rate schedule. Training stops at ``iterations`` or, with
``minutes`` > 0, after the first iteration that ends past that wall-clock budget (counted from
the start of this call), whichever comes first; both end the same way. Checkpoints (weights +
the full training state) are written atomically every ``checkpoint_every`` iterations, after
any iteration that ends ``checkpoint_minutes`` or more after the last checkpoint (so a crash
costs minutes of a short run, not the run), at the end and on Ctrl-C or SIGTERM (`kill`, a
batch scheduler's stop), after the last finished iteration, so
``resume=True`` continues where the last checkpoint left off: exactly, except after a stop that
fell inside an iteration whose states the task had already committed to its pool.

Divergence: an iteration whose loss or gradient norm is NaN or infinite is skipped (it still
counts towards ``iterations``). The trainer restores the weights and Adam state of its last good
snapshot (an in-memory copy taken every ``snapshot_every`` good iterations and at each
checkpoint), undoes the bad batch's pool commit (``task.discard_batch()``, when the task has
one; the rest of the pool is kept), multiplies the learning rate by ``bad_lr_factor`` and goes
on; the lowered rate is recorded in the checkpoint's ``train_changes``. After ``max_bad_steps``
bad iterations in a row it writes the restored state as the checkpoint and raises
:class:`TrainingDiverged`.
"""

from __future__ import annotations

import copy
import math
import os
import platform
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from localrules.progress import bar as progress_bar

from .checkpoint import claim_run_folder, load_state, save_model, save_state
from .log import MetricLog, NullLog
from .ranks import DistributedError
from .resume import apply_changes, recorded_train_config
from .rng import rng_state, set_rng_state
from .shards import check_resume, data_parallel


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
        return self


class Task(Protocol):
    model: torch.nn.Module

    def training_loss(self, steps: int) -> tuple[torch.Tensor, dict[str, float]]: ...
    def extra_state(self) -> dict[str, Any]: ...
    def load_extra_state(self, state: dict[str, Any]) -> None: ...
    def config_dict(self) -> dict[str, Any]: ...


def changed_settings(saved: dict, task) -> dict[str, tuple]:
    """{setting: (saved, now)} where ``task.config_dict()`` differs from a saved one. A setting the
    saved state lacks (its Config field was added after the state was written) was trained with the
    field's default, so it counts as changed only when it is not at that default now."""
    cfg = getattr(getattr(task, "task", task), "cfg", None)  # a ShardedTask wraps the task
    defaults = {f.name: f.default for f in fields(cfg) if f.default is not MISSING} if is_dataclass(cfg) else {}
    return {k: (saved.get(k), v) for k, v in task.config_dict().items() if saved.get(k, defaults.get(k)) != v}


class TrainingDiverged(RuntimeError):
    """``max_bad_steps`` iterations in a row had a non-finite loss or gradient; the message says
    where, what was kept and what to try."""


def _bad_step(loss: torch.Tensor, model: torch.nn.Module, normalize: bool) -> str | None:
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


def hardware(device: torch.device) -> dict[str, Any]:
    """What the run trained on, for model cards."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": cpu, "cores": os.cpu_count()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


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
    model = task.model
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.lr_milestones), cfg.lr_gamma)
    start, seconds, commands, changes = 0, 0.0, [], []
    state_path = out / "train_state.pt"
    if resume:
        if not ranks.from_main(state_path.is_file):
            raise FileNotFoundError(f"--resume: no training state at {state_path}")
        st = ranks.from_main(load_state, state_path)  # rank 0 reads it for every process
        saved = st.get("task_config")
        diff = changed_settings(saved, task) if saved is not None else {}
        if diff:
            raise ValueError(f"--resume: {state_path} was trained with other settings "
                             f"(saved vs now: {diff}); resume with the same options")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        check_resume(st["task"], getattr(task, "shards", 1))
        task.load_extra_state(st["task"])
        set_rng_state(st["rng"], device)
        start = st["iteration"]
        seconds = st.get("train_seconds", 0.0)
        commands, changes = st.get("commands", []), st.get("changes", [])
        change = apply_changes(cfg, st.get("train") or recorded_train_config(out), opt, sched, start)
        if start >= cfg.iterations:
            tqdm.write(f"nothing to do: {out} has finished {start:,} of {cfg.iterations:,} iterations; "
                       f"give a larger --iterations to train on")
            return {}
        said = ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in change.items() if k != "iteration")
        tqdm.write(f"resuming at {start:,} of {cfg.iterations:,} iterations" + (f" with {said}" if said else ""))
        if change:
            changes = [*changes, change]
    else:
        torch.manual_seed(cfg.seed)
    if command:
        commands = [*commands, {"command": command, "from_iteration": start}]
    log = MetricLog(out / "metrics.jsonl", out / "tensorboard" if tensorboard else None,
                    resume_from=start if resume else None) if ranks.main else NullLog()

    def checkpoint(it: int) -> None:
        nonlocal saved_at, saved_time
        meta = {"task": task.config_dict(), "train": asdict(cfg), "iteration": it,
                "train_seconds": seconds, "hardware": hardware(device), "commands": commands,
                "train_changes": changes}
        if ranks.world > 1:
            meta["hardware"]["processes"] = ranks.world
        extra = task.extra_state()  # with several processes a collective: every rank calls it
        if ranks.main:
            save_model(out / "model", model, meta)
            save_state(state_path, {
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "task": extra,
                "rng": rng_state(device), "iteration": it, "train_seconds": seconds,
                "commands": commands, "task_config": task.config_dict(),
                "train": asdict(cfg), "changes": changes,
            })
        saved_at, saved_time = it, time.monotonic()

    def snapshot(it: int) -> None:
        good[:] = [it, copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())]

    def rollback(bad: str, it: int) -> float:
        """Restore the last good snapshot, undo the bad batch's pool commit, lower the lr."""
        nonlocal changes
        model.load_state_dict(good[1])
        lr_now = opt.param_groups[0]["lr"]
        opt.load_state_dict(good[2])
        lr = lr_now * cfg.bad_lr_factor
        for group in opt.param_groups:
            group["lr"] = lr
        sched._last_lr = [lr for _ in opt.param_groups]
        if hasattr(task, "discard_batch"):
            task.discard_batch()
        changes = [*changes, {"iteration": it, "lr": [lr_now, lr], "reason": f"{bad} (rolled back to {good[0]})"}]
        return lr

    def diverged(bad: str, it: int, lr: float) -> str:
        """Checkpoint the restored state (if this call trained at all) and say what happened."""
        first = bad_run[0]
        what = (f"{bad} at iteration {it}" if len(bad_run) == 1 else
                f"a non-finite loss or gradient at iterations {first}-{it} ({bad} at the last)")
        if good[0] > 0:  # a trained state (the untrained weights are not worth a checkpoint)
            checkpoint(it)
            kept = (f"kept the weights and Adam state of iteration {good[0]} (the last good one) with lr "
                    f"{lr:.3g}, as the checkpoint at iteration {it} in {out}; continue with --resume "
                    f"and a lower --lr")
        else:
            kept = (f"no iteration finished with a finite loss, so no checkpoint was written"
                    + (f" ({out} keeps the one of iteration {saved_at})" if saved_at else ""))
        why = (f"{len(bad_run)} in a row (--max-bad-steps {cfg.max_bad_steps})"
               if len(bad_run) >= cfg.max_bad_steps else f"{len(bad_run)} in a row at the end of the run")
        return (f"training diverged: {what}, {why}; {kept}. Try a lower --lr, residual noise off, or gradient "
                f"normalisation on.")

    good: list[Any] = []  # [iteration, model state, optimizer state] of the last good snapshot
    bad_run: list[int] = []  # the iterations of the current run of bad ones
    snapshot(start)
    last: dict[str, float] = {}
    saved_at = start if resume else None  # the iteration of the last checkpoint on disk
    saved_time = time.monotonic()
    bar = progress_bar(range(start, cfg.iterations), initial=start, total=cfg.iterations,
               disable=not progress or not ranks.main, desc="train")
    t0, losses = time.perf_counter(), []
    deadline = time.monotonic() + 60 * cfg.minutes if cfg.minutes > 0 else math.inf
    done, rng = start, rng_state(device)  # the last finished iteration and the RNG after it
    with _sigterm_as_ctrl_c():
        try:
            for it in bar:
                steps = int(torch.randint(cfg.steps_min, cfg.steps_max + 1, (1,)))
                loss, info = task.training_loss(steps)
                opt.zero_grad(set_to_none=True)
                bad = _bad_step(loss, model, cfg.normalize_grads)
                if bad is not None:
                    opt.zero_grad(set_to_none=True)
                    with warnings.catch_warnings():  # "scheduler stepped before the optimizer"
                        warnings.simplefilter("ignore", UserWarning)
                        sched.step()
                    done, rng = it + 1, rng_state(device)
                    bad_run.append(it + 1)
                    lr = rollback(bad, it + 1)
                    last_one = it + 1 == cfg.iterations
                    if len(bad_run) >= cfg.max_bad_steps or (last_one and good[0] == 0):
                        message = diverged(bad, it + 1, lr)
                        log.close()
                        raise TrainingDiverged(message)
                    tqdm.write(f"iteration {it + 1}: {bad} is not finite; skipped it, restored the weights "
                               f"and Adam state of iteration {good[0]} and lowered the lr to {lr:.3g} "
                               f"({len(bad_run)} of --max-bad-steps {cfg.max_bad_steps} in a row)")
                    if last_one:
                        checkpoint(it + 1)
                    continue
                bad_run.clear()
                opt.step()
                sched.step()
                done, rng = it + 1, rng_state(device)
                losses.append(loss.item())
                out_of_time = ranks.any(time.monotonic() >= deadline and it + 1 < cfg.iterations)
                end = out_of_time or it + 1 == cfg.iterations
                if (it + 1) % cfg.log_every == 0 or end:
                    dt = time.perf_counter() - t0
                    seconds += dt
                    last = {"loss": sum(losses) / len(losses), "lr": sched.get_last_lr()[0],
                            "sec_per_iter": dt / len(losses), **info}
                    log.write(it + 1, **last)
                    bar.set_postfix(loss=f"{last['loss']:.4g}")
                    t0, losses = time.perf_counter(), []
                due = ranks.any(cfg.checkpoint_minutes > 0 and time.monotonic() - saved_time >= 60 * cfg.checkpoint_minutes)
                if (it + 1) % cfg.checkpoint_every == 0 or end or due:
                    checkpoint(it + 1)
                if saved_at == it + 1 or (it + 1) % cfg.snapshot_every == 0:
                    snapshot(it + 1)
                if out_of_time:
                    bar.close()
                    tqdm.write(f"time budget of {cfg.minutes:g} min reached after iteration {it + 1} "
                               f"of {cfg.iterations}; checkpoint in {out}; continue with --resume")
                    break
        except DistributedError as e:  # another process died: the last checkpoint stays as it is
            log.close()
            kept = f"the last checkpoint (iteration {saved_at}) in {out} is intact" if saved_at else "no checkpoint was written"
            raise DistributedError(f"{e}; this process stopped too; {kept}; continue with --resume") from e
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep every finished iteration, then stop
            if done > start and ranks.world == 1:  # with several processes: the last checkpoint
                set_rng_state(rng, device)  # an unfinished iteration's random draws leave no trace
                checkpoint(done)
            log.close()
            if saved_at:
                tqdm.write(f"interrupted: checkpoint at iteration {saved_at} in {out}; continue with --resume")
            else:
                tqdm.write("interrupted before the first iteration finished: no checkpoint was written")
            raise
    log.close()
    return last


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
