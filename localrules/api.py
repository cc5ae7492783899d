"""The Python API: the shipped models on your own data, in a few calls.

    import localrules as lr

    model = lr.load_selfclassifier()                 # the shipped L2 + noise NCA (or a path)
    votes = lr.classify(model, digits, steps=200)    # (N, H, W) label of every cell, -1 where dead
    rule = lr.load_rule()                            # the shipped MetaNCA MNIST rule (or a path)
    nets = lr.grow(rule, [784, 50, 30, 10], n=4)     # 4 grown networks: [W | b] per layer
    logits = lr.forward(rule, nets, images)          # (4, N, 10)
    restorer = lr.load_restorer("hybrid")            # or "ca", "cnn-ae", "unet"
    masked, keep = lr.mask(digits, 0.7)              # blank 70 % of the pixels
    restored = restorer(masked, keep=keep)           # (N, 28, 28) in [0, 1]

Digits are (N, H, W) arrays or tensors, uint8 0..255 or floats in [0, 1]. Everything runs
without gradients, on the device the model was loaded onto.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from localrules.core import NCA
from localrules.data.arrays import to_unit_pixels


def load_selfclassifier(path: str | Path | None = None, device: str | torch.device = "cpu") -> NCA:
    """A self-classifying NCA (default: the shipped L2 + noise model); its Config is ``model.cfg``."""
    from localrules.tasks import mnist_selfclassify as ms

    model, cfg, _ = ms.load(path or ms.pretrained_path("l2"), device)
    model.cfg = cfg
    return model


@torch.no_grad()
def classify(model: NCA, digits, steps: int = 200, noise: float | None = None, seed: int = 0) -> torch.Tensor:
    """Run ``steps`` updates on ``digits`` (N, H, W) from a zero state -> (N, H, W) long: each
    cell's label (argmax of its 10 label channels), -1 on dead cells (pixel <= 0.1). ``noise``
    defaults to the residual noise the model was trained with, as in the paper's evaluation."""
    from localrules.tasks.mnist_selfclassify import ALIVE_THRESHOLD, Engine, labels_of

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    dev = next(model.parameters()).device
    px = _pixels(digits).to(dev)[..., None]
    noise = model.cfg.noise_std if noise is None else noise
    torch.manual_seed(seed)
    dense = torch.zeros(*px.shape[:3], model.rule.mlp[-1].out_features, device=dev)
    eng = Engine(model.cfg.engine, px, dense)
    state = eng.pack(dense)
    state = model.rollout(eng.topology, eng.fixed, state, eng.alive, steps, noise)
    labels = labels_of(eng.unpack(state)).argmax(-1)
    return torch.where(px[..., 0] > ALIVE_THRESHOLD, labels, -1)


def load_rule(path: str | Path | None = None, device: str | torch.device = "cpu", wrap: float = 0.0) -> NCA:
    """A MetaNCA rule: a checkpoint path, or a shipped rule by name ("metanca-mnist", the default;
    "metanca-mnist-dc"; "metanca-mnist-relative", the size-independent code). Its Config is
    ``rule.cfg``. ``wrap`` > 0 grows an index-coded rule with the wrapped hidden code, hidden
    neuron i at i mod wrap: the rule's own code on layers up to ``wrap`` wide, codes it has seen on
    wider ones (``wrap=100`` for the shipped rules, meta-trained on layers up to 100: the best
    way to grow wider layers, docs/metanca.md)."""
    from dataclasses import replace

    from localrules.tasks import metanca as mn

    path = Path(path or mn.PRETRAINED_PATH)
    if not path.exists() and path.parent == Path(".") and not path.suffix:  # a shipped rule's name
        shipped = mn.PRETRAINED_PATH.parent / f"{path}.safetensors"
        if not shipped.is_file():
            names = sorted(p.stem for p in mn.PRETRAINED_PATH.parent.glob("metanca-*.safetensors"))
            raise FileNotFoundError(f"no rule file {path} and no shipped rule of that name; shipped: {', '.join(names)}")
        path = shipped
    rule, cfg, _ = mn.load(path, device)
    rule.cfg = replace(cfg, **mn.code_overrides(cfg, wrap=wrap)).validate()
    return rule


@torch.no_grad()
def grow(rule: NCA, sizes, n: int = 1, steps: int = 30, seed: int = 0) -> list[list[torch.Tensor]]:
    """Grow ``n`` task networks of layer sizes ``sizes`` (e.g. [784, 50, 30, 10]) from random
    weights by ``steps`` rule updates -> per network, per layer, the (out, in + 1) matrix [W | b].
    Only data-free rules (the MetaNCA abstract's) grow without data."""
    from localrules.tasks import metanca as mn

    cfg = rule.cfg
    if cfg.data_conditioned:
        raise ValueError("a data-conditioned rule needs data to grow networks; use `localrules eval metanca`")
    dev = next(rule.parameters()).device
    torch.manual_seed(seed)
    topo = mn.topology(tuple(int(s) for s in sizes), cfg.engine)
    state = mn.init_networks(topo, n, cfg, dev)
    state, _ = mn.grow(rule, mn.coded(topo, cfg, mn.new_positions(topo, n, cfg, dev)), state, steps)
    return [[m[0, ..., 0] for m in topo.split(state[k : k + 1, :, :1])] for k in range(n)]


@torch.no_grad()
def forward(rule: NCA, networks: list[list[torch.Tensor]], x) -> torch.Tensor:
    """Logits (len(networks), N, classes) of grown networks on inputs x (N, features), prepared
    as the rule's dataset was (MNIST: pixels / 255, flattened), with the hidden activation the
    rule was meta-trained for."""
    act = {"tanh": torch.tanh, "relu": torch.relu}[rule.cfg.activation]
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32)
    outs = []
    for layers in networks:
        h = x.to(layers[0].device)
        for i, m in enumerate(layers):
            h = h @ m[:, :-1].T + m[:, -1]
            if i < len(layers) - 1:
                h = act(h)
        outs.append(h)
    return torch.stack(outs)


def load_restorer(name: str = "hybrid", folder: str | Path | None = None,
                  device: str | torch.device = "cpu") -> torch.nn.Module:
    """A restoration model: ``hybrid`` (CA + MLP gate), ``ca``, ``cnn-ae``, ``unet`` or ``classifier``,
    from ``folder`` (default: the shipped models). Call it as ``restorer(masked, keep=keep)``:
    masked digits (N, 28, 28) in [0, 1] and the mask (N, 28, 28) bool, True where visible, which
    the models with ``restorer.reads_mask`` (the shipped hybrid and the U-Net) need and the others
    ignore."""
    from localrules.tasks import restore as rs

    path = Path(folder or rs.PRETRAINED_DIR) / name / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no {name} restorer at {path}")
    return rs.load(path, device)[0].requires_grad_(False)


def mask(digits, frac: float = 0.7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Blank exactly round(frac * H * W) random pixels of each digit -> (masked, keep (N, H, W) bool)."""
    from localrules.train.perturb import mask_pixels

    return mask_pixels(_pixels(digits), frac, torch.Generator().manual_seed(seed))


def _pixels(digits) -> torch.Tensor:
    x = to_unit_pixels(digits.cpu().numpy() if torch.is_tensor(digits) else digits)
    if x.dim() != 3 or not len(x):
        raise ValueError(f"digits must have shape (N, H, W) with N >= 1, got {tuple(x.shape)}")
    return x
