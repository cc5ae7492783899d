import numpy as np
from PIL import Image

from localrules.viz.plots import plot_transform_sweep

GREY, C0, C1 = (128, 128, 128), (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)  # "grey", the 1st and 2nd line colours


def _rows(connected=True):
    return [{"level": lv, "accuracy_at_200": 0.9, "agreement_at_200": 0.8,
             **({"connected_at_200": c} if connected else {})} for lv, c in ((-1, 0.3), (0, 0.97), (1, 0.99))]


def _pixels(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def _count(px, colour):
    return int((px == colour).all(-1).sum())


def test_transform_sweep_plot_draws_the_one_piece_share(tmp_path):
    """One 4.2 x 3.2 inch panel per sweep at 120 dpi; the accuracy and agreement lines in the first
    two colours; the one-piece share as a grey dotted line, there only when the results have it.
    Catches: an empty or blank figure, a panel missing, the one-piece share not drawn (or drawn
    from results that lack it)."""
    px = _pixels(plot_transform_sweep({"transform": "stroke", "n_digits": 3, "levels": _rows()}, tmp_path / "s.png"))
    assert px.shape == (384, 504, 3)
    assert _count(px, C0) > 50 and _count(px, C1) > 50  # accuracy and agreement lines
    plain = _pixels(plot_transform_sweep({"transform": "stroke", "n_digits": 3, "levels": _rows(False)},
                                         tmp_path / "p.png"))
    assert plain.shape == px.shape and (plain != px).any()
    assert _count(px, GREY) > _count(plain, GREY) + 50  # the dotted grey line
    two = _pixels(plot_transform_sweep([{"transform": "stroke", "n_digits": 3, "levels": _rows()},
                                        {"transform": "scale", "n_digits": 5, "levels": _rows()}], tmp_path / "t.png"))
    assert two.shape == (384, 1008, 3)
