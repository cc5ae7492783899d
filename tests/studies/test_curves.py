import numpy as np
import pytest
import torch

from localrules.data.arrays import to_unit_pixels
from localrules.studies.curves import mutation_targets, one_piece, selfclassify_curves, summarize
from localrules.tasks import mnist_selfclassify as ms


@pytest.fixture
def digits(small_digits):
    x, y = small_digits
    return to_unit_pixels(x[:40]), torch.as_tensor(y[:40])


def test_untrained_rule_metrics_by_hand(digits):
    px, y = digits
    model = ms.build_model(ms.Config())  # zero last layer: every cell says label 0 forever
    res = selfclassify_curves(model, px, y, steps=4, mutate_at=2, batch_size=16, progress=False)
    alive = (px > 0.1).flatten(1).sum(1).double()
    tgt = mutation_targets(len(px), seed=0)
    before = ((alive * (y == 0)).sum() / alive.sum()).item()
    after = ((alive[tgt] * (y[tgt] == 0)).sum() / alive[tgt].sum()).item()
    assert res["accuracy"] == pytest.approx([before, before, after, after])
    assert res["agreement"] == [1.0] * 4  # all cells agree (on a wrong label, mostly)
    assert "accuracy_at_200" not in res  # a 4-step run has no step 200
    assert res["top_accuracy_step"] == 1


def test_disagreeing_cells_metrics_by_hand(digits):
    """A hand-set rule: every cell votes 1 where its pixel > 0.95, else 0, from the first update on
    (label-1 logit += 2 pixel, label-0 logit += 1.9 each step, every cell firing)."""
    px, y = digits
    model = ms.build_model(ms.Config())
    model.fire_rate = 1.0
    with torch.no_grad():
        model.perception.weight.zero_()
        model.perception.bias.zero_()
        model.perception.weight[0, 0, 1, 1] = 1.0  # p_0 = the cell's own pixel
        first, last = model.rule.mlp[1], model.rule.mlp[-1]
        first.weight.zero_(), first.bias.zero_(), last.weight.zero_(), last.bias.zero_()
        first.weight[0, 0] = 1.0  # h_0 = pixel
        last.weight[-9, 0] = 2.0  # label 1
        last.bias[-10] = 1.9  # label 0
    res = selfclassify_curves(model, px, y, steps=3, mutate_at=None, batch_size=16, progress=False)
    alive = px > 0.1
    vote = (px > 0.95).long()
    correct = ((vote == y[:, None, None]) & alive).sum() / alive.sum()
    agree = torch.tensor([len(set(vote[k][alive[k]].tolist())) <= 1 for k in range(len(px))]).float().mean()
    assert 0 < agree < 1  # some digits disagree: the case the untrained rule cannot show
    assert res["accuracy"] == pytest.approx([correct.item()] * 3)
    assert res["agreement"] == pytest.approx([agree.item()] * 3)
    whole = one_piece(alive)
    agree_whole = torch.tensor([len(set(vote[k][alive[k]].tolist())) <= 1 for k in range(len(px)) if whole[k]])
    assert res["connected"] == pytest.approx([whole.float().mean().item()] * 3)
    assert res["agreement_connected"] == pytest.approx([agree_whole.float().mean().item()] * 3)


def test_one_piece_by_hand():
    """8-connected pieces, as far as a 3x3 neighbourhood reaches: a diagonal touch joins."""
    m = torch.zeros(5, 7, 7, dtype=torch.bool)
    m[0, 1:6, 3] = True  # a bar
    m[1, 1, 1] = m[1, 2, 2] = m[1, 3, 3] = True  # a diagonal
    m[2, 1, 1] = m[2, 1, 3] = True  # two cells with a gap
    m[3, 1:6, 1:6] = True
    m[3, 2:5, 2:5] = False  # a ring
    m[3, 3, 3] = True  # with a speck inside it
    assert one_piece(m).tolist() == [True, True, False, False, True]  # an empty digit counts as one


def test_one_piece_agrees_with_scipy_labelling():
    from scipy import ndimage

    g = torch.Generator().manual_seed(0)
    m = torch.rand(200, 12, 12, generator=g) < torch.linspace(0.1, 0.7, 200)[:, None, None]
    pieces = [ndimage.label(k.numpy(), structure=np.ones((3, 3)))[1] for k in m]
    assert one_piece(m).tolist() == [p <= 1 for p in pieces]


def test_mutation_targets_are_other_digits():
    t = mutation_targets(50, seed=3)
    assert t.shape == (50,) and torch.all(t != torch.arange(50)) and t.max() < 50


def test_engines_give_identical_curves_when_deterministic(digits):
    px, y = digits
    torch.manual_seed(0)
    model = ms.build_model(ms.Config(fire_rate=1.0))
    torch.nn.init.normal_(model.rule.mlp[-1].weight, std=0.05)
    runs = [selfclassify_curves(model, px, y, steps=6, mutate_at=3, engine=e, progress=False)
            for e in ("alive", "dense", "graph")]
    for r in runs[1:]:
        for key in ("accuracy", "agreement"):
            assert r[key] == runs[0][key]
        np.testing.assert_allclose(r["state_magnitude"], runs[0]["state_magnitude"], rtol=1e-5)


def test_worker_processes_give_exactly_the_single_process_result(digits):
    px, y = digits
    torch.manual_seed(0)
    model = ms.build_model(ms.Config())
    torch.nn.init.normal_(model.rule.mlp[-1].weight, std=0.05)
    kw = dict(steps=5, mutate_at=2, batch_size=8, noise_std=0.02, record=10, progress=False)
    one = selfclassify_curves(model, px, y, **kw)
    two = selfclassify_curves(model, px, y, workers=2, **kw)
    for key in ("accuracy", "agreement", "state_magnitude", "update_magnitude"):
        assert two[key] == one[key]
    np.testing.assert_array_equal(two["frames"], one["frames"])


def test_frames_for_gif(digits):
    px, y = digits
    res = selfclassify_curves(ms.build_model(ms.Config()), px, y, steps=3, mutate_at=None,
                              record=5, progress=False)
    f = res["frames"]
    assert f.shape == (3, 5, 16, 16)
    alive = (px[:5] > 0.1).numpy()
    assert np.all(f[:, ~alive] == -1) and np.all(f[:, alive] == 0)


def test_summary_keys():
    acc = list(np.linspace(0, 1, 400))
    s = summarize(acc, acc, 200, connected=acc[::-1])
    assert s["accuracy_at_200"] == acc[199] and s["accuracy_at_400"] == acc[399]
    assert s["connected_at_200"] == acc[200] and s["connected_at_400"] == acc[0]
    assert s["top_accuracy_step"] == 200
