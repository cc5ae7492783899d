"""MetaNCA neighbourhoods: every weight of a feed-forward task network is a cell.

A weight w from neuron j (layer l) to neuron i (layer l+1) perceives

    p(w) = [x(w), x_f(w), x_b(w)]       x = [w, h]: the weight and its hidden vector (C = 1 + H)
    x_f  = mean of x over the forward neighbours: the weights *leaving* neuron i
    x_b  = mean of x over the backward neighbours: the weights *entering* neuron j

An empty neighbourhood (the output layer's forward side, the input layer's backward side)
gives zeros. Biases are weights from a constant bias neuron, one per layer: bias b_i is a cell
on the edge (bias neuron of layer l) -> i, it counts among the weights entering i, and its own
backward neighbourhood is empty.

Cell layout, shared by both implementations: layer l holds the augmented matrix
``[W_l | b_l]`` of shape (n_{l+1}, n_l + 1), flattened row-major; layers are concatenated, so a
network is a flat (S, cells, C) tensor for S sampled networks.

Each cell also has a fixed positional code (:func:`positional_code`, served by ``cell_code``)
that a rule with a code input reads directly (see localrules.core.rule).

- :class:`DenseLayers`: the fast path for chain MLPs: row / column means of each matrix,
  broadcast back.
- :class:`WeightGraph`: the general path on torch-geometric: weights are edges, means are
  scatter-means into neurons and back, which also runs DAG task networks (skip connections).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .pyg import scatter


def _check_sizes(sizes) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"a task network needs at least two layers of >= 1 neuron, got {list(sizes)}")
    return sizes


@dataclass(frozen=True)
class Block:
    """A dense connection from layer ``src`` to layer ``dst`` of a layered DAG."""

    src: int
    dst: int


BIAS_POSITION = -1  # the "input neuron" index that marks a bias cell (no neuron has it)


def fourier(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """Octave Fourier features: (n,) integer positions -> (n, dim) [sin, cos](2 pi pos / 2^k),
    k = 1, 2, ...: periods 2, 4, ..., 2^ceil(dim/2), so ``dim`` = 20 tells 1,024 positions apart.

    (A transformer-style code with geometric frequencies (base 10^4) left a rule that must
    write a weight per input pixel stuck at chance on 8x8 digits; these octaves did not.)
    """
    k = torch.arange(1, (dim + 1) // 2 + 1, dtype=torch.float64)
    ang = 2 * torch.pi * pos.double()[:, None] / 2.0**k
    return torch.stack([ang.sin(), ang.cos()], -1).flatten(1)[:, :dim].float()


def positional_code(topo, dim: int) -> torch.Tensor:
    """(cells, 3 * dim): [F(input neuron), F(output neuron), F(destination layer)] per weight,
    F = :func:`fourier`.

    A data-free rule sees only local means, so nothing else tells input pixel 3 from pixel
    700; this code breaks the symmetry. Bias cells get the input position BIAS_POSITION = -1,
    which equals no neuron index below 2^ceil(dim/2) - 1.
    """
    parts = []
    for b, (o, i) in zip(topo.blocks, topo.block_shapes):
        cols = torch.arange(i)
        if i > topo.sizes[b.src]:
            cols[-1] = BIAS_POSITION
        parts.append(torch.cat([
            fourier(cols.repeat(o), dim),
            fourier(torch.arange(o).repeat_interleave(i), dim),
            fourier(torch.full((o * i,), b.dst - 1), dim),
        ], 1))
    return torch.cat(parts)


class _CellCode:
    def cell_code(self, width: int, device=None) -> torch.Tensor:
        """(cells, width) :meth:`positional_code` with dim = width / 3, cached per width and device."""
        if width % 3:
            raise ValueError(f"the positional code has 3 equal parts; width {width} is not a multiple of 3")
        cache = self.__dict__.setdefault("_code_cache", {})
        key = (width, str(device))
        if key not in cache:
            cache[key] = self.positional_code(width // 3).to(device)
        return cache[key]

    def positional_code(self, dim: int) -> torch.Tensor:
        """(cells, 3 * dim): :func:`positional_code` of this graph (a topology may name its cells otherwise)."""
        return positional_code(self, dim)


class DenseLayers(_CellCode):
    """Fast path for a chain MLP with layer sizes ``sizes`` = [n_0, ..., n_L]."""

    def __init__(self, sizes):
        self.sizes = _check_sizes(sizes)
        self.block_shapes = [(o, i + 1) for i, o in zip(self.sizes[:-1], self.sizes[1:])]
        self.n_cells = sum(o * i for o, i in self.block_shapes)
        self.blocks = [Block(l, l + 1) for l in range(len(self.sizes) - 1)]
        graph = WeightGraph(self.sizes)  # the same cell order: borrow its neuron ids per cell
        self.src, self.dst, self.n_nodes = graph.src, graph.dst, graph.n_nodes
        self.layer_offset = graph.layer_offset

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """(S, cells, C) -> per layer (S, n_{l+1}, n_l + 1, C)."""
        S, _, C = flat.shape
        parts = flat.split([o * i for o, i in self.block_shapes], dim=1)
        return [p.reshape(S, o, i, C) for p, (o, i) in zip(parts, self.block_shapes)]

    def perceive(self, x: torch.Tensor, perception=None) -> torch.Tensor:
        """x (S, cells, C) -> p (S, cells, 3C) = [x, x_f, x_b]."""
        mats = self.split(x)
        out = []
        for l, m in enumerate(mats):
            S, o, i, C = m.shape
            if l + 1 < len(mats):  # weights leaving neuron r of layer l+1: column r of the next matrix
                fwd = mats[l + 1][:, :, :o].mean(1)  # (S, o, C)
                xf = fwd[:, :, None].expand(S, o, i, C)
            else:
                xf = m.new_zeros(S, o, i, C)
            if l > 0:  # weights entering neuron c of layer l: row c of the previous matrix (with bias)
                bwd = mats[l - 1].mean(2)  # (S, i - 1, C)
                bwd = torch.cat([bwd, m.new_zeros(S, 1, C)], 1)  # the bias neuron has no inputs
                xb = bwd[:, None].expand(S, o, i, C)
            else:
                xb = m.new_zeros(S, o, i, C)
            out.append(torch.cat([m, xf, xb], -1).reshape(S, o * i, 3 * C))
        return torch.cat(out, 1)


class WeightGraph(_CellCode):
    """General path: the task network as a graph, neurons are nodes, weights are edges.

    ``WeightGraph(sizes, blocks)``: ``sizes`` per layer, ``blocks`` the dense connections
    (default: the chain l -> l+1). Each destination layer gets one bias neuron, whose edges
    into that layer come after the block edges of its last block in the cell order below.
    Cells are ordered block by block, each block as the augmented matrix [W | b] when it is the
    last block into its destination layer, plain W otherwise (row-major, rows = destination).
    """

    def __init__(self, sizes, blocks: list[Block] | None = None):
        self.sizes = _check_sizes(sizes)
        L = len(self.sizes)
        self.blocks = blocks or [Block(l, l + 1) for l in range(L - 1)]
        for b in self.blocks:
            if not 0 <= b.src < b.dst < L:
                raise ValueError(f"block {b} must go forward between existing layers")
        offset = [0]
        for n in self.sizes:
            offset.append(offset[-1] + n)
        self.layer_offset = offset  # neuron ids of layer l: offset[l] .. offset[l+1]
        n_neurons = offset[-1]
        last_into = {b.dst: k for k, b in enumerate(self.blocks)}
        src, dst, self.block_shapes = [], [], []
        bias_id = n_neurons
        for k, b in enumerate(self.blocks):
            n_in, n_out = self.sizes[b.src], self.sizes[b.dst]
            rows = torch.arange(n_out) + offset[b.dst]
            cols = torch.arange(n_in) + offset[b.src]
            has_bias = last_into[b.dst] == k
            if has_bias:
                cols = torch.cat([cols, torch.tensor([bias_id])])
                bias_id += 1
            src.append(cols.repeat(n_out))
            dst.append(rows.repeat_interleave(len(cols)))
            self.block_shapes.append((n_out, len(cols)))
        self.n_nodes = bias_id
        self.src, self.dst = torch.cat(src), torch.cat(dst)
        self.n_cells = len(self.src)

    def perceive(self, x: torch.Tensor, perception=None) -> torch.Tensor:
        """x (S, cells, C) -> p (S, cells, 3C): scatter-means into neurons, gathered back."""
        src, dst = self.src.to(x.device), self.dst.to(x.device)
        leaving = scatter(x, src, dim=1, dim_size=self.n_nodes, reduce="mean")  # (S, nodes, C)
        entering = scatter(x, dst, dim=1, dim_size=self.n_nodes, reduce="mean")
        return torch.cat([x, leaving[:, dst], entering[:, src]], -1)

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """(S, cells, C) -> per block (S, n_out, n_in [+1 for the bias], C)."""
        S, _, C = flat.shape
        parts = flat.split([o * i for o, i in self.block_shapes], dim=1)
        return [p.reshape(S, o, i, C) for p, (o, i) in zip(parts, self.block_shapes)]
