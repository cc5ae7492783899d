"""The self-classifying recipe as behaviour (issue 36): Config defaults against the paper, the L2
and cross-entropy losses of a training iteration against a hand computation, the residual noise
and fire rate of a training rollout counted on the committed states, and the pool commit.

Paper: Randazzo et al., "Self-classifying MNIST Digits", Distill 2020, and its notebook
(google-research/self-organising-systems, notebooks/mnist_ca.ipynb), as summarised in
/work/shared/docs/REFERENCES.md ("Self-classifying MNIST").
"""

import math

import pytest
import torch
import torch.nn.functional as F

from localrules.tasks import mnist_selfclassify as ms


def test_config_defaults_are_the_papers_recipe():
    # catches: a wrong default of any field of the paper's recipe
    cfg = ms.Config()
    # state: 1 grey channel + 19 mutable channels (9 hidden + 10 label logits); alive: grey > 0.1
    assert (cfg.hidden_channels, cfg.channels, ms.N_LABELS) == (9, 19, 10)
    assert ms.ALIVE_THRESHOLD == 0.1
    # rule: learned 3x3 conv 20 -> 80, ReLU, 1x1 80 -> 80, ReLU, 1x1 80 -> 19; fire rate 0.5
    assert (cfg.perception, cfg.perception_dim, cfg.hidden, cfg.fire_rate) == ("learned", 80, (80,), 0.5)
    # the paper's best variant: L2 loss with residual noise N(0, 0.02^2)
    assert (cfg.loss, cfg.noise_std) == ("l2", 0.02)
    # pool 160, batch 16, a quarter fresh and a quarter mutated per batch
    assert (cfg.pool_size, cfg.batch_size, cfg.fresh_frac, cfg.mutate_frac) == (160, 16, 0.25, 0.25)
    assert not cfg.augment  # augmentation is beyond the paper: off by default
    # 14,480 + 6,480 + 1,539 = 22,499 parameters (REFERENCES.md)
    assert sum(p.numel() for p in ms.build_model(cfg).parameters()) == 22_499


def _task(small_digits, **kw):
    x, y = small_digits
    cfg = ms.Config(perception_dim=16, hidden=(16,), batch_size=8, pool_size=16, **kw)
    torch.manual_seed(0)
    return ms.SelfClassifyTask(cfg, x[:200], y[:200], torch.device("cpu"))


def _constant_rule(task, v: torch.Tensor) -> None:
    """Make the rule output the constant v (19,) in every cell: last layer weights 0, bias v."""
    with torch.no_grad():
        task.model.rule.mlp[-1].weight.zero_()
        task.model.rule.mlp[-1].bias.copy_(v)


def _batch_and_loss(task, steps, seed=5):
    """The batch that ``training_loss`` draws (the same RNG state), and its loss and the pool."""
    before = {k: v.clone() for k, v in task.pool.slots.items()}
    torch.manual_seed(seed)
    idx, b = task.training_batch()
    torch.manual_seed(seed)
    loss, info = task.training_loss(steps)
    return idx, b, loss, before


@pytest.mark.parametrize("engine", ["alive", "dense"])
@pytest.mark.parametrize("loss", ["l2", "ce"])
def test_training_loss_by_hand(small_digits, loss, engine):
    # catches: the L2 loss without its / 2, averaged over cells instead of digits, or over all
    # cells instead of alive ones; cross-entropy on the wrong channels; the wrong loss applied
    task = _task(small_digits, loss=loss, engine=engine, fire_rate=1.0, noise_std=0.0)
    v = torch.linspace(-0.3, 0.4, 19)
    _constant_rule(task, v)
    steps = 3
    idx, b, got, _ = _batch_and_loss(task, steps)
    # fire rate 1, no noise, zero start states: every alive cell holds steps * v at the end
    logits = steps * v[-10:]
    alive = (b["pixels"][..., 0] > ms.ALIVE_THRESHOLD).flatten(1).sum(1)  # (B,) alive cells per digit
    # zero-state fresh rows and the all-zero pool make every row start from 0
    assert torch.all(b["state"] == 0)
    if loss == "l2":  # per digit: sum over its alive cells of ||logits - onehot||^2 / 2; mean over digits
        per_cell = torch.stack([((logits - F.one_hot(torch.tensor(int(k)), 10)) ** 2).sum() for k in b["label"]])
        want = (alive * per_cell).sum() / 2 / len(alive)
    else:  # mean cross-entropy over all alive cells of the batch
        ce = torch.stack([F.cross_entropy(logits[None], torch.tensor([int(k)])) for k in b["label"]])
        want = (alive * ce).sum() / alive.sum()
    torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-5, atol=1e-6)


def test_l2_loss_of_an_untrained_rule_is_half_the_alive_cells_per_digit(small_digits):
    # catches: the L2 loss scaled wrongly (its / 2, or divided by cells instead of digits)
    task = _task(small_digits, noise_std=0.0)
    idx, b, got, _ = _batch_and_loss(task, steps=2)
    alive = (b["pixels"] > ms.ALIVE_THRESHOLD).sum().item()
    assert got.item() == pytest.approx(alive / 2 / 8)
    ce_task = _task(small_digits, noise_std=0.0, loss="ce")
    assert _batch_and_loss(ce_task, steps=2)[2].item() == pytest.approx(math.log(10))


def test_training_rollout_adds_the_residual_noise_to_firing_alive_cells(small_digits):
    # catches: the residual noise not added in training (or at the wrong std), the fire rate not
    # 0.5, the alive mask ignored in training (dead cells must keep a zero state)
    x, y = small_digits
    torch.manual_seed(0)
    task = ms.SelfClassifyTask(ms.Config(perception_dim=16, hidden=(16,)), x[:400], y[:400], torch.device("cpu"))
    idx, b, _, _ = _batch_and_loss(task, steps=1)  # an untrained rule: delta = 0, only the noise moves cells
    final = task.pool.slots["state"][idx]
    alive = task.pool.slots["pixels"][idx][..., 0] > ms.ALIVE_THRESHOLD
    assert torch.all(final[~alive] == 0)
    moved = (final[alive] != 0).all(-1)  # a firing cell gets noise in all 19 channels
    assert torch.equal(moved, (final[alive] != 0).any(-1))
    assert alive.sum() > 1000
    assert abs(moved.float().mean().item() - 0.5) < 0.05  # fire rate 0.5
    assert final[alive][moved].std().item() == pytest.approx(0.02, rel=0.05)  # noise std 0.02


@pytest.mark.parametrize("engine", ["alive", "dense"])
def test_the_pool_keeps_the_final_states_of_the_batch(small_digits, engine):
    # catches: the pool commit skipped, or committing the start states instead of the final ones
    task = _task(small_digits, engine=engine, fire_rate=1.0, noise_std=0.0)
    v = torch.linspace(0.1, 0.5, 19)
    _constant_rule(task, v)
    idx, b, _, before = _batch_and_loss(task, steps=2)
    pool = task.pool.slots
    alive = b["pixels"][..., 0] > ms.ALIVE_THRESHOLD
    assert torch.equal(pool["pixels"][idx], b["pixels"]) and torch.equal(pool["label"][idx], b["label"])
    torch.testing.assert_close(pool["state"][idx][alive], (2 * v).expand(int(alive.sum()), 19))
    assert torch.all(pool["state"][idx][~alive] == 0)
    rest = torch.ones(16, dtype=torch.bool)
    rest[idx] = False
    for k in ("pixels", "label", "state"):
        assert torch.equal(pool[k][rest], before[k][rest])
    # the next iteration continues from these states: a continued row starts where it ended
    torch.manual_seed(6)
    idx2, b2 = task.training_batch()
    for r in range(2, 6):  # batch 8: rows 2..5 are continued (2 fresh, 2 mutated)
        assert torch.equal(b2["state"][r], pool["state"][idx2[r]])
