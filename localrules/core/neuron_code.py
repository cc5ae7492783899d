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

or, for the wrapped code (:func:`wrapped_positions`), the index code read modulo the span,

    q_n = i mod span                   hidden neuron i of any layer (span: the widest layer meta-trained on)

and a weight from neuron j into neuron i of layer l + 1 gets c = [F(q_j), F(q_i), F(l)]
(F = octave :func:`fourier` features of real positions; (S, cells, 3 dim) for S networks). A
hidden neuron's code is then a random point with the same distribution in every width: what the
rule reads about it depends on neither the layer's width nor an index. With every position set
to its index, c equals the index code (tests hold them equal). Under the relative code a hidden
neuron is named by where it sits in its layer, a fraction of the layer: the same neuron of a
layer twice as wide gets the same code, every width maps into [0, span), and a layer of exactly
span neurons keeps the index code. The wrapped code equals the index code on every layer of
at most span neurons (so a rule trained with the index code reads it unchanged there) and gives
the neurons of a wider layer codes it has seen, each shared by ceil(n / span) neurons.

The layer part F(l) may also be depth-independent (:func:`layer_positions`): the index code
names the destination layer by its index l = 0, 1, ..., so a rule meta-trained on two hidden
layers reads an output layer at index 3 (three hidden layers) it never saw, and takes the
output of a one-hidden-layer network for a hidden layer. The role code names what a layer
does, l' = 0 (from the input layer), 1 (hidden to hidden), 2 (into the output layer); the
relative code places block l of a network of L layers at 2 l / (L - 2), a fraction of the
depth scaled to [0, 2]. Both equal the index code on two hidden layers, so a rule trained on
[n, X, Y, m] with the index code reads the same codes there under either.
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


def wrapped_positions(topo, span: float) -> torch.Tensor:
    """(nodes,): :func:`neuron_positions` with hidden neuron i of any layer at i mod span."""
    q = neuron_positions(topo)
    hidden = hidden_neurons(topo)
    q[hidden] = torch.remainder(q[hidden], span)
    return q


LAYER_CODES = ("index", "role", "relative")


def layer_positions(topo, mode: str = "index") -> torch.Tensor:
    """(cells,) float: the layer position of each weight's block (src -> dst) in a network of L layers:

        index     dst - 1
        role      2 if dst = L - 1 (into the output), else 0 if src = 0 (from the input), else 1
        relative  2 (dst - 1) / (L - 2)   (2 when L = 2)

    role and relative equal index for L = 4 (two hidden layers) and are defined at any depth."""
    if mode not in LAYER_CODES:
        raise ValueError(f"layer code must be one of {LAYER_CODES}, not {mode!r}")
    L = len(topo.sizes)
    vals = []
    for b in topo.blocks:
        if mode == "index":
            vals.append(float(b.dst - 1))
        elif mode == "role":
            vals.append(2.0 if b.dst == L - 1 else 0.0 if b.src == 0 else 1.0)
        else:
            vals.append(2.0 * (b.dst - 1) / (L - 2) if L > 2 else 2.0)
    return torch.cat([torch.full((o * i,), v) for v, (o, i) in zip(vals, topo.block_shapes)])


def network_code(topo, positions: torch.Tensor, dim: int, layer_code: str = "index") -> torch.Tensor:
    """positions (S, nodes) -> (S, cells, 3 dim) = [F(q_src), F(q_dst), F(layer)] per weight
    (layer: :func:`layer_positions` with ``layer_code``)."""
    S = len(positions)
    Fq = fourier(positions.flatten().cpu(), dim).view(S, topo.n_nodes, dim)
    layer = fourier(layer_positions(topo, layer_code), dim).expand(S, -1, -1)
    return torch.cat([Fq[:, topo.src], Fq[:, topo.dst], layer], -1)


class NeuronCode:
    """A topology whose S networks carry their own neuron positions (S, nodes) (S = 1: shared by
    all) and layer code: ``cell_code`` serves :func:`network_code` (S, cells, width), computed
    once; everything else is the wrapped topology's."""

    def __init__(self, topo, positions: torch.Tensor, layer_code: str = "index"):
        if layer_code not in LAYER_CODES:
            raise ValueError(f"layer code must be one of {LAYER_CODES}, not {layer_code!r}")
        self.topo, self.positions, self.layer_code = topo, positions, layer_code
        self._code: dict = {}

    def __getattr__(self, name):
        return getattr(self.topo, name)

    def cell_code(self, width: int, device=None) -> torch.Tensor:
        if width % 3:
            raise ValueError(f"the positional code has 3 equal parts; width {width} is not a multiple of 3")
        key = (width, str(device))
        if key not in self._code:
            self._code[key] = network_code(self.topo, self.positions, width // 3, self.layer_code).to(device)
        return self._code[key]
