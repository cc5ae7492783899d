"""Figures of the self-classifying paper: accuracy / agreement and magnitudes over time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _steps(values):
    return range(1, len(values) + 1)


def plot_curves(results: dict, path: str | Path, label: str = "model") -> Path:
    """Two panels: average cell accuracy and total agreement (percent) over steps."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, title in zip(axes, ("accuracy", "agreement"),
                              ("Average cell accuracy (%)", "Total agreement (%)")):
        ax.plot(_steps(results[key]), [100 * v for v in results[key]], label=label)
        if results.get("mutate_at"):
            ax.axvline(results["mutate_at"], color="grey", ls=":", lw=1, label="mutation")
        ax.set(title=title, xlabel="step", ylim=(0, 100), xlim=(0, len(results[key])))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_magnitudes(results: dict, path: str | Path) -> Path:
    """Mean |state| (solid) and mean |residual update| (dotted) of alive cells over steps."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(_steps(results["state_magnitude"]), results["state_magnitude"], label="state")
    ax.plot(_steps(results["update_magnitude"]), results["update_magnitude"], ":", label="residual update")
    if results.get("mutate_at"):
        ax.axvline(results["mutate_at"], color="grey", ls=":", lw=1)
    ax.set(title="Magnitude of alive cells' states", xlabel="step", ylabel="mean |value|", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
