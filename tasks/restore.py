"""Restoring 70 %-masked MNIST digits with a neural CA plus an MLP gate (and its baselines).

Hybrid (the seed text's recipe; the wiring it leaves open is chosen as below):

    s_0     = encoder(pad(x))                 1x1 conv 1 -> 16 on the 32x32 lattice     (B, 32, 32, 16)
    for t < steps (10):
      s     = LayerNorm(s + rule(dwconv3x3(s)))   CA: depthwise 3x3 (x4) -> ReLU -> 1x1 64 -> 16, ~1.7k params
      g     = gate(s r)                       r: learned read-out 16 -> 1 per cell (32x32 = 1024 inputs);
                                              MLP 1024 -> 1024 -> ReLU -> dropout -> 256 (16x16), ~1.3M params
      s     = s + upsample2(g) * a            bilinear x2; a: learned per-channel scale (16)
    y       = sigmoid(readout(s))[2:30, 2:30] 1x1 conv 16 -> 1, cropped to 28x28

CA-only: the same without the gate. CNN-AE: a plain convolutional auto-encoder (~1M params).
The gate must not read the plain channel mean: right after the LayerNorm that mean is the
constant mean(beta) at initialisation, so such a gate sees nothing (our first hybrid did, and
trained no better than the CA alone). Learned models see only the masked image (blanked
pixels = 0), never the mask. Training adds Gaussian noise to the lattice state each step and
dropout in the gate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from localrules.core import NCA, Grid2D, MoorePerception, Rule
from localrules.train.checkpoint import read_checkpoint
from localrules.train.perturb import damage as damage_cells
from localrules.train.perturb import mask_pixels

MODELS = ("hybrid", "ca", "cnn-ae", "classifier")
PRETRAINED_DIR = Path(str(resources.files("localrules") / "pretrained" / "restore"))  # one folder per model


@dataclass
class Config:
    model: str = "hybrid"  # hybrid | ca | cnn-ae | classifier
    channels: int = 16
    lattice: int = 32
    ca_multiplier: int = 4
    steps: int = 10
    gate_hidden: int = 1024
    gate_out: int = 256
    dropout: float = 0.5
    state_noise: float = 0.02
    mask_frac: float = 0.7
    batch_size: int = 64

    def validate(self) -> "Config":
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, not {self.model!r}")
        if not 0 <= self.mask_frac <= 1:
            raise ValueError("mask_frac must be in [0, 1]")
        return self


class CARestorer(nn.Module):
    """Encoder -> ``steps`` x (CA step [+ gate]) -> read-out; ``gate=False`` is the CA-only model."""

    def __init__(self, cfg: Config, gate: bool = True):
        super().__init__()
        C, L = cfg.channels, cfg.lattice
        self.cfg, self.pad = cfg, (L - 28) // 2
        self.encoder = nn.Conv2d(1, C, 1)
        per = MoorePerception(C, C * cfg.ca_multiplier, "depthwise")
        self.ca = NCA(per, Rule(per.out_dim, (), C), fire_rate=1.0)
        self.norm = nn.LayerNorm(C)
        self.gate = None
        if gate:
            side = int(cfg.gate_out**0.5)
            if side * side != cfg.gate_out or L % side:
                raise ValueError("gate_out must be a square whose side divides the lattice")
            self.gate_read = nn.Linear(C, 1)
            self.gate = nn.Sequential(
                nn.Linear(L * L, cfg.gate_hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                nn.Linear(cfg.gate_hidden, cfg.gate_out), nn.Unflatten(1, (1, side, side)),
                nn.Upsample(scale_factor=L // side, mode="bilinear", align_corners=False),
            )
            self.gate_scale = nn.Parameter(torch.full((C,), 0.1))
        self.readout = nn.Conv2d(C, 1, 1)

    def forward(self, x: torch.Tensor, steps: int | None = None, damage_frac: float = 0.0) -> torch.Tensor:
        """x (B, 28, 28) masked digits -> (B, 28, 28) restored, in [0, 1].

        ``damage_frac`` > 0 zeroes that fraction of lattice cells halfway through the run.
        """
        steps = self.cfg.steps if steps is None else steps
        p = self.pad
        s = self.encoder(F.pad(x, (p, p, p, p))[:, None]).permute(0, 2, 3, 1)  # (B, L, L, C)
        grid = Grid2D()
        for t in range(steps):
            if damage_frac and t == steps // 2:
                s = damage_cells(s, damage_frac)
            s = self.norm(self.ca.step(grid, s[..., :0], s, None))
            if self.training and self.cfg.state_noise:
                s = s + torch.randn_like(s) * self.cfg.state_noise
            if self.gate is not None:
                g = self.gate(self.gate_read(s).flatten(1))  # (B, 1, L, L)
                s = s + g[:, 0, :, :, None] * self.gate_scale
        y = self.readout(s.permute(0, 3, 1, 2))[:, 0, p : p + 28, p : p + 28]
        return torch.sigmoid(y)


class CNNAutoencoder(nn.Module):
    """Plain conv auto-encoder, ~1.0M parameters: 28 -> 14 -> 7 -> 14 -> 28."""

    def __init__(self, cfg: Config | None = None):
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(128, 256, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(256, 128, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor, steps=None, damage_frac: float = 0.0) -> torch.Tensor:
        """x (B, 28, 28) -> (B, 28, 28); ``damage_frac`` zeroes cells of the 7x7 bottleneck.

        Linear output, clamped to [0, 1] outside training: with a sigmoid output the network
        fell into predicting an empty image (MSE stuck at 0.11 for 1,800 batches)."""
        z = self.enc(x[:, None])
        if damage_frac:
            z = damage_cells(z.permute(0, 2, 3, 1), damage_frac).permute(0, 3, 1, 2)
        y = self.dec(z)[:, 0]
        return y if self.training else y.clamp(0.0, 1.0)


class DigitClassifier(nn.Module):
    """Reference classifier that scores the digit identity of restored images."""

    def __init__(self, cfg: Config | None = None):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 28, 28) in [0, 1] -> logits (B, 10)."""
        return self.net(x[:, None])


def build_model(cfg: Config) -> nn.Module:
    return {"hybrid": lambda: CARestorer(cfg, gate=True), "ca": lambda: CARestorer(cfg, gate=False),
            "cnn-ae": lambda: CNNAutoencoder(cfg), "classifier": lambda: DigitClassifier(cfg)}[cfg.model]()


def normalized_convolution(x: torch.Tensor, keep: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """The non-learned floor: blanked pixels get the Gaussian-weighted mean of visible ones.

    fill = (G * (x m)) / (G * m); visible pixels are kept. x, keep: (B, H, W).
    """
    r = int(3 * sigma + 0.5)
    ax = torch.arange(-r, r + 1, dtype=torch.float32, device=x.device)
    g = torch.exp(-(ax[:, None] ** 2 + ax[None] ** 2) / (2 * sigma**2))[None, None]
    m = keep.float()[:, None]
    num = F.conv2d(x[:, None] * m, g, padding=r)
    den = F.conv2d(m, g, padding=r)
    fill = (num / den.clamp(min=1e-8))[:, 0]
    return torch.where(keep, x, fill)


class RestoreTask:
    """Training of one restoration model or the classifier (the trainer's Task protocol)."""

    def __init__(self, cfg: Config, images: torch.Tensor, labels: torch.Tensor, device):
        self.cfg = cfg.validate()
        self.device = device
        self.model = build_model(cfg).to(device)
        self.images = images.to(device)  # (N, 28, 28) in [0, 1]
        self.labels = labels.to(device)

    def training_loss(self, steps: int):
        self.model.train()
        idx = torch.randint(len(self.images), (self.cfg.batch_size,), device=self.device)
        x, y = self.images[idx], self.labels[idx]
        if self.cfg.model == "classifier":
            logits = self.model(x)
            return F.cross_entropy(logits, y), {"accuracy": (logits.argmax(1) == y).float().mean().item()}
        masked, _ = mask_pixels(x, self.cfg.mask_frac)
        loss = F.mse_loss(self.model(masked, steps), x)
        return loss, {"psnr_db": (10 * torch.log10(1 / loss.detach())).item()}

    def extra_state(self):
        return {}

    def load_extra_state(self, state):
        pass

    def config_dict(self):
        return {"name": "restore", **asdict(self.cfg)}


def load(path: str | Path, device="cpu") -> tuple[nn.Module, Config, dict]:
    weights, fields, meta = read_checkpoint(path, "restore")
    cfg = Config(**fields).validate()
    model = build_model(cfg)
    model.load_state_dict(weights)
    return model.to(device).eval(), cfg, meta
