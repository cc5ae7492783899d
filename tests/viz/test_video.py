import numpy as np
from PIL import Image, ImageSequence

from localrules.viz.palette import DEAD_COLOUR, LABEL_COLOURS, rgb
from localrules.viz.video import BAND, label_frames_to_gif


def test_gif_has_a_step_counter_and_a_legend(tmp_path):
    frames = np.full((6, 3, 5, 5), -1, np.int8)
    frames[:, :, 1:4, 1:4] = 7  # every frame shows the same cells: only the title changes
    path = label_frames_to_gif(frames, tmp_path / "c.gif", every=1, mutate_at=3)
    images = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(path))]
    assert len(images) == 6
    header = [im[:BAND] for im in images]
    assert all((h < 128).any() for h in header)  # dark text: the counter
    assert len({h.tobytes() for h in header}) == 6  # step 1..6, plus the mutation note from step 4
    cells = images[-1][BAND:-BAND]
    assert np.array_equal(images[0][BAND:-BAND], cells) and (cells == rgb(LABEL_COLOURS[7])).all(-1).any()
    legend = {tuple(px) for px in images[0][-BAND:].reshape(-1, 3)}
    assert all(rgb(c) in legend for c in LABEL_COLOURS)


def test_gif_frames_tile_the_digits_cell_by_cell(tmp_path):
    """3 digits of 5 x 5 cells in one row, each tile followed by a dead column and row, 4 pixels a
    cell: 72 x 24 pixels of cells on a frame at least 300 wide; every 2nd of 6 steps at 20 frames per second, looping.
    Catches: cells drawn at the wrong place or scale, tiles without their gap, frames skipped or
    repeated, a wrong frame duration."""
    frames = np.full((6, 3, 5, 5), -1, np.int8)
    frames[:, 1, 1:4, 1:4] = 7  # the middle digit's centre
    frames[:, 2, 0, 0] = 2  # the last digit's top-left cell
    frames[4:, 0, 2, 2] = 5  # a change from step 5 on: frames 1, 3 (no) and 5 (yes)
    path = label_frames_to_gif(frames, tmp_path / "t.gif", every=2)
    with Image.open(path) as im:
        assert im.size == (300, 6 * 4 + 2 * BAND) and im.n_frames == 3
        assert im.info["duration"] == 50 and im.info["loop"] == 0
        images = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
    lut = {-1: rgb(DEAD_COLOUR), 2: rgb(LABEL_COLOURS[2]), 5: rgb(LABEL_COLOURS[5]), 7: rgb(LABEL_COLOURS[7])}
    for t, image in zip((0, 2, 4), images):
        tile = np.full((6, 18), -1, np.int64)  # 3 tiles of 5 x 5, each followed by a dead column and row
        for k in range(3):
            tile[:5, 6 * k : 6 * k + 5] = frames[t, k]
        want = np.array([[lut[v] for v in row] for row in tile], np.uint8).repeat(4, 0).repeat(4, 1)
        assert np.array_equal(image[BAND : BAND + 24, :72], want), t
        assert (image[BAND : BAND + 24, 72:] == 255).all()  # the rest of the row is the white frame
