"""Plain dense PyTorch references, written as the papers' notebooks would: the baselines that
``localrules bench`` times our engines against. Short on purpose; never used for training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selfclassify_step(model, x: torch.Tensor, fire: torch.Tensor, noise_std: float = 0.0,
                      noise: torch.Tensor | None = None) -> torch.Tensor:
    """Reference NCA step on NCHW tensors, every cell computed.

    x (B, 20, H, W): channel 0 the pixel, 1..19 the state; fire (B, 1, H, W) bool.
    """
    per, mlp = model.perception, model.rule.mlp  # mlp: ReLU, Linear 80->80, ReLU, Linear 80->19
    h = F.conv2d(x, per.weight, per.bias, padding=1)
    h = F.relu(F.conv2d(F.relu(h), mlp[1].weight[:, :, None, None], mlp[1].bias))
    ds = F.conv2d(h, mlp[3].weight[:, :, None, None], mlp[3].bias)
    if noise_std:
        ds = ds + noise * noise_std
    alive = x[:, :1] > 0.1
    return torch.cat([x[:, :1], x[:, 1:] + ds * (fire & alive)], 1)


def metanca_step(rule, layers: list[torch.Tensor], fire: list[torch.Tensor],
                 codes: list[torch.Tensor]) -> list[torch.Tensor]:
    """Reference MetaNCA step for ONE task network, layer by layer.

    layers[l]: (n_{l+1}, n_l + 1, C) augmented [W | b] cells; fire[l]: (n_{l+1}, n_l + 1, 1) bool;
    codes[l]: (n_{l+1}, n_l + 1, K) the cells' positional codes.
    """
    out = []
    for l, m in enumerate(layers):
        o, i, C = m.shape
        xf = torch.zeros_like(m)
        xb = torch.zeros_like(m)
        if l + 1 < len(layers):
            xf = layers[l + 1][:, :o].mean(0)[:, None].expand(o, i, C)
        if l > 0:
            rows = torch.cat([layers[l - 1].mean(1), m.new_zeros(1, C)])
            xb = rows[None].expand(o, i, C)
        delta = rule.rule(torch.cat([m, xf, xb], -1), codes[l])
        out.append(m + delta * fire[l])
    return out


def restore_hybrid(model, x: torch.Tensor) -> torch.Tensor:
    """Reference hybrid restorer (CA + MLP gate) on NCHW tensors, eval mode (no dropout/noise).

    x (B, 28, 28) masked digits -> (B, 28, 28) restored.
    """
    p, C = model.pad, model.cfg.channels
    per, rule, norm = model.ca.perception, model.ca.rule.mlp[-1], model.norm
    s = F.conv2d(F.pad(x, (p, p, p, p))[:, None], model.encoder.weight, model.encoder.bias)  # (B, C, L, L)
    for _ in range(model.cfg.steps):
        h = F.relu(F.conv2d(s, per.weight, per.bias, padding=1, groups=C))
        s = s + F.conv2d(h, rule.weight[:, :, None, None], rule.bias)
        s = F.layer_norm(s.permute(0, 2, 3, 1), (C,), norm.weight, norm.bias).permute(0, 3, 1, 2)
        r = model.gate_read
        g = model.gate(F.conv2d(s, r.weight[:, :, None, None], r.bias).flatten(1))  # (B, 1, L, L)
        s = s + g * model.gate_scale[None, :, None, None]
    return torch.sigmoid(F.conv2d(s, model.readout.weight, model.readout.bias))[:, 0, p : p + 28, p : p + 28]
