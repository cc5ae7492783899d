"""MetaNCA meta-training as behaviour (issue 36): the initial task networks' statistics, the
meta-loss of an iteration against a hand computation on the grown networks, the pool commit,
fresh networks and zero-out in a batch. Recipe: the MetaNCA abstract (Barot; sample pooling,
zero-out of a whole layer + 30 % of the rest) and tasks/metanca.py's docstring (weights
N(0, 1/fan_in), hidden states N(0, h_init_std^2), cross-entropy of the grown networks).
"""

import pytest
import torch
import torch.nn.functional as F

from localrules.core.weightgraph import DenseLayers
from localrules.data.tabular import Split
from localrules.tasks import metanca as mn


# catches: initial weights not scaled by 1 / sqrt(fan_in), hidden states not N(0, h_init_std^2)
@pytest.mark.parametrize("h_std", [1.0, 0.5])
def test_new_networks_have_fan_in_scaled_weights_and_unit_hidden_states(h_std):
    torch.manual_seed(0)
    topo = DenseLayers([64, 16, 4])
    cfg = mn.Config(h_init_std=h_std)
    state = mn.init_networks(topo, 300, cfg)
    assert state.shape == (300, topo.n_cells, 1 + cfg.hidden)
    for m, fan_in in zip(topo.split(state[..., :1]), (64, 16)):
        w = m[..., 0]
        assert w.mean().abs() < 0.01
        assert w.std().item() == pytest.approx(fan_in ** -0.5, rel=0.03)
    h = state[..., 1:]
    assert h.mean().abs() < 0.01 and h.std().item() == pytest.approx(h_std, rel=0.02)
    torch.manual_seed(1)
    assert mn.Config().h_init_std == 1.0 and mn.init_networks(topo, 300, mn.Config())[..., 1:].std().item() == \
        pytest.approx(1.0, rel=0.02)


def _one_example_split():
    """Iris-shaped data with a single training example, so every data batch is that example."""
    g = torch.Generator().manual_seed(0)
    return Split(torch.randn(1, 4, generator=g), torch.tensor([2]), torch.randn(3, 4, generator=g),
                 torch.tensor([0, 1, 2]), 0)


def _task(**kw):
    cfg = mn.Config(archs=((4, 6, 3),), samples=8, pool_size=16, rule_hidden=(16,), **kw)
    torch.manual_seed(0)
    task = mn.MetaNCATask(cfg, _one_example_split(), torch.device("cpu"))
    torch.nn.init.normal_(task.model.rule.mlp[-1].weight, std=0.2)  # a rule that moves states
    return task


def _batch_and_loss(task, steps, seed=3):
    pool = task.pools[(4, 6, 3)]
    before = pool.slots["state"].clone()
    torch.manual_seed(seed)
    _, topo, idx, start, _ = task.training_batch()
    torch.manual_seed(seed)
    loss, info = task.training_loss(steps)
    return topo, idx, start, before, loss, info


# catches: a meta-loss that is not the mean cross-entropy of the grown (final) networks, a pool
# commit skipped or committing the start states, pool entries outside the batch overwritten
def test_meta_loss_is_the_cross_entropy_of_the_committed_grown_networks():
    task = _task()
    topo, idx, start, before, loss, info = _batch_and_loss(task, steps=3)
    pool = task.pools[(4, 6, 3)].slots["state"]
    final = pool[idx]
    assert not torch.allclose(final, start)  # the rule grew them
    logits = mn.task_forward(topo, final, task.x[:1], task.cfg.activation)  # (S, 1, 3)
    want = F.cross_entropy(logits[:, 0], task.y[:1].repeat(len(final)))
    torch.testing.assert_close(loss.detach(), want, rtol=1e-5, atol=1e-6)
    assert info["task_accuracy"] == pytest.approx((logits[:, 0].argmax(-1) == 2).float().mean().item())
    rest = torch.ones(16, dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(pool[rest], before[rest])
    # the next batch continues from the grown networks
    torch.manual_seed(4)
    _, _, idx2, start2, _ = task.training_batch()
    for r in range(2, 8):  # rows 0, 1 are fresh (fresh_frac 0.25 of 8)
        assert torch.equal(start2[r], pool[idx2[r]])


# catches: fresh networks not drawn into a quarter of each pooled batch
def test_a_quarter_of_each_pooled_batch_is_new_networks():
    task = _task()
    pool = task.pools[(4, 6, 3)].slots["state"]
    pool.fill_(7.0)  # nothing a new network would hold
    torch.manual_seed(5)
    _, topo, idx, state, _ = task.training_batch()
    fresh = (state != 7.0).all(-1).all(-1)
    assert fresh.tolist() == [True, True] + [False] * 6
    w = torch.cat([m[..., 0].flatten(1) for m in topo.split(state[:2, :, :1])], 1)
    assert w.abs().max() < 5  # N(0, 1 / fan_in) weights


# catches: zero-out never applied in training batches (zero_out_prob), or zeroing another share
# of the weights than zero_out_frac beside the whole layer
@pytest.mark.parametrize("frac", [0.3, 0.6])
def test_zero_out_in_a_batch_zeroes_a_layer_and_that_share_of_the_rest(frac):
    task = _task(zero_out_prob=0.5, zero_out_frac=frac, fresh_frac=0.0)
    topo = task.topos[(4, 6, 3)]
    big = mn.init_networks(topo, 16, task.cfg)  # non-zero weights everywhere
    task.pools[(4, 6, 3)].slots["state"] = big
    shares = []
    for seed in range(6):
        torch.manual_seed(seed)
        _, _, idx, state, _ = task.training_batch()
        assert torch.equal(state[:4], big[idx[:4]])  # the first half untouched
        for s in range(4, 8):
            zero = sorted(float((m[..., 0] == 0).float().mean()) for m in topo.split(state[s : s + 1, :, :1]))
            assert zero[-1] == 1.0  # one layer zeroed whole
            shares.append(zero[0])
    # the other layer: 4 x 6 + 6 = 30 weights (or 6 x 3 + 3 = 21) at rate frac, over 24 networks
    assert sum(shares) / len(shares) == pytest.approx(frac, abs=0.07)


# catches: a zero-out default other than the abstract's 30 % (the library function, the study
# function and `localrules study zeroout`)
def test_zero_out_defaults_to_a_layer_and_30_percent(tmp_path):
    import json
    from dataclasses import asdict

    from typer.testing import CliRunner

    from localrules.cli.main import app
    from localrules.train.checkpoint import save_model
    from localrules.train.perturb import zero_out

    torch.manual_seed(0)
    out, whole = zero_out([torch.ones(100, 100), torch.ones(100, 200)])
    assert torch.all(out[whole] == 0)
    assert (out[1 - whole] == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    cfg = mn.Config(archs=((4, 6, 3),), rule_hidden=(8,))
    ckpt = save_model(tmp_path / "rule", mn.build_rule(cfg), {"task": {"name": "metanca", **asdict(cfg)}})
    res = CliRunner().invoke(app, ["study", "zeroout", "--checkpoint", str(ckpt), "--samples", "2", "--steps-before", "1",
                                   "--steps-after", "1", "--json", str(tmp_path / "z.json"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "z.json").read_text())["frac"] == 0.3


# catches: a task accuracy pooled over all networks (or over the wrong axis) instead of one per network
def test_accuracy_is_the_share_of_correct_predictions_of_each_network():
    y = torch.tensor([0, 1, 2, 1])
    logits = torch.zeros(3, 4, 3)
    logits[0, torch.arange(4), y] = 1.0  # network 0: all right
    logits[1, :, 0] = 1.0  # network 1: always class 0 -> 1 of 4 right
    logits[2, torch.arange(4), torch.tensor([0, 1, 0, 0])] = 1.0  # network 2: 2 of 4 right
    assert mn.accuracy(logits, y).tolist() == [1.0, 0.25, 0.5]
