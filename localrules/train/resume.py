"""What ``--resume`` continues with: the run's recorded training options, and changes to them.

A resumed run keeps the options recorded in its ``model.json`` unless new ones are given.
Changed optimiser options (learning rate, milestones, gamma) are applied to the restored Adam
and schedule from the resume iteration on, and the change is recorded with that iteration; the
seed cannot change (the random state is restored, so a new seed would never be used).
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

APPLIED = ("lr", "lr_milestones", "lr_gamma", "steps_min", "steps_max", "normalize_grads")


def recorded_train_config(out: str | Path) -> dict[str, Any] | None:
    """The training options recorded in ``out/model.json`` (None when there is none)."""
    try:
        train = json.loads((Path(out) / "model.json").read_text()).get("train")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(train, dict):
        return None
    if "lr_milestones" in train:
        train["lr_milestones"] = tuple(train["lr_milestones"])
    return train


def resolve(cfg, saved: dict[str, Any] | None, given: set[str]):
    """``cfg`` with every field not in ``given`` (and not a per-call option) taken from ``saved``."""
    if not saved:
        return cfg
    keep = {f.name for f in fields(cfg)} - set(given) - {"minutes"}
    return type(cfg)(**{**asdict(cfg), **{k: saved[k] for k in keep if k in saved}})


def apply_changes(cfg, saved: dict[str, Any] | None, opt, sched, iteration: int) -> dict[str, Any]:
    """Apply the options of ``cfg`` that differ from ``saved`` to the restored optimiser and
    schedule; returns the change record ``{"iteration", option: [old, new], ...}`` ({} if none)."""
    if not saved:
        return {}
    now = asdict(cfg)
    if "seed" in saved and saved["seed"] != cfg.seed:
        raise ValueError(f"--seed: this run was started with seed {saved['seed']} and --resume continues "
                         f"from its saved random state; leave --seed out")
    diff = {k: [_plain(saved[k]), _plain(now[k])] for k in APPLIED if k in saved and _plain(saved[k]) != _plain(now[k])}
    if not diff:
        return {}
    if {"lr", "lr_milestones", "lr_gamma"} & set(diff):
        milestones = sorted(cfg.lr_milestones)
        sched.base_lrs = [cfg.lr for _ in sched.base_lrs]
        sched.milestones = Counter(milestones)
        sched.gamma = cfg.lr_gamma
        lr = cfg.lr * cfg.lr_gamma ** bisect.bisect_right(milestones, sched.last_epoch)
        for group in opt.param_groups:
            group["lr"], group["initial_lr"] = lr, cfg.lr
    return {"iteration": iteration, **diff}


def _plain(v):
    return list(v) if isinstance(v, (tuple, list)) else v
