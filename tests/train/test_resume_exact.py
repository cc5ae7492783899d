"""Exact resume for every task (issue 23, promise 1): a run stopped at a checkpoint and resumed
ends bit-equal to a straight run, in the model, the Adam state, the whole pool (MetaNCA's hidden
channels, restore's lattice states and clean digits, self-classify's pixels and labels) and the
logged losses; self-classify also when the resumed half runs on another number of threads, there
to float rounding."""

import json

import pytest
import torch

from localrules.data.tabular import load_split
from localrules.tasks import metanca as mn
from localrules.tasks import mnist_selfclassify as ms
from localrules.tasks import restore as rs
from localrules.train.checkpoint import load_state
from localrules.train.loop import TrainConfig, train

CPU = torch.device("cpu")
LOGGED = ("step", "loss", "lr")  # and the task's own metrics; not the timings


def _task(name, small_digits):
    x, y = small_digits
    if name == "mnist-selfclassify":  # the default recipe: fresh, mutated and continued pool entries
        cfg = ms.Config(batch_size=8, pool_size=16, perception_dim=16, hidden=(16,))
        return ms.SelfClassifyTask(cfg, x[:100], y[:100], CPU)
    if name == "metanca":
        cfg = mn.Config(dataset="iris", archs=((4, 8, 3), (4, 6, 5, 3)), samples=4, pool_size=8, zero_out_prob=0.25)
        return mn.MetaNCATask(cfg, load_split("iris"), CPU)
    imgs = torch.nn.functional.pad(torch.as_tensor(x[:60]).float() / 255, (6, 6, 6, 6))
    cfg = rs.Config(batch_size=4, gate_hidden=8, gate_out=16, pool_size=8)
    return rs.RestoreTask(cfg, imgs, torch.as_tensor(y[:60]), CPU)


def _pool(name, task):
    """Every pool tensor of the task, by name."""
    if name == "metanca":
        return {f"{a}/{k}": v for a, p in task.pools.items() for k, v in p.slots.items()}
    return dict(task.pool.slots)


def _logged(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    return [{k: v for k, v in r.items() if k != "sec_per_iter"} for r in rows]


def _assert_same_state(a, b, path=""):
    """Nested dicts / lists of tensors and numbers, bit-equal."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same_state(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{path}/{i}")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), path
    else:
        assert a == b, path


def _straight_and_resumed(name, small_digits, tmp_path, threads=(None, None)):
    """(straight task, resumed task) after 4 iterations; the resumed run stops after 2 (a checkpoint)
    and continues in fresh objects, with torch's threads set to ``threads`` in its two halves."""
    cfg = TrainConfig(iterations=4, steps_min=2, steps_max=4, checkpoint_every=2, checkpoint_minutes=0,
                      log_every=1, lr_milestones=(3,))
    before = torch.get_num_threads()
    try:
        torch.manual_seed(0)
        straight = _task(name, small_digits)
        train(straight, cfg, tmp_path / "a", CPU, progress=False)
        torch.manual_seed(0)
        if threads[0]:
            torch.set_num_threads(threads[0])
        first = _task(name, small_digits)
        train(first, TrainConfig(**{**cfg.__dict__, "iterations": 2}), tmp_path / "b", CPU, progress=False)
        if threads[1]:
            torch.set_num_threads(threads[1])
        torch.manual_seed(123)  # the resumed run takes its random state from the checkpoint, not from here
        resumed = _task(name, small_digits)
        train(resumed, cfg, tmp_path / "b", CPU, resume=True, progress=False)
    finally:
        torch.set_num_threads(before)
    return straight, resumed


@pytest.mark.parametrize("name", ["mnist-selfclassify", "metanca", "restore"])
def test_resume_is_exact_in_model_optimizer_pool_and_log(name, small_digits, tmp_path):
    straight, resumed = _straight_and_resumed(name, small_digits, tmp_path)
    _assert_same_state(straight.model.state_dict(), resumed.model.state_dict(), "model")
    a, b = load_state(tmp_path / "a" / "train_state.pt"), load_state(tmp_path / "b" / "train_state.pt")
    assert a["iteration"] == b["iteration"] == 4
    for part in ("model", "optimizer", "scheduler", "task", "rng"):
        _assert_same_state(a[part], b[part], part)
    assert a["optimizer"]["state"], "Adam's moments are saved"
    pa, pb = _pool(name, straight), _pool(name, resumed)
    assert pa and pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    if name == "metanca":  # the hidden channels of the pooled weights moved during training
        assert any(not torch.equal(v[..., 1:], _pool(name, _task(name, small_digits))[k][..., 1:])
                   for k, v in pa.items() if k.endswith("state"))
    if name == "mnist-selfclassify":
        assert {"pixels", "label", "state"} <= pa.keys()
    la, lb = _logged(tmp_path / "a"), _logged(tmp_path / "b")
    assert [r["step"] for r in lb] == [1, 2, 3, 4] and la == lb  # losses, lr, task metrics


@pytest.mark.parametrize("threads", [(1, 4), (4, 1)])
def test_selfclassify_resumes_on_another_number_of_threads_to_float_rounding(small_digits, tmp_path, threads):
    """The shipped runs were resumed with another --threads. Float sums split across threads round
    differently (how depends on the CPU: 1 -> 2 threads is bit-equal on some, not on others; 1 -> 4
    differs here by 5e-8 relative), so the claim is float rounding, not bits: after 4 iterations the
    weights agree to rtol 1e-5 with a straight run, the pool's labels and pixels exactly. Catches a
    resume that loses state (Adam moments, RNG, pool): that differs by far more than rounding."""
    straight, resumed = _straight_and_resumed("mnist-selfclassify", small_digits, tmp_path, threads=threads)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-7, msg=k)
    for k, v in straight.pool.slots.items():
        if v.is_floating_point():
            torch.testing.assert_close(resumed.pool.slots[k], v, rtol=1e-5, atol=1e-6, msg=k)
        else:
            assert torch.equal(v, resumed.pool.slots[k]), k
    la, lb = _logged(tmp_path / "a"), _logged(tmp_path / "b")
    assert [r["step"] for r in la] == [r["step"] for r in lb] == [1, 2, 3, 4]
    assert [r["loss"] for r in lb] == pytest.approx([r["loss"] for r in la], rel=1e-5)
