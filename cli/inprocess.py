"""Run ``localrules`` commands one after another in this Python process (scripts/gpu-job): Python,
torch, the project and the CUDA context start once, not once per command (10-15 s each on a GPU
slot).

    run_command(["run", "restore", "--model", "unet", ...], limit_s=300) -> exit code

A command that fails prints its traceback and returns 1; the next command runs as if in a fresh
process, except for what stays loaded (modules, the CUDA context, torch's global settings).
"""

from __future__ import annotations

import gc
import signal
import sys
import threading
import traceback


class OutOfTime(KeyboardInterrupt):
    """Raised in the main thread at a command's time limit. A KeyboardInterrupt, so that a training
    writes the checkpoint of its last finished iteration before it stops (as on Ctrl-C)."""


def run_command(argv: list[str], limit_s: float | None = None) -> int:
    """``localrules ARGV`` in this process (the typer app with ``standalone_mode=False``); returns
    its exit code: 0, 124 when stopped at ``limit_s`` seconds (main thread only), 2 for a usage
    error, 1 for any other failure (traceback printed). A KeyboardInterrupt from outside (Ctrl-C,
    SIGTERM during a training) is raised again, so the caller stops too. Afterwards the run's
    utilisation meter is closed and cached GPU memory released."""
    from localrules.cli.main import app

    old_argv, sys.argv = sys.argv, ["localrules", *argv]  # command_line() records it in the checkpoint
    timer = limit_s is not None and threading.current_thread() is threading.main_thread()
    fired = []
    if timer:
        def stop(signum, frame):
            fired.append(True)
            raise OutOfTime(f"time limit of {limit_s:.0f} s")

        previous = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, max(float(limit_s), 0.01))
    try:
        try:
            rv = app(argv, prog_name="localrules", standalone_mode=False)
        finally:
            if timer:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        if fired:
            raise OutOfTime
        if rv == 130:  # typer returns a KeyboardInterrupt as exit code 130
            raise KeyboardInterrupt
        return rv if isinstance(rv, int) else 0
    except KeyboardInterrupt:
        if not fired:
            raise
        print(f"stopped at its time limit of {limit_s:.0f} s", flush=True)
        return 124
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception as e:
        if hasattr(e, "exit_code"):  # click's and typer's: usage errors (shown), Exit
            if hasattr(e, "show"):
                e.show()
            return e.exit_code
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    finally:
        sys.argv = old_argv
        _tidy()


def _tidy() -> None:
    from localrules.train.utilisation import close_open

    close_open()
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
