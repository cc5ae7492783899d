"""Who a cell's neighbours are, and how its perception is computed from them.

Every topology maps full cell vectors x (fixed + mutable channels) to perceptions
``p = perceive(x, perception)`` with the weights of a :class:`MoorePerception`. Three ways to
run the same 3x3 grid rule, held equal by the tests:

- :class:`Grid2D`: dense ``conv2d`` over (B, H, W, C) grids (zero padding at the borders).
- :class:`AliveCells`: the fast path. Only alive cells are stored, as (N, C) rows; a cell's
  3x3 patch is gathered from the alive rows, the constant rows of dead neighbours, and a zero row.
- :class:`GridGraph`: the general path, a torch-geometric ``MessagePassing`` over cells with one
  linear map per neighbour direction; any graph with direction-labelled edges runs through it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .perception import OFFSETS, MoorePerception
from .pyg import MessagePassing


class Grid2D:
    """Dense grid: x (B, H, W, C) -> p (B, H, W, P) by a same-padded 3x3 convolution."""

    def perceive(self, x: torch.Tensor, perception: MoorePerception) -> torch.Tensor:
        y = F.conv2d(x.permute(0, 3, 1, 2), perception.weight, perception.bias, padding=1,
                     groups=perception.groups)
        return y.permute(0, 2, 3, 1)


class AliveCells:
    """Compact execution over the alive cells of a batch of grids.

    Built from ``alive`` (B, H, W) bool and the cells' dense vectors ``x`` (B, H, W, C), of which
    the dead cells' rows stay constant through a rollout (dead cells never update). Rows:
    ``[alive cells (N) | dead neighbours of alive cells (M) | one zero row]``; ``nbr`` (N, 9)
    indexes each alive cell's 3x3 patch in that table (the zero row stands for the border).
    """

    def __init__(self, alive: torch.Tensor, x: torch.Tensor):
        B, H, W = alive.shape
        dev = alive.device
        padded = F.pad(alive, (1, 1, 1, 1))  # (B, H+2, W+2)
        Wp = W + 2
        self.shape = (B, H, W)
        self.index = alive.reshape(-1).nonzero().squeeze(1)  # (N,) into B*H*W
        b, yx = self.index // (H * W), self.index % (H * W)
        pidx = b * (H + 2) * Wp + (yx // W + 1) * Wp + (yx % W + 1)  # (N,) into padded grid
        offsets = torch.tensor([dy * Wp + dx for dy, dx in OFFSETS], device=dev)
        nbr_p = pidx[:, None] + offsets  # (N, 9) into padded grid
        inside = F.pad(torch.ones(B, H, W, dtype=torch.bool, device=dev), (1, 1, 1, 1)).reshape(-1)
        dead_p = torch.unique(nbr_p[~padded.reshape(-1)[nbr_p] & inside[nbr_p]])  # (M,)
        n, m = len(pidx), len(dead_p)
        row = torch.full((padded.numel(),), n + m, dtype=torch.long, device=dev)
        row[pidx] = torch.arange(n, device=dev)
        row[dead_p] = torch.arange(n, n + m, device=dev)
        self.nbr = row[nbr_p]  # (N, 9)
        # dead rows: the dense vectors of those dead cells, mapped from padded to unpadded index
        db, drest = dead_p // ((H + 2) * Wp), dead_p % ((H + 2) * Wp)
        dead_idx = db * H * W + (drest // Wp - 1) * W + (drest % Wp - 1)
        C = x.shape[-1]
        self.context = torch.cat([x.reshape(-1, C)[dead_idx], x.new_zeros(1, C)])  # (M+1, C)

    @property
    def n(self) -> int:
        return len(self.index)

    def compact(self, dense: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (N, C): the rows of the alive cells."""
        return dense.reshape(-1, dense.shape[-1]).index_select(0, self.index)  # faster than [index] on the CPU

    def dense(self, rows: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (B, H, W, C), zero at dead cells."""
        out = rows.new_zeros(self.shape[0] * self.shape[1] * self.shape[2], rows.shape[-1])
        out = out.index_copy(0, self.index, rows)
        return out.reshape(*self.shape, rows.shape[-1])

    def batch_of(self) -> torch.Tensor:
        """(N,) index of the grid each alive cell belongs to."""
        return self.index // (self.shape[1] * self.shape[2])

    def perceive(self, x: torch.Tensor, perception: MoorePerception) -> torch.Tensor:
        """x (N, C) of alive cells -> p (N, P) = bias + W_dir . gathered (N, 9C) patches."""
        return self._perceive(x, perception, self.nbr)

    def perceive_rows(self, x: torch.Tensor, perception: MoorePerception, rows: torch.Tensor) -> torch.Tensor:
        """x (N, C) of alive cells, rows (R,) -> p (R, P): the perception of those cells only
        (``NCA``'s ``sparse_fire`` asks for the firing cells; no random draws)."""
        return self._perceive(x, perception, self.nbr.index_select(0, rows))

    def _perceive(self, x: torch.Tensor, perception: MoorePerception, nbr: torch.Tensor) -> torch.Tensor:
        table = torch.cat([x, self.context.to(x.dtype)])
        # gather, not table[nbr]: on the CPU the backward of tensor indexing adds the
        # gradients of repeated rows with threaded atomics, in an order that varies run to run
        idx = nbr.reshape(-1, 1).expand(-1, table.shape[-1])
        patches = table.gather(0, idx).reshape(len(nbr), -1)  # (R, 9C)
        return F.linear(patches, perception.direction_matrix(), perception.bias)


class GridGraph(MessagePassing):
    """General path: cells are nodes, an edge j -> i carries the direction k of j seen from i.

        p_i = b + sum_{(j -> i, k)} W_k x_j

    ``GridGraph.moore(B, H, W)`` builds the 3x3 grid (self-loops are direction 4); any other
    ``edge_index`` (2, E) with ``edge_dir`` (E,) in 0..8 works the same.
    """

    def __init__(self, edge_index: torch.Tensor, edge_dir: torch.Tensor):
        super().__init__(aggr="add")
        self.edge_index, self.edge_dir = edge_index, edge_dir

    @classmethod
    def moore(cls, B: int, H: int, W: int, device=None) -> "GridGraph":
        ids = torch.arange(B * H * W, device=device).reshape(B, H, W)
        src, dst, dirs = [], [], []
        for k, (dy, dx) in enumerate(OFFSETS):
            ys = slice(max(0, -dy), H - max(0, dy))  # cells i whose neighbour i + d exists
            xs = slice(max(0, -dx), W - max(0, dx))
            i = ids[:, ys, xs].reshape(-1)
            src.append(i + dy * W + dx)
            dst.append(i)
            dirs.append(torch.full_like(i, k))
        return cls(torch.stack([torch.cat(src), torch.cat(dst)]), torch.cat(dirs))

    def perceive(self, x: torch.Tensor, perception: MoorePerception) -> torch.Tensor:
        """x (nodes, C) -> p (nodes, P)."""
        P = perception.out_dim
        # (nodes, 9P): each node's vector under all nine direction maps, picked per edge below
        xw = x @ perception.dense_weight().permute(1, 2, 3, 0).reshape(x.shape[-1], 9 * P)
        return self.propagate(self.edge_index, xw=xw, edge_dir=self.edge_dir) + perception.bias

    def message(self, xw_j: torch.Tensor, edge_dir: torch.Tensor) -> torch.Tensor:
        P = xw_j.shape[-1] // 9
        return xw_j.view(-1, 9, P)[torch.arange(len(edge_dir), device=xw_j.device), edge_dir]
