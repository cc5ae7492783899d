"""The benchmark runs and its two paths agree (a benchmark, not a timed test)."""

import json

from typer.testing import CliRunner

from localrules.cli.main import app

runner = CliRunner()


def test_bench_selfclassify_quick(tmp_path, mnist_dir):
    res = runner.invoke(app, ["bench", "mnist-selfclassify", "--quick", "--device", "cpu", "--data-dir",
                              str(mnist_dir), "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "b.json").read_text())
    assert out["agreement"]["ok"] and out["train_speedup"] > 0 and out["eval_speedup"] > 0
    assert {"cores", "cpu_flags"} <= set(out["machine"])


def test_bench_metanca_quick(tmp_path):
    res = runner.invoke(app, ["bench", "metanca", "--quick", "--device", "cpu", "--json", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "m.json").read_text())
    assert out["agreement"]["ok"] and {"train_speedup", "eval_speedup"} <= set(out)


def test_bench_restore_quick(tmp_path, mnist_dir):
    res = runner.invoke(app, ["bench", "restore", "--quick", "--device", "cpu", "--data-dir", str(mnist_dir),
                              "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["agreement"]["ok"] and {"train_speedup", "eval_speedup"} <= set(out)
