"""Moore-neighbourhood perception: one linear map per direction of the 3x3 neighbourhood.

    p_i = b + sum_{d in 3x3} W_d x_{i+d}          x: (cells, C) -> p: (cells, P)

The weights are stored as a conv kernel ``weight`` of shape (P, C, 3, 3), so ``W_d`` for the
offset d = (dy, dx) is ``weight[:, :, dy + 1, dx + 1]``. The topologies in ``topology.py`` apply
the same weights as a dense conv, a gather over alive cells, or PyG message passing.
"""

from __future__ import annotations

import torch
from torch import nn

# Offsets (dy, dx) in kernel order k = 3 * (dy + 1) + (dx + 1).
OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


class MoorePerception(nn.Module):
    """Trainable 3x3 kernels (the self-classifying paper's choice) or fixed identity + Sobel.

    ``kind="learned"``: weight (out_dim, C, 3, 3) and bias, trained.
    ``kind="depthwise"``: weight (out_dim, 1, 3, 3) and bias, trained; output p reads only
    channel p // (out_dim / C) (a grouped conv, as in the restoration CA).
    ``kind="sobel"``: fixed, out_dim = 3C: [identity, Sobel-x, Sobel-y] per channel, no bias.
    """

    def __init__(self, channels: int, out_dim: int | None = None, kind: str = "learned"):
        super().__init__()
        self.channels, self.kind = channels, kind
        self.groups = channels if kind == "depthwise" else 1
        if kind in ("learned", "depthwise"):
            if out_dim is None or out_dim % self.groups:
                raise ValueError(f"{kind} perception needs out_dim (a multiple of {self.groups})")
            conv = nn.Conv2d(channels, out_dim, 3, padding=1, groups=self.groups)  # default init
            self.weight = nn.Parameter(conv.weight.detach().clone())
            self.bias = nn.Parameter(conv.bias.detach().clone())
        elif kind == "sobel":
            ident = torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]])
            sx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8
            filters = torch.stack([ident, sx, sx.T])  # (3, 3, 3)
            w = torch.zeros(3 * channels, channels, 3, 3)
            for c in range(channels):
                w[3 * c : 3 * c + 3, c] = filters
            self.register_buffer("weight", w)
            self.register_buffer("bias", torch.zeros(3 * channels))
        else:
            raise ValueError(f"perception kind must be 'learned', 'depthwise' or 'sobel', not {kind!r}")
        self.out_dim = self.weight.shape[0]

    def dense_weight(self) -> torch.Tensor:
        """(P, C, 3, 3): the kernel as an ungrouped conv weight (zeros across groups)."""
        if self.groups == 1:
            return self.weight
        per_group = self.out_dim // self.groups
        mask = torch.zeros(self.out_dim, self.channels, 1, 1, device=self.weight.device)
        mask[torch.arange(self.out_dim), torch.arange(self.out_dim) // per_group] = 1
        return mask * self.weight

    def direction_matrix(self) -> torch.Tensor:
        """(P, 9C): column block k holds W_k for OFFSETS[k]; multiplies a gathered (9, C) patch."""
        return self.dense_weight().permute(0, 2, 3, 1).reshape(self.out_dim, 9 * self.channels)
