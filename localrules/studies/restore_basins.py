"""Attractor basins of a restoration CA (``study restore-basins``, the seed text's claim).

Start the lattice from noise seeds s_0 ~ N(0, 1) (n, L, L, C), from the blank input
encode(0) and from heavily masked test digits encode(x * keep); run the model's own steps
(CA + gate, eval mode); flatten the final states to (N, L * L * C), project them on their
first 50 principal components (k-means on all 16,384 dimensions took tens of CPU minutes)
and cluster them with k-means for k = 2..k_max. The number of basins is the k of the best silhouette score;

    purity = sum over clusters of (count of the cluster's most common digit) / N

by the reference classifier's reading of each final image (all starts) and by the true
label (masked digits only).
"""

from __future__ import annotations

import numpy as np
import torch


@torch.inference_mode()
def final_states(model, starts: torch.Tensor, steps: int, batch_size: int = 100) -> torch.Tensor:
    """starts (N, L, L, C) -> final lattices (N, L, L, C) after ``steps`` steps."""
    return torch.cat([model.run(starts[i : i + batch_size], steps) for i in range(0, len(starts), batch_size)])


def purity(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Share of points whose label is their cluster's most common one; (N,), (N,) ints."""
    total = 0
    for c in np.unique(clusters):
        total += np.bincount(labels[clusters == c]).max()
    return float(total / len(labels))


def basins(model, classifier, images: torch.Tensor, labels: torch.Tensor, n_noise: int = 100,
           mask_frac: float = 0.95, steps: int | None = None, k_max: int = 15, seed: int = 0) -> tuple[dict, dict]:
    """Cluster final states started from ``n_noise`` noise seeds, the blank input and the
    masked ``images`` (M, 28, 28). Returns (result JSON, arrays for the figure)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    from localrules.train.perturb import mask_pixels

    model.eval()
    steps = int(steps or 5 * model.cfg.steps)
    g = torch.Generator().manual_seed(seed)
    dev = images.device
    L, C = model.cfg.lattice, model.cfg.channels
    noise = torch.randn(n_noise, L, L, C, generator=g).to(dev)
    masked, _ = mask_pixels(images, mask_frac, g)
    with torch.inference_mode():
        blank = model.encode(torch.zeros(1, 28, 28, device=dev))
        starts = torch.cat([noise, blank, model.encode(masked)])
    kinds = np.array(["noise"] * n_noise + ["blank"] + ["masked"] * len(images))
    final = final_states(model, starts, steps)
    with torch.inference_mode():
        outs = model.read(final)
        read_as = torch.cat([classifier(outs[i : i + 500]).argmax(1) for i in range(0, len(outs), 500)]).cpu().numpy()
    feats = final.flatten(1).float().cpu().numpy()
    feats = PCA(n_components=min(50, *feats.shape), random_state=seed).fit_transform(feats)
    scores, fits = {}, {}
    for k in range(2, min(k_max, len(feats) - 1) + 1):
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(feats)
        fits[k] = km.labels_
        scores[k] = float(silhouette_score(feats, km.labels_, random_state=seed))
    best = max(scores, key=scores.get)
    clusters = fits[best]
    true = labels.cpu().numpy()
    is_masked = kinds == "masked"
    rows = []
    for c in range(best):
        inside = clusters == c
        counts = np.bincount(read_as[inside], minlength=10)
        rows.append({"size": int(inside.sum()), "digit": int(counts.argmax()),
                     "digit_share": float(counts.max() / inside.sum()),
                     "from": {k: int((inside & (kinds == k)).sum()) for k in ("noise", "blank", "masked")}})
    res = {"n_basins": best, "silhouette": scores, "steps": steps, "n_noise": n_noise,
           "n_masked": int(is_masked.sum()), "mask_frac": mask_frac, "seed": seed,
           "purity_by_classifier": purity(clusters, read_as),
           "purity_by_true_label_masked": purity(clusters[is_masked], true) if is_masked.any() else None,
           "classifier_accuracy_masked": float((read_as[is_masked] == true).mean()) if is_masked.any() else None,
           "digits_read_from_noise": np.bincount(read_as[kinds == "noise"], minlength=10).tolist(),
           "basins": rows}
    mean_out = torch.stack([outs[torch.as_tensor(clusters == c, device=outs.device)].mean(0) for c in range(best)])
    return res, {"clusters": clusters, "kinds": kinds, "features": feats, "basin_images": mean_out.cpu()}
