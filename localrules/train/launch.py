"""``localrules run TASK ... --nproc N``: the same command in N processes on this machine, started
by torchrun's own launcher (torch.distributed.run, ``--standalone``: a free port on localhost).

It is exactly ``torchrun --standalone --nproc-per-node N localrules run TASK ...``; for several
machines call torchrun yourself with a rendezvous endpoint (see docs/scaling.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .ranks import DistributedError

OPTION = "--nproc"


def split_nproc(argv: list[str]) -> tuple[int | None, list[str]]:
    """(N, argv without ``--nproc N`` / ``--nproc=N``); N is None when the option is absent."""
    n, rest, i = None, [], 0
    while i < len(argv):
        a = argv[i]
        if a == OPTION or a.startswith(OPTION + "="):
            value = a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if "=" in a else 2
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"{OPTION} needs a number of processes >= 1, not {value!r}")
            n = int(value)
            continue
        rest.append(a)
        i += 1
    command = next((a for a in rest if not a.startswith("-")), "")  # after flags such as --quiet
    if n is not None and command != "run":
        raise ValueError(f"{OPTION} is an option of `localrules run TASK` (training), not of "
                         f"`localrules {command}`")
    if n is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(f"{OPTION} inside torchrun: the processes are already started; leave {OPTION} out")
    return n, rest


def launch(n: int, argv: list[str]) -> None:
    """Run ``localrules *argv`` in ``n`` processes (torch.distributed.run); a failed process ends
    the others and raises DistributedError naming it."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    script = sys.argv[0] if Path(sys.argv[0]).name == "localrules" else None
    entry = ["--no-python", script] if script else ["-m", "localrules"]
    args = get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(n), *entry, *argv])
    try:
        run(args)
    except ChildFailedError as e:
        failed = ", ".join(f"rank {f.local_rank} exit code {f.exitcode}"
                           for _, f in sorted(e.failures.items()))
        raise DistributedError(f"the {n}-process run stopped: {failed} (its message is above); the other "
                               f"processes were stopped; the last checkpoint in the run folder is intact, "
                               f"continue with --resume") from None
