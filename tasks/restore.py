"""Restoring 70 %-masked MNIST digits with a neural CA plus an MLP gate (and its baselines).

Hybrid (the seed text's recipe; the wiring it leaves open is chosen as below):

    s_0     = encoder(pad(x))                 1x1 conv 1 -> 16 on the 32x32 lattice     (B, 32, 32, 16)
    for t < steps (10):
      s     = LayerNorm(s + rule(dwconv3x3(s)))   CA: depthwise 3x3 (x4) -> ReLU -> 1x1 64 -> 16, ~1.7k params
      g     = gate(s r)                       r: learned read-out 16 -> 1 per cell (32x32 = 1024 inputs);
                                              MLP 1024 -> 1024 -> ReLU -> dropout -> 256 (16x16), ~1.3M params
      s     = s + upsample2(g) * a            bilinear x2; a: learned per-channel scale (16)
    y       = sigmoid(readout(s))[2:30, 2:30] 1x1 conv 16 -> 1, cropped to 28x28

Each pass of the loop is one ``NCA.step``; LayerNorm, training noise and the gate are its post hook
(``CARestorer.after_update``). CA-only: the same without the gate. CNN-AE: a plain convolutional auto-encoder (~1M params).

Training recipe (``pool``, the default; issue 18), batches of 64:

    masks    per fresh digit: a region (one square, area U[0.1, 0.5]) with prob. 0.25, else
             pixels blanked at a rate U[0.3, 0.9]
    pool     96 lattice states (P, 32, 32, 16) with their clean digits; each batch draws 64,
             replaces half with fresh masked digits (encoded) and continues the rest
    remask   half of the continued states get the cells under a fresh mask zeroed
    damage   a quarter of the batch gets 30 % of its cells zeroed halfway through the rollout
    steps    CA steps per batch drawn in [8, 16]; loss MSE(read(s_T), clean), states committed

The CNN-AE has no lattice, so "pool" means the same batch count, masks and perturbations
with nothing persisting: its fresh and "continued" rows are all fresh digits, the re-masked
rows get a second mask on their input, damaged rows get 30 % of the cells of the 7x7
bottleneck zeroed (as ``study restore-damage`` does). The ``plain`` recipe (the shipped
models): every batch fresh, 70 % pixel masks, 10 steps, no damage.
The gate must not read the plain channel mean: right after the LayerNorm that mean is the
constant mean(beta) at initialisation, so such a gate sees nothing (our first hybrid did, and
trained no better than the CA alone). Learned models see only the masked image (blanked
pixels = 0), never the mask, except the U-Net baseline (``restore_unet``, mask as an input
channel) and a lattice model with ``mask_channel`` (the mask as a fixed CA input channel) or
``keep_visible`` (the masked image as a fixed channel, visible pixels kept in the output);
``clamp_output`` swaps the sigmoid read-out for a linear one clamped outside training,
``masked_loss`` scores the blanked pixels only; ``rule_hidden`` gives the CA rule a hidden layer,
``gate_reads`` / ``gate_pool`` let the gate read K maps r (B, K, L, L), average-pooled by a factor
(K (L / pool)^2 inputs), ``gate_writes`` lets it write K' maps mixed into the C channels. All off: the shipped models. Training adds Gaussian noise to the lattice state each step and
dropout in the gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from localrules.core import NCA, Grid2D, MoorePerception, Rule
from localrules.train.checkpoint import build_from_checkpoint
from localrules.train.perturb import damage as damage_cells
from localrules.train.perturb import mask_region
from localrules.train.pool import SamplePool
from localrules.train.pooled import PooledTask, pack_pixels, unpack_pixels

MODELS = ("hybrid", "ca", "cnn-ae", "unet", "classifier")
LATTICE_MODELS = ("hybrid", "ca")
PRETRAINED_DIR = Path(str(resources.files("localrules") / "pretrained" / "restore"))  # one folder per model


@dataclass
class Config:
    model: str = "hybrid"  # hybrid | ca | cnn-ae | unet | classifier
    channels: int = 16
    lattice: int = 32
    ca_multiplier: int = 4
    steps: int = 10
    gate_hidden: int = 1024
    gate_out: int = 256
    dropout: float = 0.5
    state_noise: float = 0.02
    batch_size: int = 64
    # training recipe; defaults: the pool recipe, PLAIN: the recipe of the shipped models
    mask_min: float = 0.3  # pixel-mask rate drawn per digit in [mask_min, mask_max]
    mask_max: float = 0.9
    region_share: float = 0.25  # share of fresh digits masked by one square region instead
    region_min: float = 0.1  # its area fraction drawn in [region_min, region_max]
    region_max: float = 0.5
    pool_size: int = 96  # persistent lattice states (6 MiB in train_state.pt); 0 = every batch fresh
    fresh_share: float = 0.5  # share of each pool batch replaced by fresh digits
    remask_share: float = 0.5  # share of the continued rows masked again
    damage_share: float = 0.25  # share of each batch damaged halfway through the rollout
    damage_frac: float = 0.3  # fraction of cells zeroed in a damaged row
    steps_min: int = 8  # CA steps per batch drawn in [steps_min, steps_max]; eval runs `steps`
    steps_max: int = 16
    # issue 39's ideas for the lattice models (all off: the shipped models, loaded unchanged)
    mask_channel: bool = False  # the mask (1 = visible) as a fixed per-cell input channel of the CA
    keep_visible: bool = False  # the masked image as a fixed input channel, visible pixels kept in the output
    clamp_output: bool = False  # linear read-out clamped to [0, 1] outside training instead of a sigmoid
    masked_loss: bool = False  # MSE over the blanked pixels only
    rule_hidden: int = 0  # hidden width of the CA rule (0: perception -> ReLU -> 1x1 to C, the shipped CA)
    gate_reads: int = 1  # channels the gate reads per cell (the shipped: 1)
    gate_pool: int = 1  # the gate reads those maps average-pooled by this factor (1: per cell)
    gate_writes: int = 1  # maps the gate writes, each mixed into the C channels (the shipped: 1, scaled per channel)
    unet_width: int = 54  # the U-Net's first width (54: 1,326,133 parameters)

    @property
    def reads_mask(self) -> bool:
        """The model is given the mask (keep=) as well as the masked image."""
        return self.model == "unet" or (self.model in LATTICE_MODELS and (self.mask_channel or self.keep_visible))

    @property
    def needs_keep(self) -> bool:
        """Training tracks each row's mask (for the model or for the loss)."""
        return self.reads_mask or self.masked_loss

    def validate(self) -> "Config":
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, not {self.model!r}")
        for name in ("mask_min", "mask_max", "region_share", "region_min", "region_max", "fresh_share", "dropout",
                     "remask_share", "damage_share", "damage_frac"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.mask_min > self.mask_max or self.region_min > self.region_max:
            raise ValueError("need mask_min <= mask_max and region_min <= region_max")
        if not 1 <= self.steps_min <= self.steps_max:
            raise ValueError("need 1 <= steps_min <= steps_max")
        if self.pool_size and self.pool_size < self.batch_size:
            raise ValueError("pool_size must be 0 (no pool) or >= batch_size")
        return self


PLAIN = dict(mask_min=0.7, mask_max=0.7, region_share=0.0, pool_size=0, remask_share=0.0,
             damage_share=0.0, steps_min=10, steps_max=10)  # the recipe of the shipped models


def config_from_fields(fields: dict) -> Config:
    """A Config from a checkpoint's fields; checkpoints from before the pool recipe (they
    name ``mask_frac``) get the plain recipe they were trained with."""
    fields = dict(fields)
    if "mask_frac" in fields:
        rate = fields.pop("mask_frac")
        fields = {**PLAIN, "mask_min": rate, "mask_max": rate,
                  "steps_min": fields.get("steps", 10), "steps_max": fields.get("steps", 10), **fields}
    return Config(**fields).validate()


def _rows(share: float, n: int) -> torch.Tensor:
    """(n,) bool: round(share * n) random rows set."""
    rows = torch.zeros(n, dtype=torch.bool)
    rows[torch.randperm(n)[: int(round(share * n))]] = True
    return rows


def training_masks(images: torch.Tensor, cfg: Config) -> torch.Tensor:
    """keep (B, H, W) bool for images (B, H, W): per digit either one square region (prob.
    ``region_share``, area U[region_min, region_max]) or round(r H W) blanked pixels,
    r ~ U[mask_min, mask_max]."""
    B, H, W = images.shape
    rate = cfg.mask_min + (cfg.mask_max - cfg.mask_min) * torch.rand(B)
    ranks = torch.rand(B, H * W).argsort(1).argsort(1)
    keep = (ranks >= (rate * H * W).round()[:, None]).reshape(B, H, W)
    region = torch.rand(B) < cfg.region_share
    if region.any():
        area = cfg.region_min + (cfg.region_max - cfg.region_min) * torch.rand(B)
        keep = torch.where(region[:, None, None], mask_region(images.cpu(), area)[1], keep)
    return keep.to(images.device)


def damage_rows(s: torch.Tensor, frac: float, rows: torch.Tensor) -> torch.Tensor:
    """s (B, ..., C): zero each cell's state with probability ``frac`` in the rows ``rows`` (B,)."""
    if not rows.any():
        return s
    hit = damage_cells(torch.ones_like(s[..., :1]), frac) == 0
    hit = hit & rows.to(s.device).view(-1, *([1] * (s.dim() - 1)))
    return s.masked_fill(hit, 0.0)


class CARestorer(nn.Module):
    """Encoder -> ``steps`` x (CA step [+ gate]) -> read-out; ``gate=False`` is the CA-only model."""

    def __init__(self, cfg: Config, gate: bool = True):
        super().__init__()
        C, L = cfg.channels, cfg.lattice
        self.cfg, self.pad = cfg, (L - 28) // 2
        self.encoder = nn.Conv2d(1, C, 1)
        self.n_fixed = int(cfg.mask_channel) + int(cfg.keep_visible)  # fixed input channels of the CA
        per = MoorePerception(C + self.n_fixed, (C + self.n_fixed) * cfg.ca_multiplier, "depthwise")
        hidden = (cfg.rule_hidden,) if cfg.rule_hidden else ()
        self.ca = NCA(per, Rule(per.out_dim, hidden, C), fire_rate=1.0, post=self.after_update)
        self.norm = nn.LayerNorm(C)
        self.gate = None
        if gate:
            side = int(cfg.gate_out**0.5)
            if side * side != cfg.gate_out or L % side:
                raise ValueError("gate_out must be a square whose side divides the lattice")
            if cfg.gate_reads < 1 or cfg.gate_writes < 1 or cfg.gate_pool < 1 or L % cfg.gate_pool:
                raise ValueError("gate_reads and gate_writes must be >= 1 and gate_pool a divisor of the lattice side")
            self.gate_read = nn.Linear(C, cfg.gate_reads)
            self.gate = nn.Sequential(
                nn.Linear(cfg.gate_reads * (L // cfg.gate_pool) ** 2, cfg.gate_hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                nn.Linear(cfg.gate_hidden, cfg.gate_writes * cfg.gate_out), nn.Unflatten(1, (cfg.gate_writes, side, side)),
                nn.Upsample(scale_factor=L // side, mode="bilinear", align_corners=False),
            )
            self.gate_scale = nn.Parameter(torch.full((C,) if cfg.gate_writes == 1 else (cfg.gate_writes, C), 0.1))
        self.readout = nn.Conv2d(C, 1, 1)
        self.grid = Grid2D()  # the CA's topology: its memory layout per device (localrules.core.layout)

    @property
    def reads_mask(self) -> bool:
        return self.n_fixed > 0

    def fixed(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor | None:
        """The CA's fixed input channels (B, L, L, n_fixed): [x * keep] (keep_visible), then [keep]
        (mask_channel), padded like the lattice (border: image 0, mask 1); None without them."""
        if not self.n_fixed:
            return None
        if keep is None:
            raise ValueError("this restorer reads the mask (mask_channel / keep_visible): pass keep (B, 28, 28) bool")
        p, m = self.pad, keep.to(x.dtype)
        chans = ([F.pad(x * m, (p, p, p, p))] if self.cfg.keep_visible else []) + \
                ([F.pad(m, (p, p, p, p), value=1.0)] if self.cfg.mask_channel else [])
        return torch.stack(chans, -1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 28, 28) -> lattice s_0 (B, L, L, C), the digit zero-padded to L x L."""
        p = self.pad
        return self.encoder(F.pad(x, (p, p, p, p))[:, None]).permute(0, 2, 3, 1)

    def after_update(self, s: torch.Tensor) -> torch.Tensor:
        """The CA's post-update hook: s <- LayerNorm(s) (+ N(0, state_noise^2) in training), then
        with the gate s <- s + upsample2(gate(pool(s r))) A, r: C -> gate_reads, pool: gate_pool,
        the gate's K = gate_writes maps (B, L, L, K) mixed into the channels by A (K, C) (K = 1: a
        per-channel scale a (C,))."""
        s = self.norm(s)
        if self.training and self.cfg.state_noise:
            s = s + torch.randn_like(s) * self.cfg.state_noise
        if self.gate is not None:
            r = self.gate_read(s).permute(0, 3, 1, 2)  # (B, reads, L, L)
            if self.cfg.gate_pool > 1:
                r = F.avg_pool2d(r, self.cfg.gate_pool)
            g = self.gate(r.flatten(1))  # (B, K, L, L)
            s = s + g.permute(0, 2, 3, 1) @ self.gate_scale.view(-1, s.shape[-1])  # K = 1: one product per entry
        return s

    def run(self, s: torch.Tensor, steps: int, damage_frac: float = 0.0,
            damaged: torch.Tensor | None = None, fixed: torch.Tensor | None = None) -> torch.Tensor:
        """s (B, L, L, C) -> the lattice after ``steps`` steps of ``self.ca.rollout``, reading the
        fixed channels ``fixed`` (:meth:`fixed`; required when the model has them);
        ``damage_frac`` > 0 zeroes that fraction of the cells of the rows ``damaged`` (B,) bool
        (default all) before step steps // 2 (the rollout's perturb hook)."""
        def damage(t: int, s: torch.Tensor) -> torch.Tensor:
            if t != steps // 2:
                return s
            return damage_cells(s, damage_frac) if damaged is None else damage_rows(s, damage_frac, damaged)

        if (fixed is None) != (not self.n_fixed):
            raise ValueError(f"this restorer takes {self.n_fixed} fixed channels (fixed=self.fixed(x, keep))")
        return self.ca.rollout(self.grid, fixed, s, None, steps, perturb=damage if damage_frac else None)

    def read(self, s: torch.Tensor, x: torch.Tensor | None = None, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Lattice (B, L, L, C) -> image sigmoid(readout(s)) cropped to (B, 28, 28); with
        ``clamp_output`` the read-out is linear, clamped to [0, 1] outside training; with
        ``keep_visible`` and x, keep given the visible pixels are x's: where(keep, x, y)."""
        p = self.pad
        y = self.readout(s.permute(0, 3, 1, 2))[:, 0, p : p + 28, p : p + 28]
        if self.cfg.clamp_output:
            y = y if self.training else y.clamp(0.0, 1.0)
        else:
            y = torch.sigmoid(y)
        if self.cfg.keep_visible and keep is not None:
            y = torch.where(keep, x, y)
        return y

    def forward(self, x: torch.Tensor, steps: int | None = None, damage_frac: float = 0.0,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 28, 28) masked digits -> (B, 28, 28) restored, in [0, 1]; ``keep`` (B, 28, 28)
        bool, True = visible: the mask, required by (and only read by) a model that reads it.

        ``damage_frac`` > 0 zeroes that fraction of lattice cells halfway through the run.
        """
        steps = self.cfg.steps if steps is None else steps
        fixed = self.fixed(x, keep)
        return self.read(self.run(self.encode(x), steps, damage_frac, fixed=fixed), x, keep)


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

    def forward(self, x: torch.Tensor, steps=None, damage_frac: float = 0.0,
                damaged: torch.Tensor | None = None, keep: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 28, 28) -> (B, 28, 28); ``damage_frac`` zeroes cells of the 7x7 bottleneck
        (of the rows ``damaged`` (B,) bool, default all); ``keep`` (the mask) is not read, taken
        so that every restorer can be called as ``model(masked, keep=keep)``.

        Linear output, clamped to [0, 1] outside training: with a sigmoid output the network
        fell into predicting an empty image (MSE stuck at 0.11 for 1,800 batches)."""
        z = self.enc(x[:, None])
        if damage_frac:
            z = z.permute(0, 2, 3, 1)
            z = damage_cells(z, damage_frac) if damaged is None else damage_rows(z, damage_frac, damaged)
            z = z.permute(0, 3, 1, 2)
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
    from localrules.tasks.restore_unet import UNet

    return {"hybrid": lambda: CARestorer(cfg, gate=True), "ca": lambda: CARestorer(cfg, gate=False),
            "cnn-ae": lambda: CNNAutoencoder(cfg), "unet": lambda: UNet(cfg),
            "classifier": lambda: DigitClassifier(cfg)}[cfg.model]()


class RestoreTask(PooledTask):
    """Training of one restoration model or the classifier (the trainer's Task protocol).

    With ``pool_size`` > 0 the lattice models keep a SamplePool of (state (P, L, L, C),
    clean (P, 28, 28)); the recipe is in the module docstring. ``last`` holds the pool
    indices, start and final states of the latest batch.
    """

    NAME = "restore"
    POOL = ("pool_size", "pool size")

    def __init__(self, cfg: Config, images: torch.Tensor, labels: torch.Tensor, device):
        self.cfg = cfg.validate()
        self.device = device
        self.model = build_model(cfg).to(device)
        self.images = images.to(device)  # (N, 28, 28) in [0, 1]
        self.labels = labels.to(device)
        self.pool = self.last = None
        self.seed_pool()

    def seed_pool(self) -> None:
        """(Re)fill the pool with masked training digits encoded by the current model (again
        after loading other weights, so no state comes from the random initial encoder)."""
        cfg = self.cfg
        if cfg.pool_size and cfg.model in LATTICE_MODELS:
            clean = self._draw(cfg.pool_size)
            keep = training_masks(clean, cfg)
            with torch.no_grad():
                state = self.model.encode(clean * keep)
            self.pool = SamplePool(state=state, clean=clean, **({"keep": keep} if cfg.needs_keep else {}))

    def _draw(self, n: int) -> torch.Tensor:
        return self.images[torch.randint(len(self.images), (n,), device=self.device)]

    def training_loss(self, steps: int):
        self.model.train()
        cfg, B = self.cfg, self.cfg.batch_size
        if cfg.model == "classifier":
            idx = torch.randint(len(self.images), (B,), device=self.device)
            logits = self.model(self.images[idx])
            y = self.labels[idx]
            return F.cross_entropy(logits, y), {"accuracy": (logits.argmax(1) == y).float().mean().item()}
        fresh = _rows(cfg.fresh_share, B) if cfg.pool_size else torch.ones(B, dtype=torch.bool)
        remask = _rows(cfg.remask_share, B) & ~fresh if cfg.pool_size else _rows(cfg.remask_share, B)
        damaged = _rows(cfg.damage_share, B)
        if self.pool is None:  # every row a fresh digit (the CNN-AE, the U-Net, or no pool)
            clean = self._draw(B)
            first, second = training_masks(clean, cfg), training_masks(clean, cfg)
            keep = torch.where(remask.to(clean.device)[:, None, None], first & second, first)
            x = clean * keep
            if cfg.model == "cnn-ae":
                out = self.model(x, damage_frac=cfg.damage_frac, damaged=damaged)
            elif cfg.model == "unet":
                out = self.model(x, damage_frac=cfg.damage_frac, damaged=damaged, keep=keep)
            else:
                m = self.model
                out = m.read(m.run(m.encode(x), steps, cfg.damage_frac, damaged, m.fixed(x, keep)), x, keep)
            loss = self.loss(out, clean, keep)
            return loss, {"psnr_db": (10 * torch.log10(1 / loss.detach())).item()}
        idx, b = self.pool.sample(B)
        clean, s = b["clean"], b["state"]
        keep = b.get("keep", torch.ones_like(clean, dtype=torch.bool))  # untracked: not read
        f = fresh.to(self.device)
        new = self._draw(B)
        clean = torch.where(f[:, None, None], new, clean)
        new_keep = training_masks(new, cfg)
        keep = torch.where(f[:, None, None], new_keep, keep)
        s = torch.where(f[:, None, None, None], self.model.encode(new * new_keep), s)
        if remask.any():  # zero the lattice cells under a fresh mask (the border stays)
            p, again = self.model.pad, training_masks(clean, cfg)
            r = remask.to(self.device)
            s = torch.where(r[:, None, None, None], s * F.pad(again.float(), (p, p, p, p), value=1.0)[..., None], s)
            keep = torch.where(r[:, None, None], keep & again, keep)
        start = s.detach()
        x = clean * keep
        s = self.model.run(s, steps, cfg.damage_frac, damaged, self.model.fixed(x, keep))
        loss = self.loss(self.model.read(s, x, keep), clean, keep)
        self.commit(self.pool, idx, {"state": s, "clean": clean, **({"keep": keep} if cfg.needs_keep else {})})
        self.last = {"idx": idx, "start": start, "final": s.detach(), "fresh": fresh,
                     "remask": remask, "damaged": damaged, "keep": keep}
        return loss, {"psnr_db": (10 * torch.log10(1 / loss.detach())).item()}

    def loss(self, out: torch.Tensor, clean: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """MSE(out, clean) over all pixels, or with ``masked_loss`` over the blanked ones only."""
        if not self.cfg.masked_loss:
            return F.mse_loss(out, clean)
        hidden = (~keep).to(out.dtype)
        return ((out - clean) ** 2 * hidden).sum() / hidden.sum().clamp(min=1.0)

    def with_config(self, cfg: Config) -> "RestoreTask":
        return RestoreTask(cfg, self.images, self.labels, self.device)

    def use_model(self, model: nn.Module) -> None:
        """Train ``model``; the pool's states are encoded again by it (a shard's pool)."""
        self.model = model
        if self.pool is not None:
            clean = self.pool.slots["clean"]
            keep = self.pool.slots.get("keep")
            with torch.no_grad():
                self.pool.slots["state"] = model.encode(clean * (training_masks(clean, self.cfg) if keep is None else keep))

    def extra_state(self):
        if self.pool is None:
            return {}
        slots = self.pool.state_dict()  # clean pixels are k / 255: uint8 is exact
        return {"pool": {"state": slots["state"], "clean_u8": pack_pixels(slots["clean"]),
                         **({"keep": slots["keep"]} if "keep" in slots else {})}}

    def load_extra_state(self, state):
        if self.pool is not None and "pool" in state:
            pool = dict(state["pool"])
            pool["clean"] = unpack_pixels(pool.pop("clean_u8"))
            self.pool.load_state_dict(pool)


def train_config(cfg: Config, iterations: int, lr: float = 1e-3, seed: int = 0, minutes: float = 0.0):
    """The trainer's schedule: Adam ``lr`` / 10 at 60 % and 85 % of ``iterations``, CA steps per
    batch drawn in [cfg.steps_min, cfg.steps_max], no gradient normalisation."""
    from localrules.train.loop import TrainConfig

    return TrainConfig(iterations=iterations, lr=lr, steps_min=cfg.steps_min, steps_max=cfg.steps_max, seed=seed,
                       normalize_grads=False, minutes=minutes,
                       lr_milestones=(int(0.6 * iterations), int(0.85 * iterations)))


def load(path: str | Path, device="cpu") -> tuple[nn.Module, Config, dict]:
    model, cfg, meta = build_from_checkpoint(path, "restore", config_from_fields, build_model)
    return model.to(device).eval(), cfg, meta
