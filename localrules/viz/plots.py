"""Figures of the self-classifying paper: accuracy / agreement and magnitudes over time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .labels import adam_label  # noqa: E402


def _save(fig, path: str | Path, dpi: int = 120, rect=None) -> Path:
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)


def _steps(values):
    return range(1, len(values) + 1)


def plot_curves(results: dict, path: str | Path, label: str = "model") -> Path:
    """Two panels: average cell accuracy and total agreement (percent) over steps; one legend
    below both, off the curves."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in zip(axes, ("accuracy", "agreement"),
                              ("Average cell accuracy (%)", "Total agreement (%)")):
        ax.plot(_steps(results[key]), [100 * v for v in results[key]], label=label)
        if results.get("mutate_at"):
            ax.axvline(results["mutate_at"], color="grey", ls=":", lw=1, label="mutation")
        ax.set(title=title, xlabel="step", ylim=(0, 100), xlim=(0, len(results[key])))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    return _save(fig, path, rect=(0, 0.08, 1, 1))


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
    return _save(fig, path)


def plot_heatmap(results: dict, path: str | Path, xkey: str = "x", ykey: str = "y", xlabel: str = "X",
                 ylabel: str = "Y", arch: str = "[in, X, Y, out]") -> Path:
    """MetaNCA Figure 2: mean accuracy per [n_in, X, Y, n_out]; meta-training cells outlined.
    With the Adam baseline: grown, Adam and grown / Adam side by side. ``xkey`` / ``ykey``: the
    cell fields on the axes (e.g. width and depth of ``study heatmap --depth --width``)."""
    import numpy as np

    cells = results["cells"]
    xs = sorted({c[xkey] for c in cells})
    ys = sorted({c[ykey] for c in cells})
    panels = [("mean_accuracy", "grown networks: mean test accuracy")]
    if all("adam_accuracy" in c for c in cells):
        panels += [("adam_accuracy", f"{adam_label(results.get('adam_epochs'))}: test accuracy"),
                   ("ratio", "grown / Adam")]
    width, height = max(4.5, 1 + 0.6 * len(xs)), max(3.2, 0.8 + 0.5 * len(ys))  # small grids keep their titles
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * width, height), squeeze=False)
    for ax, (field, title) in zip(axes[0], panels):
        grid = np.full((len(ys), len(xs)), np.nan)
        shown = [c for c in cells if c[field] is not None]  # a ratio is None where Adam scores 0
        for c in shown:
            grid[ys.index(c[ykey]), xs.index(c[xkey])] = c[field]
        im = ax.imshow(grid, origin="lower", cmap="viridis", vmin=np.nanmin(grid), vmax=np.nanmax(grid))
        for c in shown:
            i, j = ys.index(c[ykey]), xs.index(c[xkey])
            ax.text(j, i, f"{c[field]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if c[field] < np.nanmean(grid) else "black")
            if c.get("in_training"):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
        ax.set(xticks=range(len(xs)), xticklabels=xs, yticks=range(len(ys)), yticklabels=ys,
               xlabel=xlabel, ylabel=ylabel)
        ax.set_title(f"{title}\n{arch}", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.04)
    if any(c.get("in_training") for c in cells):
        fig.suptitle("red outline: an architecture the rule was meta-trained on", fontsize=9, color="red")
    return _save(fig, path)


def plot_depth_width(results: dict, path: str | Path) -> Path:
    """``study heatmap --depth --width``: one cell per depth (rows) x width (columns), every hidden
    layer that width; grown, Adam and grown / Adam as :func:`plot_heatmap`."""
    return plot_heatmap(results, path, xkey="width", ykey="depth", xlabel="width of every hidden layer",
                        ylabel="hidden layers", arch="[in, width x depth, out]")


def plot_architectures(results: dict, path: str | Path) -> Path:
    """``study architectures``: grown against Adam accuracy per architecture (colour: depth,
    meta-training architectures ringed), and grown / Adam against the total hidden units."""
    cells = results["cells"]
    depths = sorted({c["depth"] for c in cells})
    cmap = plt.get_cmap("viridis", max(len(depths), 2))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, d in enumerate(depths):
        sub = [c for c in cells if c["depth"] == d]
        kw = dict(color=cmap(k), s=18, label=f"{d} hidden")
        if all("adam_accuracy" in c for c in sub):
            axes[0].scatter([c["adam_accuracy"] for c in sub], [c["mean_accuracy"] for c in sub], **kw)
            sub = [c for c in sub if c["ratio"] is not None]
            axes[1].scatter([sum(c["hidden"]) for c in sub], [c["ratio"] for c in sub], **kw)
        else:
            axes[1].scatter([sum(c["hidden"]) for c in sub], [c["mean_accuracy"] for c in sub], **kw)
    ringed = [c for c in cells if c.get("in_training") and "adam_accuracy" in c]
    if ringed:
        axes[0].scatter([c["adam_accuracy"] for c in ringed], [c["mean_accuracy"] for c in ringed], s=70,
                        facecolors="none", edgecolors="red", label="meta-trained on")
    axes[0].plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    axes[0].set(xlabel=f"Adam ({results.get('adam_epochs', 0):g} epochs) test accuracy", ylabel="grown test accuracy", xlim=(0, 1), ylim=(0, 1),
                title=f"{len(cells)} architectures")
    axes[1].axhline(1.0, color="grey", ls=":", lw=1)
    has_adam = all("ratio" in c for c in cells)
    axes[1].set(xlabel="hidden units in all", xscale="log", ylabel="grown / Adam" if has_adam else "grown accuracy",
                title="per architecture")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_datasets(results: dict, path: str | Path) -> Path:
    """``study datasets``: test accuracy per dataset: grown (zero-shot), grown after the
    meta-fine-tune, Adam per epoch count, logistic regression; chance marked."""
    import numpy as np

    rows = results["rows"]
    bars = [("grown", "grown (MNIST rule)")]
    if all("finetuned" in r for r in rows):
        bars.append(("finetuned", f"grown, fine-tuned {results['finetune_iters']} it."))
    bars += [(("adam", k), f"Adam {k} epoch(s)") for k in rows[0]["adam"]]
    bars.append(("logistic_regression", "logistic regression"))
    fig, ax = plt.subplots(figsize=(1.2 + 1.6 * len(rows), 3.8))
    x = np.arange(len(rows))
    w = 0.8 / len(bars)
    for k, (key, label) in enumerate(bars):
        vals = [r[key[0]][key[1]] if isinstance(key, tuple) else r[key] for r in rows]
        ax.bar(x + (k - (len(bars) - 1) / 2) * w, vals, w, label=label)
    for i, r in enumerate(rows):
        ax.hlines(r["chance"], i - 0.45, i + 0.45, color="grey", ls=":", lw=1)
    ax.set(xticks=x, xticklabels=[f"{r['dataset']}\n{r['arch']}" for r in rows], ylim=(0, 1.05),
           ylabel="test accuracy", title="Beyond MNIST (dotted: chance)")
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def plot_stability(results: dict, path: str | Path) -> Path:
    """``study stability``: the measured rule's test accuracy over updates (best and the 0.02 band
    marked), or both rules' training loss over updates (with / without sample pooling)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    if "accuracy_curve" in results:
        acc = results["accuracy_curve"]
        ax.plot(_steps(acc), acc)
        ax.axhline(results["best_accuracy"] - 0.02, color="grey", ls=":", label="best - 0.02")
        ax.axvline(results["updates_to_best"], color="red", ls=":", lw=1, label="best")
        ax.set(ylabel="mean test accuracy", ylim=(0, 1), title=f"Stability: {results['arch']}")
    else:
        for name, row in results.items():
            ax.plot(_steps(row["loss_curve"]), row["loss_curve"], label=name.replace("_", " "))
        ax.set(ylabel="mean training loss", yscale="log", title="Stability with / without sample pooling")
    ax.set(xlabel="rule update")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_zeroout(results: dict, path: str | Path) -> Path:
    """MetaNCA Figure 3: mean test accuracy over rule updates, zero-out marked."""
    acc = results["accuracy"]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(range(1, len(acc) + 1), acc)
    ax.axvline(results["zero_out_at"] + 1, color="grey", ls=":", label="zero-out")
    ax.set(xlabel="rule update", ylabel="mean test accuracy", ylim=(0, 1),
           title=f"Zero-out: a whole layer + {results['frac']:.0%} of the other weights")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_restorations(images, restored: dict, path: str | Path, n: int = 8) -> Path:
    """Rows: masked input, each model's restoration, the clean digit; columns: n test digits."""
    keep = restored["keep"]
    rows = [("masked input", images * keep)] + [(k, v) for k, v in restored.items() if k != "keep"]
    rows.append(("clean", images))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n + 1.2, 1.1 * len(rows)))
    for r, (name, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(imgs[c].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    return _save(fig, path, dpi=110)


def plot_basins(res: dict, arrays: dict, path: str | Path) -> Path:
    """Top: each basin's mean final image (size, majority digit); bottom: final lattice states
    on their first two principal components, coloured by basin, marked by where they started."""
    import numpy as np

    k = res["n_basins"]
    fig = plt.figure(figsize=(max(6.0, 1.2 * k), 6.0))
    grid = fig.add_gridspec(2, k, height_ratios=(1, 3))
    for c, row in enumerate(res["basins"]):
        ax = fig.add_subplot(grid[0, c])
        ax.imshow(arrays["basin_images"][c].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"n={row['size']}\n'{row['digit']}' {row['digit_share']:.0%}", fontsize=7)
        ax.set_xticks([]), ax.set_yticks([])
    x = arrays["features"] - arrays["features"].mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    ax = fig.add_subplot(grid[1, :])
    for kind, marker in (("masked", "o"), ("noise", "x"), ("blank", "*")):
        sel = arrays["kinds"] == kind
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], c=arrays["clusters"][sel], cmap="tab20", vmin=0, vmax=19,
                       marker=marker, s=40 if kind == "blank" else 10, label=kind)
    ax.set(title=f"{k} basins (k-means, best silhouette) after {res['steps']} steps; "
                 f"purity {res['purity_by_classifier']:.2f}", xlabel="PC 1", ylabel="PC 2")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def plot_transform_sweep(results: dict | list[dict], path: str | Path) -> Path:
    """Accuracy and agreement after 200 steps (the best before, in runs shorter than that)
    against the level of each change of the digits, and the share of digits whose alive cells form
    one piece (cells of different pieces never exchange a message): one panel per sweep result."""
    results = [results] if isinstance(results, dict) else results
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.2), squeeze=False)
    units = {"scale": "scale factor", "shift": "shift (pixels)", "rotate": "rotation (degrees)",
             "stroke": "stroke (erosions < 0 < dilations)"}
    for ax, res in zip(axes[0], results):
        rows = res["levels"]
        at = "at_200" if "accuracy_at_200" in rows[0] else None
        for what, style in (("accuracy", "o-"), ("agreement", "s--")):
            key = f"{what}_{at}" if at else f"top_{what}"
            ax.plot([r["level"] for r in rows], [r[key] for r in rows], style, label=key.replace("_", " "))
        if "connected_at_200" in rows[0]:
            ax.plot([r["level"] for r in rows], [r["connected_at_200"] for r in rows], ":", color="grey",
                    label="digits in one piece")
        ax.set(xlabel=units[res["transform"]], ylim=(0, 1), title=f"{res['transform']}, {res['n_digits']} digits")
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="lower left")
    fig.tight_layout()
    return _save(fig, path)


def plot_listed(results: dict, path: str | Path) -> Path:
    """``study architectures --arch``: grown (mean +- std) and Adam test accuracy per named
    architecture (MLPs and CNNs); meta-training architectures marked with *."""
    import numpy as np

    cells = results["cells"]
    k = np.arange(len(cells))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(cells) + 2), 4.2))
    has_adam = all("adam_accuracy" in c for c in cells)
    w = 0.4 if has_adam else 0.6
    ax.bar(k - (w / 2 if has_adam else 0), [c["mean_accuracy"] for c in cells], w,
           yerr=[c["std"] for c in cells], label=f"grown ({results['steps']} updates)")
    if has_adam:
        ax.bar(k + w / 2, [c["adam_accuracy"] for c in cells], w, label=adam_label(results["adam_epochs"]))
    ax.set_xticks(k, [c["arch"] + (" *" if c["in_training"] else "") for c in cells], rotation=20, ha="right",
                  fontsize=8)
    ax.set(ylabel="test accuracy", ylim=(0, 1.15), yticks=[0, 0.2, 0.4, 0.6, 0.8, 1.0],
           title="grown vs Adam (* meta-trained on; the rest only evaluated)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    return _save(fig, path)
