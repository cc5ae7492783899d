"""The fast (alive cells), dense (conv) and general (PyG graph) paths agree: to float32
rounding on the CPU; within 1e-4 on CUDA, which is not bit-deterministic (the tests marked
``device`` run on $LOCALRULES_TEST_DEVICE: scripts/gpu-job runs them there)."""

import pytest
import torch

from localrules.core import NCA, AliveCells, Grid2D, GridGraph, MoorePerception, Rule


def _model(C=6, P=12, out=5, kind="learned", device="cpu"):
    per = MoorePerception(C, P, kind)
    rule = Rule(per.out_dim, (16,), out, relu_input=kind != "sobel")
    torch.nn.init.normal_(rule.mlp[-1].weight, std=0.3)  # non-trivial updates
    return NCA(per, rule, fire_rate=0.5).to(device)


def _batch(B=3, H=9, W=7, out=5, device="cpu"):
    pix = torch.rand(B, H, W, 1, device=device) * (torch.rand(B, H, W, 1, device=device) < 0.5)
    alive = pix > 0.1
    state = torch.randn(B, H, W, out, device=device) * alive
    return pix, alive, state


def _tol(device, rtol=None, atol=None):
    """assert_close tolerances: the given ones (default float32) on the CPU, 1e-4 on CUDA."""
    if device.type == "cuda":
        return dict(rtol=1e-4, atol=1e-4)
    return {} if rtol is None else dict(rtol=rtol, atol=atol)


def _flat(t):
    return t.reshape(-1, t.shape[-1])


@pytest.mark.device
@pytest.mark.parametrize("kind", ["learned", "sobel", "depthwise"])
def test_dense_alive_graph_step_equal(kind, device):
    nca = _model(kind=kind, device=device)
    pix, alive, state = _batch(device=device)
    fire = torch.rand(*alive.shape, device=device) <= 0.5
    noise = torch.randn_like(state)
    dense = nca.step(Grid2D(), pix, state, alive, 0.02, fire, noise)

    ac = AliveCells(alive[..., 0], torch.cat([pix, state], -1))
    comp = nca.step(ac, ac.compact(pix), ac.compact(state), ac.compact(alive), 0.02,
                    ac.compact(fire), ac.compact(noise))
    torch.testing.assert_close(ac.dense(comp), dense, **_tol(device))

    g = GridGraph.moore(*alive.shape[:3], device=device)
    graph = nca.step(g, _flat(pix), _flat(state), _flat(alive), 0.02, _flat(fire), _flat(noise))
    torch.testing.assert_close(graph.reshape(dense.shape), dense, **_tol(device, 1e-5, 1e-5))


@pytest.mark.device
def test_alive_path_gradients_equal_dense(device):
    nca = _model(device=device)
    pix, alive, state = _batch(device=device)
    fires = [torch.rand(*alive.shape, device=device) <= 0.5 for _ in range(4)]

    def loss_of(run):
        nca.zero_grad()
        loss = run().pow(2).sum()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in nca.parameters()]

    def dense():
        s = state
        for f in fires:
            s = nca.step(Grid2D(), pix, s, alive, fire=f)
        return s

    ac = AliveCells(alive[..., 0], torch.cat([pix, state], -1))

    def compact():
        s = ac.compact(state)
        for f in fires:
            s = nca.step(ac, ac.compact(pix), s, ac.compact(alive), fire=ac.compact(f))
        return s

    l1, g1 = loss_of(dense)
    l2, g2 = loss_of(compact)
    torch.testing.assert_close(l1, l2, **_tol(device))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, **_tol(device, 1e-4, 1e-5))


def test_invariants_dead_cells_stay_zero_and_pixels_fixed():
    nca = _model()
    pix, alive, state = _batch()
    pix0 = pix.clone()
    s = nca.rollout(Grid2D(), pix, state, alive, steps=10, noise_std=0.02)
    assert s.shape == state.shape
    assert torch.all(s[~alive[..., 0]] == 0)
    assert torch.equal(pix, pix0)
    assert not torch.equal(s, state)


def test_untrained_rule_changes_nothing():
    per = MoorePerception(20, 80)
    nca = NCA(per, Rule(80, (80,), 19))
    pix, alive, _ = _batch(out=19)
    state = torch.randn(*alive.shape[:3], 19) * alive
    torch.testing.assert_close(nca.step(Grid2D(), pix, state, alive), state)


def test_paper_parameter_count():
    nca = NCA(MoorePerception(20, 80), Rule(80, (80,), 19))
    assert sum(p.numel() for p in nca.parameters()) == 22_499


def test_graph_on_custom_edges_matches_hand_computation():
    per = MoorePerception(2, 3)
    x = torch.randn(3, 2)
    # node 0 sees node 1 to its right (direction 5) and node 2 below (direction 7)
    g = GridGraph(torch.tensor([[1, 2], [0, 0]]), torch.tensor([5, 7]))
    p = g.perceive(x, per)
    w = per.weight
    expect0 = per.bias + w[:, :, 1, 2] @ x[1] + w[:, :, 2, 1] @ x[2]
    torch.testing.assert_close(p[0], expect0)
    torch.testing.assert_close(p[1], per.bias)


def test_alive_cells_border_and_layout():
    alive = torch.zeros(2, 4, 5, dtype=torch.bool)
    alive[0, 0, 0] = alive[0, 0, 1] = alive[1, 3, 4] = True
    x = torch.randn(2, 4, 5, 3)
    ac = AliveCells(alive, x)
    assert ac.n == 3 and ac.nbr.shape == (3, 9)
    assert ac.batch_of().tolist() == [0, 0, 1]
    rows = ac.compact(x)
    back = ac.dense(rows)
    assert torch.equal(back[alive], x[alive]) and torch.all(back[~alive] == 0)
    per = MoorePerception(3, 4)
    torch.testing.assert_close(ac.perceive(rows, per), Grid2D().perceive(x * 1.0, per)[alive])
