"""NCA.step and NCA.rollout against the update formula of localrules.core.nca, on tiny hand-made
grids, for every topology (issue 36: faults planted in the step must fail the suite):

    p      = b + sum_{d in 3x3} W_d x_{i+d}              (zero outside the grid)
    delta  = rule(p) + noise_std * noise
    state' = state + [fire] * alive * delta

The hand computation loops over cells and offsets in plain Python, so it shares no code with the
topologies' convolution, gather or message passing.
"""

import pytest
import torch

from localrules.core import NCA, AliveCells, Grid2D, GridGraph, MoorePerception, Rule
from localrules.core.perception import OFFSETS

B, H, W, CF, C = 2, 3, 4, 1, 3  # grids, rows, columns, fixed channels, mutable channels
P = 5  # perception channels


def _model(fire_rate=0.5, seed=0, sparse_fire=False):
    """A learned 3x3 perception (random weights and a non-zero bias) and a one-layer linear rule
    (random, not zero: an untrained rule would leave every state unchanged); ``sparse_fire``: the
    rule computed on the updating cells only (MetaNCA's path), which must give the same values."""
    g = torch.Generator().manual_seed(seed)
    per = MoorePerception(CF + C, P, "learned")
    rule = Rule(P, (), C, relu_input=False)
    with torch.no_grad():
        per.weight.copy_(torch.randn(per.weight.shape, generator=g))
        per.bias.copy_(torch.randn(P, generator=g) + 1.0)
        rule.mlp[-1].weight.copy_(torch.randn(C, P, generator=g) * 0.3)
        rule.mlp[-1].bias.copy_(torch.randn(C, generator=g))
    return NCA(per, rule, fire_rate, sparse_fire=sparse_fire)


def _hand_delta(model, x):
    """x (B, H, W, CF + C) -> rule(p) (B, H, W, C) by explicit loops."""
    w, b = model.perception.weight.detach(), model.perception.bias.detach()
    A, a = model.rule.mlp[-1].weight.detach(), model.rule.mlp[-1].bias.detach()
    out = torch.zeros(B, H, W, C)
    for n in range(B):
        for i in range(H):
            for j in range(W):
                p = b.clone()
                for dy, dx in OFFSETS:
                    y, xx = i + dy, j + dx
                    if 0 <= y < H and 0 <= xx < W:
                        p += w[:, :, dy + 1, dx + 1] @ x[n, y, xx]
                out[n, i, j] = A @ p + a
    return out


def _case(seed=1):
    g = torch.Generator().manual_seed(seed)
    fixed = torch.rand(B, H, W, CF, generator=g)
    state = torch.randn(B, H, W, C, generator=g)
    alive = torch.rand(B, H, W, 1, generator=g) < 0.6
    alive[0, 1, 1] = alive[1, 0, 0] = True
    alive[0, 0, 0] = alive[1, 2, 3] = False
    state = state * alive  # dead cells hold zero, as in every task
    fire = torch.rand(B, H, W, 1, generator=g) < 0.5
    fire[0, 1, 1], fire[1, 0, 0] = True, False
    noise = torch.randn(B, H, W, C, generator=g)
    return fixed, state, alive, fire, noise


def _layout(kind, fixed, state, alive):
    """The topology and pack / unpack between dense (B, H, W, .) and its cell layout."""
    if kind == "dense":
        return Grid2D(), (lambda t: t), (lambda t: t)
    if kind == "alive":
        topo = AliveCells(alive[..., 0], torch.cat([fixed, state], -1))
        return topo, topo.compact, topo.dense
    topo = GridGraph.moore(B, H, W)
    return topo, (lambda t: t.reshape(B * H * W, t.shape[-1])), (lambda t: t.reshape(B, H, W, t.shape[-1]))


TOPOLOGIES = ["dense", "alive", "graph"]


# catches: bias dropped from perception, a wrong 3x3 tap, the alive mask or fire mask ignored,
# the residual update replaced by delta, the given noise not added (or not scaled by noise_std)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_step_equals_the_formula_with_given_fire_and_noise(kind, sparse):
    model = _model(sparse_fire=sparse)
    fixed, state, alive, fire, noise = _case()
    delta = _hand_delta(model, torch.cat([fixed, state], -1))
    std = 0.1
    want = state + (delta + std * noise) * (fire & alive)
    topo, pack, unpack = _layout(kind, fixed, state, alive)
    with torch.no_grad():
        got = unpack(model.step(topo, pack(fixed), pack(state), pack(alive), std, fire=pack(fire), noise=pack(noise)))
    if kind == "alive":  # the compact layout holds alive cells only; dead ones are zero in and out
        want = want * alive
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # a cell that fires on an alive pixel moves, by exactly its delta plus noise
    torch.testing.assert_close(got[0, 1, 1], state[0, 1, 1] + delta[0, 1, 1] + std * noise[0, 1, 1])
    # an alive cell that does not fire, and a dead cell, keep their state exactly
    assert torch.equal(got[1, 0, 0], state[1, 0, 0]) and torch.equal(got[0, 0, 0], state[0, 0, 0])


# catches: noise added after the masks (it would move dead and resting cells), the alive mask
# ignored when every cell fires (fire rate 1, the restoration CA's setting)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fire_rate", [0.5, 1.0])
def test_dead_cells_never_change_even_with_noise(fire_rate, sparse):
    model = _model(fire_rate, sparse_fire=sparse)
    fixed, state, alive, _, _ = _case()
    torch.manual_seed(0)
    with torch.no_grad():
        got = model.step(Grid2D(), fixed, state, alive, noise_std=0.5)
    dead = ~alive[..., 0]
    assert torch.equal(got[dead], state[dead])
    moved = (got != state).any(-1) & alive[..., 0]
    if fire_rate == 1.0:  # every alive cell updates
        assert moved.sum() == alive.sum()
    with torch.no_grad():  # alive=None: every cell is alive
        every = model.step(Grid2D(), fixed, state, None, noise_std=0.0, fire=torch.ones_like(alive))
    torch.testing.assert_close(every, state + _hand_delta(model, torch.cat([fixed, state], -1)))


# catches: the fire mask drawn with the wrong comparison (u > fire_rate fires 1 - fire_rate of
# the cells) or not drawn at all
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fire_rate", [0.25, 0.8])
def test_drawn_fire_mask_updates_that_share_of_cells(fire_rate, sparse):
    model = _model(fire_rate, sparse_fire=sparse)
    g = torch.Generator().manual_seed(3)
    n = 40
    fixed, state = torch.rand(n, 16, 16, CF, generator=g), torch.randn(n, 16, 16, C, generator=g)
    torch.manual_seed(0)
    with torch.no_grad():
        got = model.step(Grid2D(), fixed, state, None)
    share = (got != state).any(-1).float().mean().item()  # 10,240 cells
    assert abs(share - fire_rate) < 0.02, share


# catches: a rollout that does not chain the steps (or drops the residual) and one that ignores the
# alive mask; with fire rate 1 and no noise it is the formula iterated
@pytest.mark.parametrize("sparse", [False, True])
def test_rollout_iterates_the_step(sparse):
    model = _model(1.0, sparse_fire=sparse)
    fixed, state, alive, _, _ = _case()
    want = state
    for _ in range(3):
        want = want + _hand_delta(model, torch.cat([fixed, want], -1)) * alive
    with torch.no_grad():
        got = model.rollout(Grid2D(), fixed, state, alive, 3)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


# catches: NCA's default fire rate not the self-classifying paper's 0.5 (REFERENCES.md)
def test_default_fire_rate_is_one_half():
    per = MoorePerception(CF + C, P, "learned")
    model = NCA(per, Rule(P, (), C, relu_input=False))
    assert model.fire_rate == 0.5
    with torch.no_grad():
        model.rule.mlp[-1].bias.fill_(1.0)
    state = torch.zeros(50, 16, 16, C)
    torch.manual_seed(0)
    with torch.no_grad():
        got = model.step(Grid2D(), torch.zeros(50, 16, 16, CF), state, None)
    assert abs((got != 0).any(-1).float().mean().item() - 0.5) < 0.02


# catches: rollout's perturb hook ignored or applied after the update instead of before it, and
# observe called at the wrong times (the restorer's mid-run damage and the curves ride on them)
def test_rollout_hooks_perturb_before_an_update_and_observe_after_it():
    model = _model(1.0)
    fixed, state, alive, _, _ = _case()
    step = lambda s: s + _hand_delta(model, torch.cat([fixed, s], -1)) * alive  # noqa: E731
    want, seen_want = state, []
    for t in range(3):
        if t == 1:
            want = want * 0  # the perturbation: every state erased before update 1 (0-based)
        want = step(want)
        seen_want.append((t + 1, want))
    seen = []
    with torch.no_grad():
        got = model.rollout(Grid2D(), fixed, state, alive, 3, perturb=lambda t, s: s * 0 if t == 1 else s,
                            observe=lambda t, s: seen.append((t, s.clone())))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert [t for t, _ in seen] == [1, 2, 3]
    for (_, a), (_, b) in zip(seen, seen_want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
