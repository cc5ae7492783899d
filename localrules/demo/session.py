"""Playground sessions: one grid per browser tab, edited by messages and advanced by steps.

The model is always the library's own: the self-classifying session steps
``localrules.tasks.mnist_selfclassify``'s NCA through its :class:`Engine`; the restoration
session calls ``CARestorer.forward(x, steps=t)`` for t = 0, 1, ..., ``steps``. Sessions are
plain synchronous objects, so they are tested without a server or a browser.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from localrules.tasks import mnist_selfclassify as ms

log = logging.getLogger("localrules.demo")

SIDE = 28
DEAD = 255  # the label code of a dead cell in frames
UNDECIDED = 254  # an alive cell before the first step since a load or clear: it has not voted yet


# ---------------------------------------------------------------------------- test digits


@dataclass
class TestDigits:
    """Test digits (N, 28, 28) in [0, 1] with labels (N,); ``source`` says where they came from."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    _by_label: list[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self):
        labels = np.asarray(self.labels)
        self._by_label = [np.flatnonzero(labels == d) for d in range(10)]

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, digit: int, rng: np.random.Generator) -> torch.Tensor:
        """A random test image of ``digit`` (28, 28); each call draws again."""
        idx = self._by_label[digit]
        if len(idx) == 0:
            raise ValueError(f"no test digit with label {digit}")
        return self.images[int(rng.choice(idx))]


def sklearn_digits() -> TestDigits:
    """scikit-learn's 8x8 digits, upscaled to 20x20 and centred in 28x28 like MNIST."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    x = F.pad(x, (4, 4, 4, 4))[:, 0].clamp(0, 1)
    return TestDigits(x, torch.as_tensor(d.target, dtype=torch.long),
                      "scikit-learn 8x8 digits upscaled to 28x28")


def load_test_digits(data_dir: str | Path | None = None, download: bool = True) -> TestDigits:
    """MNIST test digits (``load_mnist("test", data_dir)``); scikit-learn's digits if absent."""
    from localrules.data.arrays import to_unit_pixels
    from localrules.data.mnist import FILES, MNISTError, load_mnist, locate

    try:
        if not download:  # raise MNISTError now rather than try the mirrors
            for kind in ("images", "labels"):
                locate(FILES[("test", kind)], data_dir, download=False)
        x, y = load_mnist("test", data_dir)
    except (MNISTError, OSError) as e:
        log.warning("MNIST test digits not found (%s); falling back to scikit-learn's 8x8 digits "
                    "upscaled to 28x28", str(e).split(". ")[0])
        return sklearn_digits()
    return TestDigits(to_unit_pixels(x), torch.as_tensor(y, dtype=torch.long), "MNIST test set")


# ---------------------------------------------------------------------------- brush


def brush_mask(points, radius: float, height: int = SIDE, width: int = SIDE) -> torch.Tensor:
    """(H, W) bool: cells whose centre lies within ``radius`` of any point.

    Points are (x, y) in cell units: (0, 0) is the top-left corner of the grid, so cell (i, j)
    has its centre at (j + 0.5, i + 0.5). Points off the grid touch only the cells in reach.
    """
    mask = torch.zeros(height, width, dtype=torch.bool)
    if not len(points):
        return mask
    p = torch.as_tensor(points, dtype=torch.float32).reshape(-1, 2)
    ys = torch.arange(height, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(width, dtype=torch.float32)[None, :] + 0.5
    for chunk in p.split(256):
        d2 = (xs[None] - chunk[:, 0, None, None]) ** 2 + (ys[None] - chunk[:, 1, None, None]) ** 2
        mask |= (d2 <= radius * radius).any(0)
    return mask


# ---------------------------------------------------------------------------- sessions


class SelfClassifySession:
    """One self-classifying grid: pixels (drawn, erased, loaded) and the 19 mutable channels.

    Drawing sets pixels to 1 (alive, new cells start from a zero state, existing cells keep
    theirs), erasing sets pixels and states to 0; a step updates alive cells only.
    """

    task = "mnist-selfclassify"
    running = True  # the CA never finishes; speed 0 pauses it

    def __init__(self, model, cfg: ms.Config, digits: TestDigits, device="cpu", seed: int | None = None,
                 noise_std: float | None = None):
        self.model, self.cfg, self.digits = model, cfg, digits
        self.device = torch.device(device)
        self.noise_std = cfg.noise_std if noise_std is None else noise_std
        self.rng = np.random.default_rng(seed)
        self.pixels = torch.zeros(SIDE, SIDE)
        self.state = torch.zeros(SIDE, SIDE, cfg.channels, device=self.device)
        self.steps = 0
        self.loaded: int | None = None  # label of the last loaded test digit
        self._engine = None

    # edits
    def draw(self, points, radius: float, erase: bool = False) -> None:
        mask = brush_mask(points, radius)
        if erase:
            self.pixels[mask] = 0.0
            self.state[mask.to(self.device)] = 0.0
        else:
            self.pixels[mask] = 1.0  # newly alive cells hold the zero state of dead cells
        self._engine = None

    def load_digit(self, digit: int) -> None:
        self.pixels = self.digits.sample(digit, self.rng).clone().float()
        self.state.zero_()
        self.steps, self.loaded, self._engine = 0, digit, None

    def clear(self) -> None:
        self.pixels.zero_()
        self.state.zero_()
        self.steps, self.loaded, self._engine = 0, None, None

    # dynamics
    @property
    def alive(self) -> torch.Tensor:
        return self.pixels > ms.ALIVE_THRESHOLD

    @torch.no_grad()
    def step(self, n: int = 1) -> None:
        if self.alive.any():
            if self._engine is None:
                px = self.pixels.to(self.device)[None, ..., None]
                self._engine = ms.Engine("alive", px, self.state[None])
            eng = self._engine
            rows = eng.pack(self.state[None])
            rows = self.model.rollout(eng.topology, eng.fixed, rows, eng.alive, n, self.noise_std)
            self.state = eng.unpack(rows)[0]
        self.steps += n

    # read-out
    def labels(self) -> np.ndarray:
        """(28, 28) uint8: each alive cell's label (argmax of its 10 logits), 255 when dead; at
        step 0 (nothing run since a load or clear: the zero state's argmax would read as 0)
        every alive cell is 254, undecided."""
        lab = ms.labels_of(self.state).argmax(-1).cpu()
        if self.steps == 0:
            lab = torch.full_like(lab, UNDECIDED)
        return torch.where(self.alive, lab, torch.full_like(lab, DEAD)).to(torch.uint8).numpy()

    def summary(self) -> dict:
        """Step, alive cells, votes per label, the majority and its share (None before step 1:
        nothing is claimed before the cells have spoken), the loaded digit."""
        lab = self.labels()
        alive = int((lab != DEAD).sum())
        counts = np.bincount(lab[lab < 10], minlength=10)
        voted = int(counts.sum())
        majority = int(counts.argmax()) if voted else None
        return {"step": self.steps, "alive": alive, "counts": counts.tolist(), "majority": majority,
                "agreement": float(counts.max() / voted) if voted else None, "loaded": self.loaded}


class RestoreSession:
    """One restoration: the input the model sees (drawn, erased, knocked out) and its output.

    Any edit restarts the run: the frame at step t is ``model(input, steps=t)``, t = 0..steps,
    so the animation is the trained model's own forward pass, stopped after t CA steps.
    ``reference`` is the clean image (the loaded digit, or the drawing before the first
    knock-out) that the restoration is scored against. ``keep`` (28, 28) bool is the mask, True
    where the pixel is known: drawn or loaded pixels are known, erased and knocked-out ones are
    not; a model that reads the mask (``reads_mask``) is given it.
    """

    task = "restore"

    def __init__(self, model, cfg, digits: TestDigits, device="cpu", seed: int | None = None,
                 classifier=None):
        self.model, self.cfg, self.digits, self.classifier = model, cfg, digits, classifier
        self.device = torch.device(device)
        self.max_steps = int(cfg.steps)
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(int(self.rng.integers(2**31)))
        self.image = torch.zeros(SIDE, SIDE)
        self.keep = torch.ones(SIDE, SIDE, dtype=torch.bool)
        self.reference: torch.Tensor | None = None
        self.knocked_out = False
        self.loaded: int | None = None
        self.steps = 0
        self.output = torch.zeros(SIDE, SIDE)
        self._restart()

    @property
    def running(self) -> bool:
        return self.steps < self.max_steps

    @torch.no_grad()
    def _restart(self) -> None:
        self.steps = 0
        self.output = self._forward(0)

    def _forward(self, steps: int) -> torch.Tensor:
        x, keep = self.image.to(self.device)[None], self.keep.to(self.device)[None]
        return self.model(x, steps=steps, keep=keep)[0].float().cpu()  # read only by a model that reads the mask

    # edits
    def draw(self, points, radius: float, erase: bool = False) -> None:
        mask = brush_mask(points, radius)
        self.image[mask] = 0.0 if erase else 1.0
        self.keep[mask] = not erase
        if not erase and not self.knocked_out:
            self.reference = self.image.clone()
        self._restart()

    def load_digit(self, digit: int) -> None:
        self.image = self.digits.sample(digit, self.rng).clone().float()
        self.keep = torch.ones(SIDE, SIDE, dtype=torch.bool)
        self.reference, self.knocked_out, self.loaded = self.image.clone(), False, digit
        self._restart()

    def knockout(self, fraction: float) -> None:
        """Blank ``fraction`` of the pixels, as in training (``mask_pixels``)."""
        from localrules.train.perturb import mask_pixels

        if not self.knocked_out:
            self.reference = self.image.clone()
        self.image, keep = mask_pixels(self.image[None], fraction, self.generator)
        self.image, self.keep = self.image[0], self.keep & keep[0]
        self.knocked_out = True
        self._restart()

    def clear(self) -> None:
        self.image = torch.zeros(SIDE, SIDE)
        self.keep = torch.ones(SIDE, SIDE, dtype=torch.bool)
        self.reference, self.knocked_out, self.loaded = None, False, None
        self._restart()

    # dynamics
    @torch.no_grad()
    def step(self, n: int = 1) -> None:
        t = min(self.steps + n, self.max_steps)
        if t != self.steps:
            self.steps, self.output = t, self._forward(t)

    # read-out
    def summary(self) -> dict:
        out = {"step": self.steps, "max_steps": self.max_steps, "running": self.running,
               "loaded": self.loaded, "psnr_db": None, "guess": None}
        if self.reference is not None and self.reference.any():
            mse = float(((self.output - self.reference) ** 2).mean())
            out["psnr_db"] = 10 * np.log10(1 / max(mse, 1e-10))
        if self.classifier is not None:
            with torch.no_grad():
                out["guess"] = int(self.classifier(self.output.to(self.device)[None]).argmax(1))
        return out


# ---------------------------------------------------------------------------- models


@dataclass
class Demo:
    """What a server needs: the task, how to start a session, and what the page is told."""

    task: str
    model: object
    cfg: object
    digits: TestDigits
    device: torch.device
    classifier: object = None
    info: dict = field(default_factory=dict)

    def new_session(self, seed: int | None = None):
        if self.task == SelfClassifySession.task:
            return SelfClassifySession(self.model, self.cfg, self.digits, self.device, seed)
        return RestoreSession(self.model, self.cfg, self.digits, self.device, seed, self.classifier)


def selfclassify_demo(checkpoint: str | Path, digits: TestDigits, device="cpu") -> Demo:
    model, cfg, _ = ms.load(checkpoint, device)
    return Demo(SelfClassifySession.task, model, cfg, digits, torch.device(device),
                info={"checkpoint": str(checkpoint), "fire_rate": cfg.fire_rate,
                      "noise_std": cfg.noise_std})


def restore_paths(folder: str | Path) -> tuple[Path, Path]:
    """(hybrid model, optional classifier) inside a restore run folder (as ``eval restore``)."""
    folder = Path(folder)
    return folder / "hybrid" / "model.safetensors", folder / "classifier" / "model.safetensors"


def restore_demo(folder: str | Path, digits: TestDigits, device="cpu") -> Demo:
    from localrules.tasks import restore as rs

    hybrid, clf = restore_paths(folder)
    model, cfg, _ = rs.load(hybrid, device)
    classifier = rs.load(clf, device)[0] if clf.is_file() else None
    return Demo(RestoreSession.task, model, cfg, digits, torch.device(device), classifier,
                info={"checkpoint": str(hybrid), "steps": cfg.steps,
                      "classifier": str(clf) if classifier is not None else None})
