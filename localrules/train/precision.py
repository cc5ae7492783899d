"""``--precision fp32|bf16``: the arithmetic of the convolutions and rule MLPs in training.

    bf16: torch.autocast(device, bfloat16) around the forward pass (the rollout and the loss):
          conv2d, linear and matmul run in bfloat16 with float32 accumulation; the weights, the
          Adam state, the gradients, the states kept in the pool and the residual updates
          state + delta stay float32 (delta is cast back when it is added)

Off (fp32) by default: on this project's CPU a short bf16 training ended at another loss than
fp32 (docs/benchmarks.md, "Mixed precision"); turn it on where the evaluation metric holds.
"""

from __future__ import annotations

import torch

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str = "fp32"):
    """The context for the forward pass under ``precision``; fp32 is a no-op."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, not {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
