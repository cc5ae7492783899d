import numpy as np
from PIL import Image, ImageSequence

from localrules.viz.palette import LABEL_COLOURS, rgb
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
