"""train_state.pt is read with weights_only=True: genuine states load, planted code never runs."""

import pytest
import torch

from localrules.data.tabular import load_split
from localrules.tasks import metanca as mn
from localrules.tasks import mnist_selfclassify as ms
from localrules.tasks import restore as rs
from localrules.train.checkpoint import load_state
from localrules.train.loop import TrainConfig, train

RAN = []


def _run(what):
    RAN.append(what)


class Payload:
    def __reduce__(self):
        return (_run, ("payload ran",))


def _tasks(small_digits):
    x, y = small_digits
    imgs = torch.nn.functional.pad(torch.as_tensor(x[:60]).float() / 255, (6, 6, 6, 6))
    return {
        "mnist-selfclassify": ms.SelfClassifyTask(
            ms.Config(batch_size=4, pool_size=8, perception_dim=8, hidden=(8,)), x[:60], y[:60],
            torch.device("cpu")),
        "metanca": mn.MetaNCATask(mn.Config(dataset="iris", archs=((4, 8, 3),), samples=4, pool_size=8),
                                  load_split("iris"), torch.device("cpu")),
        "restore": rs.RestoreTask(rs.Config(batch_size=4, gate_hidden=8, gate_out=16, pool_size=8),
                                  imgs, torch.as_tensor(y[:60]), torch.device("cpu")),
    }


def test_every_tasks_genuine_state_loads_and_resumes(tmp_path, small_digits):
    for name, task in _tasks(small_digits).items():
        cfg = TrainConfig(iterations=1, steps_min=2, steps_max=2, lr_milestones=(1,))
        train(task, cfg, tmp_path / name, torch.device("cpu"), progress=False)
        assert load_state(tmp_path / name / "train_state.pt")["iteration"] == 1
        again = _tasks(small_digits)[name]
        train(again, TrainConfig(**{**cfg.__dict__, "iterations": 2}), tmp_path / name,
              torch.device("cpu"), resume=True, progress=False)
        assert load_state(tmp_path / name / "train_state.pt")["iteration"] == 2


def test_a_planted_payload_is_refused_and_never_runs(tmp_path, small_digits):
    task = _tasks(small_digits)["mnist-selfclassify"]
    cfg = TrainConfig(iterations=1, steps_min=2, steps_max=2)
    train(task, cfg, tmp_path, torch.device("cpu"), progress=False)
    state = torch.load(tmp_path / "train_state.pt", weights_only=True)
    state["task"]["extra"] = Payload()
    torch.save(state, tmp_path / "train_state.pt")
    with pytest.raises(ValueError, match="not written by localrules; refusing"):
        train(_tasks(small_digits)["mnist-selfclassify"], TrainConfig(iterations=2, steps_min=2, steps_max=2),
              tmp_path, torch.device("cpu"), resume=True, progress=False)
    assert RAN == []
    torch.load(tmp_path / "train_state.pt", weights_only=False)  # the file did hold a live payload
    assert RAN == ["payload ran"]


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 torn", b"not a checkpoint"])
def test_empty_or_damaged_state_is_one_clear_error(tmp_path, content):
    (tmp_path / "train_state.pt").write_bytes(content)
    with pytest.raises(ValueError, match="train_state.pt is empty or damaged"):
        load_state(tmp_path / "train_state.pt")
