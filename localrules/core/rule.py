"""The rule: one small MLP shared by every cell.

    delta = W_L act(... act(W_1 act_in(p) + b_1) ...) + b_L        p: (..., P) -> delta: (..., C_out)

The last layer is zero-initialised, so an untrained rule leaves every state unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


class Rule(nn.Module):
    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int, relu_input: bool = True):
        super().__init__()
        dims = (in_dim, *hidden)
        layers: list[nn.Module] = [nn.ReLU()] if relu_input else []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        last = nn.Linear(dims[-1], out_dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(*layers, last)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        """p: (..., in_dim) -> (..., out_dim)."""
        return self.mlp(p)

    @property
    def first(self) -> nn.Linear | None:
        """The first layer when it reads p directly (no input activation), else None."""
        return self.mlp[0] if isinstance(self.mlp[0], nn.Linear) else None

    def after_first(self, h: torch.Tensor) -> torch.Tensor:
        """The rest of the MLP, given h = first(p)."""
        return self.mlp[1:](h)
