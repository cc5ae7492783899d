"""The neural cellular automaton step, blind to the topology: the one step loop of every system.

    x      = [fixed, state]                              (cells, C_fixed + C); fixed may be None
    p      = topology.perceive(x)                        perception (a topology may add inputs)
    delta  = rule(p, c) + noise                          noise ~ N(0, noise_std^2), training only
    fire   = [u <= fire_rate]                            u ~ U(0, 1) per cell (or given)
    state' = post(state + fire * alive * delta)          post: identity, or the system's transform

``cells`` is any leading shape: (B, H, W) on a dense grid, (N,) for compact alive cells or graph
nodes, (S, cells) for S weight graphs. Noise is added before the update mask, as in the
self-classifying paper. A rule with a code input also reads c = ``topology.cell_code(K)``:
(cells, K) fixed per-cell features (or (S, cells, K), one code per sample); its projection U c is
computed once per rollout. Random draws per step, in this order: the topology's own in
``perceive``, the noise, the fire mask.

Hooks (as CAX's ``perceive`` / ``update`` / ``_step`` and PyG's ``message`` / ``update``):

- ``post`` (constructor): the post-update transform, state -> state, applied after every update:
  MetaNCA's clamp of the hidden channels (:class:`ClampHidden`), the restorer's LayerNorm,
  lattice noise and gate.
- ``sparse_fire`` (constructor): compute the rule on the updating cells only and add their deltas
  with ``index_add`` (the same values; about ``fire_rate`` of the work: MetaNCA's weight cells).
  True, False, or a device type ("cpu"): sparse for tensors on that device only (the dense masked
  update keeps static shapes and needs no host synchronisation per step). A topology with
  ``perceive_rows(x, perception, rows) -> (len(rows), P)`` perceives those cells only too (the
  self-classifier's alive cells); it promises no random draws of its own, so the noise and fire
  mask are drawn first, from the same stream as otherwise.
- ``alive``, ``fire``, ``noise`` (step): the alive mask (None: all alive) and given random draws.
- ``perturb(t, state) -> state`` (rollout): applied before update t = 0, 1, ... (damage at step k).
- ``observe(t, state)`` (rollout): called after t = 1, 2, ... updates (curves, progress bars).
- ``step_fn`` (attribute, default None): what ``rollout`` calls for each step instead of
  ``step``, with the same arguments: the compiled step of :mod:`localrules.train.accelerate`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .perception import MoorePerception
from .rule import Rule

State = torch.Tensor


class ClampHidden(nn.Module):
    """post = [state[..., :keep], clamp(state[..., keep:], -limit, limit)]: bounds the hidden
    channels and leaves the first ``keep`` (MetaNCA: the weight itself) free. No parameters."""

    def __init__(self, limit: float, keep: int = 1):
        super().__init__()
        self.limit, self.keep = limit, keep

    def forward(self, state: State) -> State:
        k = self.keep
        return torch.cat([state[..., :k], state[..., k:].clamp(-self.limit, self.limit)], -1)


class NCA(nn.Module):
    def __init__(self, perception: MoorePerception | None, rule: Rule, fire_rate: float = 0.5,
                 post: Callable[[State], State] | None = None, sparse_fire: bool | str = False):
        super().__init__()
        self.perception, self.rule, self.fire_rate = perception, rule, fire_rate
        self.post, self.sparse_fire = post, sparse_fire
        self.step_fn: Callable[..., State] | None = None  # rollout's step when set (compiled)

    def code_projection(self, topology, device=None) -> torch.Tensor | None:
        """U c: the rule's first-layer projection of the topology's cell code, (cells, hidden_1)
        or (S, cells, hidden_1); None for a rule without a code input."""
        if not self.rule.code_dim:
            return None
        return self.rule.code(topology.cell_code(self.rule.code_dim, device))

    def _rule(self, p: torch.Tensor, uc: torch.Tensor | None) -> State:
        """delta = rule(p, c) for every row of p, with U c given."""
        return self.rule.mlp(p) if uc is None else self.rule.after_first(self.rule.mlp[0](p) + uc)

    def step(self, topology, fixed: torch.Tensor | None, state: State, alive: torch.Tensor | None = None,
             noise_std: float = 0.0, fire: torch.Tensor | None = None, noise: torch.Tensor | None = None,
             uc: torch.Tensor | None = None) -> State:
        """One step. alive, fire: (cells, 1) bool (alive None: every cell is alive); fire and noise
        are drawn when not given; ``uc``: :meth:`code_projection`, computed when not given. A
        parameter-free topology gets ``perception=None``."""
        x = state if fixed is None else torch.cat([fixed, state], -1)
        sparse = self.sparse_fire in (True, x.device.type)
        # a topology with perceive_rows (it draws nothing) perceives the updating rows only, below
        p = None if sparse and hasattr(topology, "perceive_rows") else topology.perceive(x, self.perception)
        if uc is None:
            uc = self.code_projection(topology, x.device)
        C, cells = state.shape[-1], x.shape[:-1] if p is None else p.shape[:-1]
        if noise_std > 0 and noise is None:
            noise = torch.randn(*cells, C, device=x.device)
        if fire is None and self.fire_rate < 1.0:
            fire = torch.rand(*cells, 1, device=x.device) <= self.fire_rate
        mask = fire if alive is None else alive if fire is None else fire & alive
        if sparse and mask is not None:
            out = self._sparse(p, uc, state, mask, noise, noise_std, topology, x)
        else:
            if p is None:
                p = topology.perceive(x, self.perception)
            delta = self._rule(p, uc)
            if noise_std > 0:
                delta = delta + noise * noise_std
            out = state + delta if mask is None else state + delta * mask
        return out if self.post is None else self.post(out)

    def _sparse(self, p, uc, state, mask, noise, noise_std, topology, x) -> State:
        """The update on the rows where ``mask`` is set only, added with ``index_add``; with p None
        the topology perceives those rows only (``topology.perceive_rows(x, perception, idx)``)."""
        C, n = state.shape[-1], mask.numel()
        idx = mask.reshape(-1).nonzero().squeeze(1)
        if p is None:
            rows = topology.perceive_rows(x, self.perception, idx)
        else:
            rows = p.reshape(n, -1).index_select(0, idx)
        if uc is not None:  # one code per cell, or shared by the S samples
            per_cell = uc.reshape(-1, uc.shape[-1])
            uc = per_cell.index_select(0, idx % len(per_cell))
        delta = self._rule(rows, uc)
        if noise_std > 0:
            delta = delta + noise.reshape(n, C).index_select(0, idx) * noise_std
        return state.reshape(n, C).index_add(0, idx, delta.to(state.dtype)).view(state.shape)  # bf16 autocast

    def rollout(self, topology, fixed: torch.Tensor | None, state: State, alive: torch.Tensor | None = None,
                steps: int = 1, noise_std: float = 0.0, fires: torch.Tensor | None = None,
                noises: torch.Tensor | None = None, perturb: Callable[[int, State], State] | None = None,
                observe: Callable[[int, State], None] | None = None) -> State:
        """``steps`` steps; ``fires`` (steps, cells, 1) bool and ``noises`` (steps, cells, C) give each
        step's fire mask and noise (else drawn); the cell code's projection U c is computed once.
        ``perturb(t, state)`` replaces the state before update t (0-based); ``observe(t, state)``
        sees it after t updates (1-based)."""
        uc = self.code_projection(topology, state.device)
        step = self.step_fn or self.step
        for t in range(steps):
            if perturb is not None:
                state = perturb(t, state)
            fire = None if fires is None else fires[t]
            noise = None if noises is None else noises[t]
            state = step(topology, fixed, state, alive, noise_std, fire, noise, uc)
            if observe is not None:
                observe(t + 1, state)
        return state
