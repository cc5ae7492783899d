"""Fixtures of the playground tests: models, test digits, a server on a free port."""

import os
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
from localrules.tasks import mnist_selfclassify as ms
from localrules.tasks import restore as rs

from localrules.train.checkpoint import save_model

SHARED_MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def demo_digits():
    """MNIST test digits when present (never downloaded here), else scikit-learn's digits."""
    from localrules.demo.session import load_test_digits

    return load_test_digits(os.environ.get("LOCALRULES_DATA", SHARED_MNIST), download=False)


@pytest.fixture(scope="session")
def untrained_sc_checkpoint(tmp_path_factory):
    cfg = ms.Config()
    return save_model(tmp_path_factory.mktemp("sc") / "model", ms.build_model(cfg),
                      {"task": {"name": "mnist-selfclassify", **asdict(cfg)}})


@pytest.fixture(scope="session")
def sc_checkpoint(untrained_sc_checkpoint):
    """The shipped model if present, else an untrained one (its alive cells still get labels)."""
    shipped = ms.pretrained_path("l2")
    return shipped if shipped.is_file() else untrained_sc_checkpoint


@pytest.fixture(scope="session")
def restore_folder(tmp_path_factory):
    """A folder holding an untrained hybrid/model.safetensors, as ``demo restore`` expects."""
    folder = tmp_path_factory.mktemp("restore")
    cfg = rs.Config(model="hybrid")
    save_model(folder / "hybrid" / "model", rs.build_model(cfg), {"task": {"name": "restore", **asdict(cfg)}})
    return folder


@pytest.fixture(scope="session")
def sc_demo(sc_checkpoint, demo_digits):
    from localrules.demo.session import selfclassify_demo

    return selfclassify_demo(sc_checkpoint, demo_digits, "cpu")


@pytest.fixture(scope="session")
def restore_demo(restore_folder, demo_digits):
    from localrules.demo.session import restore_demo

    return restore_demo(restore_folder, demo_digits, "cpu")


def _serve(demo):
    from localrules.demo.server import ServerThread

    server = ServerThread(demo, "127.0.0.1", 0).start()  # port 0: the OS picks a free one
    yield server
    server.stop()
    assert not server.is_alive(), "the demo server did not stop"


@pytest.fixture(scope="module")
def sc_server(sc_demo):
    yield from _serve(sc_demo)


@pytest.fixture(scope="module")
def restore_server(restore_demo):
    yield from _serve(restore_demo)


CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (headless, no sandbox: we run as root); the browser
    tests skip, with the reason, where chromium or playwright is missing."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, timeout=30_000)
    except Error as e:
        pw.stop()
        pytest.skip(f"chromium did not start: {str(e).splitlines()[0]}")
    yield b
    b.close()
    pw.stop()
