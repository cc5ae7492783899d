"""Perturbations that see only state tensors and cell masks, so every task can use them.

- :func:`mutate`: swap the underlying digit; keep states of cells alive in both, erase the
  rest, and bring the new digit's other cells alive with a zero state.
- :func:`damage`: erase the states of a random fraction of cells.
- :func:`zero_out`: zero one random whole tensor (e.g. a layer) and a fraction of the entries
  of the others (MetaNCA's robustness perturbation).
- :func:`mask_pixels`: blank an exact fraction of each image's pixels (the restoration task).
- :func:`mask_region`: blank one random square region of each image (erasing a patch).
"""

from __future__ import annotations

import torch


def mutate(state: torch.Tensor, new_alive: torch.Tensor, old_alive: torch.Tensor) -> torch.Tensor:
    """state (B, H, W, C), new_alive and old_alive (B, H, W, 1) bool -> state * old_alive * new_alive:
    cells alive in both digits keep their state, cells dead in the new digit are erased, and
    newly alive cells start from zero."""
    return state * (old_alive & new_alive)


def damage(state: torch.Tensor, frac: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero the whole state vector of each cell with probability ``frac``; state (..., C)."""
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"damage fraction must be in [0, 1], got {frac}")
    keep = torch.rand(state.shape[:-1] + (1,), generator=generator).to(state.device) >= frac
    return state * keep


def zero_out(
    tensors: list[torch.Tensor], frac: float = 0.3, generator: torch.Generator | None = None
) -> tuple[list[torch.Tensor], int]:
    """Zero one random whole tensor and each entry of the others with probability ``frac``.

    Returns the new tensors and the index of the tensor zeroed whole.
    """
    if not tensors:
        raise ValueError("zero_out needs at least one tensor")
    whole = int(torch.randint(len(tensors), (1,), generator=generator))
    out = []
    for i, t in enumerate(tensors):
        if i == whole:
            out.append(torch.zeros_like(t))
        else:
            keep = torch.rand(t.shape, generator=generator).to(t.device) >= frac
            out.append(t * keep)
    return out, whole


def mask_pixels(images: torch.Tensor, frac: float, generator: torch.Generator | None = None):
    """Blank exactly round(frac * H * W) random pixels of each image.

    images (B, H, W) -> (masked images, keep mask (B, H, W) bool); blanked pixels are 0 and the
    visible ones are untouched.
    """
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"mask fraction must be in [0, 1], got {frac}")
    B, H, W = images.shape
    n_blank = int(round(frac * H * W))
    order = torch.rand(B, H * W, generator=generator).argsort(1)
    keep = torch.ones(B, H * W, dtype=torch.bool)
    keep.scatter_(1, order[:, :n_blank], False)
    keep = keep.reshape(B, H, W).to(images.device)
    return images * keep, keep


def mask_region(images: torch.Tensor, frac, generator: torch.Generator | None = None):
    """Blank one random square of side round(sqrt(frac) * min(H, W)) inside each image.

    images (B, H, W); frac a float or a (B,) tensor of area fractions in [0, 1] -> (masked
    images, keep mask (B, H, W) bool). The square lies wholly inside the image, its corner
    uniform over the positions where it fits.
    """
    B, H, W = images.shape
    frac = torch.as_tensor(frac, dtype=torch.float32).expand(B)
    if frac.min() < 0 or frac.max() > 1:
        raise ValueError(f"region fraction must be in [0, 1], got {frac.min()}..{frac.max()}")
    side = (frac.sqrt() * min(H, W)).round().long()
    u = torch.rand(B, 2, generator=generator)
    top = (u[:, 0] * (H - side + 1)).long()
    left = (u[:, 1] * (W - side + 1)).long()
    rows, cols = torch.arange(H)[None, :, None], torch.arange(W)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + side)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + side)[:, None, None]))
    keep = (~inside).to(images.device)
    return images * keep, keep
