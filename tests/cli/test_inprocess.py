"""localrules.cli.inprocess: scripts/gpu-job runs every command of a slot in its one process. A
failing command returns its exit code and leaves the process as it was; a training stopped at its
time limit writes its checkpoint first."""

import sys

import pytest

from localrules.cli.inprocess import run_command
from localrules.train.checkpoint import load_state


def test_a_usage_error_and_a_crash_return_their_codes(capsys, monkeypatch, tmp_path):
    argv = list(sys.argv)
    assert run_command(["run", "restore", "--model", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err

    def boom(*a, **kw):
        raise RuntimeError("the data broke")

    monkeypatch.setattr("localrules.data.mnist.load_mnist", boom)
    assert run_command(["run", "mnist-selfclassify", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: the data broke" in err
    assert sys.argv == argv  # restored after each command
    assert run_command(["--help"]) == 0 and "local rules" in capsys.readouterr().out


def test_a_training_past_its_limit_checkpoints_and_returns_124(mnist_dir, tmp_path, capsys):
    """Catches: a time limit that kills the training without its checkpoint, or one that stops the
    caller too (the next command must run)."""
    out = tmp_path / "run"
    rc = run_command(["run", "mnist-selfclassify", "--out", str(out), "--data-dir", str(mnist_dir),
                      "--iterations", "100000", "--batch-size", "2", "--pool-size", "4", "--steps", "2",
                      "--engine", "dense", "--threads", "1", "--device", "cpu"], limit_s=8)
    assert rc == 124, capsys.readouterr()
    assert "stopped at its time limit of 8 s" in capsys.readouterr().out
    assert load_state(out / "train_state.pt")["iteration"] >= 1
    assert (out / "model.safetensors").is_file()


def test_an_interrupt_from_outside_is_raised_again(monkeypatch, tmp_path):
    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr("localrules.data.mnist.load_mnist", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_command(["run", "mnist-selfclassify", "--out", str(tmp_path / "r")])
