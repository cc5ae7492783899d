"""MetaNCA neighbourhoods of convolutional and residual task networks: every kernel weight is a cell.

A convolution W (o, i, k, k) connects input channel i to output channel o through k^2 shared
weights: it is a dense layer over *channels* whose every edge carries k^2 weights. So the
neurons of the weight graph are channels, and a kernel weight W[o, i, ky, kx] (one cell, not
one per image position: weight sharing) perceives, as a dense weight does
(localrules.core.weightgraph),

    x_f = mean of x over the weights leaving channel o   (all taps of the next layer's kernels
                                                          reading o, or the dense head's columns of o)
    x_b = mean of x over the weights entering channel i  (all taps of the previous layer's kernels
                                                          writing i, and their biases)

The dense head reads the flattened feature map (C channels x P positions): its weight (o, c, p)
leaves channel c, so its backward mean is over the last convolution's kernel weights writing c
(with their bias), and the forward mean of those is over the head's P x classes weights reading c.

A residual block y = x + conv_b(act(conv_a(x))) adds an identity edge x_c -> y_c with no weight
(no cell); neighbourhoods follow it: the weights entering y_c are conv_b's row c *and* those
entering x_c, the weights leaving x_c are conv_a's column c *and* those leaving y_c. In general
a cell counts among the weights leaving node n when its input node is n or is reached from n
through identity edges, and among those entering n when its output node is n or reaches n.

Cell layout: block by block, each as the augmented matrix [W.reshape(o, i k^2) | b] (conv) or
[W (o, C P) | b] (head), row-major, as DenseLayers: S networks are a flat (S, cells, 1 + H) tensor.

Architectures are spelled ``conv:8,16`` (conv3x3 -> act -> 2x2 max-pool per number, then the
dense head) with ``res`` for a residual block at the current width (``conv:8,res,16``).

The cell code ([F(q_src), F(q_dst), F(layer)] as weightgraph.positional_code) names channels by
where they sit in their layer, q = (c + t / k^2) * span / C for tap t of hidden channel c of C
(the relative code of localrules.core.neuron_code: the same for any channel count), input
channels by the index of their kernel column (c k^2 + t, as input pixels), classes by index, the
head's columns by (c + p / P) * span / C, biases by -1, and the layer by its role: 0 from the
input, 1 hidden to hidden, 2 into the output (as neuron_code.layer_positions "role").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data_signals import ACTIVATIONS
from .pyg import scatter
from .weightgraph import BIAS_POSITION, Block, _CellCode, fourier

CONV_PREFIX = "conv:"


def is_conv_arch(arch) -> bool:
    return isinstance(arch, str)


def parse_conv_arch(text: str) -> tuple:
    """``conv:8,16`` -> (8, 16); ``conv:8,res,16`` -> (8, "res", 16); a clear ValueError otherwise."""
    if not isinstance(text, str) or not text.startswith(CONV_PREFIX):
        raise ValueError(f"a convolutional architecture is spelled conv:C1,C2,... (e.g. conv:8,16 or "
                         f"conv:8,res,16), not {text!r}")
    out = []
    for tok in text[len(CONV_PREFIX):].split(","):
        tok = tok.strip()
        if tok == "res":
            if not out:
                raise ValueError(f"{text!r}: a residual block needs a convolution before it")
            out.append("res")
        elif tok.isdigit() and int(tok) > 0:
            out.append(int(tok))
        else:
            raise ValueError(f"{text!r}: each item must be a positive channel count or 'res', not {tok!r}")
    return tuple(out)


@dataclass(frozen=True)
class Op:
    """One weighted layer: a conv (``kind`` "conv") or the dense head ("dense") from node layer src to dst;
    ``skip``: the node layer added to its output (residual); ``act`` / ``pool`` after it."""

    kind: str
    src: int
    dst: int
    act: bool = True
    pool: bool = False
    skip: int | None = None


class ConvNet(_CellCode):
    """The weight graph of a small CNN ``arch`` on images (channels, side, side) with ``n_classes`` outputs.

    Node layers (``sizes``): input channels, every conv's output channels, the classes; a
    residual block adds two (its inner and its output channels). ``span``: the range of the
    relative channel code."""

    def __init__(self, arch: str, image: tuple[int, int, int], n_classes: int, span: float = 100.0, kernel: int = 3):
        self.arch, self.kernel, self.span = arch, kernel, float(span)
        self.image, self.n_classes = tuple(image), n_classes
        tokens = parse_conv_arch(arch)
        c, side, _ = image
        sizes, ops, identity = [c], [], []
        for tok in tokens:
            cur = len(sizes) - 1
            if tok == "res":
                C = sizes[cur]
                sizes += [C, C]
                ops += [Op("conv", cur, cur + 1), Op("conv", cur + 1, cur + 2, act=False, skip=cur)]
                identity.append((cur, cur + 2))
            else:
                if side < 2:
                    raise ValueError(f"{arch!r}: too many pooled convolutions for {image[1]}x{image[2]} images")
                side //= 2
                sizes.append(tok)
                ops.append(Op("conv", cur, cur + 1, pool=True))
        self.positions = side * side  # P: positions of the last feature map
        sizes.append(n_classes)
        ops.append(Op("dense", len(sizes) - 2, len(sizes) - 1, act=False))
        self.sizes, self.ops, self.identity = tuple(sizes), ops, identity
        self.blocks = [Block(op.src, op.dst) for op in ops]
        kk = kernel * kernel
        self.fan_in = [sizes[op.src] * (kk if op.kind == "conv" else self.positions) for op in ops]
        self.block_shapes = [(sizes[op.dst], f + 1) for op, f in zip(ops, self.fan_in)]
        self.n_cells = sum(o * i for o, i in self.block_shapes)
        off = [0]
        for n in sizes:
            off.append(off[-1] + n)
        self.layer_offset = off
        src, dst = [], []
        per_col = [kk if op.kind == "conv" else self.positions for op in ops]
        for k, (op, (o, cols)) in enumerate(zip(ops, self.block_shapes)):
            col_node = torch.arange(sizes[op.src]).repeat_interleave(per_col[k]) + off[op.src]
            col_node = torch.cat([col_node, torch.tensor([off[-1] + k])])  # the block's bias neuron
            src.append(col_node.repeat(o))
            dst.append((torch.arange(o) + off[op.dst]).repeat_interleave(cols))
        self.src, self.dst = torch.cat(src), torch.cat(dst)
        self.n_nodes = off[-1] + len(ops)
        self._per_col = per_col
        self._pairs()

    def _pairs(self) -> None:
        """(cell, node) pairs of the 'leaving' and 'entering' means, identity edges followed."""
        off = self.layer_offset
        succ: dict[int, list[int]] = {}
        for a, b in self.identity:  # node a_c -> b_c
            for ch in range(self.sizes[a]):
                succ.setdefault(off[a] + ch, []).append(off[b] + ch)

        def closure(n: int, edges) -> list[int]:
            out, todo = [], [n]
            while todo:
                for m in edges.get(todo.pop(), []):
                    out.append(m)
                    todo.append(m)
            return out

        pred: dict[int, list[int]] = {}
        for a, bs in succ.items():
            for b in bs:
                pred.setdefault(b, []).append(a)
        cells = torch.arange(self.n_cells)
        lc, ln, ec, en = [cells], [self.src], [cells], [self.dst]
        for node in pred:  # a cell leaving b_c also leaves every a_c with a_c -> b_c
            k = (self.src == node).nonzero().squeeze(1)
            for up in closure(node, pred):
                lc.append(k)
                ln.append(torch.full_like(k, up))
        for node in succ:  # a cell entering a_c also enters b_c
            k = (self.dst == node).nonzero().squeeze(1)
            for down in closure(node, succ):
                ec.append(k)
                en.append(torch.full_like(k, down))
        self.leave_cell, self.leave_node = torch.cat(lc), torch.cat(ln)
        self.enter_cell, self.enter_node = torch.cat(ec), torch.cat(en)

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """(S, cells, C) -> per block (S, o, cols + 1, C)."""
        S, _, C = flat.shape
        parts = flat.split([o * i for o, i in self.block_shapes], dim=1)
        return [p.reshape(S, o, i, C) for p, (o, i) in zip(parts, self.block_shapes)]

    def perceive(self, x: torch.Tensor, perception=None) -> torch.Tensor:
        """x (S, cells, C) -> p (S, cells, 3C) = [x, x_f, x_b]: scatter-means into channels, gathered back."""
        dev = x.device
        leaving = scatter(x[:, self.leave_cell.to(dev)], self.leave_node.to(dev), dim=1,
                          dim_size=self.n_nodes, reduce="mean")
        entering = scatter(x[:, self.enter_cell.to(dev)], self.enter_node.to(dev), dim=1,
                           dim_size=self.n_nodes, reduce="mean")
        return torch.cat([x, leaving[:, self.dst.to(dev)], entering[:, self.src.to(dev)]], -1)

    def code_positions(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cells,) each: q_src, q_dst and the layer role of every cell (see the module docstring)."""
        qs, qd, role = [], [], []
        last = len(self.sizes) - 1
        for op, (o, cols), per in zip(self.ops, self.block_shapes, self._per_col):
            n_in, n_out = self.sizes[op.src], self.sizes[op.dst]
            col = torch.arange(cols - 1, dtype=torch.float)
            if op.src == 0:
                q = col
            else:
                q = (col / per) * (self.span / n_in)  # channel c + tap / k^2 (or position / P), relative
            q = torch.cat([q, torch.tensor([float(BIAS_POSITION)])])
            rows = torch.arange(o, dtype=torch.float)
            d = rows if op.dst == last else rows * (self.span / n_out)
            qs.append(q.repeat(o))
            qd.append(d.repeat_interleave(cols))
            r = 2.0 if op.dst == last else 0.0 if op.src == 0 else 1.0
            role.append(torch.full((o * cols,), r))
        return torch.cat(qs), torch.cat(qd), torch.cat(role)

    def positional_code(self, dim: int) -> torch.Tensor:
        """(cells, 3 * dim) = [F(q_src), F(q_dst), F(role)]; ``cell_code(width)`` serves it with dim = width / 3."""
        return torch.cat([fourier(q, dim) for q in self.code_positions()], 1)

    def forward(self, state: torch.Tensor, x: torch.Tensor, activation: str, chunk: int = 4096) -> torch.Tensor:
        """The S networks whose weights are ``state[..., 0]`` on x (D, c * side * side) -> logits (S, D, classes).

        S networks at once as grouped convolutions (groups = S); without autograd, in data chunks of
        about ``chunk`` / S images."""
        if not torch.is_grad_enabled() and len(x) * len(state) > chunk:
            step = max(1, chunk // len(state))
            return torch.cat([self.forward(state, x[i:i + step], activation) for i in range(0, len(x), step)], 1)
        act = ACTIVATIONS[activation]
        S, D = state.shape[0], len(x)
        c, h, w = self.image
        a = {0: x.reshape(D, 1, c, h, w).expand(D, S, c, h, w).reshape(D, S * c, h, w)}
        for op, m in zip(self.ops, self.split(state[..., :1])):
            W = m[..., 0]  # (S, o, cols + 1)
            o = W.shape[1]
            if op.kind == "dense":
                feat = a[op.src].reshape(D, S, -1)  # per network: channel-major flatten (C, side, side)
                return torch.einsum("dsi,soi->sdo", feat, W[..., :-1]) + W[..., -1][:, None]
            k = W[..., :-1].reshape(S * o, self.sizes[op.src], self.kernel, self.kernel)
            z = F.conv2d(a[op.src], k, W[..., -1].reshape(S * o), padding=self.kernel // 2, groups=S)
            if op.skip is not None:
                z = z + a[op.skip]
            if op.act:
                z = act(z)
            if op.pool:
                z = F.max_pool2d(z, 2)
            a[op.dst] = z
        raise AssertionError("a ConvNet ends with its dense head")


def image_shape(n_features: int) -> tuple[int, int, int]:
    """(1, side, side) for flattened square grey images (MNIST 784, 8x8 digits 64)."""
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise ValueError(f"a convolutional task network needs square grey images; {n_features} features are not")
    return (1, side, side)
