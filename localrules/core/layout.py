"""``--layout``: the memory layout of the dense grid's 3x3 convolution, chosen per device.

    channels-last  Grid2D: the (B, H, W, C) state is handed to conv2d as a permuted view, an NCHW
                   tensor with channels-last strides (no copy)
    nchw           NCHWGrid2D: the state copied to a contiguous (B, C, H, W) tensor first; the
                   perception comes back as a (B, H, W, P) view of the NCHW output

Both compute the same numbers (tests/core/test_layout.py); which is faster depends on the
device's convolution kernels: :data:`LAYOUT_DEFAULT`, measured by ``localrules bench restore``
(its ``layout_nchw`` rows; docs/benchmarks.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .perception import MoorePerception
from .topology import Grid2D

LAYOUTS = ("channels-last", "nchw")
# per device type: CPU measured (docs/benchmarks.md, "Layout"); CUDA from the first H200 slot's
# bench, where the all-NCHW reference trained the restorer 1 / 0.71 = 1.4x faster (to be confirmed
# by the layout_nchw rows of the next slot's bench)
LAYOUT_DEFAULT = {"cpu": "channels-last", "cuda": "nchw"}


class NCHWGrid2D(Grid2D):
    """Grid2D with a contiguous NCHW convolution input: x (B, H, W, C) -> p (B, H, W, P)."""

    def perceive(self, x: torch.Tensor, perception: MoorePerception) -> torch.Tensor:
        y = F.conv2d(x.permute(0, 3, 1, 2).contiguous(), perception.weight, perception.bias, padding=1,
                     groups=perception.groups)
        return y.permute(0, 2, 3, 1)


def resolve_layout(layout: str, device: torch.device) -> str:
    """``auto`` -> the device type's :data:`LAYOUT_DEFAULT`; else ``layout`` (checked)."""
    if layout == "auto":
        return LAYOUT_DEFAULT.get(device.type, "channels-last")
    if layout not in LAYOUTS:
        raise ValueError(f"--layout must be auto, {' or '.join(LAYOUTS)}, not {layout!r}")
    return layout


def use_layout(model: torch.nn.Module, layout: str) -> torch.nn.Module:
    """Give every module of ``model`` that runs on a dense grid (a ``grid`` attribute) that layout's grid."""
    grid = NCHWGrid2D() if layout == "nchw" else Grid2D()
    for m in model.modules():
        if isinstance(getattr(m, "grid", None), Grid2D):
            m.grid = grid
    return model
