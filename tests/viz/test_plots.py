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


def test_curves_legend_sits_off_the_curves_and_names_the_checkpoint(monkeypatch, tmp_path):
    """The legend is one figure legend below both panels (a short run's curve runs where an
    in-axes legend would sit), naming the checkpoint's own loss and noise."""
    import matplotlib.figure

    from localrules.studies.report import curve_label
    from localrules.tasks import mnist_selfclassify as ms
    from localrules.viz.plots import plot_curves

    figs = []
    real = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: (figs.append(fig), real(fig, *a, **k))[1])
    ce = ms.Config(loss="ce", noise_std=0.0)
    label = curve_label("localrules/pretrained/mnist-selfclassify-ce.safetensors", ce, 0.0)
    assert label == "mnist-selfclassify-ce (ce, noise 0)"
    assert curve_label("runs/x/model.safetensors", ms.Config(loss="l2", noise_std=0.02), 0.0) == \
        "x (l2, noise 0.02; evaluated with noise 0)"
    plot_curves({"accuracy": [0.1, 0.2, 0.3], "agreement": [0.0, 0.1, 0.2], "mutate_at": 2}, tmp_path / "c.png", label)
    fig = figs[-1]
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [label, "mutation"]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    box = legend.get_window_extent(renderer)
    assert all(box.y1 <= ax.get_tightbbox(renderer).y0 + 1 for ax in fig.axes)  # below the panels and their labels
