"""``localrules demo``: the interactive playground, a local web page driven by our own models."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from .common import DATA_HELP, DEVICE_HELP, setup



class DemoTask(str, Enum):
    mnist_selfclassify = "mnist-selfclassify"
    restore = "restore"


def _checkpoint(task: DemoTask, checkpoint: Optional[Path]) -> Path:
    """The checkpoint to serve, or a clear error that names --checkpoint."""
    if task is DemoTask.mnist_selfclassify:
        from localrules.tasks import mnist_selfclassify as ms

        path = checkpoint or ms.pretrained_path("robust")  # drawn digits vary as its training digits did
        if not path.with_suffix(".safetensors").is_file():
            what = "the shipped model is missing" if checkpoint is None else "no checkpoint"
            raise typer.BadParameter(
                f"{what} at {path}; pass --checkpoint PATH, a model.safetensors written by "
                "`localrules run mnist-selfclassify`", param_hint="--checkpoint")
        return path
    from localrules.demo.session import restore_paths

    from localrules.tasks.restore import PRETRAINED_DIR

    folder = checkpoint or PRETRAINED_DIR
    hybrid, _ = restore_paths(folder)
    if not hybrid.is_file():
        raise typer.BadParameter(
            f"no restoration model at {hybrid}; pass --checkpoint FOLDER, a folder holding "
            f"hybrid/model.safetensors (train it with `localrules run restore --model hybrid "
            f"--out FOLDER/hybrid`)", param_hint="--checkpoint")
    return folder


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the message, not the stream it was
    created with (that one may be closed by then, as a test runner's captured stderr is)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


@contextmanager
def _log_to_console():
    """The playground's log lines (sessions opened and closed) on stderr while the server runs;
    the handler goes when it stops, so a later server in the same process (a test suite) logs
    only to logging's own handlers."""
    logger = logging.getLogger("localrules.demo")
    handler, level = _Stderr(), logger.level
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def demo(
    task: DemoTask = typer.Argument(DemoTask.mnist_selfclassify, metavar="TASK",
                                    help="Which system to play with: mnist-selfclassify or restore."),
    checkpoint: Optional[Path] = typer.Option(
        None, help="mnist-selfclassify: a model.safetensors (default: the shipped robust model, fine-tuned on scaled, "
        "shifted, rotated, thinner and thicker digits, as drawn ones are: "
        "mnist-selfclassify-robust in localrules/pretrained; the paper's model is "
        "mnist-selfclassify-l2noise in the same folder). "
        "restore: a folder holding hybrid/model.safetensors (default: the shipped models; yours are in runs/restore)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; 0.0.0.0 opens the page to your network (no authentication: a warning is printed)."),
    allow_origin: Optional[List[str]] = typer.Option(
        None, help="Also accept WebSocket connections from pages at this origin, e.g. http://192.168.1.5:8000 "
        "(repeat the option). By default only the bound host, localhost, 127.0.0.1 and [::1] at the port."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    data_dir: Optional[Path] = typer.Option(
        None, help=DATA_HELP + " Without MNIST, scikit-learn's 8x8 digits upscaled to 28x28 are used."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
):
    """Interactive playground: a local web page to draw digits, erase cells and watch the CA.

    The CA runs in this process, in the library's own model, and streams the grid to the page
    over a WebSocket. No browser is opened for you. Ctrl-C stops the server.
    """
    path = _checkpoint(task, checkpoint)
    from localrules.demo.server import exposure_warning, origin_key

    for origin in allow_origin or ():
        if origin_key(origin) is None:
            raise typer.BadParameter(f"{origin!r} is not an origin like http://host:port",
                                     param_hint="--allow-origin")
    dev = setup(device, threads)
    with _log_to_console():
        from localrules.demo import session
        from localrules.demo.server import serve

        digits = session.load_test_digits(data_dir)
        if task is DemoTask.mnist_selfclassify:
            dm = session.selfclassify_demo(path, digits, dev)
        else:
            dm = session.restore_demo(path, digits, dev)
        typer.echo(f"{task.value}: model {dm.info['checkpoint']}, {len(digits):,} test digits "
                   f"({digits.source}), device={dev}")

        def ready(url: str) -> None:
            typer.echo(f"playground at {url}  (open it in a browser; Ctrl-C stops the server)")

        warning = exposure_warning(host)
        if warning:
            typer.echo(warning, err=True)
        try:
            serve(dm, host, port, ready=ready, allow_origins=allow_origin or ())
        except OSError as e:
            raise typer.BadParameter(f"cannot listen on {host}:{port}: {e.strerror or e}",
                                     param_hint="--host/--port") from None
