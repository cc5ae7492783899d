import os
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def small_digits():
    """scikit-learn's 8x8 digits, upsampled 2x to 16x16, as uint8 0..255 and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.kron(d.images, np.ones((2, 2))) / 16.0
    return (x * 255).round().astype(np.uint8), d.target.astype(np.int64)


@pytest.fixture(scope="session")
def mnist_dir():
    """The real MNIST folder ($LOCALRULES_DATA or ../shared/data/mnist); skip if absent."""
    d = Path(os.environ.get("LOCALRULES_DATA", SHARED_MNIST))
    if not (d / "t10k-images-idx3-ubyte.gz").exists() and not (d / "t10k-images-idx3-ubyte").exists():
        pytest.skip("real MNIST not available (set LOCALRULES_DATA)")
    return d
