"""Gradient-descent baseline for grown MetaNCA networks: the same architecture trained with Adam.

One task network [n_0, ..., n_L] with the grown networks' activation and initialisation
(weights and biases N(0, 1/fan_in)) is trained by Adam on cross-entropy over minibatches of
the training split for ``epochs`` passes (fractions allowed: ceil(epochs * N / batch) steps),
then scored on the test split, as grown networks are:

    z_{l+1} = act(z_l) W_l^T + b_l,  loss = CE(z_L, y)   z_0 = x (B, n_0), z_L (B, n_L)

``ratio`` in the studies is grown accuracy / Adam accuracy on the same architecture and split.

A conv architecture (``conv:8,16``; localrules.core.convgraph) is trained the same way: its
weights are one flat tensor in the grown networks' cell layout (weights and biases N(0, 1/fan_in),
fan_in = in-channels x k^2, or the head's inputs) and run by ``ConvNet.forward``.
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


def init_conv(arch: str, data: Split, generator=None):
    """-> (params [w (1, cells, 1)], forward(params, x, activation) -> (B, classes)) of one conv network."""
    from localrules.core.convgraph import ConvNet, image_shape

    net = ConvNet(arch, image_shape(data.n_features), data.n_classes)
    w = torch.cat([torch.randn(m.shape[1:3], generator=generator).flatten() / f**0.5
                   for m, f in zip(net.split(torch.empty(1, net.n_cells, 1)), net.fan_in)])
    return [w[None, :, None].requires_grad_()], lambda p, x, act: net.forward(p[0], x, act)[0]


def train_adam(sizes, data: Split, epochs: float = 1.0, batch: int = 128, lr: float = 1e-3,
               activation: str = "tanh", seed: int = 0) -> dict:
    """Train one network (layer sizes, or a conv:... string) with Adam; -> {"adam_accuracy", "losses"
    (per step), "steps", ...}."""
    g = torch.Generator().manual_seed(seed)
    if isinstance(sizes, str):
        params, forward = init_conv(sizes, data, g)
    else:
        params, forward = init_mlp(sizes, g), mlp_forward
    opt = torch.optim.Adam(params, lr=lr)
    x, y = data.x_train, data.y_train
    steps = math.ceil(epochs * len(x) / batch)
    losses, order = [], torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if len(order) < batch:
            order = torch.cat([order, torch.randperm(len(x), generator=g)])
        idx, order = order[:batch], order[batch:]
        loss = F.cross_entropy(forward(params, x[idx], activation), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        acc = (forward(params, data.x_test, activation).argmax(-1) == data.y_test).float().mean().item()
    return {"adam_accuracy": acc, "losses": losses, "steps": steps, "epochs": epochs, "batch": batch, "lr": lr}
