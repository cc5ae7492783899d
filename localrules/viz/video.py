"""Animated GIF of cells coloured by the label they output (pillow), with a step counter above
and the colour legend below."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .palette import DEAD_COLOUR, LABEL_COLOURS, rgb

BAND = 16  # pixels of the header (step counter) and of the footer (legend)


def _legend(width: int) -> Image.Image:
    """A footer: one swatch per label 0-9, each followed by its digit."""
    img = Image.new("RGB", (width, BAND), "white")
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    x = 4
    for d, colour in enumerate(LABEL_COLOURS):
        draw.rectangle([x, 3, x + 9, 12], fill=rgb(colour))
        draw.text((x + 12, 2), str(d), fill="black", font=font)
        x += 26
    draw.text((x + 4, 2), "cell's label", fill="black", font=font)
    return img


def label_frames_to_gif(frames: np.ndarray, path: str | Path, scale: int = 4, every: int = 2,
                        fps: int = 20, columns: int = 8, mutate_at: int | None = None) -> Path:
    """frames (T, K, H, W) int labels after 1..T updates, -1 dead -> GIF of the K digits tiled,
    every ``every``-th step, each frame titled with its step (and the mutation once it happened)."""
    lut = np.array([rgb(c) for c in LABEL_COLOURS] + [rgb(DEAD_COLOUR)], np.uint8)  # -1 -> last
    T, K, H, W = frames.shape
    cols = min(columns, K)
    rows = -(-K // cols)
    width = max(cols * (W + 1) * scale, 300)
    legend, font = _legend(width), ImageFont.load_default()
    images = []
    for t in range(0, T, every):
        tile = np.full((rows * (H + 1), cols * (W + 1)), -1, np.int64)
        for k in range(K):
            r, c = divmod(k, cols)
            tile[r * (H + 1) : r * (H + 1) + H, c * (W + 1) : c * (W + 1) + W] = frames[t, k]
        cells = Image.fromarray(lut[tile].repeat(scale, 0).repeat(scale, 1))
        frame = Image.new("RGB", (width, cells.height + 2 * BAND), "white")
        frame.paste(cells, (0, BAND))
        frame.paste(legend, (0, BAND + cells.height))
        title = f"step {t + 1}"
        if mutate_at is not None and t + 1 > mutate_at:
            title += f"  (digits mutated at step {mutate_at})"
        ImageDraw.Draw(frame).text((4, 2), title, fill="black", font=font)
        images.append(frame)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return Path(path)
