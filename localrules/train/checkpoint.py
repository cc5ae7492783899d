"""Checkpoints: model weights as safetensors + a JSON config; training state for exact resume.

Every file is written to a temporary name in the same folder and then renamed, so a crash
never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_model(path: str | Path, model: torch.nn.Module, config: dict[str, Any]) -> Path:
    """Write ``path.safetensors`` (weights) and ``path.json`` (config); returns the weights path."""
    path = Path(path).with_suffix("")
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic(path.with_suffix(".safetensors"), lambda t: save_file(weights, t))
    text = json.dumps(config, indent=2, sort_keys=True)
    _atomic(path.with_suffix(".json"), lambda t: Path(t).write_text(text))
    return path.with_suffix(".safetensors")


def load_model_files(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read weights and config written by :func:`save_model` (either file's path, or the stem)."""
    path = Path(path).with_suffix("")
    w, c = path.with_suffix(".safetensors"), path.with_suffix(".json")
    for f in (w, c):
        if not f.is_file():
            raise FileNotFoundError(f"checkpoint file {f} is missing")
    try:
        weights = load_file(str(w))
    except Exception as e:  # safetensors raises its own SafetensorError for torn or foreign files
        raise ValueError(f"{w} is damaged or not a safetensors file ({' '.join(str(e).split())})") from e
    try:
        config = json.loads(c.read_text())
    except ValueError as e:
        raise ValueError(f"{c} is not valid JSON ({e})") from e
    if not isinstance(config, dict):
        raise ValueError(f"{c} is not a checkpoint config (a JSON object)")
    return weights, config


RUN_FILES = ("model.safetensors", "model.json", "train_state.pt", "metrics.jsonl")


def claim_run_folder(out: str | Path, overwrite: bool = False) -> None:
    """Make ``out`` ready for a new run: refuse a folder that holds a run unless ``overwrite``,
    which deletes that run's files first (so no old metrics or state mix with the new run)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; choose another --out")
    found = [f for f in RUN_FILES if (out / f).is_file()]
    if found and not overwrite:
        raise ValueError(f"{out} already holds a run ({', '.join(found)}); continue it with --resume, "
                         f"choose a new --out, or pass --overwrite to replace it")
    for f in found:
        (out / f).unlink()


def remove_torn_writes(out: str | Path) -> list[str]:
    """Delete the torn ``.NAME.*.tmp`` of run-file writes a kill interrupted (never read) -> their
    names; only in a folder no other process writes to (a resume owns its run folder)."""
    torn = [p for f in RUN_FILES for p in Path(out).glob(f".{f}.*.tmp")]
    for p in torn:
        p.unlink(missing_ok=True)
    return sorted(p.name for p in torn)


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Training state (optimizer, scheduler, pool, RNGs, iteration) for ``--resume``."""
    _atomic(Path(path), lambda t: torch.save(state, t))


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a training state with ``weights_only=True`` (tensors, numbers, strings, containers):
    a file holding any other object is refused, never run. Bad files raise ValueError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError):
        raise
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):
            raise ValueError(f"{path} is empty or damaged (not a pickle torch can read); resume from an "
                             f"intact copy of the run folder or start a new run") from e
        raise ValueError(f"{path} holds objects other than tensors, numbers and strings, so it was not "
                         f"written by localrules; refusing to load it") from e
    except Exception as e:  # noqa: BLE001 - torn or bit-flipped files fail anywhere in torch.load
        raise ValueError(f"{path} is empty or damaged ({type(e).__name__}); resume from an intact copy "
                         f"of the run folder or start a new run") from e
    if not isinstance(state, dict) or not isinstance(state.get("iteration"), int):
        raise ValueError(f"{path} is not a localrules training state")
    return state


def read_checkpoint(path: str | Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(weights, the task's config fields, all metadata) of a checkpoint of task ``name``."""
    weights, meta = load_model_files(path)
    task = meta.get("task", meta)
    if not isinstance(task, dict) or task.get("name") != name:
        said = task.get("name") if isinstance(task, dict) else task
        raise ValueError(f"{path} is not a {name} checkpoint (it says {str(said)[:60]!r})")
    return weights, {k: v for k, v in task.items() if k != "name"}, meta


def build_from_checkpoint(path: str | Path, name: str, make_config, build):
    """(model with the checkpoint's weights, its config, all metadata) of a checkpoint of task
    ``name``: ``make_config(fields)`` reads the config, ``build(cfg)`` makes the model. A config
    that the task refuses, or weights of other shapes, raise ValueError naming the file; the
    model is first built on the meta device, so a config asking for huge tensors allocates none."""
    weights, fields, meta = read_checkpoint(path, name)
    where = Path(path).with_suffix(".json")
    try:
        cfg = make_config(fields)
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in build(cfg).state_dict().items()}
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError, RuntimeError) as e:
        raise ValueError(f"{where} is not a valid {name} config ({type(e).__name__}: {e})") from e
    have = {k: tuple(v.shape) for k, v in weights.items()}
    if have != shapes:
        diff = sorted(set(have.items()) ^ set(shapes.items()))[:3]
        raise ValueError(f"{Path(path).with_suffix('.safetensors')} does not hold the tensors that {where} "
                         f"describes (first differences: {diff})")
    model = build(cfg)
    model.load_state_dict(weights)
    return model, cfg, meta
