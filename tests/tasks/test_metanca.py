import json
from dataclasses import asdict, replace

import pytest
import torch
import torch.nn.functional as F

from localrules.core import NCA
from localrules.core.weightgraph import Block, DenseLayers, WeightGraph
from localrules.data.tabular import load_split
from localrules.core.data_signals import neuron_signals
from localrules.tasks import metanca as mn
from localrules.train.loop import TrainConfig, train
from tests.tasks.stepping import assert_grow_is_stepping


def _moving_rule(cfg: mn.Config) -> NCA:
    """The rule of ``cfg`` with its zero-initialised last layer drawn N(0, 0.1^2), so it moves states."""
    rule = mn.build_rule(cfg)
    torch.nn.init.normal_(rule.rule.mlp[-1].weight, std=0.1)
    return rule


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
    rule = _moving_rule(cfg)
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
    sig = neuron_signals(topo, state, x, y, "relu")
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
    untrained = mn.build_rule(cfg).eval()
    untrained.load_state_dict(task.model.state_dict())  # zero last layer: it leaves networks as drawn
    signals = slice(3 * cfg.channels, None)
    w0 = task.model.rule.mlp[0].weight.detach()[:, signals].clone()
    train(task, tcfg, tmp_path, torch.device("cpu"), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert sum(r["loss"] for r in rows[-10:]) / 10 < 0.8 * sum(r["loss"] for r in rows[:5]) / 5
    # a margin noise cannot pass: the same 32 initial networks grown 8 updates by the trained rule
    # reach a far lower training loss (0.64 vs 1.23) and a higher test accuracy (0.57 vs 0.34)
    from localrules.studies.metanca_studies import grow_accuracy, loss_curve

    rule, data, arch = task.model.eval(), load_split("iris"), (4, 8, 3)
    trained_loss, drawn_loss = loss_curve(rule, cfg, arch, data, 32, 8)[-1], loss_curve(untrained, cfg, arch, data, 32, 8)[-1]
    assert trained_loss < 0.75 * drawn_loss, (trained_loss, drawn_loss)
    trained_acc, drawn_acc = (grow_accuracy(r, cfg, arch, data, 32, 8).mean() for r in (rule, untrained))
    assert trained_acc > drawn_acc + 0.1 and trained_acc > 1 / 3 + 0.1, (trained_acc, drawn_acc)
    # the rule reads the data: the weights on the activation / error inputs were trained
    assert (task.model.rule.mlp[0].weight.detach()[:, signals] - w0).abs().mean(0).min() > 1e-3


def test_a_plain_rule_starts_its_data_conditioned_variant_with_the_same_updates():
    cfg = mn.Config(dataset="iris", archs=((4, 8, 3),))
    plain = _moving_rule(cfg)
    torch.nn.init.normal_(plain.rule.mlp[0].bias)
    dc = mn.with_data_inputs(plain, cfg)
    assert dc.rule.mlp[0].in_features == 3 * cfg.channels + 4
    p, code = torch.randn(2, 30, 3 * cfg.channels), torch.randn(30, 3 * cfg.pos_dim)
    signals = torch.rand(2, 30, 4) * 2 - 1
    torch.testing.assert_close(dc.rule(torch.cat([p, signals], -1), code), plain.rule(p, code), rtol=0, atol=0)
    assert plain.rule.mlp[0].in_features == 3 * cfg.channels  # the plain rule is left as it was


@pytest.mark.parametrize("data_conditioned", [False, True])
def test_a_data_free_rule_reads_3c_inputs_and_grows_the_same_weights_on_other_data(data_conditioned):
    data = load_split("iris")
    other = replace(data, x_train=torch.randn_like(data.x_train), y_train=data.y_train.roll(7))
    cfg = mn.Config(dataset="iris", archs=((4, 8, 3),), samples=4, pool_size=8, data_conditioned=data_conditioned)
    width = 3 * cfg.channels + (4 if data_conditioned else 0)
    grown = []
    for d in (data, other):
        torch.manual_seed(0)
        task = mn.MetaNCATask(cfg, d, torch.device("cpu"))
        torch.nn.init.normal_(task.model.rule.mlp[-1].weight, std=0.1)  # a rule that changes the weights
        before = task.pools[(4, 8, 3)].slots["state"].clone()
        task.training_loss(4)
        grown.append(task.pools[(4, 8, 3)].slots["state"])
        assert not torch.equal(grown[-1], before)
        topo = task.topos[(4, 8, 3)]
        assert task.model.rule.mlp[0].in_features == width
        assert topo.perceive(before).shape == (8, topo.n_cells, width)
    if data_conditioned:  # the control: a rule that reads the data grows other weights on other data
        assert not torch.allclose(grown[0], grown[1])
    else:
        assert torch.equal(grown[0], grown[1])


def test_the_graph_engine_trains_like_the_dense_engine():
    """Task level: the same loss, rule gradients and committed pool states from both engines."""
    out = {}
    for engine in ("dense", "graph"):
        torch.manual_seed(0)
        cfg = mn.Config(dataset="iris", archs=((4, 6, 5, 3),), samples=4, pool_size=8, engine=engine)
        task = mn.MetaNCATask(cfg, load_split("iris"), torch.device("cpu"))
        assert type(task.topos[(4, 6, 5, 3)]) is (DenseLayers if engine == "dense" else WeightGraph)
        torch.nn.init.normal_(task.model.rule.mlp[-1].weight, std=0.1)
        torch.manual_seed(1)
        loss, _ = task.training_loss(3)
        loss.backward()
        out[engine] = loss.detach(), [p.grad for p in task.model.parameters()], task.pools[(4, 6, 5, 3)].slots["state"]
    (ld, gd, pd), (lg, gg, pg) = out["dense"], out["graph"]
    torch.testing.assert_close(lg, ld)
    torch.testing.assert_close(pg, pd)
    assert all(g.abs().sum() > 0 for g in gd)
    for a, b in zip(gg, gd):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_without_pooling_every_batch_is_new_networks(tmp_path):
    cfg = mn.Config(dataset="iris", archs=((4, 8, 3),), samples=4, pool_size=0)
    task = mn.MetaNCATask(cfg, load_split("iris"), torch.device("cpu"))
    assert task.pools == {} and task.extra_state() == {"pools": {}}
    topo = task.topos[(4, 8, 3)]
    for seed in (1, 2):
        torch.manual_seed(seed)
        arch, _, idx, state, pos = task.training_batch()
        torch.manual_seed(seed)
        torch.randint(1, (1,))  # the architecture draw
        assert arch == (4, 8, 3) and idx is None and pos is None
        assert torch.equal(state, mn.init_networks(topo, 4, cfg))  # fresh random networks
    torch.manual_seed(0)
    train(task, TrainConfig(iterations=3, steps_min=2, steps_max=3, lr_milestones=(), log_every=1),
          tmp_path, torch.device("cpu"), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["loss"] == r["loss"] for r in rows)
    assert task.pools == {}


def test_zero_out_prob_hits_that_share_of_each_batch():
    cfg = mn.Config(dataset="iris", archs=((4, 8, 3),), samples=4, pool_size=8, zero_out_prob=0.5)
    task = mn.MetaNCATask(cfg, load_split("iris"), torch.device("cpu"))
    topo, pool = task.topos[(4, 8, 3)], task.pools[(4, 8, 3)]
    for _ in range(3):
        before = pool.slots["state"].clone()
        _, _, idx, state, _ = task.training_batch()
        assert (before[..., 0] != 0).all()
        # sample 0: fresh (fresh_frac 0.25); 1: from the pool as it was; 2, 3: zeroed out
        assert torch.equal(state[1], before[idx[1]]) and (state[0, :, 0] != 0).all()
        for s in (2, 3):
            torch.testing.assert_close(state[s, :, 1:], before[idx[s], :, 1:], rtol=0, atol=0)  # hidden states kept
            w = state[s : s + 1, :, :1]
            kept = w[0, :, 0] != 0
            assert torch.equal(w[0, kept, 0], before[idx[s], kept, 0])  # others untouched
            zero_frac = sorted(float((m == 0).float().mean()) for m in topo.split(w))
            assert zero_frac[-1] == 1.0 and 0 < zero_frac[0] < 1  # a whole layer and some of the rest


def test_zeroout_recovery_numbers_by_hand(monkeypatch):
    """updates_to_within_0.02 and friends on a scripted accuracy curve (the rule's growth replaced)."""
    from localrules.studies.metanca_studies import zeroout_curve

    curves = [[0.5, 0.8, 0.9], [0.5, 0.87, 0.89, 0.95]]  # before the zero-out, after it

    def scripted(rule, topo, state, steps, *args, **kw):
        curve = curves.pop(0)
        assert steps == len(curve)
        return state, [torch.full((len(state),), a) for a in curve]

    monkeypatch.setattr(mn, "grow", scripted)
    cfg = mn.Config(dataset="iris", archs=((4, 8, 3),))
    z = zeroout_curve(mn.build_rule(cfg), cfg, (4, 8, 3), load_split("iris"), 4, 3, 4)
    at_zero = z["accuracy"][3]
    assert z["accuracy"] == pytest.approx([0.5, 0.8, 0.9, at_zero, 0.5, 0.87, 0.89, 0.95])
    assert z["accuracy_before"] == pytest.approx(0.9) and z["zero_out_at"] == 3
    assert z["updates_to_within_0.02"] == 3  # 0.9 - 0.87 > 0.02, 0.9 - 0.89 <= 0.02
    assert z["accuracy_best_after"] == pytest.approx(0.95) and z["accuracy_recovered"] == pytest.approx(0.95)
    assert z["accuracy_min_after"] == pytest.approx(min(at_zero, 0.5)) and z["recovered_within_0.02"] is True


def test_the_rule_reads_each_cells_fixed_positional_code():
    cfg = mn.Config()
    rule = _moving_rule(cfg)
    topo = DenseLayers([6, 5, 3])
    state = torch.zeros(2, topo.n_cells, cfg.channels)  # every cell in the same state
    new = rule.step(topo, state[..., :0], state, None, fire=torch.ones(2, topo.n_cells, 1, dtype=torch.bool))
    assert new.shape == state.shape
    assert len(torch.unique(new[0, :, 0])) > topo.n_cells // 2  # only the code tells the cells apart
    torch.testing.assert_close(new[0], new[1])


def test_checkpoints_without_the_new_keys_load_with_the_index_code_and_no_clip():
    # configs written before hidden_code / arch_range / hidden_clip keep the shared index code, unbounded h
    old = {k: v for k, v in asdict(mn.Config(archs=((784, 12, 10, 10),))).items()
           if k not in ("hidden_code", "hidden_span", "arch_range", "arch_pools", "arch_redraw", "hidden_clip")}
    cfg = mn.Config.from_dict(old)
    assert cfg.hidden_code == "index" and cfg.arch_range == () and cfg.hidden_span == 0 and cfg.hidden_clip == 0
    rule = _moving_rule(cfg)
    topo = DenseLayers([784, 12, 10, 10])
    assert mn.new_positions(topo, 3, cfg) is None and mn.coded(topo, cfg, None) is topo
    state = mn.init_networks(topo, 2, cfg)
    torch.manual_seed(1)  # the same fire masks
    a, _ = mn.grow(rule, mn.coded(topo, cfg, None), state, 3)
    torch.manual_seed(1)
    b, _ = mn.grow(rule, topo, state, 3)  # the path before issue 17
    torch.testing.assert_close(a, b)


def test_hidden_clip_bounds_the_hidden_state_and_not_the_weights():
    cfg = mn.Config(hidden_clip=0.5)
    rule = mn.build_rule(cfg)
    torch.nn.init.normal_(rule.rule.mlp[-1].weight, std=2.0)
    torch.nn.init.normal_(rule.rule.mlp[-1].bias, std=2.0)
    topo = DenseLayers([5, 6, 4, 3])
    state = mn.init_networks(topo, 3, cfg)
    torch.manual_seed(0)
    assert mn.hidden_clip(rule) == 0.5  # the rule's post hook
    clipped = rule.rollout(topo, None, state, None, 4)
    assert clipped[..., 1:].abs().max() <= 0.5 and clipped[..., :1].abs().max() > 0.5
    mn.set_hidden_clip(rule, 0.0)
    torch.manual_seed(0)
    free = rule.rollout(topo, None, state, None, 4)
    assert free[..., 1:].abs().max() > 0.5  # the bound is what kept them in
    with pytest.raises(ValueError, match="hidden_clip"):
        mn.Config(hidden_clip=-1.0).validate()


def test_random_hidden_code_per_network_in_the_rule_step():
    cfg = mn.Config(hidden_code="random", hidden_span=100)
    rule = _moving_rule(cfg)
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


def test_relative_code_is_shared_by_all_networks_and_needs_a_span():
    with pytest.raises(ValueError, match="hidden_span"):
        mn.Config(hidden_code="relative").validate()
    cfg = mn.Config(hidden_code="relative", hidden_span=100).validate()
    topo = DenseLayers([6, 5, 3])
    assert mn.new_positions(topo, 4, cfg) is None  # nothing to draw or keep in a pool
    code = mn.coded(topo, cfg, None).cell_code(3 * cfg.pos_dim)
    assert code.shape == (1, topo.n_cells, 3 * cfg.pos_dim)
    assert not torch.equal(code[0], topo.cell_code(3 * cfg.pos_dim))  # hidden neuron i sits at i * 100 / 5


def test_random_architectures_without_pooling_change_every_iteration():
    torch.manual_seed(0)
    cfg = mn.Config(dataset="iris", archs=((4, 8, 3),), samples=4, pool_size=0, arch_range=(2, 30))
    task = mn.MetaNCATask(cfg, load_split("iris"), torch.device("cpu"))
    archs = {task.training_batch()[0] for _ in range(20)}
    assert len(archs) > 10 and all(a[0] == 4 and a[-1] == 3 and 2 <= a[1] <= 30 for a in archs)


def test_log_uniform_widths_cover_every_factor_of_the_range_equally():
    # catches a log draw that leaves the range, favours wide layers like the uniform draw, or an
    # unknown draw that is accepted
    torch.manual_seed(0)
    cfg = mn.Config(dataset="mnist", archs=((784, 10, 10, 10),), arch_range=(5, 300), arch_draw="log").validate()
    w = torch.tensor([mn.random_arch(cfg)[1:3] for _ in range(4000)]).flatten().double()
    assert w.min() >= 5 and w.max() <= 300 and (w == 300).any() and (w == 5).any()
    share = lambda lo, hi: ((w >= lo) & (w < hi)).double().mean().item()  # noqa: E731
    # P(w in [a, b)) = ln(b / a) / ln(301 / 5): 5..10 and 50..100 about 0.169 each (uniform: 0.017 / 0.169)
    assert share(5, 10) == pytest.approx(0.169, abs=0.03) and share(50, 100) == pytest.approx(0.169, abs=0.03)
    uniform = mn.Config(dataset="mnist", archs=((784, 10, 10),), arch_range=(5, 300))
    assert uniform.arch_draw == "uniform"
    with pytest.raises(ValueError, match="arch_draw"):
        mn.Config(arch_draw="geometric").validate()


def test_shipped_rules_carry_their_hidden_clip_into_the_core_rollout():
    # catches a clip that lives outside NCA.rollout (the core's own rollout of a shipped rule
    # would then let h drift) or a checkpoint loaded without its bound
    for name in ("metanca-mnist", "metanca-mnist-dc", "metanca-mnist-relative"):
        rule, cfg, _ = mn.load(mn.PRETRAINED_PATH.parent / f"{name}.safetensors")
        assert cfg.hidden_clip > 0 and mn.hidden_clip(rule) == cfg.hidden_clip, name
        assert rule.sparse_fire and list(rule.state_dict()) == [k for k, _ in rule.named_parameters()]


@pytest.mark.parametrize("hidden_code", ["index", "random", "relative"])
@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_sparse_fire_rollout_equals_the_masked_rollout(hidden_code, clip):
    # catches a sparse update that adds deltas to the wrong cells, or mixes up per-network codes
    cfg = mn.Config(hidden_code=hidden_code, hidden_span=10.0 if hidden_code == "relative" else 0.0,
                    hidden_clip=clip)
    rule = _moving_rule(cfg)
    topo = DenseLayers([5, 6, 4, 3])
    state = mn.init_networks(topo, 3, cfg)
    grown = mn.coded(topo, cfg, mn.new_positions(topo, 3, cfg))
    torch.manual_seed(2)
    a = rule.rollout(grown, None, state, None, 4)
    rule.sparse_fire = False
    torch.manual_seed(2)
    b = rule.rollout(grown, None, state, None, 4)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, state)
    if clip:
        assert a[..., 1:].abs().max() <= clip


@pytest.mark.parametrize("fire_rate", [0.5, 1.0])
def test_rollout_of_firing_cells_only_gives_the_masked_update_gradients(fire_rate):
    cfg = mn.Config(fire_rate=fire_rate, hidden_clip=1.0)
    rule = _moving_rule(cfg)
    topo = DenseLayers([5, 6, 4, 3])
    state = mn.init_networks(topo, 3, cfg)
    x, y = torch.randn(7, 5), torch.randint(3, (7,))
    grads = []
    for sparse in (True, False):
        rule.zero_grad()
        rule.sparse_fire = sparse
        torch.manual_seed(4)
        end = rule.rollout(topo, None, state, None, 3)
        F.cross_entropy(mn.task_forward(topo, end, x, "tanh").flatten(0, 1), y.repeat(3)).backward()
        grads.append([p.grad.clone() for p in rule.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    assert any(g.abs().sum() > 0 for g in grads[0])


@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_grow_equals_stepping_the_nca_one_step_at_a_time(clip):
    cfg = mn.Config(hidden_clip=clip)
    rule = _moving_rule(cfg)
    topo = DenseLayers([5, 6, 4, 3])
    assert_grow_is_stepping(rule, topo, mn.init_networks(topo, 3, cfg), 4)


def test_accuracy_stability_by_hand():
    from localrules.studies.metanca_studies import accuracy_stability

    acc = torch.tensor([0.5, 0.8, 0.9, 0.89, 0.885, 0.87, 0.89])
    r = accuracy_stability(acc)
    assert r["updates_to_best"] == 3 and r["best_accuracy"] == pytest.approx(0.9)
    assert r["updates_within_band"] == 2  # 0.89, 0.885; then 0.87 < 0.88
    assert r["entries_in_band"] == 4 and r["final_accuracy"] == pytest.approx(0.89)
