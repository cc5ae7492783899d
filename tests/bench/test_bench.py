"""The benchmark runs, its two paths agree on states, loss and gradients, and its figures are
consistent with its timings (a benchmark, not a timed test)."""

import json

import pytest
from typer.testing import CliRunner

from localrules.cli.main import app

runner = CliRunner()


def _bench(tmp_path, system, *extra):
    res = runner.invoke(app, ["bench", system, "--quick", "--device", "cpu", *extra, "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "b.json").read_text())
    for phase in ("train", "eval"):
        rows = out[phase]
        assert out[f"{phase}_speedup"] == pytest.approx(rows["reference"]["seconds"] / rows["engine"]["seconds"])
        for row in rows.values():
            assert row["seconds"] > 0 and row["cell_steps_per_s"] > 0
    assert {"cores", "cpu_flags"} <= set(out["machine"])
    return out["agreement"]


def test_bench_selfclassify_quick(tmp_path, mnist_dir):
    agree = _bench(tmp_path, "mnist-selfclassify", "--data-dir", str(mnist_dir))
    assert agree["ok"] and agree["max_state_diff"] < 1e-3 and agree["max_grad_rel_diff"] < 1e-3
    assert agree["loss_diff"] < 1e-3


def test_bench_metanca_quick_compares_states_loss_and_gradients(tmp_path):
    agree = _bench(tmp_path, "metanca")
    assert agree["ok"] and agree["max_state_diff"] < 1e-4 and agree["loss_diff"] < 1e-4
    assert agree["max_grad_rel_diff"] < 1e-3


def test_bench_restore_quick(tmp_path, mnist_dir):
    agree = _bench(tmp_path, "restore", "--data-dir", str(mnist_dir))
    assert agree["ok"]


def test_agreement_checks_turn_tf32_off_and_restore_it():
    """On CUDA, convolutions run in TF32 by default (the first H200 slot's restore bench differed by
    1 % in its gradients); the agreement checks compare in float32 and leave the user's settings."""
    import torch

    from localrules.bench.run import float32_exact

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        with float32_exact():
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
