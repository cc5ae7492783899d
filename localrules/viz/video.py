"""Animated GIF of cells coloured by the label they output (pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .palette import DEAD_COLOUR, LABEL_COLOURS, rgb


def label_frames_to_gif(frames: np.ndarray, path: str | Path, scale: int = 4, every: int = 2,
                        fps: int = 20, columns: int = 8) -> Path:
    """frames (T, K, H, W) int labels, -1 dead -> GIF of the K digits tiled, every ``every``-th step."""
    lut = np.array([rgb(c) for c in LABEL_COLOURS] + [rgb(DEAD_COLOUR)], np.uint8)  # -1 -> last
    T, K, H, W = frames.shape
    cols = min(columns, K)
    rows = -(-K // cols)
    images = []
    for t in range(0, T, every):
        tile = np.full((rows * (H + 1), cols * (W + 1)), -1, np.int64)
        for k in range(K):
            r, c = divmod(k, cols)
            tile[r * (H + 1) : r * (H + 1) + H, c * (W + 1) : c * (W + 1) + W] = frames[t, k]
        img = lut[tile].repeat(scale, 0).repeat(scale, 1)
        images.append(Image.fromarray(img))
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return Path(path)
