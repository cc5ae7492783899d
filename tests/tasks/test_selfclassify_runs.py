"""Batched self-classifier runs (localrules.tasks.selfclassify_runs, `run mnist-selfclassify --runs N`):
run k of a batched training is the single run with seed S + k, and its exported checkpoint is an
ordinary one."""

import json

import pytest
import torch

from localrules.tasks import mnist_selfclassify as ms
from localrules.tasks.selfclassify_runs import SelfClassifyRuns, export_runs
from localrules.train.checkpoint import load_state
from localrules.train.loop import TrainConfig, train

CPU = torch.device("cpu")


def _cfg(**kw):
    return ms.Config(batch_size=4, pool_size=8, perception_dim=8, hidden=(8,), engine="dense", **kw)


def _tcfg(seed, iterations=3):
    return TrainConfig(iterations=iterations, steps_min=3, steps_max=3, seed=seed, log_every=1)


@pytest.mark.parametrize("noise", [0.02, 0.0])
def test_run_k_equals_the_single_run_with_seed_k(small_digits, tmp_path, noise):
    """Catches: a run drawing from another run's or the trainer's stream (its pool or masks would
    differ), gradients mixed across runs (e.g. normalised over the stacked tensor), a shared Adam
    state or pool, a missing draw (the trainer's step count) that shifts every later draw."""
    x, y = small_digits
    x, y = x[:200], y[:200]
    seeds = [5, 6, 7]
    batched = SelfClassifyRuns(_cfg(noise_std=noise), x, y, CPU, seeds)
    train(batched, _tcfg(seeds[0]), tmp_path / "batched", CPU, progress=False)
    rows = [json.loads(ln) for ln in (tmp_path / "batched" / "metrics.jsonl").read_text().splitlines()]
    for k, seed in enumerate(seeds):
        torch.manual_seed(seed)  # as the command line does before it builds the task
        single = ms.SelfClassifyTask(_cfg(noise_std=noise), x, y, CPU)
        train(single, _tcfg(seed), tmp_path / f"single-{k}", CPU, progress=False)
        # atol: 1 % of one Adam step (lr 1e-3). vmap sums in another order than the single run, and
        # Adam divides each gradient component by sqrt(v) + 1e-8: a component near 1e-8 (left by
        # cancellation) whose low digits differ moves its weight by up to ~1e-3 lr more or less
        # (seen: 1.2e-6 on one weight of 1,440 after 3 steps). Every bug named above moves weights
        # by whole steps (~1e-3).
        for name, w in single.model.state_dict().items():
            torch.testing.assert_close(batched.model.runs[k].state_dict()[name], w, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batched.tasks[k].pool.slots["state"], single.pool.slots["state"], rtol=1e-4,
                                   atol=1e-5)
        assert torch.equal(batched.tasks[k].pool.slots["label"], single.pool.slots["label"])
        singles = [json.loads(ln) for ln in (tmp_path / f"single-{k}" / "metrics.jsonl").read_text().splitlines()]
        assert [r[f"loss_{k}"] for r in rows] == pytest.approx([r["loss"] for r in singles], rel=1e-4)
    assert batched.samples_per_iteration == 12


def test_export_writes_an_ordinary_checkpoint_per_run(small_digits, tmp_path):
    x, y = small_digits
    batched = SelfClassifyRuns(_cfg(), x[:100], y[:100], CPU, [0, 1])
    train(batched, _tcfg(0, 2), tmp_path, CPU, progress=False, command="localrules run mnist-selfclassify --runs 2")
    paths = export_runs(tmp_path)
    assert paths == [tmp_path / "run-0" / "model.safetensors", tmp_path / "run-1" / "model.safetensors"]
    for k, p in enumerate(paths):
        model, cfg, meta = ms.load(p)
        assert cfg == _cfg() and meta["train"]["seed"] == k and meta["batched"]["run"] == k
        assert meta["iteration"] == 2 and meta["commands"][0]["command"].endswith("--runs 2")
        for name, w in model.state_dict().items():
            assert torch.equal(w, batched.model.runs[k].state_dict()[name])
        rows = [json.loads(ln) for ln in (p.parent / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2] and all("loss" in r and "cell_accuracy" in r for r in rows)
    with pytest.raises(ValueError, match="not a batched"):
        export_runs(tmp_path / "run-0")


def test_resume_continues_every_run_exactly(small_digits, tmp_path):
    """The batched state holds every run's pool and random stream."""
    x, y = small_digits
    straight = SelfClassifyRuns(_cfg(), x[:100], y[:100], CPU, [0, 1])
    train(straight, _tcfg(0, 4), tmp_path / "a", CPU, progress=False)
    first = SelfClassifyRuns(_cfg(), x[:100], y[:100], CPU, [0, 1])
    train(first, _tcfg(0, 2), tmp_path / "b", CPU, progress=False)
    again = SelfClassifyRuns(_cfg(), x[:100], y[:100], CPU, [0, 1])
    train(again, _tcfg(0, 4), tmp_path / "b", CPU, resume=True, progress=False)
    a, b = load_state(tmp_path / "a" / "train_state.pt"), load_state(tmp_path / "b" / "train_state.pt")
    for name, w in a["model"].items():
        assert torch.equal(w, b["model"][name]), name


def test_the_alive_engine_is_refused(small_digits):
    x, y = small_digits
    with pytest.raises(ValueError, match="dense engine"):
        SelfClassifyRuns(ms.Config(batch_size=4, pool_size=8), x[:50], y[:50], CPU, [0, 1])


def test_the_command_line_trains_runs_that_eval_loads(mnist_dir, tmp_path, console):
    out = tmp_path / "runs"
    code, text, err = console("run", "mnist-selfclassify", "--runs", "2", "--out", str(out), "--iterations", "2",
                              "--batch-size", "2", "--pool-size", "4", "--steps", "2", "--threads", "1",
                              "--device", "cpu", "--data-dir", str(mnist_dir))
    assert code == 0, err
    assert "the dense engine" in text and "2 runs (seeds 0-1)" in text
    for k in (0, 1):
        code, text, err = console("eval", "mnist-selfclassify", "--checkpoint", str(out / f"run-{k}" / "model.safetensors"),
                                  "--n", "4", "--steps", "4", "--mutate-at", "0", "--workers", "1", "--threads", "1",
                                  "--device", "cpu", "--data-dir", str(mnist_dir))
        assert code == 0 and "4 digits, 4 steps" in text, err
