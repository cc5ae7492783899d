import json

import pytest
import torch

from localrules.core.weightgraph import Block, DenseLayers, WeightGraph
from localrules.data.tabular import load_split
from localrules.tasks import metanca as mn
from localrules.train.loop import TrainConfig, train


def test_task_forward_matches_torch_mlp():
    topo = DenseLayers([4, 5, 3])
    cfg = mn.Config()
    state = mn.init_networks(topo, 2, cfg)
    x = torch.randn(7, 4)
    W0, W1 = topo.split(state[..., :1])
    s = 1
    h = torch.relu(x @ W0[s, :, :4, 0].T + W0[s, :, 4, 0])
    ref = h @ W1[s, :, :5, 0].T + W1[s, :, 5, 0]
    torch.testing.assert_close(mn.task_forward(topo, state, x, "relu")[s], ref)


def test_task_forward_on_a_dag():
    g = WeightGraph([3, 2, 2], [Block(0, 1), Block(0, 2), Block(1, 2)])
    state = mn.init_networks(g, 1, mn.Config())
    x = torch.randn(5, 3)
    A, S, B = [m[0, ..., 0] for m in g.split(state[..., :1])]
    h = torch.relu(x @ A[:, :3].T + A[:, 3])
    ref = x @ S.T + h @ B[:, :2].T + B[:, 2]
    torch.testing.assert_close(mn.task_forward(g, state, x, "relu")[0], ref)


def test_dense_and_graph_engines_step_equal():
    cfg = mn.Config()
    rule = mn.build_rule(cfg)
    torch.nn.init.normal_(rule.rule.mlp[-1].weight, std=0.1)
    d, g = DenseLayers([4, 6, 3]), WeightGraph([4, 6, 3])
    state = mn.init_networks(d, 3, cfg)
    fire = torch.rand(3, d.n_cells, 1) < 0.5
    a = rule.step(d, state[..., :0], state, None, fire=fire)
    b = rule.step(g, state[..., :0], state, None, fire=fire)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, state)
    with torch.no_grad():  # inference: the dense path projects instead of building the perception
        torch.testing.assert_close(rule.step(d, state[..., :0], state, None, fire=fire), b)


def test_zero_out_networks_zeroes_a_layer_and_a_fraction():
    topo = DenseLayers([30, 40, 20])
    state = mn.init_networks(topo, 4, mn.Config())
    out = mn.zero_out_networks(topo, state, 0.3)
    assert torch.equal(out[..., 1:], state[..., 1:])  # hidden states untouched
    for s in range(4):
        mats = topo.split(out[s : s + 1, :, :1])
        zero_frac = sorted(float((m == 0).float().mean()) for m in mats)
        assert zero_frac[-1] == 1.0 and 0.2 < zero_frac[0] < 0.4


def test_architecture_must_fit_the_data():
    with pytest.raises(ValueError, match="needs 4 inputs and 3 outputs"):
        mn.MetaNCATask(mn.Config(archs=((5, 8, 3),)), load_split("iris"), torch.device("cpu"))


def test_tiny_meta_training_on_iris_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    cfg = mn.Config(dataset="iris", archs=((4, 8, 3),), samples=8, pool_size=32)
    task = mn.MetaNCATask(cfg, load_split("iris"), torch.device("cpu"))
    tcfg = TrainConfig(iterations=120, steps_min=5, steps_max=10, lr=1e-3, lr_milestones=(),
                       log_every=1, checkpoint_every=1000)
    train(task, tcfg, tmp_path, torch.device("cpu"), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    first = sum(r["loss"] for r in rows[:10]) / 10
    last = sum(r["loss"] for r in rows[-20:]) / 20
    assert last < 0.85 * first, (first, last)
    model, loaded_cfg, _ = mn.load(tmp_path / "model.safetensors")
    assert loaded_cfg == cfg


def test_neuron_signals_by_hand():
    topo = DenseLayers([3, 2])
    cfg = mn.Config()
    state = mn.init_networks(topo, 1, cfg)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    sig = mn.neuron_signals(topo, state, x, y, "relu")
    W = topo.split(state[..., :1])[0][0, :, :, 0]  # (2, 4): [W | b]
    z = (x @ W[:, :3].T + W[:, 3]).requires_grad_()
    torch.nn.functional.cross_entropy(z, y).backward()
    torch.testing.assert_close(sig[0, :3, 0], torch.tanh(x.mean(0)))  # inputs: activation x, no error
    assert torch.all(sig[0, :3, 1] == 0)
    torch.testing.assert_close(sig[0, 3:5, 0], torch.tanh(z.detach().mean(0)))
    torch.testing.assert_close(sig[0, 3:5, 1], torch.tanh(10 * z.grad.mean(0)))
    assert sig[0, 5, 0] == torch.tanh(torch.tensor(1.0)) and sig[0, 5, 1] == 0  # the bias neuron


def test_data_conditioned_variant_trains_on_iris(tmp_path):
    torch.manual_seed(0)
    cfg = mn.Config(dataset="iris", archs=((4, 8, 3),), samples=8, pool_size=32, data_conditioned=True)
    task = mn.MetaNCATask(cfg, load_split("iris"), torch.device("cpu"))
    assert task.model.rule.mlp[0].in_features == 3 * cfg.channels + 4
    assert task.model.rule.code.in_features == 3 * cfg.pos_dim
    tcfg = TrainConfig(iterations=60, steps_min=5, steps_max=8, lr=1e-3, lr_milestones=(),
                       log_every=1, checkpoint_every=1000)
    train(task, tcfg, tmp_path, torch.device("cpu"), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert sum(r["loss"] for r in rows[-10:]) / 10 < sum(r["loss"] for r in rows[:5]) / 5


def test_the_rule_reads_each_cells_fixed_positional_code():
    cfg = mn.Config()
    rule = mn.build_rule(cfg)
    torch.nn.init.normal_(rule.rule.mlp[-1].weight, std=0.1)
    topo = DenseLayers([6, 5, 3])
    state = torch.zeros(2, topo.n_cells, cfg.channels)  # every cell in the same state
    new = rule.step(topo, state[..., :0], state, None, fire=torch.ones(2, topo.n_cells, 1, dtype=torch.bool))
    assert new.shape == state.shape
    assert len(torch.unique(new[0, :, 0])) > topo.n_cells // 2  # only the code tells the cells apart
    torch.testing.assert_close(new[0], new[1])


def test_checkpoints_without_the_new_keys_load_with_the_index_code():
    # the shipped rule's config predates hidden_code / arch_range: it keeps the shared index code
    rule, cfg, _ = mn.load(mn.PRETRAINED_PATH)
    assert cfg.hidden_code == "index" and cfg.arch_range == () and cfg.hidden_span == 0
    topo = DenseLayers([784, 12, 10, 10])
    assert mn.new_positions(topo, 3, cfg) is None and mn.coded(topo, cfg, None) is topo
    state = mn.init_networks(topo, 2, cfg)
    torch.manual_seed(1)  # the same fire masks
    a, _ = mn.grow(rule, mn.coded(topo, cfg, None), state, 3)
    torch.manual_seed(1)
    b, _ = mn.grow(rule, topo, state, 3)  # the path before issue 17
    torch.testing.assert_close(a, b)


def test_random_hidden_code_per_network_in_the_rule_step():
    cfg = mn.Config(hidden_code="random", hidden_span=100)
    rule = mn.build_rule(cfg)
    torch.nn.init.normal_(rule.rule.mlp[-1].weight, std=0.1)
    topo = DenseLayers([6, 5, 3])
    pos = mn.new_positions(topo, 2, cfg)
    state = torch.zeros(2, topo.n_cells, cfg.channels)  # both networks in the same state
    fire = torch.ones(2, topo.n_cells, 1, dtype=torch.bool)
    new = rule.step(mn.coded(topo, cfg, pos), state[..., :0], state, None, fire=fire)
    assert not torch.allclose(new[0], new[1])  # their hidden neurons sit at other positions
    same = rule.step(mn.coded(topo, cfg, pos[[0, 0]]), state[..., :0], state, None, fire=fire)
    torch.testing.assert_close(same[0], same[1])
    with torch.no_grad():  # inference (projected perception) equals training
        torch.testing.assert_close(rule.step(mn.coded(topo, cfg, pos), state[..., :0], state, None, fire=fire), new)


def test_random_architectures_with_the_random_code_train_and_resume(tmp_path):
    torch.manual_seed(0)
    cfg = mn.Config(dataset="iris", archs=((4, 8, 3), (4, 8, 8, 3)), samples=8, pool_size=16,
                    hidden_code="random", arch_range=(3, 20), arch_pools=2, arch_redraw=0.3)
    task = mn.MetaNCATask(cfg, load_split("iris"), torch.device("cpu"))
    assert len(task.pools) == 2
    for p in task.pools.values():
        assert set(p.slots) == {"state", "pos"}
    tcfg = TrainConfig(iterations=80, steps_min=3, steps_max=6, lr=1e-3, lr_milestones=(),
                       log_every=1, checkpoint_every=1000)
    train(task, tcfg, tmp_path, torch.device("cpu"), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert sum(r["loss"] for r in rows[-10:]) / 10 < sum(r["loss"] for r in rows[:5]) / 5
    drawn = set(task.pools)
    assert all(3 <= w <= 20 for a in drawn for w in a[1:-1])
    assert not drawn <= set(cfg.archs)  # widths come from the range, not the --arch list
    again = mn.MetaNCATask(cfg, load_split("iris"), torch.device("cpu"))
    train(again, TrainConfig(iterations=81, steps_min=3, steps_max=6, lr_milestones=(), checkpoint_every=1000),
          tmp_path, torch.device("cpu"), resume=True, progress=False)
    assert len(again.pools) == 2 and set(again.pools) & drawn  # resumed with the saved random architectures
    _, loaded, _ = mn.load(tmp_path / "model.safetensors")
    assert loaded == cfg


def test_random_architectures_without_pooling_change_every_iteration():
    torch.manual_seed(0)
    cfg = mn.Config(dataset="iris", archs=((4, 8, 3),), samples=4, pool_size=0, arch_range=(2, 30))
    task = mn.MetaNCATask(cfg, load_split("iris"), torch.device("cpu"))
    archs = {task.training_batch()[0] for _ in range(20)}
    assert len(archs) > 10 and all(a[0] == 4 and a[-1] == 3 and 2 <= a[1] <= 30 for a in archs)


@pytest.mark.parametrize("hidden_code", ["index", "random"])
def test_rollout_with_the_code_projected_once_equals_the_nca_rollout(hidden_code):
    cfg = mn.Config(hidden_code=hidden_code)
    rule = mn.build_rule(cfg)
    torch.nn.init.normal_(rule.rule.mlp[-1].weight, std=0.1)
    topo = DenseLayers([5, 6, 4, 3])
    state = mn.init_networks(topo, 3, cfg)
    grown = mn.coded(topo, cfg, mn.new_positions(topo, 3, cfg))
    torch.manual_seed(2)
    a = mn.rollout(rule, grown, state, 4)
    torch.manual_seed(2)
    b = rule.rollout(grown, state[..., :0], state, None, 4)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, state)


def test_accuracy_stability_by_hand():
    from localrules.studies.metanca_studies import accuracy_stability

    acc = torch.tensor([0.5, 0.8, 0.9, 0.89, 0.885, 0.87, 0.89])
    r = accuracy_stability(acc)
    assert r["updates_to_best"] == 3 and r["best_accuracy"] == pytest.approx(0.9)
    assert r["updates_within_band"] == 2  # 0.89, 0.885; then 0.87 < 0.88
    assert r["entries_in_band"] == 4 and r["final_accuracy"] == pytest.approx(0.89)
