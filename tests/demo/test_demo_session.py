"""Playground logic without a server or a browser: sessions, brush, digits, message validation."""

import base64
import json
import logging

import numpy as np
import pytest
import torch
from localrules.tasks import mnist_selfclassify as ms
from localrules.tasks import restore as rs

from localrules.demo import protocol as P
from localrules.demo.session import (
    DEAD,
    UNDECIDED,
    RestoreSession,
    SelfClassifySession,
    brush_mask,
    load_test_digits,
    sklearn_digits,
)


@pytest.fixture
def untrained():
    cfg = ms.Config()
    return ms.build_model(cfg).eval(), cfg


@pytest.fixture
def sc(untrained, demo_digits):
    model, cfg = untrained
    return SelfClassifySession(model, cfg, demo_digits, seed=0)


@pytest.fixture
def restorer(demo_digits):
    cfg = rs.Config(model="hybrid")
    return RestoreSession(rs.build_model(cfg).eval(), cfg, demo_digits, seed=0)


def _is_test_image(digits, img, label):
    same = (digits.images[digits.labels == label] == img).flatten(1).all(1)
    return bool(same.any())


# ---------------------------------------------------------------------------- brush and digits


def test_brush_mask_hits_cells_by_their_centres():
    m = brush_mask([(3.5, 2.5)], 0.5)  # the centre of cell (row 2, column 3)
    assert m.sum() == 1 and m[2, 3]
    assert brush_mask([(3.5, 2.5)], 1.0).sum() == 5  # the cell and its 4 edge neighbours
    assert brush_mask([(-50.0, 10.0), (100.0, 100.0)], 2.0).sum() == 0  # off the grid
    assert brush_mask([(0.0, 0.0)], 1.0).sum() == 1  # a corner reaches one cell
    assert brush_mask([], 2.0).sum() == 0


def test_sklearn_fallback_digits_look_like_mnist():
    d = sklearn_digits()
    assert d.images.shape[1:] == (28, 28) and len(d) == len(d.labels) == 1797
    assert 0 <= d.images.min() and d.images.max() <= 1
    assert d.images[:, :4].abs().sum() == 0  # centred in a 4-pixel border, like MNIST's 20x20 box
    assert set(d.labels.tolist()) == set(range(10))


def test_missing_mnist_falls_back_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("LOCALRULES_DATA", raising=False)
    monkeypatch.setenv("LOCALRULES_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="localrules.demo"):
        d = load_test_digits(tmp_path / "empty", download=False)
    assert "scikit-learn" in d.source
    assert any("scikit-learn" in r.message and "MNIST" in r.message for r in caplog.records)


def test_sample_draws_a_test_digit_of_that_label_and_resamples(demo_digits):
    rng = np.random.default_rng(0)
    draws = [demo_digits.sample(4, rng) for _ in range(5)]
    assert all(_is_test_image(demo_digits, x, 4) for x in draws)
    assert any(not torch.equal(draws[0], x) for x in draws[1:])


# ---------------------------------------------------------------------------- self-classifying


def test_the_first_frame_claims_nothing(sc):
    """A freshly loaded digit at step 0: no majority, no agreement, every alive cell undecided
    (the zero state's argmax would read "100 % agree on 0")."""
    sc.load_digit(3)
    s, lab = sc.summary(), sc.labels()
    assert s["step"] == 0 and s["alive"] == int(sc.alive.sum()) > 0
    assert s["majority"] is None and s["agreement"] is None and sum(s["counts"]) == 0
    assert (lab[sc.alive.numpy()] == UNDECIDED).all() and (lab[~sc.alive.numpy()] == DEAD).all()
    sc.step(1)
    s = sc.summary()
    assert s["majority"] in range(10) and 0 < s["agreement"] <= 1 and sum(s["counts"]) == s["alive"]


def test_selfclassify_load_step_and_summary(sc, demo_digits):
    sc.load_digit(7)
    assert _is_test_image(demo_digits, sc.pixels, 7) and sc.steps == 0 and sc.loaded == 7
    n_alive = int(sc.alive.sum())
    sc.step(3)
    s = sc.summary()
    assert s["step"] == 3 and s["alive"] == n_alive and sum(s["counts"]) == n_alive
    lab = sc.labels()
    assert lab.dtype == np.uint8 and lab.shape == (28, 28)
    assert ((lab == DEAD) == ~sc.alive.numpy()).all()
    # by hand: each alive cell's label is the argmax of its 10 label logits; the summary counts
    # them (catches a summary of another read-out, e.g. of dead cells or of the wrong channels)
    votes = ms.labels_of(sc.state).argmax(-1)[sc.alive].numpy()
    assert (lab[sc.alive.numpy()] == votes).all()
    counts = np.bincount(votes, minlength=10)
    assert s["counts"] == counts.tolist() and s["majority"] == int(counts.argmax())
    assert s["agreement"] == counts.max() / n_alive
    assert torch.all(sc.state[~sc.alive] == 0)  # dead cells keep a zero state


def test_selfclassify_uses_the_models_own_step(sc):
    """One session step equals one NCA step of the same model through the task's Engine."""
    sc.load_digit(2)
    sc.step(2)
    px, state = sc.pixels[None, ..., None], sc.state[None].clone()
    torch.manual_seed(5)
    sc.step(1)
    torch.manual_seed(5)
    eng = ms.Engine("alive", px, state)
    with torch.no_grad():
        rows = sc.model.step(eng.topology, eng.fixed, eng.pack(state), eng.alive, sc.noise_std)
    torch.testing.assert_close(sc.state, eng.unpack(rows)[0])


def test_draw_keeps_old_states_and_erase_kills_cells(sc):
    sc.load_digit(1)
    sc.step(2)
    sc.state[sc.alive] += 1.0  # mark the existing cells' states
    before = sc.state.clone()
    old_alive = sc.alive.clone()
    sc.draw([(1.5, 1.5)], 1.0)  # top-left corner: never part of a centred digit
    new = sc.alive & ~old_alive
    assert new.sum() == 5 and torch.all(sc.state[new] == 0)
    assert torch.equal(sc.state[old_alive], before[old_alive])
    sc.step(1)  # the engine is rebuilt for the new cells
    sc.draw([(1.5, 1.5)], 1.0, erase=True)
    assert not sc.alive[new].any() and torch.all(sc.state[new] == 0) and torch.all(sc.pixels[new] == 0)


def test_clear_and_empty_grid(sc):
    sc.load_digit(0)
    sc.step(1)
    sc.clear()
    assert sc.steps == 0 and not sc.alive.any() and sc.summary()["agreement"] is None
    sc.step(4)  # nothing alive: the clock runs, nothing breaks
    assert sc.summary() == {"step": 4, "alive": 0, "counts": [0] * 10, "majority": None,
                            "agreement": None, "loaded": None}


def test_sessions_do_not_share_grids(untrained, demo_digits):
    model, cfg = untrained
    a = SelfClassifySession(model, cfg, demo_digits, seed=1)
    b = SelfClassifySession(model, cfg, demo_digits, seed=2)
    a.load_digit(5)
    a.step(2)
    assert not b.alive.any() and b.steps == 0 and torch.all(b.state == 0)


# ---------------------------------------------------------------------------- restore


def test_restore_runs_the_models_forward_step_by_step(restorer):
    restorer.load_digit(3)
    clean = restorer.image.clone()
    restorer.knockout(0.7)
    assert int((restorer.image == 0).sum()) >= 549 and torch.equal(restorer.reference, clean)
    assert restorer.steps == 0 and restorer.running
    restorer.step(4)
    with torch.no_grad():
        torch.testing.assert_close(restorer.output, restorer.model(restorer.image[None], steps=4)[0])
    restorer.step(100)
    assert restorer.steps == restorer.max_steps == 10 and not restorer.running
    s = restorer.summary()
    assert s["guess"] is None and s["max_steps"] == 10
    # PSNR by hand, of the output against the clean digit (not the knocked-out input)
    mse = ((restorer.output.double() - clean.double()) ** 2).mean().item()
    assert s["psnr_db"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-5)
    wrong = ((restorer.output.double() - restorer.image.double()) ** 2).mean().item()
    assert s["psnr_db"] != pytest.approx(10 * np.log10(1 / wrong), rel=1e-3)  # scored against the input: caught
    restorer.knockout(0.7)  # a second knock-out keeps the clean reference
    assert torch.equal(restorer.reference, clean) and restorer.steps == 0


def test_restore_draw_erase_and_clear(restorer):
    restorer.draw([(14.0, 14.0)], 3.0)
    assert restorer.image.sum() > 0 and torch.equal(restorer.reference, restorer.image)
    restorer.step(10)
    restorer.draw([(14.0, 14.0)], 1.0, erase=True)  # an edit restarts the run
    assert restorer.steps == 0 and restorer.image[13:15, 13:15].sum() == 0
    restorer.clear()
    assert restorer.image.sum() == 0 and restorer.reference is None
    assert restorer.summary()["psnr_db"] is None


def test_restore_tracks_the_mask_for_a_model_that_reads_it(demo_digits):
    """Loaded and drawn pixels are known, knocked-out and erased ones are not; a mask-reading
    hybrid gets that mask each step."""
    cfg = rs.Config(model="hybrid", mask_channel=True, keep_visible=True, gate_writes=2, gate_hidden=16)
    r = RestoreSession(rs.build_model(cfg).eval(), cfg, demo_digits, seed=0)
    assert r.keep.all()
    r.load_digit(3)
    clean = r.image.clone()
    r.knockout(0.7)
    assert int((~r.keep).sum()) == 549 and torch.all(r.image[~r.keep] == 0)
    assert torch.equal(r.image[r.keep], clean[r.keep])
    first = r.keep.clone()
    r.knockout(0.5)  # a second knock-out blanks more: what was unknown stays unknown
    assert not (r.keep & ~first).any() and int((~r.keep).sum()) > 549
    r.draw([(14.0, 14.0)], 2.0)
    assert r.keep[14, 14] and r.image[14, 14] == 1
    r.draw([(5.0, 5.0)], 2.0, erase=True)
    assert not r.keep[5, 5]
    r.step(4)
    with torch.no_grad():
        ref = r.model(r.image[None], steps=4, keep=r.keep[None])[0]
        blind = r.model(r.image[None], steps=4, keep=torch.ones(1, 28, 28, dtype=torch.bool))[0]
    torch.testing.assert_close(r.output, ref)
    assert (r.output - blind).abs().max() > 1e-4  # the mask was read
    r.load_digit(1)
    assert r.keep.all()
    r.knockout(0.7)
    r.clear()
    assert r.keep.all()


# ---------------------------------------------------------------------------- protocol


@pytest.mark.parametrize("raw, expected", [
    ('{"type": "load", "digit": 3}', {"type": "load", "digit": 3}),
    ('{"type": "clear"}', {"type": "clear"}),
    ('{"type": "speed", "steps_per_second": 0}', {"type": "speed", "steps_per_second": 0.0}),
    ('{"type": "step"}', {"type": "step", "n": 1}),
    ('{"type": "draw", "points": [[1, 2.5], [-3, 40]], "radius": 2}',
     {"type": "draw", "points": [(1.0, 2.5), (-3.0, 40.0)], "radius": 2.0, "erase": False}),
])
def test_valid_messages_are_normalised(raw, expected):
    assert P.parse_message(raw, "mnist-selfclassify") == expected


BAD = [
    ("{oops", "malformed JSON"),
    ("[1, 2]", "JSON object"),
    ('{"digit": 3}', "'type'"),
    ('{"type": 7}', "'type'"),
    ('{"type": "explode"}', "unknown message type"),
    ('{"type": "knockout"}', "unknown message type"),  # restore only
    ('{"type": "load"}', "'digit' is required"),
    ('{"type": "load", "digit": 10}', "[0, 9]"),
    ('{"type": "load", "digit": "3"}', "integer"),
    ('{"type": "load", "digit": true}', "integer"),
    ('{"type": "load", "digit": 3.0}', "integer"),
    ('{"type": "speed", "steps_per_second": NaN}', "number in"),
    ('{"type": "speed", "steps_per_second": -1}', "number in"),
    ('{"type": "speed", "steps_per_second": 1e999}', "number in"),
    ('{"type": "step", "n": 100000}', "[1, 200]"),
    ('{"type": "draw", "points": []}', "non-empty"),
    ('{"type": "draw", "points": [[1, 2, 3]]}', "[x, y]"),
    ('{"type": "draw", "points": [[1, "a"]]}', "[x, y]"),
    ('{"type": "draw", "points": [[1, Infinity]]}', "[x, y]"),
    ('{"type": "draw", "points": [[1, 2]], "radius": 100}', "'radius'"),
    ('{"type": "draw", "points": [[1, 2]], "erase": "yes"}', "'erase'"),
    (json.dumps({"type": "draw", "points": [[1, 2]] * (P.MAX_POINTS + 1)}), "at most"),
    ('{"type": "load", "digit": 1' + "0" * 5000 + "}", "malformed JSON"),  # too many digits to read
    ("[" * 100_000, "too large"),
    (json.dumps({"type": "clear", "pad": "x" * P.MAX_MESSAGE_BYTES}), "too large"),
    (b'{"type": "clear"}', "binary"),
]


@pytest.mark.parametrize("raw, fragment", BAD)
def test_bad_messages_raise_clear_errors(raw, fragment):
    with pytest.raises(P.MessageError) as e:
        P.parse_message(raw, "mnist-selfclassify")
    assert fragment in str(e.value)


def test_knockout_is_a_restore_message():
    assert P.parse_message('{"type": "knockout"}', "restore") == {"type": "knockout", "fraction": 0.7}
    with pytest.raises(P.MessageError):
        P.parse_message('{"type": "knockout", "fraction": 1.5}', "restore")


def test_apply_message_and_frames(sc, restorer):
    for raw in ('{"type": "load", "digit": 6}', '{"type": "step", "n": 2}',
                '{"type": "draw", "points": [[2, 2]], "radius": 1}'):
        P.apply_message(sc, P.parse_message(raw, sc.task))
    f = json.loads(P.frame(sc, steps_per_second=12.0))
    assert f["type"] == "frame" and f["step"] == 2 and f["loaded"] == 6 and f["steps_per_second"] == 12.0
    labels = np.frombuffer(base64.b64decode(f["labels"]), np.uint8)
    pixels = np.frombuffer(base64.b64decode(f["pixels"]), np.uint8)
    assert labels.shape == pixels.shape == (784,)
    assert ((labels != DEAD) == (pixels > 255 * ms.ALIVE_THRESHOLD)).all()
    assert (labels != DEAD).sum() == f["alive"]
    P.apply_message(restorer, P.parse_message('{"type": "knockout", "fraction": 0.5}', "restore"))
    f = json.loads(P.frame(restorer))
    assert f["task"] == "restore" and len(base64.b64decode(f["output"])) == 784
    err = json.loads(P.error("bad", "load"))
    assert err == {"type": "error", "error": "bad", "request": "load"}
