"""Controlled changes of digit images, for robustness evaluation and augmented training.

    scale s, rotation a (degrees), shift (dy, dx) pixels: x'(p) = x(A^-1 (p - c - t) + c)
        (an affine resampling about the image centre c, bilinear, zeros outside)
    stroke k: k > 0 thickens strokes by k 3x3 grey dilations (max filter), k < 0 thins them by
        |k| erosions (min filter)

Images are (N, H, W) floats in [0, 1]; every output is rounded to k / 255, as MNIST's own
pixels are (the training pool stores pixels as bytes). ``SWEEPS`` are the levels that
`localrules eval mnist-selfclassify --transform KIND` evaluates; ``mix`` draws every change at
random per digit from ``MIX`` (the training augmentation as well).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SWEEPS = {
    "scale": [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3],
    "shift": [0, 1, 2, 3, 4, 5, 6],  # pixels, in a random direction per digit
    "rotate": [-30, -20, -10, 0, 10, 20, 30],  # degrees, clockwise as displayed (rows down)
    "stroke": [-1, 0, 1, 2],  # erosions (< 0) or dilations (> 0)
}
# mix: scale, shift per axis, rotation drawn uniformly; stroke drawn from the list
MIX = {"scale": (0.7, 1.2), "shift": (-4.0, 4.0), "rotate": (-25.0, 25.0), "stroke": (-1, 0, 0, 1)}


def _bytes(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


def affine(x: torch.Tensor, scale, angle, shift) -> torch.Tensor:
    """x (N, H, W); scale, angle (degrees) (N,) or scalars; shift (N, 2) pixels (dy, dx) or a pair."""
    N, H, W = x.shape
    dev = x.device
    scale = torch.as_tensor(scale, dtype=torch.float32, device=dev).expand(N)
    angle = torch.as_tensor(angle, dtype=torch.float32, device=dev).expand(N) * math.pi / 180
    shift = torch.as_tensor(shift, dtype=torch.float32, device=dev).expand(N, 2)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # affine_grid maps output coordinates (x, y in [-1, 1]) to input ones: the inverse transform
    theta = torch.stack([torch.stack([cos, sin, -(cos * shift[:, 1] * 2 / W + sin * shift[:, 0] * 2 / H)], -1),
                         torch.stack([-sin, cos, -(-sin * shift[:, 1] * 2 / W + cos * shift[:, 0] * 2 / H)], -1)], 1)
    grid = F.affine_grid(theta, (N, 1, H, W), align_corners=False)
    return _bytes(F.grid_sample(x[:, None], grid, align_corners=False, padding_mode="zeros")[:, 0])


def stroke(x: torch.Tensor, k) -> torch.Tensor:
    """x (N, H, W); k an int or (N,) ints: k dilations (k > 0) or |k| erosions (k < 0) per digit."""
    k = torch.as_tensor(k, device=x.device).expand(len(x))
    out = x.clone()
    for n in range(1, int(k.abs().max().item()) + 1 if len(k) else 1):
        thick = F.max_pool2d(out[:, None], 3, 1, 1)[:, 0]
        thin = -F.max_pool2d(-out[:, None], 3, 1, 1)[:, 0]
        out = torch.where((k >= n)[:, None, None], thick, torch.where((k <= -n)[:, None, None], thin, out))
    return _bytes(out)


def sweep_level(x: torch.Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Every digit changed by ``level`` of ``kind`` (a shift goes in a random direction)."""
    N = len(x)
    if kind == "scale":
        return affine(x, level, 0.0, (0.0, 0.0))
    if kind == "rotate":
        return affine(x, 1.0, level, (0.0, 0.0))
    if kind == "shift":
        phi = torch.rand(N, generator=generator) * 2 * math.pi
        return affine(x, 1.0, 0.0, (level * torch.stack([phi.sin(), phi.cos()], -1)).to(x.device))
    if kind == "stroke":
        return stroke(x, int(level))
    raise ValueError(f"transform must be one of {', '.join(SWEEPS)} or mix, not {kind!r}")


def random_mix(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each digit gets its own scale, shift, rotation and stroke change drawn from ``MIX``."""
    N = len(x)

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(N, *shape, generator=generator)

    strokes = torch.tensor(MIX["stroke"])[torch.randint(len(MIX["stroke"]), (N,), generator=generator)]
    moved = affine(x, u(*MIX["scale"]).to(x.device), u(*MIX["rotate"]).to(x.device), u(*MIX["shift"], 2).to(x.device))
    return stroke(moved, strokes.to(x.device))
