"""Failures end in one line naming what went wrong, not a traceback.

``--debug`` anywhere on the command line, or ``LOCALRULES_DEBUG=1``, lets the traceback through.
Errors the code raises on purpose (ValueError, OSError, data and divergence errors) print their
message; anything else prints its type and message and points at ``--debug``.
"""

from __future__ import annotations

import os
import sys

import typer

DEBUG_ENV = "LOCALRULES_DEBUG"


def one_line(e: BaseException, expected: tuple[type, ...]) -> str:
    text = " ".join(str(e).split()) or "no message"
    if isinstance(e, expected):
        return f"error: {text}"
    return f"error: {type(e).__name__}: {text} (rerun with --debug or {DEBUG_ENV}=1 for the traceback)"


def run(app, argv: list[str] | None = None) -> None:
    """Run the typer ``app`` on ``argv`` (default: the process's arguments), one line per failure."""
    from localrules.data.mnist import MNISTError
    from localrules.train.loop import TrainingDiverged
    from localrules.train.ranks import DistributedError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        app(argv, prog_name="localrules")
    except Exception as e:  # SystemExit and KeyboardInterrupt (a saved checkpoint) pass through
        if debug:
            raise
        typer.echo(one_line(e, (ValueError, OSError, MNISTError, TrainingDiverged, DistributedError)), err=True)
        raise SystemExit(2) from None
