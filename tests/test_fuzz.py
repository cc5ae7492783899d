"""Property-based fuzzing (hypothesis) of every reader of outside input: the IDX reader, the .npy
reader, the checkpoint / config / training-state readers and the playground's message parser.

Each property: the reader returns a value or raises its documented error (MNISTError,
ValueError, FileNotFoundError, MessageError), never anything else. Runs are derandomized (the
same inputs every time) and sized to take seconds; ``FUZZ_EXAMPLES`` scales them all.
"""

import gzip
import io
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from localrules.data.arrays import load_image_arrays  # noqa: E402
from localrules.data.mnist import MNISTError, parse_idx, read_idx  # noqa: E402
from localrules.demo import protocol as P  # noqa: E402
from localrules.tasks import metanca as mn  # noqa: E402
from localrules.tasks import mnist_selfclassify as ms  # noqa: E402
from localrules.tasks import restore as rs  # noqa: E402
from localrules.train.checkpoint import load_state, save_model, save_state  # noqa: E402

SCALE = float(os.environ.get("FUZZ_EXAMPLES", "1"))


def fuzz(n: int):
    """A fixed, derandomized hypothesis profile of about ``n`` examples (times $FUZZ_EXAMPLES)."""
    return settings(max_examples=max(1, int(n * SCALE)), derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


# ---------------------------------------------------------------------------- IDX

IDX_TYPES = [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]


@st.composite
def idx_bytes(draw):
    """Mostly well-formed headers (a known or unknown type, 0-4 dims of any uint32) with data of
    about the right, or a wrong, length; sometimes plain noise."""
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.binary(max_size=64))
    kind = draw(st.sampled_from(IDX_TYPES) | st.integers(0, 255))
    ndim = draw(st.integers(0, 4))
    dims = draw(st.lists(st.integers(0, 6) | st.integers(0, 2**32 - 1), min_size=ndim, max_size=ndim))
    head = bytes([draw(st.sampled_from([0, 0, 0, 1])), 0, kind, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)
    size = int(np.prod(dims, dtype=object)) if dims else 1
    n = min(size * 8, 400) + draw(st.integers(-3, 3))
    return head[:len(head) - draw(st.sampled_from([0, 0, 0, 1, 3]))] + draw(st.binary(min_size=max(0, n), max_size=max(0, n)))


@fuzz(400)
@given(raw=idx_bytes(), wrap=st.sampled_from(["plain", "gzip", "gzip-torn", "gzip-flipped"]))
def test_idx_reader_fuzz(workdir, raw, wrap):
    if wrap != "plain":
        raw = gzip.compress(raw)
        if wrap == "gzip-torn":
            raw = raw[:len(raw) // 2]
        elif wrap == "gzip-flipped":
            raw = raw[:12] + bytes([raw[12] ^ 0xFF]) + raw[13:]
    path = workdir / "fuzz-idx"
    path.write_bytes(raw)
    try:
        out = read_idx(path)
    except MNISTError as e:
        assert str(path) in str(e)
        return
    assert isinstance(out, np.ndarray)
    assert out.dtype.isnative


@fuzz(200)
@given(raw=st.binary(max_size=40))
def test_parse_idx_noise(raw):
    try:
        parse_idx(raw)
    except MNISTError:
        pass


# ---------------------------------------------------------------------------- .npy

DTYPES = ["u1", "i1", "<i2", "<u2", "<i4", ">i4", "<i8", "<u8", "<f2", "<f4", ">f4", "<f8", "?", "<c8",
          "U2", "S2", "V3", "M8[s]", "<m8[s]"] + (["g"] if np.dtype("g") != np.dtype("f8") else [])


@st.composite
def npy_file(draw, images: bool):
    """The bytes of a .npy file: a real array of a random dtype and shape (images leaning towards
    (N, H, W), labels towards (N,)), a pickled object array, or a damaged header or body."""
    kind = draw(st.sampled_from(["array"] * 6 + ["object", "torn", "noise"]))
    if kind == "noise":
        return b"\x93NUMPY" + draw(st.binary(max_size=80))
    if kind == "object":
        a = np.empty(2, dtype=object)
        a[:] = [1, "x"]
    else:
        dtype = np.dtype(draw(st.sampled_from(DTYPES)))
        if images:
            shape = draw(st.sampled_from([(2, 3, 3), (1, 4, 4), (0, 3, 3), (2, 0, 2)]) | hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
        else:
            shape = draw(st.sampled_from([(2,), (1,), (0,)]) | hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
        if dtype.kind in "uif":
            a = draw(hnp.arrays(dtype, shape, elements=None if dtype.kind == "f" else st.integers(0, 12) if dtype.kind == "u" else st.integers(-3, 12)))
            if dtype.kind == "u" and dtype.itemsize == 1 and images:
                a = np.where(draw(st.booleans()), a * 20, a).astype(dtype)
        else:
            a = np.zeros(shape, dtype)
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    raw = buf.getvalue()
    if kind == "torn":
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    return raw


@fuzz(300)
@given(images=npy_file(True), labels=npy_file(False))
def test_npy_reader_fuzz(workdir, images, labels):
    ip, lp = workdir / "images.npy", workdir / "labels.npy"
    ip.write_bytes(images)
    lp.write_bytes(labels)
    try:
        x, y = load_image_arrays(ip, lp)
    except ValueError as e:
        assert str(e)
        return
    assert x.dtype == torch.float32 and x.ndim == 3 and len(x) == len(y)
    assert torch.isfinite(x).all() and 0 <= x.min() and x.max() <= 1
    assert y.dtype == torch.long and 0 <= int(y.min()) and int(y.max()) <= 9


# ---------------------------------------------------------------------------- checkpoints

JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)

TASKS = {
    "mnist-selfclassify": (ms.load, ms.build_model, ms.Config(perception_dim=8, hidden=(8,))),
    "restore": (rs.load, rs.build_model, rs.Config(model="classifier")),
    "metanca": (mn.load, mn.build_rule, mn.Config(rule_hidden=(8,))),
}


@st.composite
def checkpoint_config(draw, name):
    """A task's model.json: the genuine one with keys dropped, retyped or added, another task's
    name, or any JSON at all."""
    cfg = json.loads(json.dumps({"task": {"name": name, **asdict(TASKS[name][2])}, "iteration": 3}))
    kind = draw(st.sampled_from(["mutate"] * 5 + ["json", "text"]))
    if kind == "json":
        return json.dumps(draw(JSON))
    if kind == "text":
        return draw(st.text(max_size=30))
    task = cfg["task"]
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(task)))
        action = draw(st.sampled_from(["drop", "value", "add", "task"]))
        if action == "drop":
            task.pop(key, None)
        elif action == "value":
            task[key] = draw(JSON | st.sampled_from([0, -1, 1, 2, [], [0], [3, 5], "x", "", 1e300, None]))
        elif action == "add":
            task[draw(st.text(min_size=1, max_size=6))] = draw(JSON)
        else:
            cfg["task"] = draw(JSON)
    return json.dumps(cfg, allow_nan=True)


WEIGHTS = {}  # the genuine weights file of each task's small model


def _weights(name):
    if name not in WEIGHTS:
        with tempfile.TemporaryDirectory() as d:
            build, cfg = TASKS[name][1:]
            path = save_model(Path(d) / "model", build(cfg), {"task": {"name": name, **asdict(cfg)}})
            WEIGHTS[name] = path.read_bytes()
    return WEIGHTS[name]


@fuzz(300)
@given(name=st.sampled_from(sorted(TASKS)), data=st.data())
def test_checkpoint_reader_fuzz(workdir, name, data):
    load = TASKS[name][0]
    folder = workdir / "ckpt"
    folder.mkdir(exist_ok=True)
    config = data.draw(checkpoint_config(name))
    raw = _weights(name)
    wkind = data.draw(st.sampled_from(["genuine"] * 4 + ["torn", "noise", "other task"]))
    if wkind == "torn":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif wkind == "noise":
        raw = data.draw(st.binary(max_size=64))
    elif wkind == "other task":
        raw = _weights(data.draw(st.sampled_from(sorted(set(TASKS) - {name}))))
    (folder / "model.safetensors").write_bytes(raw)
    (folder / "model.json").write_text(config)
    try:
        model, cfg, meta = load(folder / "model.safetensors")
    except ValueError as e:
        assert str(e)
        return
    assert isinstance(model, torch.nn.Module) and isinstance(meta, dict)


@st.composite
def train_state(draw):
    """A train_state.pt: a genuine-looking state, any tensor/number/string container, a torn or
    bit-flipped file, noise, or a pickle of a non-tensor object (refused, never run)."""
    kind = draw(st.sampled_from(["state"] * 3 + ["json", "torn", "flipped", "noise", "object"]))
    state = {"model": {"w": torch.zeros(2)}, "optimizer": {}, "iteration": draw(st.integers(0, 5)),
             "task": {"pool": {"state": torch.ones(3)}}}
    if kind == "json":
        state = draw(JSON)
    elif kind == "object":
        state = {"iteration": 1, "x": io.BytesIO(b"payload")}
    buf = io.BytesIO()
    torch.save(state, buf)
    raw = buf.getvalue()
    if kind == "torn":
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif kind == "flipped":
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1:]
    elif kind == "noise":
        raw = draw(st.binary(max_size=64))
    return raw


@fuzz(200)
@given(raw=train_state())
def test_train_state_reader_fuzz(workdir, raw):
    path = workdir / "train_state.pt"
    path.write_bytes(raw)
    try:
        state = load_state(path)
    except ValueError as e:
        assert str(path) in str(e)
        return
    assert isinstance(state, dict) and isinstance(state["iteration"], int)


def test_genuine_train_state_loads(workdir):
    save_state(workdir / "genuine.pt", {"iteration": 4, "model": {"w": torch.ones(2)}})
    assert load_state(workdir / "genuine.pt")["iteration"] == 4


# ---------------------------------------------------------------------------- WebSocket messages

VALUES = (st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats() | st.text(max_size=6)
          | st.lists(st.lists(st.floats() | st.integers(-50, 50) | st.booleans(), max_size=3), max_size=5))
KEYS = ["points", "radius", "erase", "digit", "steps_per_second", "n", "fraction"]


@st.composite
def message(draw):
    """A client message: a plausible object (a known or odd type, known keys with any values),
    any JSON, or any text."""
    kind = draw(st.sampled_from(["object"] * 4 + ["json", "text", "deep"]))
    if kind == "text":
        return draw(st.text(max_size=60))
    if kind == "json":
        return json.dumps(draw(JSON), allow_nan=True)
    if kind == "deep":
        depth = draw(st.integers(1, 100_000))
        return "[" * depth + "]" * draw(st.sampled_from([0, depth]))
    msg = {"type": draw(st.sampled_from([*P.TYPES["restore"], "", "Draw", "x" * 80]) | VALUES)}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=4)):
        msg[key] = draw(VALUES)
    return json.dumps(msg, allow_nan=True)


@fuzz(1000)
@given(raw=message() | st.binary(max_size=20), task=st.sampled_from(sorted(P.TYPES)))
def test_protocol_parser_fuzz(raw, task):
    try:
        msg = P.parse_message(raw, task)
    except P.MessageError as e:
        assert str(e)
        return
    assert msg["type"] in P.TYPES[task]
    json.dumps(msg)  # a normalised message is plain data
