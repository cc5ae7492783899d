"""Gradient-descent baseline for grown MetaNCA networks: the same architecture trained with Adam.

One task network [n_0, ..., n_L] with the grown networks' activation and initialisation
(weights and biases N(0, 1/fan_in)) is trained by Adam on cross-entropy over minibatches of
the training split for ``epochs`` passes (fractions allowed: ceil(epochs * N / batch) steps),
then scored on the test split, as grown networks are:

    z_{l+1} = act(z_l) W_l^T + b_l,  loss = CE(z_L, y)   z_0 = x (B, n_0), z_L (B, n_L)

``ratio`` in the studies is grown accuracy / Adam accuracy on the same architecture and split.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from localrules.data.tabular import Split
from localrules.core.data_signals import ACTIVATIONS


def init_mlp(sizes, generator=None) -> list[torch.Tensor]:
    """[W_0 (n_1, n_0), b_0 (n_1,), ...] ~ N(0, 1/fan_in), as MetaNCA's initial weights."""
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        params += [torch.randn(n_out, n_in, generator=generator) / n_in**0.5,
                   torch.randn(n_out, generator=generator) / n_in**0.5]
    return [p.requires_grad_() for p in params]


def mlp_forward(params, x: torch.Tensor, activation: str) -> torch.Tensor:
    """x (B, n_0) -> logits (B, n_L); ``activation`` on every hidden layer."""
    act = ACTIVATIONS[activation]
    z = x
    for k in range(0, len(params), 2):
        if k:
            z = act(z)
        z = F.linear(z, params[k], params[k + 1])
    return z


def train_adam(sizes, data: Split, epochs: float = 1.0, batch: int = 128, lr: float = 1e-3,
               activation: str = "tanh", seed: int = 0) -> dict:
    """Train one network with Adam; -> {"adam_accuracy", "losses" (per step), "steps", ...}."""
    g = torch.Generator().manual_seed(seed)
    params = init_mlp(sizes, g)
    opt = torch.optim.Adam(params, lr=lr)
    x, y = data.x_train, data.y_train
    steps = math.ceil(epochs * len(x) / batch)
    losses, order = [], torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if len(order) < batch:
            order = torch.cat([order, torch.randperm(len(x), generator=g)])
        idx, order = order[:batch], order[batch:]
        loss = F.cross_entropy(mlp_forward(params, x[idx], activation), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        acc = (mlp_forward(params, data.x_test, activation).argmax(-1) == data.y_test).float().mean().item()
    return {"adam_accuracy": acc, "losses": losses, "steps": steps, "epochs": epochs, "batch": batch, "lr": lr}
