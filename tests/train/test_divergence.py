"""A non-finite loss or gradient is rolled back and skipped; K in a row stop with a checkpoint."""

import json

import pytest
import torch

from localrules.tasks import mnist_selfclassify as ms
from localrules.train.checkpoint import load_model_files, load_state
from localrules.train.loop import TrainConfig, TrainingDiverged, train

CPU = torch.device("cpu")


def _task(small_digits):
    x, y = small_digits
    cfg = ms.Config(batch_size=4, pool_size=8, perception_dim=8, hidden=(8,))
    return ms.SelfClassifyTask(cfg, x[:60], y[:60], CPU)


def _cfg(**kw):
    return TrainConfig(**{"steps_min": 2, "steps_max": 2, "log_every": 1, "lr_milestones": (),
                          "checkpoint_minutes": 0, **kw})


def _poison(task, bad_calls):
    """Make ``training_loss`` return NaN, and commit NaN states to the pool, on the calls in ``bad_calls``."""
    calls, loss_of = [0], task.training_loss

    def loss(steps):
        calls[0] += 1
        value, info = loss_of(steps)
        if calls[0] in bad_calls:
            idx = task.pool._undo[0]
            task.pool.slots["state"][idx] = float("nan")  # as a rollout that blew up would
            return value * float("nan"), info
        return value, info

    task.training_loss = loss


def _weights(task):
    return {k: v.clone() for k, v in task.model.state_dict().items()}


def test_a_nan_loss_is_rolled_back_and_training_goes_on(tmp_path, small_digits, capsys):
    task = _task(small_digits)
    _poison(task, {5, 6})
    cfg = _cfg(iterations=9, snapshot_every=3, lr=1e-2)
    weights_at = {}
    loss_of = task.training_loss

    def record(steps):  # the weights each iteration starts from
        weights_at[len(weights_at) + 1] = _weights(task)
        return loss_of(steps)

    task.training_loss = record
    train(task, cfg, tmp_path, CPU, progress=False)
    out = capsys.readouterr().out
    assert "iteration 5: loss nan is not finite; skipped it, restored the weights and Adam state of iteration 3" in out
    assert "iteration 6: loss nan" in out and "(2 of --max-bad-steps 5 in a row)" in out
    # iterations 6 and 7 start from the weights after iteration 3 (the snapshot), not after 4
    for k, v in weights_at[4].items():
        assert torch.equal(weights_at[6][k], v) and torch.equal(weights_at[7][k], v), k
    assert not all(torch.equal(weights_at[5][k], v) for k, v in weights_at[4].items())
    assert torch.isfinite(task.pool.slots["state"]).all()  # the bad batches' commits were undone
    assert all(torch.isfinite(v).all() for v in task.model.state_dict().values())
    meta = load_model_files(tmp_path / "model.json")[1]
    assert meta["iteration"] == 9
    assert [c["lr"] for c in meta["train_changes"]] == [[1e-2, 5e-3], [5e-3, 2.5e-3]]
    assert [c["iteration"] for c in meta["train_changes"]] == [5, 6]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 7, 8, 9]  # skipped iterations log nothing
    assert rows[-1]["lr"] == pytest.approx(2.5e-3)


def test_a_diverging_learning_rate_is_survived(tmp_path, small_digits, capsys):
    """lr 3 blows the gradients up to inf at iteration 4 (before rollback, the run died there)."""
    task = _task(small_digits)
    train(task, _cfg(iterations=12, lr=3.0), tmp_path, CPU, progress=False)
    assert "iteration 4: a gradient norm inf is not finite; skipped it" in capsys.readouterr().out
    assert load_model_files(tmp_path / "model.json")[1]["iteration"] == 12
    assert all(torch.isfinite(v).all() for v in task.model.state_dict().values())


def test_k_bad_steps_in_a_row_stop_with_a_checkpoint_that_loads(tmp_path, small_digits):
    task = _task(small_digits)
    _poison(task, set(range(5, 100)))
    weights = {}
    loss_of = task.training_loss

    def record(steps):
        weights[len(weights) + 1] = _weights(task)
        return loss_of(steps)

    task.training_loss = record
    with pytest.raises(TrainingDiverged) as e:
        train(task, _cfg(iterations=20, snapshot_every=3, max_bad_steps=3), tmp_path, CPU, progress=False)
    msg = str(e.value)
    assert "at iterations 5-7" in msg and "3 in a row (--max-bad-steps 3)" in msg
    assert "kept the weights and Adam state of iteration 3" in msg and "checkpoint at iteration 7" in msg
    state = load_state(tmp_path / "train_state.pt")
    assert state["iteration"] == 7
    for k, v in weights[4].items():  # the weights after iteration 3 = the start of iteration 4
        assert torch.equal(state["model"][k], v), k
    model, _, meta = ms.load(tmp_path / "model.safetensors")
    assert meta["iteration"] == 7
    assert torch.isfinite(task.pool.slots["state"]).all()
    # the run resumes from there
    fresh = _task(small_digits)
    train(fresh, _cfg(iterations=9, snapshot_every=3, max_bad_steps=3), tmp_path, CPU, resume=True, progress=False)
    assert load_state(tmp_path / "train_state.pt")["iteration"] == 9


def test_nan_from_the_start_writes_no_checkpoint(tmp_path, small_digits):
    task = _task(small_digits)
    with torch.no_grad():
        task.model.perception.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="loss nan at iteration 1, 1 in a row.*no checkpoint was written"):
        train(task, _cfg(iterations=3, max_bad_steps=1), tmp_path, CPU, progress=False)
    assert not (tmp_path / "model.safetensors").exists()


def test_a_nonfinite_gradient_counts_as_bad(tmp_path, small_digits, capsys):
    task = _task(small_digits)
    loss_of, calls = task.training_loss, [0]

    def loss(steps):
        calls[0] += 1
        value, info = loss_of(steps)
        if calls[0] == 2:  # a finite loss (+ 0) whose gradient is NaN (inf - inf)
            w = task.model.perception.weight.sum()
            value = value + torch.sqrt(w - w)
        return value, info

    task.training_loss = loss
    train(task, _cfg(iterations=3), tmp_path, CPU, progress=False)
    assert "iteration 2: a gradient norm" in capsys.readouterr().out
