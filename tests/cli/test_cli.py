import json

import numpy as np
import pytest
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.tasks import mnist_selfclassify as ms
from localrules.train.checkpoint import save_model
from dataclasses import asdict

runner = CliRunner()


def test_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "run" in res.output and "eval" in res.output
    for cmd in ("run", "eval"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "--device" in res.output


@pytest.fixture
def untrained_ckpt(tmp_path):
    cfg = ms.Config()
    return save_model(tmp_path / "m", ms.build_model(cfg),
                      {"task": {"name": "mnist-selfclassify", **asdict(cfg)}})


def test_eval_user_arrays_writes_json_and_plots(tmp_path, small_digits, untrained_ckpt):
    x, y = small_digits
    np.save(tmp_path / "x.npy", x[:12])
    np.save(tmp_path / "y.npy", y[:12])
    res = runner.invoke(app, [
        "eval", "mnist-selfclassify", "--checkpoint", str(untrained_ckpt),
        "--images", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
        "--steps", "6", "--mutate-at", "3", "--json", str(tmp_path / "o.json"),
        "--plots", str(tmp_path / "plots"), "--device", "cpu",
    ])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "o.json").read_text())
    assert len(out["accuracy"]) == 6 and len(out["agreement"]) == 6
    assert 0 <= out["top_accuracy"] <= 1
    for f in ("curves.png", "magnitudes.png", "cells.gif"):
        assert (tmp_path / "plots" / f).stat().st_size > 0


def test_eval_bad_input_gets_clear_errors(tmp_path, small_digits, untrained_ckpt):
    res = runner.invoke(app, ["eval", "mnist-selfclassify", "--checkpoint", str(tmp_path / "nope.safetensors")])
    assert res.exit_code != 0 and "no checkpoint" in res.output
    x, _ = small_digits
    np.save(tmp_path / "x.npy", x[:4])
    res = runner.invoke(app, ["eval", "mnist-selfclassify", "--checkpoint", str(untrained_ckpt),
                              "--images", str(tmp_path / "x.npy")])
    assert res.exit_code != 0 and "--labels" in res.output
    res = runner.invoke(app, ["eval", "mnist-selfclassify", "--checkpoint", str(untrained_ckpt),
                              "--device", "tpu"])
    assert res.exit_code != 0


def test_run_trains_and_resumes(tmp_path, mnist_dir):
    args = ["run", "mnist-selfclassify", "--out", str(tmp_path / "r"), "--data-dir", str(mnist_dir),
            "--iterations", "4", "--steps", "3", "--checkpoint-every", "2", "--device", "cpu"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "model.safetensors").exists()
    res = runner.invoke(app, args[:-6] + ["--iterations", "6", "--steps", "3", "--resume", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    steps = [json.loads(l)["step"] for l in (tmp_path / "r" / "metrics.jsonl").open()]
    assert steps[-1] == 6
    ckpt = json.loads((tmp_path / "r" / "model.json").read_text())
    assert ckpt["iteration"] == 6 and ckpt["task"]["loss"] == "l2"


def test_run_pretrained_evaluates_shipped_model(tmp_path, mnist_dir):
    if not ms.pretrained_path("l2").exists():
        pytest.skip("no shipped checkpoint in this checkout")
    res = runner.invoke(app, ["run", "mnist-selfclassify", "--pretrained", "--n", "20",
                              "--out", str(tmp_path), "--data-dir", str(mnist_dir), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "eval.json").read_text())
    assert out["n_digits"] == 20 and len(out["accuracy"]) == 400
    assert (tmp_path / "cells.gif").exists()
