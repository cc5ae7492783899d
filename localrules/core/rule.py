"""The rule: one small MLP shared by every cell.

    delta = W_L act(... act(W_1 act_in(p) + U c + b_1) ...) + b_L    p: (..., P) -> delta: (..., C_out)

c: (cells, K) an optional fixed per-cell code (for example a cell's place in a weight graph)
that the rule reads directly, not through the perception; U c is computed once per step and
shared by every sample in the batch. The last layer is zero-initialised, so an untrained rule
leaves every state unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


class Rule(nn.Module):
    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int, relu_input: bool = True,
                 code_dim: int = 0):
        super().__init__()
        if code_dim and (relu_input or not hidden):
            raise ValueError("a cell code needs a first hidden layer that reads p directly (relu_input=False)")
        self.code_dim = code_dim
        self.code = nn.Linear(code_dim, hidden[0], bias=False) if code_dim else None
        dims = (in_dim, *hidden)
        layers: list[nn.Module] = [nn.ReLU()] if relu_input else []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]  # on a fresh tensor: saves a copy
        last = nn.Linear(dims[-1], out_dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(*layers, last)

    def forward(self, p: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        """p: (..., cells, in_dim), code: (cells, code_dim) -> (..., cells, out_dim)."""
        if self.code is None:
            return self.mlp(p)
        return self.after_first(self.mlp[0](p) + self.code(code))

    def after_first(self, h: torch.Tensor) -> torch.Tensor:
        """The rest of the MLP, given h = first(p)."""
        return self.mlp[1:](h)
