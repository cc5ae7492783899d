"""The static playground (web/playground, built by scripts/build-playground) in a real headless
Chromium (Debian's ``chromium``, driven by Playwright), served by a plain file server.

The page runs the exported models with ONNX Runtime Web's WebAssembly backend; given the same
digit and the same fire masks and noise (passed in through ``playground.runDraws``), its cells'
labels equal PyTorch's. Skipped, with the reason, without npm, the export extra, chromium or
playwright.
"""

import base64
import functools
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 60_000  # how long a condition may take to come true (never how fast it must)
STEPS = 30


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The built static playground (npm ci + the models exported), once per module."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed (apt-get install -y npm): it vendors ONNX Runtime Web")
    for mod in ("onnx", "onnxscript"):
        pytest.importorskip(mod, reason=f"{mod} is not installed (pip install -e '.[export]')")
    out = tmp_path_factory.mktemp("static") / "playground"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "build-playground"), "--out", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def url(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def open_page(browser, url, hash=""):
    ctx = browser.new_context(viewport={"width": 1060, "height": 640})
    p = ctx.new_page()
    p.set_default_timeout(TIMEOUT_MS)
    errors = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.goto(url + hash)
    p.wait_for_function("window.playground && (playground.ready || playground.error)")
    assert p.evaluate("playground.error") is None, p.evaluate("playground.error")
    return ctx, p, errors


@pytest.fixture
def page(browser, url):
    ctx, p, errors = open_page(browser, url)
    yield p
    assert not errors, errors
    ctx.close()


def stroke(page, points):
    """A mouse stroke through ``points`` (x, y) in cell units on the #grid canvas."""
    box = page.locator("#grid").bounding_box()
    s = box["width"] / 28
    at = lambda x, y: (box["x"] + x * s, box["y"] + y * s)  # noqa: E731
    page.mouse.move(*at(*points[0]))
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(*at(x, y), steps=4)
    page.mouse.up()


def pytorch_rollout(pixels, fires, noises):
    """The library's own fast path on one digit (28, 28) with the given draws -> (state, labels)."""
    from localrules.tasks import mnist_selfclassify as ms

    model, cfg, _ = ms.load(ms.pretrained_path("robust"))
    px = torch.as_tensor(pixels, dtype=torch.float32).reshape(1, 28, 28, 1)
    zero = torch.zeros(1, 28, 28, cfg.channels)
    eng = ms.Engine("alive", px, zero)
    with torch.no_grad():
        rows = model.rollout(eng.topology, eng.fixed, eng.pack(zero), eng.alive, len(fires), cfg.noise_std,
                             fires=torch.stack([eng.pack(f) for f in fires]),
                             noises=torch.stack([eng.pack(n) for n in noises]))
    state = eng.unpack(rows)[0]
    labels = torch.where(px[0, ..., 0] > ms.ALIVE_THRESHOLD, ms.labels_of(state).argmax(-1), 255)
    return state.numpy(), labels.numpy()


def draws(seed, channels, fire_rate):
    g = torch.Generator().manual_seed(seed)
    fires = torch.rand(STEPS, 1, 28, 28, 1, generator=g) <= fire_rate
    noises = torch.randn(STEPS, 1, 28, 28, channels, generator=g)
    b64 = lambda t: base64.b64encode(t.numpy().tobytes()).decode()  # noqa: E731
    return fires, noises, {"steps": STEPS, "fires": b64(fires.to(torch.uint8)), "noises": b64(noises)}


def test_drawn_digit_labels_equal_pytorch(page):
    """Draw a 7 with the mouse; from the page's pixels, the same fire masks and noise give the same
    labels (and states within float tolerance) in the browser's WASM backend and in PyTorch."""
    page.evaluate("playground.setPaused(true)")
    stroke(page, [(7, 7), (20, 7), (14, 21)])
    stroke(page, [(10, 14), (18, 14)])
    pixels = np.array(page.evaluate("playground.pixels()"), np.float32).reshape(28, 28)
    assert (pixels > 0.1).sum() >= 40  # the strokes drew cells
    m = page.evaluate("playground.manifest.selfclassify")
    fires, noises, arg = draws(7, m["channels"], m["fire_rate"])
    got = page.evaluate("(a) => playground.runDraws(a)", arg)
    state, labels = pytorch_rollout(pixels, fires, noises)
    assert np.array_equal(np.array(got["labels"]).reshape(28, 28), labels)
    assert np.abs(np.array(got["state"], np.float32).reshape(state.shape) - state).max() < 1e-4
    assert len(set(labels[labels != 255].tolist())) >= 1 and np.abs(state).max() > 0.1


def test_test_digit_settles_mutates_and_reports_speed(page, site):
    """A loaded test digit is one of the shipped ones; its cells label themselves on the canvas;
    mutate keeps the state of the cells alive in both digits; the steps/s readout counts."""
    page.click("#digits button[data-digit='3']")
    page.wait_for_function("playground.loaded === 3 && playground.steps >= 20")
    pixels = np.array(page.evaluate("playground.pixels()"))
    shipped = np.frombuffer((site / "digits.bin").read_bytes(), np.uint8).reshape(-1, 784) / 255
    assert np.abs(shipped - pixels).max(1).min() < 1e-6
    page.wait_for_function("Number(document.getElementById('rate').textContent) > 0")
    assert "agree on" in page.inner_text("#stat-line")
    assert page.locator("#legend .entry.majority").count() == 1
    page.evaluate("playground.setPaused(true)")
    page.evaluate("playground.idle()")
    before = np.array(page.evaluate("playground.state()")).reshape(784, -1)
    page.click("#mutate")
    page.wait_for_function("playground.loaded !== 3")
    after = np.array(page.evaluate("playground.state()")).reshape(784, -1)
    new = np.array(page.evaluate("playground.pixels()")) > 0.1
    both = (pixels > 0.1) & new
    assert np.array_equal(after[both], before[both]) and not after[~both].any()


def test_restore_view_equals_pytorch(browser, url):
    """The mask-and-restore view: a knocked-out test digit restored in the browser equals the
    PyTorch restorer on the same input (and the same mask, for a model that reads it), for the
    hybrid and the CNN auto-encoder; an erased stroke is unknown in the mask, a drawn one known."""
    from localrules.tasks import restore as rs

    ctx, p, errors = open_page(browser, url, "#restore")
    try:
        assert p.locator("#output").is_visible() and p.locator("#knockout").is_visible()
        p.click("#digits button[data-digit='5']")
        p.click("#knockout")
        for name in ("hybrid", "cnn-ae"):
            p.select_option("#restorer", name)
            p.evaluate("playground.idle()")
            p.wait_for_function("document.getElementById('stat-line').textContent.startsWith('done')")
            image = np.array(p.evaluate("playground.image()"), np.float32).reshape(1, 28, 28)
            keep = np.array(p.evaluate("playground.keep()"), bool).reshape(1, 28, 28)
            assert (~keep).sum() == round(0.7 * 784) and (image[~keep] == 0).all()
            model = rs.load(rs.PRETRAINED_DIR / name / "model.safetensors")[0]
            with torch.no_grad():
                ref = model(torch.as_tensor(image), keep=torch.as_tensor(keep))[0].numpy()
            got = np.array(p.evaluate("playground.restored()"), np.float32).reshape(28, 28)
            assert np.abs(got - ref).max() < 1e-4
        p.click("#mode-erase")
        stroke(p, [(4.5, 4.5), (6.5, 4.5)])
        p.click("#mode-draw")
        stroke(p, [(20.5, 20.5), (21.5, 21.5)])
        p.evaluate("playground.idle()")
        keep = np.array(p.evaluate("playground.keep()"), bool).reshape(28, 28)
        image = np.array(p.evaluate("playground.image()"), np.float32).reshape(28, 28)
        assert not keep[4, 4:7].any() and (image[4, 4:7] == 0).all()  # erased: unknown
        assert keep[20, 20] and image[20, 20] == 1  # drawn: known ink
        assert "PSNR" in p.inner_text("#stat-line") and "classifier reads" in p.inner_text("#stat-line")
        assert not errors, errors
    finally:
        ctx.close()
