"""Self-classifying MNIST digits (Randazzo et al., Distill 2020).

Each pixel of a 28x28 digit is a cell: channel 0 is the immutable pixel value, then 19 mutable
channels (9 hidden + 10 label logits). A cell is alive when its pixel > 0.1; only alive cells
update, dead cells keep a zero state. Every alive cell must output the digit's label.

    perception p = conv3x3(x)            (B, 28, 28, 20) -> (B, 28, 28, 80), trainable
    delta        = W2 relu(W1 relu(p))    80 -> 80 -> 19, last layer zero-initialised
    parameters: 14,480 + 6,480 + 1,539 = 22,499

Training (the paper's recipe): a pool of 160 states, batches of 16 of which a quarter are
replaced by fresh digits and a quarter mutated into new digits, 20 steps per iteration,
L2 (or cross-entropy) loss on the label channels of alive cells. Beyond the paper, ``augment``
changes every digit drawn into the pool at random (size, place, slant, stroke width:
``localrules.data.augment.random_mix``), for digits drawn by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from localrules.core import NCA, AliveCells, Grid2D, GridGraph, MoorePerception, Rule
from localrules.data.augment import random_mix
from localrules.train.checkpoint import build_from_checkpoint
from localrules.train.perturb import mutate
from localrules.train.pool import SamplePool
from localrules.train.pooled import PooledTask, pack_pixels, unpack_pixels

ALIVE_THRESHOLD = 0.1
N_LABELS = 10
ENGINES = ("alive", "dense", "graph")


@dataclass
class Config:
    hidden_channels: int = 9
    perception: str = "learned"  # or "sobel"
    perception_dim: int = 80
    hidden: tuple[int, ...] = (80,)
    fire_rate: float = 0.5
    loss: str = "l2"  # "l2" (one-hot target) or "ce" (cross-entropy)
    noise_std: float = 0.02  # residual noise in training; 0 turns it off
    batch_size: int = 16
    pool_size: int = 160
    fresh_frac: float = 0.25
    mutate_frac: float = 0.25
    engine: str = "alive"  # alive (fast) | dense | graph (general path)
    augment: bool = False  # every digit drawn into the pool changed at random (augment.random_mix)

    @property
    def channels(self) -> int:
        """Mutable channels: hidden + label."""
        return self.hidden_channels + N_LABELS

    def validate(self) -> "Config":
        if self.loss not in ("l2", "ce"):
            raise ValueError(f"loss must be 'l2' or 'ce', not {self.loss!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {self.engine!r}")
        if self.batch_size < 1 or self.pool_size < self.batch_size:
            raise ValueError("need 1 <= batch_size <= pool_size")
        if self.fresh_frac + self.mutate_frac > 1:
            raise ValueError("fresh_frac + mutate_frac must be <= 1")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        d = dict(d)
        d["hidden"] = tuple(d.get("hidden", (80,)))
        return cls(**d).validate()


def build_model(cfg: Config) -> NCA:
    c_in = 1 + cfg.channels
    per = MoorePerception(c_in, cfg.perception_dim, cfg.perception)
    rule = Rule(per.out_dim, cfg.hidden, cfg.channels, relu_input=cfg.perception == "learned")
    # on the CPU only the firing cells are perceived and updated (half the work, the same values;
    # `localrules bench mnist-selfclassify`); elsewhere the masked update keeps static shapes
    return NCA(per, rule, cfg.fire_rate, sparse_fire="cpu")


def labels_of(state: torch.Tensor) -> torch.Tensor:
    """The label logits: the last 10 channels of the mutable state."""
    return state[..., -N_LABELS:]


def loss_fn(kind: str, logits: torch.Tensor, target: torch.Tensor, n_digits: int) -> torch.Tensor:
    """logits (cells, 10) and target (cells,) of alive cells only.

    l2: sum over cells of ||logits - onehot(target)||^2 / 2, divided by the number of digits
        (the paper's per-digit sum, averaged over the batch; dead cells contribute zero).
    ce: mean cross-entropy over alive cells.
    """
    if kind == "l2":
        return ((logits - F.one_hot(target, N_LABELS).to(logits)) ** 2).sum() / 2 / n_digits
    return F.cross_entropy(logits, target)


class Engine:
    """Runs the NCA on a batch of digits with one of the topologies, hiding its layout.

    ``pixels`` (B, H, W, 1), ``state`` (B, H, W, C) dense in and out; inside, the alive engine
    works on compact (N, C) rows of alive cells only.
    """

    def __init__(self, kind: str, pixels: torch.Tensor, state: torch.Tensor):
        self.kind = kind
        alive = pixels > ALIVE_THRESHOLD
        B, H, W, _ = self.shape = pixels.shape
        if kind == "alive":
            self.topology = AliveCells(alive[..., 0], torch.cat([pixels, state], -1))
            self.pack, self.unpack = self.topology.compact, self.topology.dense
            self.cell_digit = self.topology.batch_of()
        elif kind == "dense":
            self.topology = Grid2D()
            self.pack = self.unpack = lambda t: t
        else:
            self.topology = GridGraph.moore(B, H, W, device=pixels.device)
            self.pack = lambda t: t.reshape(B * H * W, t.shape[-1])
            self.unpack = lambda t: t.reshape(B, H, W, t.shape[-1])
        self.fixed, self.alive = self.pack(pixels), self.pack(alive)

    def alive_rows(self, t: torch.Tensor) -> torch.Tensor:
        """(cells, C) in engine layout -> (N_alive, C)."""
        if self.kind == "alive":
            return t
        return t.reshape(-1, t.shape[-1])[self.alive.reshape(-1)]

    def alive_digit(self) -> torch.Tensor:
        """(N_alive,) digit index of each alive cell."""
        if self.kind == "alive":
            return self.cell_digit
        B, H, W, _ = self.shape
        idx = torch.arange(B, device=self.alive.device).repeat_interleave(H * W)
        return idx[self.alive.reshape(-1)]


class SelfClassifyTask(PooledTask):
    """Pool training of the self-classifying NCA (implements the trainer's Task protocol)."""

    NAME = "mnist-selfclassify"

    def __init__(self, cfg: Config, images: np.ndarray, labels: np.ndarray, device: torch.device):
        self.cfg = cfg.validate()
        self.device = device
        self.model = build_model(cfg).to(device)
        self.images = torch.as_tensor(images, dtype=torch.float32, device=device)[..., None]
        if self.images.max() > 1.0:
            self.images = self.images / 255.0
        self.labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        H, W = self.images.shape[1:3]
        P = cfg.pool_size
        pixels, labels = self._fresh(P)
        self.pool = SamplePool(pixels=pixels.clone(), label=labels.clone(),
                               state=torch.zeros(P, H, W, cfg.channels, device=device))

    def _fresh(self, n: int):
        """n random training digits (n, H, W, 1) and labels, changed at random with ``augment``."""
        idx = torch.randint(len(self.images), (n,), device=self.device)
        pixels = self.images[idx]
        if self.cfg.augment:
            pixels = random_mix(pixels[..., 0])[..., None]
        return pixels, self.labels[idx]

    def training_batch(self):
        """Sample from the pool; a quarter fresh digits, a quarter mutated into new digits."""
        cfg = self.cfg
        idx, b = self.pool.sample(cfg.batch_size)
        n_fresh = int(cfg.batch_size * cfg.fresh_frac)
        n_mut = int(cfg.batch_size * cfg.mutate_frac)
        if n_fresh:
            b["pixels"][:n_fresh], b["label"][:n_fresh] = self._fresh(n_fresh)
            b["state"][:n_fresh] = 0
        if n_mut:
            px, lab = self._fresh(n_mut)
            s = slice(cfg.batch_size - n_mut, cfg.batch_size)
            b["state"][s] = mutate(b["state"][s], px > ALIVE_THRESHOLD, b["pixels"][s] > ALIVE_THRESHOLD)
            b["pixels"][s], b["label"][s] = px, lab
        return idx, b

    def training_loss(self, steps: int):
        idx, b = self.training_batch()
        eng = Engine(self.cfg.engine, b["pixels"], b["state"])
        state = self.model.rollout(eng.topology, eng.fixed, eng.pack(b["state"]), eng.alive,
                                   steps, self.cfg.noise_std)
        logits = labels_of(eng.alive_rows(state))
        target = b["label"][eng.alive_digit()]
        loss = loss_fn(self.cfg.loss, logits, target, len(b["label"]))
        b["state"] = eng.unpack(state.detach())
        self.commit(self.pool, idx, b)
        acc = (logits.argmax(-1) == target).float().mean().item()
        return loss, {"cell_accuracy": acc}

    def with_config(self, cfg: Config) -> "SelfClassifyTask":
        return SelfClassifyTask(cfg, self.images[..., 0], self.labels, self.device)

    def extra_state(self):
        """The pool, with states stored for alive cells only (dead cells hold zero): ~6x smaller."""
        slots = self.pool.state_dict()
        alive = slots["pixels"][..., 0] > ALIVE_THRESHOLD
        return {"pool": {"pixels_u8": pack_pixels(slots["pixels"]),
                         "label": slots["label"], "alive_state": slots["state"][alive]}}

    def load_extra_state(self, state):
        pool = dict(state["pool"])
        if "pixels_u8" in pool:  # pixels are k / 255, so this round trip is exact
            pool["pixels"] = unpack_pixels(pool.pop("pixels_u8"))
        if "alive_state" in pool:
            alive = pool["pixels"][..., 0] > ALIVE_THRESHOLD
            full = pool["alive_state"].new_zeros(*alive.shape, self.cfg.channels)
            full[alive] = pool.pop("alive_state")
            pool["state"] = full
        self.pool.load_state_dict(pool)


PRETRAINED_DIR = Path(str(resources.files("localrules") / "pretrained"))
PRETRAINED = {"l2": "mnist-selfclassify-l2noise", "ce": "mnist-selfclassify-ce",
              "robust": "mnist-selfclassify-robust"}


def pretrained_path(loss: str = "l2") -> Path:
    """The shipped checkpoint: the paper's L2 + residual noise (default), cross-entropy, or
    ``robust`` (L2 + noise fine-tuned on scaled, shifted, rotated, thinned and thickened digits)."""
    return PRETRAINED_DIR / (PRETRAINED[loss] + ".safetensors")


def load(path: str | Path, device: torch.device | str = "cpu") -> tuple[NCA, Config, dict]:
    """Model, its Config and the whole JSON metadata from a checkpoint written by training."""
    model, cfg, meta = build_from_checkpoint(path, "mnist-selfclassify", Config.from_dict, build_model)
    return model.to(device).eval(), cfg, meta
