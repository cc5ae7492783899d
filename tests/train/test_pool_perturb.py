import pytest
import torch

from localrules.train.perturb import damage, mutate, zero_out
from localrules.train.pool import SamplePool


def test_pool_sample_commit_roundtrip():
    pool = SamplePool(x=torch.arange(10.0)[:, None].repeat(1, 3), y=torch.arange(10))
    idx, b = pool.sample(4)
    assert len(set(idx.tolist())) == 4
    assert torch.equal(b["y"], idx) and torch.equal(b["x"][:, 0], idx.float())
    b["x"] += 100  # the batch is a copy until committed
    assert pool.slots["x"].max() < 100
    pool.commit(idx, b)
    assert torch.equal(pool.slots["x"][idx, 0], idx.float() + 100)
    untouched = torch.tensor([i for i in range(10) if i not in idx.tolist()])
    assert torch.equal(pool.slots["x"][untouched, 0], untouched.float())


def test_pool_rejects_bad_sizes():
    with pytest.raises(ValueError):
        SamplePool(x=torch.zeros(3), y=torch.zeros(4))
    with pytest.raises(ValueError):
        SamplePool(x=torch.zeros(3)).sample(4)


def test_mutate_keeps_common_erases_old_and_births_new():
    old_alive = torch.tensor([[1, 1, 0, 0]], dtype=torch.bool).reshape(1, 1, 4, 1)
    new_alive = torch.tensor([[0, 1, 1, 0]], dtype=torch.bool).reshape(1, 1, 4, 1)
    state = torch.randn(1, 1, 4, 5)  # non-zero everywhere, so erasing and zeroing are visible
    out = mutate(state, new_alive, old_alive)
    assert torch.all(out[0, 0, 0] == 0)  # alive only in old: erased
    assert torch.equal(out[0, 0, 1], state[0, 0, 1])  # alive in both: kept
    assert torch.all(out[0, 0, 2] == 0)  # newly alive: starts at zero
    assert torch.all(out[0, 0, 3] == 0)


def test_damage_zeroes_whole_cells_at_rate():
    s = torch.ones(100, 100, 4)
    out = damage(s, 0.3)
    cell_zero = (out == 0).all(-1)
    assert torch.equal(cell_zero, (out == 0).any(-1))  # whole cells, never single channels
    assert 0.27 < cell_zero.float().mean() < 0.33
    with pytest.raises(ValueError):
        damage(s, 1.5)


def test_zero_out_one_whole_tensor_and_fraction_of_rest():
    ts = [torch.ones(200, 200), torch.ones(300, 100), torch.ones(50, 50)]
    out, whole = zero_out(ts, 0.3)
    assert torch.all(out[whole] == 0)
    for i, t in enumerate(out):
        if i != whole:
            assert 0.27 < (t == 0).float().mean() < 0.33
