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
def device():
    """Where the device tests run: $LOCALRULES_TEST_DEVICE (cpu by default; scripts/gpu-job sets
    cuda). TF32 is turned off there so that engines can be compared within float32 tolerances."""
    dev = torch.device(os.environ.get("LOCALRULES_TEST_DEVICE", "cpu"))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            pytest.exit("LOCALRULES_TEST_DEVICE=cuda, but PyTorch sees no CUDA device", returncode=3)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return dev


@pytest.fixture(scope="session")
def small_digits():
    """scikit-learn's 8x8 digits, upsampled 2x to 16x16, as uint8 0..255 and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.kron(d.images, np.ones((2, 2))) / 16.0
    return (x * 255).round().astype(np.uint8), d.target.astype(np.int64)


@pytest.fixture(scope="session")
def mnist_dir():
    """The real MNIST folder ($LOCALRULES_DATA or ../shared/data/mnist). Absent, the tests that
    need it skip, unless $LOCALRULES_REQUIRE_MNIST=1 (CI sets it): then they fail, so that the
    shipped-model tests cannot pass by not running."""
    d = Path(os.environ.get("LOCALRULES_DATA", SHARED_MNIST))
    if not (d / "t10k-images-idx3-ubyte.gz").exists() and not (d / "t10k-images-idx3-ubyte").exists():
        why = f"real MNIST not found in {d} (set LOCALRULES_DATA)"
        if os.environ.get("LOCALRULES_REQUIRE_MNIST", "") not in ("", "0"):
            pytest.fail(why + "; LOCALRULES_REQUIRE_MNIST is set", pytrace=False)
        pytest.skip(why)
    return d


@pytest.fixture
def console(capsys):
    """``console(*args)`` -> (exit code, stdout, stderr) of ``localrules ARGS`` through the console
    entry point, which turns a failure into one line (CliRunner on ``app`` would catch the
    exception instead)."""
    from localrules.cli.main import cli

    def call(*args):
        try:
            cli(list(args))
            code = 0
        except SystemExit as e:
            code = e.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err
    return call
