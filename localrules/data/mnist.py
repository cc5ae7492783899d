"""MNIST: an IDX reader with checksums, a cache directory and a download fallback.

Where the four files are looked for, first hit wins:
  1. ``data_dir`` (the ``--data-dir`` option),
  2. the ``LOCALRULES_DATA`` environment variable,
  3. the cache directory (``LOCALRULES_CACHE`` or ``~/.cache/localrules/mnist``),
  4. a download from the public mirrors into the cache directory.

Each file may be gzip-compressed (``name.gz``) or plain (``name``). The SHA-256 of the
*decompressed* bytes is checked, so official ``.gz`` files, re-compressed copies and
decompressed copies are all accepted.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
SHA256 = {
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# IDX type byte -> numpy dtype (big-endian)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MISSING = (
    "Point --data-dir DIR or LOCALRULES_DATA=DIR (with make: `LOCALRULES_DATA=DIR make run`) "
    "at a folder with the four MNIST IDX files (.gz or plain)."
)
FIX = MISSING[:-1] + ", or delete the file so it is downloaded again."


class MNISTError(RuntimeError):
    """A missing, truncated or corrupted MNIST file; the message names the file and the fix."""


def cache_dir() -> Path:
    return Path(os.environ.get("LOCALRULES_CACHE", Path.home() / ".cache" / "localrules" / "mnist"))


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes: magic ``0 0 type ndim``, ``ndim`` big-endian uint32 sizes, then data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise MNISTError(f"{name}: not an IDX file (bad magic number {raw[:4].hex()}). {FIX}")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MNISTError(f"{name}: truncated IDX header. {FIX}")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", ndim, 4))
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if len(raw) != expected:
        raise MNISTError(
            f"{name}: IDX size mismatch: header says {shape} ({expected} bytes), file has "
            f"{len(raw)} bytes (truncated or corrupted). {FIX}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not (detected by its magic bytes)."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise MNISTError(f"{path}: corrupted or truncated gzip data ({e}). {FIX}") from None
    return raw


def _find(name: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def _download(name: str, dest_dir: Path) -> Path:
    """Fetch ``name.gz`` from the mirrors; the file appears only once its checksum is right."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / (name + ".gz")
    errors = []
    for mirror in MIRRORS:
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{name}.", suffix=".part")
        os.close(fd)
        try:
            urllib.request.urlretrieve(mirror + name + ".gz", tmp)
            raw = _read_bytes(Path(tmp))
            if hashlib.sha256(raw).hexdigest() != SHA256[name]:
                raise MNISTError("checksum mismatch")
            os.replace(tmp, dest)
            return dest
        except Exception as e:  # noqa: BLE001 - try the next mirror, report all at the end
            errors.append(f"{mirror}: {e}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise MNISTError(f"{name}: not found locally and download failed ({'; '.join(errors)}). {MISSING}")


def locate(name: str, data_dir: str | Path | None = None, download: bool = True) -> Path:
    """Path of one MNIST file, searching data_dir, $LOCALRULES_DATA, the cache, then downloading."""
    folders = [Path(p) for p in (data_dir, os.environ.get("LOCALRULES_DATA")) if p]
    folders.append(cache_dir())
    found = _find(name, folders)
    if found is not None:
        return found
    if not download:
        raise MNISTError(f"{name}: not found in {[str(f) for f in folders]}. {MISSING}")
    return _download(name, cache_dir())


def load_mnist(split: str = "train", data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (N, 28, 28), labels int64 (N,)) of ``split`` in {'train', 'test'}."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    out = []
    for kind in ("images", "labels"):
        name = FILES[(split, kind)]
        path = locate(name, data_dir)
        raw = _read_bytes(path)
        if hashlib.sha256(raw).hexdigest() != SHA256[name]:
            raise MNISTError(
                f"{path}: SHA-256 of the decompressed bytes does not match the official "
                f"{name} (truncated or corrupted file). {FIX}"
            )
        out.append(parse_idx(raw, str(path)))
    images, labels = out
    return images, labels.astype(np.int64)
