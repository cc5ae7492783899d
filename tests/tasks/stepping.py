"""Shared check: ``metanca.grow`` is the core rollout, i.e. ``rule.step`` applied N times."""

import torch

from localrules.tasks import metanca as mn


def assert_grow_is_stepping(rule, topo, state: torch.Tensor, steps: int, grow_topo=None, seed: int = 5) -> torch.Tensor:
    """grow(rule, grow_topo or topo, state, steps) == ``steps`` x rule.step(topo, ...) under the same
    random draws (the rule fires stochastically); returns the grown state."""
    torch.manual_seed(seed)
    grown, _ = mn.grow(rule, topo if grow_topo is None else grow_topo, state, steps)
    torch.manual_seed(seed)
    stepped = state
    with torch.no_grad():
        for _ in range(steps):
            stepped = rule.step(topo, None, stepped)
    torch.testing.assert_close(grown, stepped)
    return grown
