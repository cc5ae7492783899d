"""The alive-cell engine's firing-rows path (``NCA(sparse_fire=...)`` with
``AliveCells.perceive_rows``: only the updating cells are perceived and run through the rule)
equals the masked update of every cell: values and gradients, against the dense and graph paths
too, and with the same random draws from a seed. Float32 rounding on the CPU; 1e-4 on CUDA
(tests marked ``device``)."""

import pytest
import torch

from localrules.core import NCA, AliveCells, Grid2D, GridGraph, MoorePerception, Rule

C_FIXED, C = 1, 5


def _model(kind="learned", sparse_fire=False, device="cpu"):
    per = MoorePerception(C_FIXED + C, 10, kind)
    rule = Rule(per.out_dim, (12,), C, relu_input=kind != "sobel")
    torch.nn.init.normal_(rule.mlp[-1].weight, std=0.3)  # non-trivial updates
    return NCA(per, rule, fire_rate=0.5, sparse_fire=sparse_fire).to(device)


def _batch(B=3, H=8, W=7, device="cpu"):
    g = torch.Generator().manual_seed(0)
    pix = torch.rand(B, H, W, 1, generator=g) * (torch.rand(B, H, W, 1, generator=g) < 0.5)
    alive = pix > 0.1
    state = torch.randn(B, H, W, C, generator=g) * alive
    return pix.to(device), alive.to(device), state.to(device)


def _tol(device, rtol=1e-5, atol=1e-5):
    return dict(rtol=1e-4, atol=1e-4) if device.type == "cuda" else dict(rtol=rtol, atol=atol)


@pytest.mark.device
@pytest.mark.parametrize("kind", ["learned", "sobel", "depthwise"])
def test_perceive_rows_equals_those_rows_of_perceive(kind, device):
    per = MoorePerception(C_FIXED + C, 12, kind).to(device)
    pix, alive, state = _batch(device=device)
    ac = AliveCells(alive[..., 0], torch.cat([pix, state], -1))
    x = ac.compact(torch.cat([pix, state], -1)).requires_grad_()
    rows = torch.arange(0, ac.n, 3, device=device).flip(0)  # any order, a subset
    w = torch.randn(len(rows), per.out_dim, device=device)
    params = [x] + [p for p in per.parameters() if p.requires_grad]
    got = ac.perceive_rows(x, per, rows)
    want = ac.perceive(x, per)[rows]
    torch.testing.assert_close(got, want, **_tol(device))
    for a, b in zip(torch.autograd.grad((got * w).sum(), params), torch.autograd.grad((want * w).sum(), params)):
        torch.testing.assert_close(a, b, **_tol(device))


@pytest.mark.device
def test_firing_rows_rollout_equals_dense_and_graph_with_gradients(device):
    """Four steps with given fire masks and noise: the alive engine's firing-rows path, the dense
    grid and the PyG graph (both with the masked update of every cell) give the same states, loss
    and parameter gradients."""
    sparse = _model(sparse_fire=True, device=device)
    masked = _model(device=device)
    masked.load_state_dict(sparse.state_dict())
    pix, alive, state = _batch(device=device)
    fires = torch.rand(4, *alive.shape, device=device) <= 0.5
    noises = torch.randn(4, *state.shape, device=device)
    flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731

    def run(model, topo, pack, unpack):
        model.zero_grad()
        s = model.rollout(topo, pack(pix), pack(state), pack(alive), 4, 0.1,
                          torch.stack([pack(f) for f in fires]), torch.stack([pack(n) for n in noises]))
        loss = (unpack(s) * torch.linspace(-1, 1, C, device=device)).pow(2).sum()
        loss.backward()
        return unpack(s.detach()), loss.detach(), [p.grad.clone() for p in model.parameters()]

    ac = AliveCells(alive[..., 0], torch.cat([pix, state], -1))
    want = run(masked, Grid2D(), lambda t: t, lambda t: t)
    graph = run(masked, GridGraph.moore(*alive.shape[:3], device=device), flat, lambda t: t.reshape(state.shape))
    got = run(sparse, ac, ac.compact, ac.dense)
    assert not torch.equal(want[0], state)
    for other in (graph, got):
        torch.testing.assert_close(other[0], want[0], **_tol(device))
        torch.testing.assert_close(other[1], want[1], **_tol(device))
        for a, b in zip(other[2], want[2]):
            torch.testing.assert_close(a, b, **_tol(device, 1e-4, 1e-5))


def test_firing_rows_draw_the_same_fire_and_noise_from_a_seed():
    """Drawn (not given) fire masks and noise: the firing-rows path draws them before perceiving,
    from the same stream as the masked update, so a seed gives the same rollout."""
    sparse, masked = _model(sparse_fire="cpu"), _model()
    masked.load_state_dict(sparse.state_dict())
    pix, alive, state = _batch()
    ac = AliveCells(alive[..., 0], torch.cat([pix, state], -1))
    out = []
    for model in (sparse, masked):
        torch.manual_seed(5)
        with torch.no_grad():
            s = model.rollout(ac, ac.compact(pix), ac.compact(state), ac.compact(alive), 3, 0.1)
        out.append(s)
    torch.testing.assert_close(out[0], out[1], rtol=1e-5, atol=1e-5)
    assert not torch.equal(out[0], ac.compact(state))


def test_sparse_fire_for_a_device_type_only():
    """sparse_fire="cuda" leaves CPU tensors on the masked update (perceive_rows never called);
    "cpu" takes the firing-rows path there."""
    pix, alive, state = _batch()
    calls = []

    class Counting(AliveCells):
        def perceive_rows(self, x, perception, rows):
            calls.append(len(rows))
            return super().perceive_rows(x, perception, rows)

    ac = Counting(alive[..., 0], torch.cat([pix, state], -1))
    for sparse_fire, expect in (("cuda", 0), (False, 0), ("cpu", 1), (True, 1)):
        calls.clear()
        with torch.no_grad():
            _model(sparse_fire=sparse_fire).step(ac, ac.compact(pix), ac.compact(state), ac.compact(alive))
        assert len(calls) == expect, sparse_fire
