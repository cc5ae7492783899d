"""Restoration metrics: PSNR, digit-ID accuracy, counted FLOPs, parameters, batches trained;
the tables at other mask rates, region masks and step counts; the damage study.

Models that read the mask (``reads_mask``: the U-Net, lattice models with ``mask_channel`` or
``keep_visible``) get it as ``keep=``; the others see the masked image only. With ``knn_train``
(N, 28, 28) the kNN fill (:mod:`knn_fill`) on those training digits is a row of every table.

    psnr_db = mean over images of 10 log10(1 / MSE(restored, clean))   on [0, 1], whole 28x28 image
    digit_id_accuracy = fraction of restored images the reference classifier labels correctly
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from localrules.progress import bar as progress_bar
from localrules.train.perturb import mask_pixels, mask_region


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


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, H, W) images in [0, 1] -> (B,) PSNR in dB (MSE floored at 1e-10)."""
    mse = ((pred - target) ** 2).flatten(1).mean(1).clamp(min=1e-10)
    return 10 * torch.log10(1.0 / mse)


def count_flops(model, example: torch.Tensor, keep: torch.Tensor | None = None) -> int:
    """FLOPs of one forward pass on ``example`` (counted by torch.utils.flop_counter: matrix
    products and convolutions, 2 per multiply-add); ``model`` may be any callable."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(example) if keep is None else model(example, keep=keep)
    return int(counter.get_total_flops())


def apply(model, masked: torch.Tensor, keep: torch.Tensor, **kw) -> torch.Tensor:
    """model(masked, **kw), with keep=keep for a model that reads the mask."""
    return model(masked, keep=keep, **kw) if getattr(model, "reads_mask", False) else model(masked, **kw)


@torch.inference_mode()
def restore_all(models: dict, images: torch.Tensor, keep: torch.Tensor, batch_size: int = 100,
                damage_frac: float = 0.0, knn_train: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Restorations (N, 28, 28) by each model, the kNN fill (with ``knn_train``) and the
    interpolation floor, same masks."""
    from localrules.studies.knn_fill import knn_fill

    masked = images * keep
    out = {name: torch.cat([apply(m, masked[i : i + batch_size], keep[i : i + batch_size], damage_frac=damage_frac)
                            for i in progress_bar(range(0, len(images), batch_size), desc=f"restore {name}",
                                                  unit="batch", leave=False)])
           for name, m in models.items()}
    if knn_train is not None:
        out["knn"] = knn_fill(knn_train, masked, keep)
    out["interpolation"] = normalized_convolution(images, keep)
    return out


@torch.inference_mode()
def classify(classifier, images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    return torch.cat([classifier(images[i : i + batch_size]).argmax(1)
                      for i in range(0, len(images), batch_size)])


def evaluate(models: dict, classifier, images: torch.Tensor, labels: torch.Tensor,
             mask_frac: float = 0.7, seed: int = 0, batch_size: int = 100,
             knn_train: torch.Tensor | None = None) -> tuple[dict, dict]:
    """One table for all models on the same masked digits. Returns (metrics, restorations).

    Each row: psnr_db, digit_id_accuracy, params (learned; 0 for kNN and the floor),
    flops_per_sample (counted on one digit), batches (the checkpoint's ``iteration``, set by the
    loader as ``model.batches_trained``; None for the non-learned rows)."""
    from localrules.studies.knn_fill import knn_fill

    dev = images.device
    _, keep = mask_pixels(images, mask_frac, torch.Generator().manual_seed(seed))
    restored = restore_all(models, images, keep, batch_size, knn_train=knn_train)
    x1, k1 = images[:1] * keep[:1], keep[:1]
    counters = {"interpolation": lambda x, keep: normalized_convolution(x, keep)}
    if knn_train is not None:
        counters["knn"] = lambda x, keep: knn_fill(knn_train, x, keep)
    table = {}
    for name, rec in restored.items():
        row = {"psnr_db": psnr(rec, images).mean().item(),
               "digit_id_accuracy": (classify(classifier, rec) == labels).float().mean().item()}
        if name in models:
            m = models[name]
            row["params"] = sum(p.numel() for p in m.parameters())
            row["flops_per_sample"] = count_flops(m, x1, k1 if getattr(m, "reads_mask", False) else None)
            row["batches"] = getattr(m, "batches_trained", None)
        else:
            row["params"] = 0
            row["flops_per_sample"] = count_flops(counters[name], x1, k1)
            row["batches"] = None
        table[name] = row
    clean = (classify(classifier, images) == labels).float().mean().item()
    return {"models": table, "mask_frac": mask_frac, "n": len(images), "seed": seed,
            "knn_train_digits": None if knn_train is None else len(knn_train),
            "classifier_accuracy_on_clean": clean, "device": str(dev)}, {"keep": keep, **restored}


def _scores(restored: torch.Tensor, images, labels, classifier) -> dict:
    return {"psnr_db": psnr(restored, images).mean().item(),
            "digit_id_accuracy": (classify(classifier, restored) == labels).float().mean().item()}


def evaluate_masks(models: dict, classifier, images, labels, pixel_fracs=(0.5, 0.7, 0.9),
                   region_fracs=(0.25, 0.5), seed: int = 0, batch_size: int = 100,
                   knn_train: torch.Tensor | None = None, tick=None) -> dict:
    """{"pixels-0.5": {model: {psnr_db, digit_id_accuracy}}, ..., "region-0.25": ...}: every model
    and the floor on the same masks; region-f blanks one square of area f (``mask_region``).
    ``tick()``, if given, is called after each mask (progress)."""
    out = {}
    for kind, fracs, masker in (("pixels", pixel_fracs, mask_pixels), ("region", region_fracs, mask_region)):
        for f in fracs:
            _, keep = masker(images, f, torch.Generator().manual_seed(seed))
            restored = restore_all(models, images, keep, batch_size, knn_train=knn_train)
            out[f"{kind}-{f:g}"] = {n: _scores(r, images, labels, classifier) for n, r in restored.items()}
            if tick:
                tick()
    return out


def evaluate_steps(models: dict, classifier, images, labels, multiples=(1, 2, 5), mask_frac: float = 0.7,
                   seed: int = 0, batch_size: int = 100, tick=None) -> dict:
    """{"2x": {model: {steps, psnr_db, digit_id_accuracy}}}: the lattice models run for
    multiple x their trained ``cfg.steps`` on the masks of the main table (CNN-AE: no steps).
    ``tick()``, if given, is called after each multiple (progress)."""
    _, keep = mask_pixels(images, mask_frac, torch.Generator().manual_seed(seed))
    masked = images * keep
    out = {}
    for k in multiples:
        row = {}
        for name, m in models.items():
            if not hasattr(m, "run"):
                continue
            steps = int(k * m.cfg.steps)
            with torch.inference_mode():
                rec = torch.cat([apply(m, masked[i : i + batch_size], keep[i : i + batch_size], steps=steps)
                                 for i in range(0, len(images), batch_size)])
            row[name] = {"steps": steps, **_scores(rec, images, labels, classifier)}
        out[f"{k:g}x"] = row
        if tick:
            tick()
    return out


def damage_study(models: dict, classifier, images, labels, mask_frac=0.7, damage_frac=0.3, seed=0,
                 batch_size: int = 100) -> dict:
    """Digit-ID accuracy with and without zeroing ``damage_frac`` of the lattice cells mid-run."""
    _, keep = mask_pixels(images, mask_frac, torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    rows = {}
    for frac in (0.0, damage_frac):
        restored = restore_all(models, images, keep, batch_size, damage_frac=frac)
        for name in models:
            acc = (classify(classifier, restored[name]) == labels).float().mean().item()
            rows.setdefault(name, {})["accuracy_damaged" if frac else "accuracy_intact"] = acc
    for r in rows.values():
        r["accuracy_drop"] = r["accuracy_intact"] - r["accuracy_damaged"]
    return {"models": rows, "damage_frac": damage_frac, "mask_frac": mask_frac, "n": len(images)}
