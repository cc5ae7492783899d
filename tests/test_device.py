"""Device tests: what `scripts/gpu-job` checks on the GPU before it trains anything, beside the
engine equalities in tests/core/test_topology.py (every test marked ``device``).

They run on $LOCALRULES_TEST_DEVICE (the ``device`` fixture: cpu by default, so every CI run keeps
them true; cuda in the GPU job). CUDA is not bit-deterministic (atomic adds in scatter and
index_add backward), so results are compared within float32 tolerances, not bit for bit.
"""

import json

import pytest
import torch

from localrules.core.weightgraph import DenseLayers, WeightGraph
from localrules.train.checkpoint import load_model_files
from localrules.train.loop import TrainConfig, train

pytestmark = pytest.mark.device
TOL = dict(rtol=1e-4, atol=1e-5)


def test_metanca_dense_and_graph_means_agree(device):
    for sizes in ([4, 3, 2], [7, 5, 6, 3]):
        dense, graph = DenseLayers(sizes), WeightGraph(sizes)
        x = torch.randn(3, dense.n_cells, 4, device=device)
        torch.testing.assert_close(dense.perceive(x), graph.perceive(x), **TOL)


def _selfclassify(device, small_digits):
    from localrules.tasks import mnist_selfclassify as ms

    x, y = small_digits
    keep = y < 2
    cfg = ms.Config(batch_size=8, pool_size=32, perception_dim=24, hidden=(24,), fresh_frac=1.0, mutate_frac=0.0)
    return ms.SelfClassifyTask(cfg, x[keep], y[keep], device), dict(steps_min=8, steps_max=8, lr=1e-2, iterations=60)


def _restore(device, small_digits):
    from localrules.tasks import restore as rs

    x, y = small_digits
    imgs = torch.nn.functional.pad(torch.as_tensor(x[:300]).float() / 255, (6, 6, 6, 6))  # 28x28
    task = rs.RestoreTask(rs.Config(model="hybrid", batch_size=16, gate_hidden=64), imgs,
                          torch.as_tensor(y[:300]), device)
    return task, dict(steps_min=4, steps_max=4, lr=3e-3, normalize_grads=False, iterations=40)


def _metanca_variant(**kw):
    """MetaNCA on iris, plain or with one of its perception options (each adds tensors that must
    follow the device)."""

    def make(device, small_digits):
        from localrules.data.tabular import load_split
        from localrules.tasks import metanca as mn

        cfg = mn.Config(dataset="iris", archs=((4, 8, 3),), samples=8, pool_size=32, **kw)
        return mn.MetaNCATask(cfg, load_split("iris"), device), dict(steps_min=5, steps_max=10, lr=1e-3, iterations=120)

    return make


SYSTEMS = {"mnist-selfclassify": _selfclassify, "metanca": _metanca_variant(), "restore": _restore,
           "metanca-data-conditioned": _metanca_variant(data_conditioned=True),
           "metanca-relative-code": _metanca_variant(hidden_code="relative", hidden_span=10.0),
           "metanca-random-code": _metanca_variant(hidden_code="random", hidden_span=10.0)}


@pytest.mark.parametrize("system", SYSTEMS)
def test_training_lowers_the_loss(system, device, small_digits, tmp_path):
    torch.manual_seed(0)
    task, opts = SYSTEMS[system](device, small_digits)
    assert all(p.device.type == device.type for p in task.model.parameters())
    train(task, TrainConfig(lr_milestones=(), log_every=1, checkpoint_every=1000, **opts),
          tmp_path, device, progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").open()]
    first, last = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    assert last < 0.85 * first, (system, first, last)


@pytest.mark.parametrize("system", SYSTEMS)
def test_checkpoint_round_trip_and_resume(system, device, small_digits, tmp_path):
    """2 + 2 iterations with a resume in between end where 4 straight iterations end."""
    opts = dict(steps_min=2, steps_max=3, log_every=1, checkpoint_every=2, lr_milestones=(3,))
    runs = []
    for name, parts in (("straight", [4]), ("resumed", [2, 4])):
        torch.manual_seed(0)
        for i, it in enumerate(parts):
            task, o = SYSTEMS[system](device, small_digits)
            train(task, TrainConfig(**{**o, **opts, "iterations": it}), tmp_path / name, device,
                  resume=i > 0, progress=False)
        runs.append(task.model)
    for (k, a), b in zip(runs[0].state_dict().items(), runs[1].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=f"{system}: {k}")
    weights, meta = load_model_files(tmp_path / "resumed" / "model.safetensors")
    assert meta["iteration"] == 4
    for k, v in runs[1].state_dict().items():
        assert torch.equal(weights[k], v.cpu()), k
