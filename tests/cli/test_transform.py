"""`eval mnist-selfclassify --transform`: the paper's protocol on changed digits."""

import json

import numpy as np
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.data.augment import SWEEPS

runner = CliRunner()


def _digits(tmp_path, small_digits, n=24):
    x, y = small_digits
    np.save(tmp_path / "x.npy", np.pad(x[:n], ((0, 0), (6, 6), (6, 6))))  # 28x28, centred
    np.save(tmp_path / "y.npy", y[:n])
    return ["--images", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
            "--steps", "12", "--mutate-at", "6", "--device", "cpu", "--workers", "1"]


def test_scale_sweep_levels_plot_and_identity_level(tmp_path, small_digits):
    args = ["eval", "mnist-selfclassify", *_digits(tmp_path, small_digits)]
    res = runner.invoke(app, [*args, "--transform", "scale", "--json", str(tmp_path / "s.json"),
                              "--plots", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "s.json").read_text())
    assert out["transform"] == "scale" and [r["level"] for r in out["levels"]] == SWEEPS["scale"]
    assert (tmp_path / "p" / "transform-scale.png").stat().st_size > 0
    plain = runner.invoke(app, [*args, "--json", str(tmp_path / "plain.json")])
    assert plain.exit_code == 0, plain.output
    base = json.loads((tmp_path / "plain.json").read_text())
    same = next(r for r in out["levels"] if r["level"] == 1.0)  # scale 1 leaves every pixel as it is
    assert same["top_accuracy"] == base["top_accuracy"] and same["top_agreement"] == base["top_agreement"]
    shrunk = next(r for r in out["levels"] if r["level"] == 0.6)
    assert shrunk["top_accuracy"] != base["top_accuracy"]


def test_all_runs_every_sweep_and_the_mix_into_one_json_and_figure(tmp_path, small_digits):
    args = ["eval", "mnist-selfclassify", *_digits(tmp_path, small_digits, n=8), "--steps", "4", "--mutate-at", "2"]
    res = runner.invoke(app, [*args, "--transform", "all", "--json", str(tmp_path / "a.json"),
                              "--plots", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "a.json").read_text())
    assert set(out) == {"transform", "n_digits", "mix", *SWEEPS}
    assert all([r["level"] for r in out[k]["levels"]] == v for k, v in SWEEPS.items())
    assert (tmp_path / "p" / "transform-all.png").stat().st_size > 0


def test_mix_writes_plain_summary_keys_and_card_is_refused(tmp_path, small_digits):
    args = ["eval", "mnist-selfclassify", *_digits(tmp_path, small_digits)]
    res = runner.invoke(app, [*args, "--transform", "mix", "--json", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "m.json").read_text())
    assert out["transform"] == "mix" and {"top_accuracy", "top_agreement"} <= set(out)
    res = runner.invoke(app, [*args, "--transform", "mix", "--card", str(tmp_path / "c.md")])
    assert res.exit_code == 2 and "--card" in res.output and "--transform" in res.output
