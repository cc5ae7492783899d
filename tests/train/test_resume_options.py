"""--resume continues to the recorded target; changed optimiser options are applied and recorded."""

import json

import pytest
import torch

from localrules.tasks import mnist_selfclassify as ms
from localrules.train.checkpoint import load_model_files
from localrules.train.loop import TrainConfig, TrainingDiverged, train
from localrules.train.resume import recorded_train_config, resolve


def _task(small_digits):
    x, y = small_digits
    cfg = ms.Config(batch_size=4, pool_size=8, perception_dim=8, hidden=(8,))
    return ms.SelfClassifyTask(cfg, x[:60], y[:60], torch.device("cpu"))


def _cfg(**kw):
    return TrainConfig(**{"steps_min": 2, "steps_max": 2, "log_every": 1, "lr_milestones": (), **kw})


def _rows(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").open()]


def test_resume_continues_to_the_recorded_target_and_says_so(tmp_path, small_digits, capsys):
    train(_task(small_digits), _cfg(iterations=4, minutes=1e-9), tmp_path, torch.device("cpu"), progress=False)
    assert load_model_files(tmp_path / "model.json")[1]["iteration"] == 1  # stopped by the budget
    cfg = resolve(TrainConfig(), recorded_train_config(tmp_path), given=set())  # no --iterations given
    assert cfg.iterations == 4 and cfg.minutes == 0.0 and cfg.steps_max == 2
    train(_task(small_digits), cfg, tmp_path, torch.device("cpu"), resume=True, progress=False)
    assert "resuming at 1 of 4 iterations" in capsys.readouterr().out
    assert [r["step"] for r in _rows(tmp_path)] == [1, 2, 3, 4]
    assert train(_task(small_digits), cfg, tmp_path, torch.device("cpu"), resume=True, progress=False) == {}
    assert "nothing to do" in capsys.readouterr().out
    assert resolve(TrainConfig(), recorded_train_config(tmp_path), given={"iterations"}).iterations == 100_000


def test_a_changed_lr_and_milestone_are_applied_and_recorded(tmp_path, small_digits, capsys):
    train(_task(small_digits), _cfg(iterations=2, lr=1e-3, lr_milestones=(100,)), tmp_path,
          torch.device("cpu"), progress=False)
    train(_task(small_digits), _cfg(iterations=5, lr=5e-3, lr_milestones=(3,)), tmp_path, torch.device("cpu"),
          resume=True, progress=False)
    assert "lr 0.001 -> 0.005" in capsys.readouterr().out
    lrs = [r["lr"] for r in _rows(tmp_path)]  # the rate in effect after each iteration's step
    assert lrs == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 5e-4])
    meta = load_model_files(tmp_path / "model.json")[1]
    assert meta["train"]["lr"] == 5e-3 and meta["train"]["lr_milestones"] == [3]
    assert meta["train_changes"] == [{"iteration": 2, "lr": [1e-3, 5e-3], "lr_milestones": [[100], [3]]}]


def test_a_changed_seed_is_refused(tmp_path, small_digits):
    train(_task(small_digits), _cfg(iterations=1), tmp_path, torch.device("cpu"), progress=False)
    with pytest.raises(ValueError, match="--seed.*leave --seed out"):
        train(_task(small_digits), _cfg(iterations=2, seed=1), tmp_path, torch.device("cpu"), resume=True,
              progress=False)


def test_a_torn_metrics_line_does_not_block_resume(tmp_path, small_digits):
    train(_task(small_digits), _cfg(iterations=2), tmp_path, torch.device("cpu"), progress=False)
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "lo')  # kill -9 in the middle of a write
    train(_task(small_digits), _cfg(iterations=3), tmp_path, torch.device("cpu"), resume=True, progress=False)
    assert [r["step"] for r in _rows(tmp_path)] == [1, 2, 3]


def test_divergence_names_only_checkpoints_that_exist(tmp_path, small_digits):
    task = _task(small_digits)
    with torch.no_grad():
        task.model.perception.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="no checkpoint was written"):
        train(task, _cfg(iterations=2), tmp_path, torch.device("cpu"), progress=False)
    assert not (tmp_path / "model.safetensors").exists()
