"""Small classification datasets as flat feature vectors, split 80/20 by a recorded seed.

- ``iris``: scikit-learn's iris, standardised with the training split's mean and std.
- ``digits``: scikit-learn's 8x8 digits (64 features in [0, 1]).
- ``wine``, ``breast_cancer``: scikit-learn's wine (13 features, 3 classes) and breast cancer
  (30 features, 2 classes), standardised as iris.
- ``mnist``: all 70,000 MNIST digits (train + test files) shuffled together and split 80/20,
  as in the MetaNCA abstract; 784 features in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DATASETS = ("iris", "digits", "mnist", "wine", "breast_cancer")
STANDARDISED = ("iris", "wine", "breast_cancer")  # features scaled by the training split's mean and std


@dataclass
class Split:
    x_train: torch.Tensor  # (N_train, F) float32
    y_train: torch.Tensor  # (N_train,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    seed: int

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def load_split(name: str, seed: int = 0, data_dir=None, test_frac: float = 0.2) -> Split:
    if name == "iris":
        from sklearn.datasets import load_iris

        d = load_iris()
        x, y = d.data.astype(np.float32), d.target
    elif name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = (d.data / 16.0).astype(np.float32), d.target
    elif name in ("wine", "breast_cancer"):
        from sklearn import datasets

        d = getattr(datasets, f"load_{name}")()
        x, y = d.data.astype(np.float32), d.target
    elif name == "mnist":
        from .mnist import load_mnist

        xa, ya = load_mnist("train", data_dir)
        xb, yb = load_mnist("test", data_dir)
        x = np.concatenate([xa, xb]).reshape(-1, 784).astype(np.float32) / 255.0
        y = np.concatenate([ya, yb])
    else:
        raise ValueError(f"dataset must be one of {DATASETS}, not {name!r}")
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_frac))
    test, train = perm[:n_test], perm[n_test:]
    xtr, xte = x[train], x[test]
    if name in STANDARDISED:
        mu, sd = xtr.mean(0), xtr.std(0)
        xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    t = lambda a, dt: torch.as_tensor(np.ascontiguousarray(a), dtype=dt)  # noqa: E731
    return Split(t(xtr, torch.float32), t(y[train], torch.long), t(xte, torch.float32),
                 t(y[test], torch.long), seed)
