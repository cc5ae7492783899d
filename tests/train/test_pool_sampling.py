"""SamplePool sampling and commits as behaviour (issue 36): a batch is drawn without replacement
and uniformly over the pool; a commit writes exactly the batch's rows."""

import torch

from localrules.train.pool import SamplePool


# catches: a batch drawn with replacement (one pool entry twice in a batch, committed twice)
def test_a_batch_never_holds_one_entry_twice():
    pool = SamplePool(x=torch.arange(12.0)[:, None])
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        idx, b = pool.sample(12, g)  # the whole pool: a permutation of it
        assert sorted(idx.tolist()) == list(range(12))
        assert torch.equal(b["x"][:, 0], idx.float())
        idx, _ = pool.sample(6, g)
        assert len(set(idx.tolist())) == 6


# catches: a sampler that favours some entries (every entry should be drawn about as often)
def test_every_entry_is_drawn_about_equally_often():
    pool = SamplePool(x=torch.zeros(20, 1))
    g = torch.Generator().manual_seed(1)
    counts = torch.zeros(20)
    for _ in range(500):
        idx, _ = pool.sample(5, g)
        counts[idx] += 1
    assert counts.sum() == 2500 and counts.min() > 90 and counts.max() < 160  # 125 expected


# catches: a commit that leaves the pool as it was, or writes rows other than the batch's
def test_commit_writes_the_batch_rows_and_undo_restores_them():
    pool = SamplePool(x=torch.zeros(8, 2), y=torch.arange(8))
    idx, b = pool.sample(3, torch.Generator().manual_seed(2))
    b["x"] = torch.full((3, 2), 5.0, requires_grad=True) * 1  # a batch still attached to a graph
    b["y"] = b["y"] + 100
    pool.commit(idx, b)
    hit = torch.zeros(8, dtype=torch.bool)
    hit[idx] = True
    assert torch.all(pool.slots["x"][hit] == 5) and torch.all(pool.slots["x"][~hit] == 0)
    assert torch.equal(pool.slots["y"][hit], idx + 100) and torch.equal(pool.slots["y"][~hit], torch.arange(8)[~hit])
    assert not pool.slots["x"].requires_grad  # stored detached
    pool.undo()
    assert torch.all(pool.slots["x"] == 0) and torch.equal(pool.slots["y"], torch.arange(8))
