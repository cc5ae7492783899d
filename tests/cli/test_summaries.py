"""Every command ends with a short human summary: what ran, on what, the headline numbers
rounded (no float past 4 decimals), where the files are."""

import re

import pytest

from localrules.cli.summary import number, numbers

TINY = ["run", "metanca", "--dataset", "iris", "--arch", "4,8,3", "--steps-min", "2", "--steps-max", "3",
        "--samples", "4", "--pool-size", "8", "--device", "cpu", "--threads", "1"]
LONG_FLOAT = re.compile(r"\d\.\d{5,}")


@pytest.mark.parametrize("value, text", [(67.6206621170044, "67.6207"), (0.4950237493500026, "0.495"), (3, "3"),
                                         (2.0, "2"), (1.23e-06, "1.2e-06"), (0.0, "0"), (123456, "123,456")])
def test_numbers_are_rounded_for_people(value, text):
    assert number(value) == text
    assert numbers({"loss": value, "name": "x"}) == f"loss {text}"


@pytest.fixture(scope="module")
def rule(tmp_path_factory):
    from localrules.cli.main import cli

    out = tmp_path_factory.mktemp("rule")
    try:
        cli([*TINY, "--iterations", "3", "--out", str(out)])
    except SystemExit as e:
        assert not e.code
    return out


def test_three_iterations_end_with_a_rounded_summary(tmp_path, console):
    code, text, _ = console(*TINY, "--iterations", "3", "--out", str(tmp_path / "run"))
    last = text.strip().splitlines()[-1]
    assert code == 0 and last.startswith("trained a metanca rule on iris to iteration 3: loss ")
    assert "s/iteration" in last and str(tmp_path / "run" / "model.safetensors") in last
    assert "metrics.jsonl" in last and not LONG_FLOAT.search(text), text
    assert "{" not in last  # no raw dict dump


def test_zeroout_names_the_architecture_and_its_files(rule, tmp_path, console):
    js, png = tmp_path / "z.json", tmp_path / "z.png"
    code, text, _ = console("study", "zeroout", "--checkpoint", str(rule / "model.safetensors"), "--samples", "2",
                            "--steps-before", "2", "--steps-after", "2", "--json", str(js), "--png", str(png),
                            "--device", "cpu")
    assert code == 0 and js.is_file() and png.is_file()
    assert "architecture [4, 8, 3]" in text and "on iris" in text and str(js) in text and str(png) in text
    assert not LONG_FLOAT.search(text)


def test_heatmap_console_names_adam_as_the_figure_does(rule, tmp_path, console):
    js, png = tmp_path / "h.json", tmp_path / "h.png"
    code, text, _ = console("study", "heatmap", "--checkpoint", str(rule / "model.safetensors"), "--x", "8",
                            "--y", "8", "--samples", "2", "--steps", "2", "--adam-epochs", "1", "--json", str(js),
                            "--png", str(png), "--device", "cpu")
    assert code == 0 and "Adam (1 epoch):" in text and "epochs" not in text
    assert str(js) in text and str(png) in text and not LONG_FLOAT.search(text)


def test_the_heatmap_figure_names_adam_and_explains_red_outlines(monkeypatch, tmp_path):
    import matplotlib.figure

    from localrules.viz.plots import plot_heatmap

    texts = []
    real = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: (
        texts.extend([ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]),
        real(fig, *a, **k))[1])
    cell = {"x": 8, "y": 8, "mean_accuracy": 0.9, "adam_accuracy": 0.8, "ratio": 1.125, "in_training": True}
    plot_heatmap({"cells": [cell], "adam_epochs": 1.0}, tmp_path / "h.png")
    joined = "\n".join(texts)
    assert "Adam (1 epoch)" in joined and "1.0 epochs" not in joined and "red outline" in joined
