"""Training-only terms of the restoration recipe as behaviour (issue 36): Gaussian noise on the
lattice state each training step, 50 % dropout in the gate, and damage of the CNN auto-encoder's
bottleneck in the rows the recipe picks. Seed text: /work/shared/seeds/
ca-nn-restoration-masked-mnist.txt ("50 % dropout + Gaussian noise added during training");
the rest is the pool recipe in tasks/restore.py's docstring (issue 18).
"""

import pytest
import torch
from torch import nn

from localrules.tasks import restore as rs


def _lattice(model, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return model.encode(torch.rand(n, 28, 28, generator=g))


# catches: the state noise not added in training (or at another std than Config.state_noise), or
# added outside training
@pytest.mark.parametrize("noise", [0.02, 0.05])
def test_training_adds_the_state_noise_once_per_step(noise):
    torch.manual_seed(0)
    model = rs.build_model(rs.Config(model="ca", state_noise=noise))
    s = _lattice(model)
    with torch.no_grad():
        clean = model.eval().run(s, 1)
        assert torch.equal(clean, model.run(s, 1))  # evaluation is deterministic
        noisy = model.train().run(s, 1)
    diff = noisy - clean  # one step: exactly the noise (the CA alone has no dropout)
    assert diff.mean().abs() < 0.05 * noise
    assert diff.std().item() == pytest.approx(noise, rel=0.02)


def test_the_default_recipe_trains_with_noise_002():
    # catches: a wrong default state noise (the seed text's "Gaussian noise", 0.02 here)
    torch.manual_seed(0)
    model = rs.build_model(rs.Config(model="ca"))
    s = _lattice(model)
    with torch.no_grad():
        diff = model.train().run(s, 1) - model.eval().run(s, 1)
    assert diff.std().item() == pytest.approx(0.02, rel=0.02)


# catches: the gate's dropout rate not the recipe's 50 % (or not Config.dropout)
@pytest.mark.parametrize("dropout", [None, 0.2])
def test_the_gate_drops_that_share_of_its_units_in_training(dropout):
    torch.manual_seed(0)
    cfg = rs.Config() if dropout is None else rs.Config(dropout=dropout)
    model = rs.build_model(cfg).train()
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops
    seen = []
    for m in drops:
        m.register_forward_hook(lambda mod, inp, out: seen.append(((out == 0) & (inp[0] != 0)).sum().item()
                                                                  / max((inp[0] != 0).sum().item(), 1)))
    with torch.no_grad():
        model.run(_lattice(model, 4), 3)
    assert len(seen) == 3 * len(drops)
    rate = sum(seen) / len(seen)
    assert rate == pytest.approx(0.5 if dropout is None else dropout, abs=0.02)
    model.eval()
    seen.clear()
    with torch.no_grad():
        model.run(_lattice(model, 4), 2)
    assert seen and max(seen) == 0.0  # no dropout outside training


# catches: the CNN auto-encoder's damage not applied, or applied to the wrong rows
def test_cnn_ae_damage_zeroes_the_bottleneck_of_the_chosen_rows():
    torch.manual_seed(0)
    model = rs.build_model(rs.Config(model="cnn-ae")).train()  # train mode: outputs not clamped to [0, 1]
    g = torch.Generator().manual_seed(1)
    x, other = torch.rand(2, 28, 28, generator=g), torch.rand(2, 28, 28, generator=g)
    with torch.no_grad():
        intact = model(x)
        hit = model(x, damage_frac=1.0, damaged=torch.tensor([True, False]))
        blank = model(other, damage_frac=1.0)  # an all-zero bottleneck: the input no longer matters
    torch.testing.assert_close(hit[1], intact[1])
    torch.testing.assert_close(hit[0], blank[0])
    assert not torch.allclose(hit[0], intact[0])


# catches: the recipe's damage (a quarter of each batch, 30 % of the cells) dropped from the
# CNN auto-encoder's training batches
def test_cnn_ae_training_damages_a_quarter_of_the_batch(small_digits):
    x, y = small_digits
    imgs = torch.nn.functional.pad(torch.as_tensor(x[:100]).float() / 255, (6, 6, 6, 6))
    torch.manual_seed(0)
    task = rs.RestoreTask(rs.Config(model="cnn-ae", batch_size=16), imgs, torch.as_tensor(y[:100]), torch.device("cpu"))
    seen = []
    task.model.dec.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach()))
    task.training_loss(steps=1)
    z = seen[0]  # (16, 256, 7, 7): the bottleneck the decoder reads
    dead = (z == 0).all(1).flatten(1).float().mean(1)  # share of the 49 cells zeroed whole, per row
    damaged = dead > 0.05
    assert damaged.sum() == 4  # round(0.25 * 16) rows
    assert 0.15 < dead[damaged].mean() < 0.45  # about 30 % of their cells
    assert dead[~damaged].max() == 0
