"""Self-classify training through every engine: the same loss and gradients from the alive-cell,
dense and graph paths (every cell firing, no noise: nothing random inside the rollout), and the
graph path's gradients equal the dense path's with a fire rate below 1 (same fire masks)."""

import torch

from localrules.core import Grid2D, GridGraph
from localrules.tasks import mnist_selfclassify as ms


def _grads(engine, small_digits):
    x, y = small_digits
    torch.manual_seed(0)
    cfg = ms.Config(batch_size=8, pool_size=16, perception_dim=24, hidden=(24,), engine=engine, noise_std=0.0,
                    fire_rate=1.0)
    task = ms.SelfClassifyTask(cfg, x[:200], y[:200], torch.device("cpu"))
    torch.nn.init.normal_(task.model.rule.mlp[-1].weight, std=0.05)  # non-trivial updates
    loss, _ = task.training_loss(4)
    loss.backward()
    return loss.detach(), [p.grad for p in task.model.parameters()], task.pool.slots["state"]


def test_training_loss_and_gradients_equal_across_engines(small_digits):
    ref_loss, ref_grads, ref_pool = _grads("alive", small_digits)
    assert all(g.abs().sum() > 0 for g in ref_grads)
    for engine in ("dense", "graph"):
        loss, grads, pool = _grads(engine, small_digits)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(pool, ref_pool, rtol=1e-5, atol=1e-5)  # committed states too
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_graph_gradients_equal_dense_with_fire_rate_below_one():
    torch.manual_seed(0)
    model = ms.build_model(ms.Config(perception_dim=16, hidden=(16,)))  # fire rate 0.5
    torch.nn.init.normal_(model.rule.mlp[-1].weight, std=0.1)
    pix = torch.rand(2, 6, 5, 1) * (torch.rand(2, 6, 5, 1) < 0.6)
    alive = pix > 0.1
    state0 = torch.randn(2, 6, 5, 19) * alive
    fires = [torch.rand(2, 6, 5, 1) <= model.fire_rate for _ in range(3)]
    flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731
    graph = GridGraph.moore(2, 6, 5)

    def run(topology, shape):
        model.zero_grad()
        s = shape(state0)
        for f in fires:
            s = model.step(topology, shape(pix), s, shape(alive), fire=shape(f))
        s.pow(2).sum().backward()
        return s.detach().reshape(state0.shape), [p.grad.clone() for p in model.parameters()]

    (sd, gd), (sg, gg) = run(Grid2D(), lambda t: t), run(graph, flat)
    assert not all(f.all() for f in fires)
    torch.testing.assert_close(sg, sd, rtol=1e-5, atol=1e-5)
    for a, b in zip(gg, gd):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_firing_rows_training_equals_the_masked_update(small_digits):
    """The paper's recipe (fire rate 0.5, residual noise) through the alive engine: the model as
    built (on the CPU only the firing cells are perceived and updated) and the masked update of
    every alive cell give the same loss, gradients and pool from one seed."""
    x, y = small_digits

    def run(sparse_fire):
        torch.manual_seed(0)
        cfg = ms.Config(batch_size=8, pool_size=16, perception_dim=24, hidden=(24,))
        task = ms.SelfClassifyTask(cfg, x[:200], y[:200], torch.device("cpu"))
        assert task.model.sparse_fire == "cpu"
        task.model.sparse_fire = sparse_fire
        torch.nn.init.normal_(task.model.rule.mlp[-1].weight, std=0.05)
        loss, _ = task.training_loss(6)
        loss.backward()
        return loss.detach(), [p.grad for p in task.model.parameters()], task.pool.slots["state"]

    (l1, g1, s1), (l2, g2, s2) = run("cpu"), run(False)
    torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s1, s2, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
