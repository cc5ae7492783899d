"""Data-conditioned perception of a weight graph: neuron activations and errors as extra per-cell inputs.

The task network whose weights are the cells (state[..., 0], laid out as in
localrules.core.weightgraph) runs on a data batch; every weight then also perceives

    [a_src, d_src, a_dst, d_dst]     tanh of the mean activation and of 10 x the mean error dL/dz
                                     of the neuron it leaves and of the neuron it enters

(the variant the MetaNCA abstract names as future work: the rule becomes a learned local
learning rule). :class:`DataConditioned` wraps a weight topology and appends them to its
perception, drawing a data batch in every ``perceive``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}
SIGNALS = 4  # [a_src, d_src, a_dst, d_dst] per weight


def forward_layers(topo, state: torch.Tensor, x: torch.Tensor, activation: str):
    """Pre-activations z and activations a of every layer: ({layer: (S, D, n_l)}, {layer: ...}).

    z_dst = sum over blocks into dst of a_src W^T (+ b_dst); hidden layers use ``activation``;
    blocks must come sorted by destination layer.
    """
    act = ACTIVATIONS[activation]
    S = state.shape[0]
    acts = {0: x.expand(S, *x.shape)}
    z: dict[int, torch.Tensor] = {}
    for b, m in zip(topo.blocks, topo.split(state[..., :1])):
        W = m[..., 0]  # (S, n_out, n_in [+ 1])
        n_in = topo.sizes[b.src]
        if b.src not in acts:
            acts[b.src] = act(z[b.src])
        out = torch.einsum("sdi,soi->sdo", acts[b.src], W[..., :n_in])
        if W.shape[-1] > n_in:
            out = out + W[..., n_in][:, None]
        z[b.dst] = z[b.dst] + out if b.dst in z else out
    last = len(topo.sizes) - 1
    acts[last] = z[last]
    return z, acts


ERROR_SCALE = 10.0  # errors are ~10x smaller than activations


def neuron_signals(topo, state: torch.Tensor, x: torch.Tensor, y: torch.Tensor, activation: str):
    """(S, nodes, 2): per neuron, tanh of its mean activation and of 10 x its mean error dL/dz
    over the batch x, y.

    Inputs have activation x and no error; bias neurons have activation 1 and no error; the
    output neurons' activation is the logit. Computed on detached weights (no meta-gradient).
    """
    with torch.enable_grad():
        w = state.detach().requires_grad_()  # makes every z part of a graph we can differentiate
        z, acts = forward_layers(topo, w, x, activation)
        hidden = [z[l] for l in sorted(z)]
        last = len(topo.sizes) - 1
        loss = F.cross_entropy(z[last].flatten(0, 1), y.repeat(len(w)), reduction="sum") / len(x)
        grads = torch.autograd.grad(loss, hidden)
    S = len(w)
    sig = state.new_zeros(S, topo.n_nodes, 2)
    off = topo.layer_offset
    for l, a in acts.items():
        sig[:, off[l] : off[l + 1], 0] = a.detach().mean(1)
    for l, g in zip(sorted(z), grads):
        sig[:, off[l] : off[l + 1], 1] = g.mean(1) * ERROR_SCALE
    sig[:, off[-1] :, 0] = 1.0  # bias neurons
    return torch.tanh(sig)  # bounded, so growing weights cannot blow the rule up


class DataConditioned:
    """Wraps a weight topology: perception gains [a_src, d_src, a_dst, d_dst] per weight, the mean
    activation and error of the neuron it leaves and of the neuron it enters, on a data batch
    (the variant the MetaNCA abstract names as future work: R becomes a learned local learning
    rule). p = [x, x_f, x_b, signals]: (S, cells, 3C + 4)."""

    def __init__(self, topo, x: torch.Tensor, y: torch.Tensor, activation: str, batch: int = 64):
        self.topo, self.x, self.y, self.activation, self.batch = topo, x, y, activation, batch

    def __getattr__(self, name):
        return getattr(self.topo, name)

    def perceive(self, x: torch.Tensor, perception=None) -> torch.Tensor:
        d = torch.randint(len(self.x), (min(self.batch, len(self.x)),), device=self.x.device)
        sig = neuron_signals(self.topo, x[..., :1], self.x[d], self.y[d], self.activation)
        src, dst = self.topo.src.to(x.device), self.topo.dst.to(x.device)
        return torch.cat([self.topo.perceive(x), sig[:, src], sig[:, dst]], -1)
