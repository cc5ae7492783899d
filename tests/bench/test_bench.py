"""The benchmark runs, its two paths agree on states, loss and gradients, and its figures are
consistent with its timings (a benchmark, not a timed test)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from localrules.cli.main import app

runner = CliRunner()


class _Stopwatch:
    """``time`` for the bench module: the k-th timed call "lasts" ``durations[k]`` seconds, so the
    report's figures are known exactly (the bench is checked, not the machine)."""

    def __init__(self, durations):
        self.durations, self.now, self.running = list(durations), 0.0, False

    def perf_counter(self):
        if self.running:
            self.now += self.durations.pop(0)
        self.running = not self.running
        return self.now


# the order the bench times its paths in: train engine, train reference, eval engine, eval reference
DURATIONS = {("train", "engine"): 1.0, ("train", "reference"): 3.0, ("eval", "engine"): 0.5,
             ("eval", "reference"): 4.0}


def _bench(tmp_path, monkeypatch, system, cells, *extra):
    """Runs ``bench SYSTEM --quick`` with the stopwatch; ``cells`` = {phase: cell-steps of one run}.
    Catches: a speedup computed the wrong way round or from other rows, cell-steps/s or GFLOP/s
    from other counts than the run's, --quick timing more (or fewer) than one run per path."""
    from localrules.bench import run

    watch = _Stopwatch(DURATIONS.values())
    monkeypatch.setattr(run, "time", watch)
    res = runner.invoke(app, ["bench", system, "--quick", "--device", "cpu", *extra,  # --quick on a CPU: no variants
                              "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    assert watch.durations == [] and not watch.running  # exactly 4 timed runs: 1 per path and phase
    out = json.loads((tmp_path / "b.json").read_text())
    assert out["system"] == system and out["settings"]["repeats"] == 1
    for phase in ("train", "eval"):
        rows = out[phase]
        assert set(rows) == {"engine", "reference"}
        for name, row in rows.items():
            assert set(row) == {"seconds", "cell_steps_per_s", "gflop_per_s", "flops"}
            assert row["seconds"] == DURATIONS[phase, name]
            assert row["cell_steps_per_s"] == pytest.approx(cells[phase] / row["seconds"])
            assert isinstance(row["flops"], int) and row["flops"] > 0  # counted, not timed
            assert row["gflop_per_s"] == pytest.approx(row["flops"] / row["seconds"] / 1e9)
    assert out["train_speedup"] == pytest.approx(3.0) and out["eval_speedup"] == pytest.approx(8.0)
    assert {"cores", "cpu_flags", "torch_threads", "torch", "device"} <= set(out["machine"])
    assert out["machine"]["device"] == "cpu"
    line = next(ln for ln in res.output.splitlines() if ln.strip().startswith("train:"))
    assert "engine 1.0000 s" in line and "reference 3.0000 s" in line and "3.00x" in line
    return out["agreement"]


def test_best_of_repeats_after_one_warm_up(monkeypatch):
    """``_time``: one untimed warm-up call, then the best of ``repeats`` timed ones. Catches a mean
    or a last instead of the best, a timed warm-up, a wrong number of runs."""
    import torch

    from localrules.bench import run

    calls = []
    monkeypatch.setattr(run, "time", _Stopwatch([5.0, 2.0, 7.0]))
    assert run._time(lambda: calls.append(1), 3, torch.device("cpu")) == 2.0
    assert len(calls) == 4


def test_bench_selfclassify_quick(tmp_path, monkeypatch, mnist_dir):
    # --quick: batch 4 x 3 steps on 28 x 28 (train), 8 digits x 3 steps (eval)
    cells = {"train": 4 * 28 * 28 * 3, "eval": 8 * 28 * 28 * 3}
    agree = _bench(tmp_path, monkeypatch, "mnist-selfclassify", cells, "--data-dir", str(mnist_dir))
    assert agree["ok"] and agree["max_state_diff"] < 1e-3 and agree["max_grad_rel_diff"] < 1e-3
    assert agree["loss_diff"] < 1e-3


def test_bench_metanca_quick_compares_states_loss_and_gradients(tmp_path, monkeypatch):
    # --quick: 2 networks 20-8-6-3 (weights and biases: 21*8 + 9*6 + 7*3 = 243 cells), 2 steps
    cells = {"train": 2 * 243 * 2, "eval": 2 * 243 * 2}
    agree = _bench(tmp_path, monkeypatch, "metanca", cells)
    assert agree["ok"] and agree["max_state_diff"] < 1e-4 and agree["loss_diff"] < 1e-4
    assert agree["max_grad_rel_diff"] < 1e-3


def test_bench_restore_quick(tmp_path, monkeypatch, mnist_dir):
    # --quick: batch 4 (train), 8 digits (eval), each on a 32 x 32 lattice for 10 steps
    cells = {"train": 4 * 32 * 32 * 10, "eval": 8 * 32 * 32 * 10}
    agree = _bench(tmp_path, monkeypatch, "restore", cells, "--data-dir", str(mnist_dir))
    assert agree["ok"]


@pytest.mark.parametrize("system", ["mnist-selfclassify", "metanca", "restore"])
def test_bench_variant_rows_agree_with_the_eager_engine(tmp_path, monkeypatch, mnist_dir, system):
    """--compile (the default, but for --quick on a CPU): the engine again with compiled steps (aot_eager: the same tracing
    as inductor without its code generation, seconds instead of a minute), checked against the eager
    engine first. Catches: compiled rows missing or replacing the existing ones, a disagreeing
    compiled path reported as ok, a speedup from other rows."""
    monkeypatch.setenv("LOCALRULES_COMPILE_BACKEND", "aot_eager")
    res = runner.invoke(app, ["bench", system, "--quick", "--compile", "--device", "cpu", "--threads", "1",
                              "--data-dir", str(mnist_dir), "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "b.json").read_text())
    variants = ["compiled"] + (["nchw"] if system == "restore" else [])  # the restorer: also its NCHW layout
    for mode in variants:
        agree = out[f"agreement_{mode}"]
        assert agree["ok"] and agree["max_output_diff"] < 1e-4 and agree["max_grad_rel_diff"] < 1e-3, agree
        for phase in ("train", "eval"):
            row = out[phase][mode]
            assert row["flops"] == out[phase]["engine"]["flops"]  # the same arithmetic
            assert out[f"{mode}_{phase}_speedup"] == pytest.approx(out[phase]["engine"]["seconds"] / row["seconds"])
    assert "agreement_graph" not in out  # CUDA graphs: on CUDA only
    assert set(out["train"]) == set(out["eval"]) == {"engine", "reference", *variants}
    assert {"train_speedup", "eval_speedup"} <= set(out)  # the keys other code reads stay
    assert "compiled agrees with the eager engine: True" in res.output


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
