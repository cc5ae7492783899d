"""Gradients through every grid topology are bit-equal from run to run under intra-op threads.

Threads are oversubscribed (8 on however many cores) so that a backward whose threads add
into shared rows in a racy order (CPU tensor-indexing backward) shows up as a difference.
"""

import pytest
import torch

from localrules.core import AliveCells, Grid2D, GridGraph, MoorePerception


@pytest.fixture
def many_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(8)
    yield
    torch.set_num_threads(before)


def _inputs(B=8, H=20, W=20, C=20):
    g = torch.Generator().manual_seed(0)
    alive = torch.rand(B, H, W, generator=g) < 0.3
    return alive, torch.randn(B, H, W, C, generator=g)


@pytest.mark.parametrize("engine", ["alive", "alive_rows", "dense", "graph"])
def test_perception_gradients_repeat_bit_for_bit(many_threads, engine):
    alive, x = _inputs()
    per = MoorePerception(x.shape[-1], 40)
    perceive = None
    if engine.startswith("alive"):
        topo = AliveCells(alive, x)
        x = topo.compact(x)
        if engine == "alive_rows":  # every other cell, as the firing cells of a step
            rows = torch.arange(0, topo.n, 2)
            perceive = lambda x, per: topo.perceive_rows(x, per, rows)  # noqa: E731
    elif engine == "dense":
        topo = Grid2D()
    else:
        topo = GridGraph.moore(*alive.shape)
        x = x.reshape(-1, x.shape[-1])
    x.requires_grad_()
    perceive = perceive or topo.perceive
    w = torch.randn(*perceive(x, per).shape[:-1], 40, generator=torch.Generator().manual_seed(1))

    def grads():
        p = perceive(x, per)
        return torch.autograd.grad((p * w).sum(), (x, per.weight))

    first = grads()
    for _ in range(10):
        for a, b in zip(first, grads()):
            assert torch.equal(a, b)
