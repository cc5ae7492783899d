"""The global random state of a process (CPU, and the device's on CUDA), saved and restored by
the trainer's checkpoints and switched per data-parallel shard."""

from __future__ import annotations

from typing import Any

import torch


def rng_state(device: torch.device) -> dict[str, Any]:
    """{"cpu": ByteTensor, "cuda": ByteTensor (on CUDA only)}."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned (a state without "cuda" leaves CUDA's as it is)."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
