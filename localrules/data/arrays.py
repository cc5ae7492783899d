"""User-supplied digits as .npy arrays: images (N, H, W) and integer labels (N,) in 0..9."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

ALIVE = 0.1  # a cell lives where its pixel is above this (the self-classifying task's threshold)


def to_unit_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 0..255 or float 0..1 images -> float32 tensor in [0, 1]."""
    x = torch.as_tensor(np.asarray(images))
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    x = x.float()
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"float images must lie in [0, 1] (got {x.min():.3g}..{x.max():.3g}); pass uint8 for 0..255")
    return x


def load_image_arrays(images_path: str | Path, labels_path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and check the two .npy files; every error names the file and what is wrong (and the
    first bad image: NaN / infinite pixels, or no living cell)."""
    try:
        images = np.load(images_path, allow_pickle=False)
        labels = np.load(labels_path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - a damaged file fails anywhere in np.load (EOFError, ...)
        raise ValueError(f"cannot read .npy arrays {images_path}, {labels_path}: {type(e).__name__}: {e}") from None
    if images.ndim != 3:
        raise ValueError(f"{images_path}: images must have shape (N, H, W), got {images.shape}")
    if images.size == 0:
        raise ValueError(f"{images_path}: holds no pixels (shape {images.shape})")
    if images.dtype.kind not in "uif" or images.dtype.itemsize > 8:  # (numpy counts timedelta as an integer)
        raise ValueError(f"{images_path}: images must be uint8 or float, not {images.dtype}")
    images = images.astype(images.dtype.newbyteorder("="), copy=False)  # torch reads native order only
    finite = np.isfinite(images.reshape(len(images), -1)).all(1)
    if not finite.all():
        i = np.flatnonzero(~finite)
        raise ValueError(f"{images_path}: image {i[0]} has NaN or infinite pixels ({len(i)} such images)")
    if labels.shape != (len(images),):
        raise ValueError(f"{labels_path}: labels must have shape ({len(images)},), got {labels.shape}")
    if labels.dtype.kind not in "ui" or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{labels_path}: labels must be integers in 0..9")
    pixels = to_unit_pixels(images)
    blank = ~(pixels > ALIVE).flatten(1).any(1)
    if blank.any():
        i = blank.nonzero().flatten()
        raise ValueError(f"{images_path}: image {int(i[0])} has no pixel above {ALIVE} (no living cell; "
                         f"{len(i)} such images)")
    return pixels, torch.as_tensor(labels, dtype=torch.long)
