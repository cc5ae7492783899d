"""k-nearest-neighbour fill: a non-learned restoration baseline (issue 39).

For a masked digit x with mask m (1 = visible) and training digits t_j (N, H, W):

    d_j   = sqrt( sum_p m_p (x_p - t_jp)^2 )          distance on the visible pixels only
    J     = the k training digits of smallest d_j      (k = 10)
    w_j   = 1 / (d_j + eps)                            inverse-distance weights, j in J
    fill  = sum_J w_j t_j / sum_J w_j
    out   = where(m, x, fill)                          visible pixels kept

d_j^2 = sum m x^2 - 2 (m x) . t_j + m . t_j^2 is computed as two matrix products per chunk of
``chunk`` query digits, so memory is bounded by (chunk, N) distances whatever the number of queries.
"""

from __future__ import annotations

import torch


@torch.inference_mode()
def knn_fill(train: torch.Tensor, images: torch.Tensor, keep: torch.Tensor, k: int = 10,
             chunk: int = 256, eps: float = 1e-6) -> torch.Tensor:
    """train (N, H, W), images (B, H, W) in [0, 1], keep (B, H, W) bool -> (B, H, W) filled."""
    if not 1 <= k <= len(train):
        raise ValueError(f"k must be in 1..{len(train)} (training digits), not {k}")
    t = train.flatten(1).to(images.dtype)  # (N, P)
    t2 = t * t
    out = []
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].flatten(1)
        m = keep[i : i + chunk].flatten(1).to(x.dtype)
        xm = x * m
        d2 = (xm * x).sum(1, keepdim=True) - 2 * xm @ t.T + m @ t2.T  # (b, N)
        d, j = d2.clamp(min=0).sqrt().topk(k, dim=1, largest=False)  # (b, k)
        w = 1.0 / (d + eps)
        fill = (w[:, :, None] * t[j]).sum(1) / w.sum(1, keepdim=True)  # (b, P)
        out.append(torch.where(m > 0, x, fill))
    return torch.cat(out).view_as(images)
