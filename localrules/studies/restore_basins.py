"""Attractor basins of a restoration CA (``study restore-basins``, the seed text's claim).

Start the lattice from noise seeds s_0 ~ N(0, 1) (n, L, L, C), from the blank input
encode(0) and from heavily masked test digits encode(x * keep); run the model's own steps
(CA + gate, eval mode); flatten the final states to (N, L * L * C), project them on their
first 50 principal components (k-means on all 16,384 dimensions took tens of CPU minutes)
and cluster them with k-means for k = 2..k_max. The number of basins is the k of the best silhouette score;

    purity = sum over clusters of (count of the cluster's most common digit) / N

by the reference classifier's reading of each final image (all starts) and by the true
label (masked digits only).

A model that reads the mask (``reads_mask``: the mask and the masked image as fixed channels)
is told what each start knows: nothing for the noise seeds and the blank input (keep all
False, image 0), the visible pixels for the masked digits; they are also kept in its read-out.

With ``damage_frac`` > 0 (the text: 30 % of the cells zeroed mid-run) every start is run again
with that fraction of its cells zeroed before step steps // 2 (torch seed ``seed``); its final
state is projected on the same components and assigned to the nearest basin centre:
``same_basin`` is the share that ends in the basin of its intact run, ``same_digit`` the share
read as the same digit.
"""

from __future__ import annotations

import numpy as np
import torch


@torch.inference_mode()
def final_states(model, starts: torch.Tensor, steps: int, batch_size: int = 100,
                 damage_frac: float = 0.0, fixed: torch.Tensor | None = None) -> torch.Tensor:
    """starts (N, L, L, C) -> final lattices (N, L, L, C) after ``steps`` steps (``damage_frac``
    of the cells zeroed halfway when > 0); ``fixed`` (N, L, L, F): the fixed channels of a model
    that reads the mask."""
    kw = {"damage_frac": damage_frac} if damage_frac else {}
    return torch.cat([model.run(starts[i : i + batch_size], steps, **kw,
                                **({} if fixed is None else {"fixed": fixed[i : i + batch_size]}))
                      for i in range(0, len(starts), batch_size)])


def purity(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Share of points whose label is their cluster's most common one; (N,), (N,) ints."""
    total = 0
    for c in np.unique(clusters):
        total += np.bincount(labels[clusters == c]).max()
    return float(total / len(labels))


def basins(model, classifier, images: torch.Tensor, labels: torch.Tensor, n_noise: int = 100,
           mask_frac: float = 0.95, steps: int | None = None, k_max: int = 15, seed: int = 0,
           damage_frac: float = 0.0) -> tuple[dict, dict]:
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
    masked, keep = mask_pixels(images, mask_frac, g)
    with torch.inference_mode():
        blank = model.encode(torch.zeros(1, 28, 28, device=dev))
        starts = torch.cat([noise, blank, model.encode(masked)])
    kinds = np.array(["noise"] * n_noise + ["blank"] + ["masked"] * len(images))
    fixed, seen = None, ()
    if getattr(model, "reads_mask", False):  # what each start knows: nothing for noise and blank, the visible pixels of a digit
        xs = torch.cat([torch.zeros(n_noise + 1, 28, 28, device=dev), masked])
        keeps = torch.cat([torch.zeros(n_noise + 1, 28, 28, dtype=torch.bool, device=dev), keep.to(dev)])
        fixed, seen = model.fixed(xs, keeps), (xs, keeps)
    final = final_states(model, starts, steps, fixed=fixed)
    with torch.inference_mode():
        outs = model.read(final, *seen)
        read_as = torch.cat([classifier(outs[i : i + 500]).argmax(1) for i in range(0, len(outs), 500)]).cpu().numpy()
    feats = final.flatten(1).float().cpu().numpy()
    pca = PCA(n_components=min(50, *feats.shape), random_state=seed).fit(feats)
    feats = pca.transform(feats)
    scores, fits = {}, {}
    for k in range(2, min(k_max, len(feats) - 1) + 1):
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(feats)
        fits[k] = km
        scores[k] = float(silhouette_score(feats, km.labels_, random_state=seed))
    best = max(scores, key=scores.get)
    clusters = fits[best].labels_
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
    if damage_frac:
        torch.manual_seed(seed)
        hit = final_states(model, starts, steps, damage_frac=damage_frac, fixed=fixed)
        with torch.inference_mode():
            hit_out = model.read(hit, *seen)
            hit_read = torch.cat([classifier(hit_out[i : i + 500]).argmax(1) for i in range(0, len(hit_out), 500)]).cpu().numpy()
        hit_clusters = fits[best].predict(pca.transform(hit.flatten(1).float().cpu().numpy()))
        same, digit = hit_clusters == clusters, hit_read == read_as
        res["damage"] = {"frac": damage_frac, "same_basin": float(same.mean()), "same_digit": float(digit.mean()),
                         "by_start": {k: {"same_basin": float(same[kinds == k].mean()),
                                          "same_digit": float(digit[kinds == k].mean())}
                                      for k in ("noise", "blank", "masked") if (kinds == k).any()}}
    mean_out = torch.stack([outs[torch.as_tensor(clusters == c, device=outs.device)].mean(0) for c in range(best)])
    return res, {"clusters": clusters, "kinds": kinds, "features": feats, "basin_images": mean_out.cpu()}
