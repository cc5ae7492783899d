"""--lr-rule: the learning rate for a batch other than the recipe's, and its record in the run."""

import json
import math

import pytest
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.train.lr_rule import scaled_lr

runner = CliRunner()


def test_rules():
    assert scaled_lr(1e-3, 64, 16, "sqrt")[0] == pytest.approx(2e-3)
    assert scaled_lr(1e-3, 64, 16, "linear")[0] == pytest.approx(4e-3)
    assert scaled_lr(1e-3, 8, 32, "sqrt")[0] == pytest.approx(5e-4)
    assert scaled_lr(1e-3, 64, 16, "none") == (1e-3, "")  # nothing scaled, nothing recorded
    assert scaled_lr(1e-3, 16, 16, "sqrt") == (1e-3, "")
    assert scaled_lr(3e-4, 256, 64, "sqrt")[1] == "sqrt: 0.0003 x (256 / 64)^0.5 = 0.0006"
    with pytest.raises(ValueError, match="--lr-rule must be one of none, sqrt, linear"):
        scaled_lr(1e-3, 64, 16, "cubic")


def _train(tmp_path, mnist_dir, *args):
    res = runner.invoke(app, [*args, "--iterations", "1", "--data-dir", str(mnist_dir), "--device", "cpu",
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    return json.loads((tmp_path / "model.json").read_text())


def test_selfclassify_records_the_rule(tmp_path, mnist_dir):
    meta = _train(tmp_path / "a", mnist_dir, "run", "mnist-selfclassify", "--batch-size", "32", "--pool-size", "64",
                  "--steps", "2", "--lr-rule", "sqrt")
    assert meta["task"]["batch_size"] == 32
    assert meta["train"]["lr"] == pytest.approx(1e-3 * math.sqrt(2))
    assert meta["train"]["lr_scaling"].startswith("sqrt: 0.001 x (32 / 16)^0.5")


def test_restore_batch_size_scales_pool_and_lr(tmp_path, mnist_dir):
    meta = _train(tmp_path / "b", mnist_dir, "run", "restore", "--model", "ca", "--batch-size", "16",
                  "--steps-min", "2", "--steps-max", "2", "--lr-rule", "linear")
    assert (meta["task"]["batch_size"], meta["task"]["pool_size"]) == (16, 24)
    assert meta["train"]["lr"] == pytest.approx(1e-3 / 4)
    assert meta["train"]["lr_scaling"] == "linear: 0.001 x (16 / 64)^1 = 0.00025"
