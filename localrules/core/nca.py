"""The neural cellular automaton step, blind to the topology.

    x      = [fixed, state]                              (cells, C_fixed + C); fixed may be None
    delta  = rule(topology.perceive(x), c) + noise       noise ~ N(0, noise_std^2), training only
    state' = state + [u <= fire_rate] * alive * delta    u ~ U(0, 1) per cell

``cells`` is any leading shape: (B, H, W) on a dense grid, (N,) for compact alive cells or
graph nodes. Noise is added before the update mask, as in the self-classifying paper. A rule
with a code input also reads c = ``topology.cell_code(K)``: (cells, K) fixed per-cell features.
"""

from __future__ import annotations

import torch
from torch import nn

from .perception import MoorePerception
from .rule import Rule


class NCA(nn.Module):
    def __init__(self, perception: MoorePerception | None, rule: Rule, fire_rate: float = 0.5):
        super().__init__()
        self.perception, self.rule, self.fire_rate = perception, rule, fire_rate

    def update(self, topology, fixed: torch.Tensor | None, state: torch.Tensor) -> torch.Tensor:
        """The residual update rule(perceive([fixed, state])), before noise and masks; a task
        without fixed channels passes ``fixed=None``."""
        x = state if fixed is None else torch.cat([fixed, state], dim=-1)
        code = topology.cell_code(self.rule.code_dim, x.device) if self.rule.code_dim else None
        return self.rule(topology.perceive(x, self.perception), code)

    def step(
        self,
        topology,
        fixed: torch.Tensor | None,
        state: torch.Tensor,
        alive: torch.Tensor | None,
        noise_std: float = 0.0,
        fire: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One step. alive, fire: (cells, 1) bool (alive None: every cell is alive); fire and
        noise are drawn when not given. A parameter-free topology gets ``perception=None``."""
        delta = self.update(topology, fixed, state)
        if noise_std > 0:
            delta = delta + (torch.randn_like(delta) if noise is None else noise) * noise_std
        if fire is None and self.fire_rate >= 1.0:  # every cell fires: no mask to draw
            return state + delta if alive is None else state + delta * alive
        if fire is None:
            fire = torch.rand(*delta.shape[:-1], 1, device=delta.device) <= self.fire_rate
        return state + delta * (fire if alive is None else fire & alive)

    def rollout(self, topology, fixed, state, alive, steps: int, noise_std: float = 0.0):
        for _ in range(steps):
            state = self.step(topology, fixed, state, alive, noise_std)
        return state
