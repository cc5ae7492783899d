"""The run folder of a training run: its checkpoints, and the record of how it was trained.

``out/model.safetensors`` + ``model.json`` (weights; task and train config, hardware, commands,
``train_changes``) and ``out/train_state.pt`` (weights, Adam, schedule, the task's pools, every
random state, the iteration): written atomically every ``checkpoint_every`` iterations, after any
iteration that ends ``checkpoint_minutes`` or more after the last checkpoint, at the end and on a
stop. :meth:`Checkpointer.resume` reads them back, so a resumed run continues exactly.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .checkpoint import load_state, remove_torn_writes, save_model, save_state
from .resume import apply_changes, recorded_train_config
from .rng import rng_state, set_rng_state
from .shards import check_resume


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


def changed_settings(saved: dict, task) -> dict[str, tuple]:
    """{setting: (saved, now)} where ``task.config_dict()`` differs from a saved one. A setting the
    saved state lacks (its Config field was added after the state was written) was trained with the
    field's default, so it counts as changed only when it is not at that default now."""
    cfg = getattr(getattr(task, "task", task), "cfg", None)  # a ShardedTask wraps the task
    defaults = {f.name: f.default for f in fields(cfg) if f.default is not MISSING} if is_dataclass(cfg) else {}
    return {k: (saved.get(k), v) for k, v in task.config_dict().items() if saved.get(k, defaults.get(k)) != v}


class Checkpointer:
    """Saves and restores one run folder; keeps the run's record (iteration reached, training
    seconds, the commands that trained it, the changes made on the way)."""

    def __init__(self, out: Path, task, opt, sched, cfg, device: torch.device, ranks):
        self.out, self.task, self.opt, self.sched = out, task, opt, sched
        self.cfg, self.device, self.ranks = cfg, device, ranks
        self.state_path = out / "train_state.pt"
        self.start, self.seconds = 0, 0.0
        self.commands: list[dict] = []
        self.changes: list[dict] = []
        self.saved_at: int | None = None  # the iteration of the last checkpoint on disk
        self.saved_time = time.monotonic()

    def resume(self) -> bool:
        """Restore the last checkpoint; False when it has reached ``cfg.iterations`` already."""
        cfg, task, ranks = self.cfg, self.task, self.ranks
        if not ranks.from_main(self.state_path.is_file):
            raise FileNotFoundError(f"--resume: no training state at {self.state_path}")
        st = ranks.from_main(load_state, self.state_path)  # rank 0 reads it for every process
        ranks.from_main(remove_torn_writes, self.out)
        saved = st.get("task_config")
        diff = changed_settings(saved, task) if saved is not None else {}
        if diff:
            raise ValueError(f"--resume: {self.state_path} was trained with other settings "
                             f"(saved vs now: {diff}); resume with the same options")
        task.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        check_resume(st["task"], getattr(task, "shards", 1))
        task.load_extra_state(st["task"])
        set_rng_state(st["rng"], self.device)
        self.start = self.saved_at = st["iteration"]
        self.seconds = st.get("train_seconds", 0.0)
        self.commands, self.changes = st.get("commands", []), st.get("changes", [])
        change = apply_changes(cfg, st.get("train") or recorded_train_config(self.out), self.opt, self.sched,
                               self.start)
        if self.start >= cfg.iterations:
            tqdm.write(f"nothing to do: {self.out} has finished {self.start:,} of {cfg.iterations:,} iterations; "
                       f"give a larger --iterations to train on")
            return False
        said = ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in change.items() if k != "iteration")
        tqdm.write(f"resuming at {self.start:,} of {cfg.iterations:,} iterations" + (f" with {said}" if said else ""))
        if change:
            self.changes = [*self.changes, change]
        return True

    def record_command(self, command: str | None) -> None:
        if command:
            self.commands = [*self.commands, {"command": command, "from_iteration": self.start}]

    def due(self, iteration: int, end: bool) -> bool:
        """A checkpoint is due after this iteration (every process agrees)."""
        cfg = self.cfg
        late = self.ranks.any(cfg.checkpoint_minutes > 0
                              and time.monotonic() - self.saved_time >= 60 * cfg.checkpoint_minutes)
        return iteration % cfg.checkpoint_every == 0 or end or late

    def save(self, iteration: int) -> None:
        """Write the checkpoint of ``iteration`` (with several processes a collective: every rank
        calls it, rank 0 writes)."""
        task, model = self.task, self.task.model
        meta = {"task": task.config_dict(), "train": asdict(self.cfg), "iteration": iteration,
                "train_seconds": self.seconds, "hardware": hardware(self.device), "commands": self.commands,
                "train_changes": self.changes}
        if self.ranks.world > 1:
            meta["hardware"]["processes"] = self.ranks.world
        extra = task.extra_state()
        if self.ranks.main:
            save_model(self.out / "model", model, meta)
            save_state(self.state_path, {
                "model": model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "task": extra,
                "rng": rng_state(self.device), "iteration": iteration, "train_seconds": self.seconds,
                "commands": self.commands, "task_config": task.config_dict(),
                "train": asdict(self.cfg), "changes": self.changes,
            })
        self.saved_at, self.saved_time = iteration, time.monotonic()
