import json
import os
import signal
import time

import pytest
import torch

from localrules.tasks import mnist_selfclassify as ms
from localrules.train.checkpoint import load_model_files, load_state, save_model
from localrules.train.loop import TrainConfig, TrainingDiverged, train


def _task(small_digits, **kw):
    x, y = small_digits
    cfg = ms.Config(batch_size=8, pool_size=32, perception_dim=24, hidden=(24,), **kw)
    return ms.SelfClassifyTask(cfg, x[:400], y[:400], torch.device("cpu"))


def test_save_load_roundtrip(tmp_path):
    model = ms.build_model(ms.Config())
    save_model(tmp_path / "m", model, {"task": {"name": "mnist-selfclassify", **ms.Config().__dict__}})
    w, meta = load_model_files(tmp_path / "m.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(w[k], v)
    loaded, cfg, _ = ms.load(tmp_path / "m.safetensors")
    assert cfg == ms.Config()
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_load_rejects_other_checkpoints(tmp_path):
    save_model(tmp_path / "m", torch.nn.Linear(2, 2), {"task": {"name": "restore"}})
    with pytest.raises(ValueError, match="not a mnist-selfclassify checkpoint"):
        ms.load(tmp_path / "m")
    with pytest.raises(FileNotFoundError):
        ms.load(tmp_path / "missing")


def test_resume_is_exact(tmp_path, small_digits):
    cfg = TrainConfig(iterations=6, steps_min=3, steps_max=5, checkpoint_every=3, log_every=1,
                      lr_milestones=(4,))
    torch.manual_seed(0)
    straight = _task(small_digits)
    train(straight, cfg, tmp_path / "a", torch.device("cpu"), progress=False)

    torch.manual_seed(0)
    first = _task(small_digits)
    train(first, TrainConfig(**{**cfg.__dict__, "iterations": 3}), tmp_path / "b",
          torch.device("cpu"), progress=False)
    with (tmp_path / "b" / "metrics.jsonl").open("a") as f:  # a crash after the checkpoint at 3
        f.write('{"step": 4, "loss": 1.0}\n')
    resumed = _task(small_digits)  # fresh objects, state comes from disk
    train(resumed, cfg, tmp_path / "b", torch.device("cpu"), resume=True, progress=False)
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(straight.pool.slots["state"], resumed.pool.slots["state"])
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").open()]
    assert steps == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_keeps_finished_iterations_and_resumes_exactly(tmp_path, small_digits, stop):
    cfg = TrainConfig(iterations=6, steps_min=3, steps_max=5, checkpoint_every=100, log_every=1)
    torch.manual_seed(0)
    straight = _task(small_digits)
    train(straight, cfg, tmp_path / "a", torch.device("cpu"), progress=False)

    torch.manual_seed(0)
    task = _task(small_digits)
    calls, loss_of = [0], task.training_loss

    def interrupted_at_5th(steps):
        calls[0] += 1
        if calls[0] == 5:
            if stop == "sigterm":  # `kill PID`: the trainer's handler raises KeyboardInterrupt
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
                raise AssertionError("SIGTERM did not stop training")
            raise KeyboardInterrupt
        return loss_of(steps)

    task.training_loss = interrupted_at_5th
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        train(task, cfg, tmp_path / "b", torch.device("cpu"), progress=False)
    assert signal.getsignal(signal.SIGTERM) is handler
    resumed = _task(small_digits)
    train(resumed, cfg, tmp_path / "b", torch.device("cpu"), resume=True, progress=False)
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").open()]
    assert steps == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("loss", ["l2", "ce"])
def test_tiny_training_lowers_the_loss(tmp_path, small_digits, loss):
    x, y = small_digits
    keep = y < 2  # noughts and ones: a task a tiny rule learns in a hundred iterations
    torch.manual_seed(1)
    cfg = ms.Config(batch_size=8, pool_size=32, perception_dim=24, hidden=(24,), loss=loss,
                    fresh_frac=1.0, mutate_frac=0.0)
    task = ms.SelfClassifyTask(cfg, x[keep], y[keep], torch.device("cpu"))
    tcfg = TrainConfig(iterations=120, steps_min=8, steps_max=8, lr=1e-2, checkpoint_every=1000,
                       log_every=1, lr_milestones=())
    train(task, tcfg, tmp_path, torch.device("cpu"), progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").open()]
    first, last = losses[0], sum(losses[-20:]) / 20  # losses[0]: the untrained rule
    assert last < 0.7 * first, (first, last)


def test_tiny_training_with_pool_and_mutation_lowers_the_loss(tmp_path, small_digits):
    """The paper's recipe (a quarter fresh digits, a quarter mutated, the rest continued from the
    pool) also lowers the L2 loss: 116 -> 42 over 150 iterations here (seeds 0, 2, 3: 0.74x,
    0.34x, 0.33x). The loss also counts pool states grown by the untrained rule, so it falls
    more slowly than with fresh batches only, and the bound is 0.8x."""
    x, y = small_digits
    keep = y < 2
    torch.manual_seed(1)
    cfg = ms.Config(batch_size=8, pool_size=32, perception_dim=24, hidden=(24,), loss="l2")
    assert (cfg.fresh_frac, cfg.mutate_frac) == (0.25, 0.25)
    task = ms.SelfClassifyTask(cfg, x[keep], y[keep], torch.device("cpu"))
    tcfg = TrainConfig(iterations=150, steps_min=8, steps_max=8, lr=3e-3, checkpoint_every=1000,
                       log_every=1, lr_milestones=())
    train(task, tcfg, tmp_path, torch.device("cpu"), progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").open()]
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.8 * first, (first, last)


def test_divergence_is_reported(tmp_path, small_digits):
    task = _task(small_digits)
    with torch.no_grad():
        task.model.perception.weight.fill_(float("nan"))
    cfg = TrainConfig(iterations=3, steps_min=2, steps_max=2)
    with pytest.raises(TrainingDiverged, match="at iterations 1-3 .loss nan at the last.*no checkpoint was written"):
        train(task, cfg, tmp_path, torch.device("cpu"), progress=False)


def test_tensorboard_and_sobel_perception(tmp_path, small_digits):
    task = _task(small_digits, perception="sobel")
    assert not any(p is task.model.perception.weight for p in task.model.parameters())
    train(task, TrainConfig(iterations=2, steps_min=2, steps_max=2), tmp_path,
          torch.device("cpu"), tensorboard=True, progress=False)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_with_other_settings_is_refused(tmp_path, small_digits):
    cfg = TrainConfig(iterations=2, steps_min=2, steps_max=2)
    train(_task(small_digits), cfg, tmp_path, torch.device("cpu"), progress=False)
    with pytest.raises(ValueError, match="other settings.*loss"):
        train(_task(small_digits, loss="ce"), TrainConfig(iterations=3, steps_min=2, steps_max=2),
              tmp_path, torch.device("cpu"), resume=True, progress=False)


def test_resume_of_a_state_saved_before_a_setting_existed_takes_its_default(tmp_path, small_digits):
    """A state written before Config.augment existed was trained without augmentation: it resumes
    with the default, and is refused with the new setting switched on."""
    cfg = TrainConfig(iterations=2, steps_min=2, steps_max=2)
    train(_task(small_digits), cfg, tmp_path, torch.device("cpu"), progress=False)
    path = tmp_path / "train_state.pt"
    st = load_state(path)
    del st["task_config"]["augment"]
    torch.save(st, path)
    more = TrainConfig(iterations=3, steps_min=2, steps_max=2)
    with pytest.raises(ValueError, match="other settings.*augment"):
        train(_task(small_digits, augment=True), more, tmp_path, torch.device("cpu"), resume=True, progress=False)
    train(_task(small_digits), more, tmp_path, torch.device("cpu"), resume=True, progress=False)
    assert load_state(path)["iteration"] == 3


def test_time_budget_ends_like_a_finished_run_and_resumes(tmp_path, small_digits):
    """--minutes: stop after the first iteration past the budget, with checkpoint and log."""
    cfg = TrainConfig(iterations=5, steps_min=2, steps_max=2, checkpoint_every=100, log_every=100,
                      minutes=1e-9)
    last = train(_task(small_digits), cfg, tmp_path, torch.device("cpu"), progress=False)
    _, meta = load_model_files(tmp_path / "model.safetensors")
    assert meta["iteration"] == 1 and meta["train"]["minutes"] == 1e-9
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").open()] == [1]
    assert "loss" in last
    train(_task(small_digits), TrainConfig(**{**cfg.__dict__, "minutes": 0.0}), tmp_path,
          torch.device("cpu"), resume=True, progress=False)
    assert load_model_files(tmp_path / "model.safetensors")[1]["iteration"] == 5
