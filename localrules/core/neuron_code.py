"""Size-independent positional code of MetaNCA weights: hidden neurons carry no index.

The index code (:func:`localrules.core.weightgraph.positional_code`) names each weight's input
neuron, output neuron and layer by index, so a rule meta-trained on widths <= 50 reads codes of
hidden neurons 50..99 it never saw. Here every neuron n has a position q_n:

    q_n = its index in its layer       input pixels and output classes (their identity matters)
    q_n = BIAS_POSITION = -1           bias neurons
    q_n = u_n ~ U[0, span)             hidden neurons, drawn per network when it is initialised
                                       and kept for its life (default span 2^m - 2, m = ceil(dim / 2))

or, for the relative code (:func:`relative_positions`), deterministic and the same in every network,

    q_n = i * span / n                 hidden neuron i of a layer of n neurons

and a weight from neuron j into neuron i of layer l + 1 gets c = [F(q_j), F(q_i), F(l)]
(F = octave :func:`fourier` features of real positions; (S, cells, 3 dim) for S networks). A
hidden neuron's code is then a random point with the same distribution in every width: what the
rule reads about it depends on neither the layer's width nor an index. With every position set
to its index, c equals the index code (tests hold them equal). Under the relative code a hidden
neuron is named by where it sits in its layer, a fraction of the layer: the same neuron of a
layer twice as wide gets the same code, every width maps into [0, span), and a layer of exactly
span neurons keeps the index code.
"""

from __future__ import annotations

import torch

from .weightgraph import BIAS_POSITION, fourier


def neuron_positions(topo) -> torch.Tensor:
    """(nodes,) float: each neuron's index in its layer; BIAS_POSITION for bias neurons."""
    off = topo.layer_offset
    q = torch.full((topo.n_nodes,), float(BIAS_POSITION))
    for l in range(len(topo.sizes)):
        q[off[l] : off[l + 1]] = torch.arange(off[l + 1] - off[l], dtype=torch.float)
    return q


def hidden_neurons(topo) -> torch.Tensor:
    """(nodes,) bool: neurons of the hidden layers (not inputs, outputs or bias neurons)."""
    off = topo.layer_offset
    mask = torch.zeros(topo.n_nodes, dtype=torch.bool)
    mask[off[1] : off[-2]] = True
    return mask


def random_positions(topo, samples: int, dim: int, span: float = 0, generator=None) -> torch.Tensor:
    """(samples, nodes): :func:`neuron_positions` with every hidden neuron's position replaced by
    u ~ U[0, span) (span 0: 2^m - 2, m = ceil(dim / 2), the whole code range kept away from the bias
    position -1 = 2^m - 1 modulo the longest period 2^m), independently per network."""
    q = neuron_positions(topo).repeat(samples, 1)
    mask = hidden_neurons(topo)
    top = span or 2.0 ** ((dim + 1) // 2) - 2
    q[:, mask] = torch.rand(samples, int(mask.sum()), generator=generator) * top
    return q


def relative_positions(topo, span: float) -> torch.Tensor:
    """(nodes,): :func:`neuron_positions` with hidden neuron i of a layer of n neurons at i * span / n."""
    q = neuron_positions(topo)
    off = topo.layer_offset
    for l in range(1, len(topo.sizes) - 1):
        n = off[l + 1] - off[l]
        q[off[l] : off[l + 1]] = torch.arange(n, dtype=torch.float) * (span / n)
    return q


def cell_layers(topo) -> torch.Tensor:
    """(cells,) the layer index l of each weight's destination layer l + 1."""
    return torch.cat([torch.full((o * i,), b.dst - 1) for b, (o, i) in zip(topo.blocks, topo.block_shapes)])


def network_code(topo, positions: torch.Tensor, dim: int) -> torch.Tensor:
    """positions (S, nodes) -> (S, cells, 3 dim) = [F(q_src), F(q_dst), F(layer)] per weight."""
    S = len(positions)
    Fq = fourier(positions.flatten().cpu(), dim).view(S, topo.n_nodes, dim)
    layer = fourier(cell_layers(topo), dim).expand(S, -1, -1)
    return torch.cat([Fq[:, topo.src], Fq[:, topo.dst], layer], -1)


class NeuronCode:
    """A topology whose S networks carry their own neuron positions (S, nodes): ``cell_code``
    serves :func:`network_code` (S, cells, width), computed once; everything else is the
    wrapped topology's."""

    def __init__(self, topo, positions: torch.Tensor):
        self.topo, self.positions = topo, positions
        self._code: dict = {}

    def __getattr__(self, name):
        return getattr(self.topo, name)

    def cell_code(self, width: int, device=None) -> torch.Tensor:
        if width % 3:
            raise ValueError(f"the positional code has 3 equal parts; width {width} is not a multiple of 3")
        key = (width, str(device))
        if key not in self._code:
            self._code[key] = network_code(self.topo, self.positions, width // 3).to(device)
        return self._code[key]
