"""U-Net restoration baseline (issue 39): the masked digit and its mask in, the digit out.

    in      [x * keep, keep]                       (B, 2, 28, 28)
    e1      = conv3(conv3(in))                      (B, w, 28, 28)      conv3: 3x3 conv + ReLU
    e2      = conv3(conv3(maxpool2(e1)))            (B, 2w, 14, 14)
    z       = conv3(conv3(maxpool2(e2)))            (B, 4w, 7, 7)       bottleneck (damage zeroes its cells)
    d2      = conv3(conv3([up2(z), e2]))            (B, 2w, 14, 14)     up2: 2x2 transposed conv, stride 2
    d1      = conv3(conv3([up2(d2), e1]))           (B, w, 28, 28)
    y       = conv1x1(d1)                           (B, 28, 28), linear; clamped to [0, 1] outside training

w = 54 gives 1,326,133 parameters, about the hybrid's 1,313,794. Linear output as the CNN
auto-encoder's (a sigmoid output can collapse to an empty image).
"""

from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU())


class UNet(nn.Module):
    """Two-level U-Net of width ``w`` (w, 2w, 4w channels); reads the mask as an input channel."""

    reads_mask = True  # eval and training pass keep=

    def __init__(self, cfg=None, width: int | None = None):
        super().__init__()
        w = width or getattr(cfg, "unet_width", 54)
        self.cfg = cfg
        self.e1, self.e2, self.mid = _block(2, w), _block(w, 2 * w), _block(2 * w, 4 * w)
        self.up2, self.d2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2), _block(4 * w, 2 * w)
        self.up1, self.d1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2), _block(2 * w, w)
        self.out = nn.Conv2d(w, 1, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor, steps=None, damage_frac: float = 0.0,
                damaged: torch.Tensor | None = None, keep: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 28, 28) masked digits, keep (B, 28, 28) bool (True = visible) -> (B, 28, 28).
        ``damage_frac`` zeroes that fraction of the 7x7 bottleneck cells (of the rows ``damaged``)."""
        from localrules.tasks.restore import damage_cells, damage_rows

        if keep is None:
            raise ValueError("the U-Net reads the mask: pass keep (B, 28, 28) bool")
        m = keep.to(x.dtype)
        e1 = self.e1(torch.stack([x * m, m], 1))
        e2 = self.e2(self.pool(e1))
        z = self.mid(self.pool(e2))
        if damage_frac:
            z = z.permute(0, 2, 3, 1)
            z = damage_cells(z, damage_frac) if damaged is None else damage_rows(z, damage_frac, damaged)
            z = z.permute(0, 3, 1, 2)
        d2 = self.d2(torch.cat([self.up2(z), e2], 1))
        d1 = self.d1(torch.cat([self.up1(d2), e1], 1))
        y = self.out(d1)[:, 0]
        return y if self.training else y.clamp(0.0, 1.0)
