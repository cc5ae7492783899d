import gzip
import hashlib
import struct

import numpy as np
import pytest

from localrules.data import mnist
from localrules.data.arrays import load_image_arrays
from localrules.data.mnist import MNISTError, load_mnist, parse_idx, read_idx


def _idx(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}[arr.dtype.type]
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def test_read_idx_plain_and_gzip(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    (tmp_path / "a").write_bytes(_idx(imgs))
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx(imgs)))
    assert np.array_equal(read_idx(tmp_path / "a"), imgs)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), imgs)
    f = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(parse_idx(_idx(f)), f)


def test_bad_magic_and_truncation_are_named(tmp_path):
    with pytest.raises(MNISTError, match="bad magic"):
        parse_idx(b"\x12\x34\x56\x78", "x.idx")
    raw = _idx(np.zeros((3, 4, 4), np.uint8))
    (tmp_path / "cut").write_bytes(raw[:-5])
    with pytest.raises(MNISTError, match=r"cut.*truncated or corrupted.*--data-dir"):
        read_idx(tmp_path / "cut")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-8])
    with pytest.raises(MNISTError, match="cut.gz: corrupted or truncated gzip"):
        read_idx(tmp_path / "cut.gz")


def _fake_mnist(folder, monkeypatch, corrupt=None):
    """Synthetic IDX files under the official names, with their checksums patched in."""
    rng = np.random.default_rng(0)
    sums = {}
    for (split, kind), name in mnist.FILES.items():
        n = 7 if split == "train" else 3
        arr = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if kind == "images" else \
            rng.integers(0, 10, n, dtype=np.uint8)
        raw = _idx(arr)
        sums[name] = hashlib.sha256(raw).hexdigest()
        if name == corrupt:
            raw = raw[:-1] + bytes([raw[-1] ^ 1])
        (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
    monkeypatch.setattr(mnist, "SHA256", sums)


def test_load_from_data_dir_and_env(tmp_path, monkeypatch):
    _fake_mnist(tmp_path, monkeypatch)
    monkeypatch.setenv("LOCALRULES_CACHE", str(tmp_path / "cache"))
    x, y = load_mnist("test", tmp_path)
    assert x.shape == (3, 28, 28) and x.dtype == np.uint8 and y.shape == (3,)
    monkeypatch.setenv("LOCALRULES_DATA", str(tmp_path))
    x2, _ = load_mnist("train")
    assert x2.shape == (7, 28, 28)
    with pytest.raises(ValueError):
        load_mnist("valid", tmp_path)


def test_checksum_mismatch_names_file_and_fix(tmp_path, monkeypatch):
    _fake_mnist(tmp_path, monkeypatch, corrupt="t10k-labels-idx1-ubyte")
    with pytest.raises(MNISTError, match=r"t10k-labels-idx1-ubyte.gz: SHA-256.*--data-dir"):
        load_mnist("test", tmp_path)


def test_failed_download_leaves_nothing_behind(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("LOCALRULES_CACHE", str(cache))
    monkeypatch.delenv("LOCALRULES_DATA", raising=False)
    served = gzip.compress(b"not an idx file at all" * 100)

    def fake_retrieve(url, dest):
        with open(dest, "wb") as f:
            f.write(served[: len(served) // 2])  # a download cut off halfway
        raise OSError("connection reset")

    monkeypatch.setattr(mnist.urllib.request, "urlretrieve", fake_retrieve)
    with pytest.raises(MNISTError, match="download failed") as err:
        load_mnist("test", tmp_path / "empty")
    assert list(cache.iterdir()) == []
    assert "LOCALRULES_DATA=DIR make run" in str(err.value) and "delete" not in str(err.value)


def test_real_mnist_checksums(mnist_dir):
    x, y = load_mnist("test", mnist_dir)
    assert x.shape == (10_000, 28, 28) and y.shape == (10_000,)
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _digits(n=4):
    x = np.zeros((n, 28, 28), np.uint8)
    x[:, 10:18, 14] = 255  # a stroke: living cells
    return x


def test_user_arrays_are_checked(tmp_path):
    np.save(tmp_path / "x.npy", _digits())
    np.save(tmp_path / "y.npy", np.array([1, 2, 3, 4]))
    np.save(tmp_path / "bad_y.npy", np.array([1, 2, 3, 12]))
    np.save(tmp_path / "x2d.npy", np.zeros((28, 28), np.uint8))
    px, y = load_image_arrays(tmp_path / "x.npy", tmp_path / "y.npy")
    assert px.shape == (4, 28, 28) and y.tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="0..9"):
        load_image_arrays(tmp_path / "x.npy", tmp_path / "bad_y.npy")
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        load_image_arrays(tmp_path / "x2d.npy", tmp_path / "y.npy")
    with pytest.raises(ValueError, match="cannot read"):
        load_image_arrays(tmp_path / "missing.npy", tmp_path / "y.npy")


@pytest.mark.parametrize("case,match", [
    ("nan", r"x.npy: image 2 has NaN or infinite pixels \(1 such images\)"),
    ("inf", r"x.npy: image 2 has NaN or infinite pixels"),
    ("blank", r"x.npy: image 2 has no pixel above 0.1"),
    ("empty", r"x.npy: holds no pixels"),
])
def test_user_arrays_without_a_readable_digit_are_refused(tmp_path, case, match):
    x = _digits().astype(np.float32) / 255
    if case in ("nan", "inf"):
        x[2, 0, 0] = np.nan if case == "nan" else np.inf
    elif case == "blank":
        x[2] = 0.05
    elif case == "empty":
        x = x[:0]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(len(x)))
    with pytest.raises(ValueError, match=match):
        load_image_arrays(tmp_path / "x.npy", tmp_path / "y.npy")
