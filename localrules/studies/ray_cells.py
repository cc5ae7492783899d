"""Study cells as Ray tasks (``--ray auto|ADDRESS``): one CPU (or one GPU) per cell.

``auto`` joins the cluster named by $RAY_ADDRESS, else starts a Ray instance on this machine;
an ADDRESS (``host:6379`` or ``ray://host:10001``) joins that cluster. Ray is imported here only,
and only when ``--ray`` is given. A cell is the same function the local workers run, so results
are the same for the same seeds; every argument that is not a plain value (a data split) is put in
Ray's object store once, not once per cell. Workers on other machines need localrules installed.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlparse

PLAIN = (str, int, float, bool, type(None))


def connect(address: str):
    """The ``ray`` module, connected to ``address`` (``auto`` or host:port); clear errors otherwise."""
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray, which is not installed: pip install 'localrules[distributed]'") from None
    if ray.is_initialized():
        return ray
    if address != "auto":
        _reachable(address)
    try:
        ray.init(address=None if address == "auto" else address, include_dashboard=False,
                 configure_logging=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ValueError(f"--ray {address}: could not join a Ray cluster there ({' '.join(str(e).split())[:200]})") from e
    return ray


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once an address where nothing answers (Ray itself retries for minutes)."""
    url = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = url.hostname, url.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ValueError(f"--ray needs auto or HOST:PORT (or ray://HOST:PORT), not {address!r}")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise ValueError(f"--ray {address}: no Ray cluster answers there ({e.strerror or e}); start one with "
                         f"`ray start --head` on that machine, or use --ray auto") from None


def _call(fn: Callable, job: tuple, gpu: bool) -> Any:
    import ray
    import torch

    if not gpu:
        torch.set_num_threads(1)  # one CPU per cell, as the local workers
    return fn(tuple(ray.get(a) if isinstance(a, ray.ObjectRef) else a for a in job))


def run_cells(fn: Callable[[tuple], Any], jobs: Iterable[tuple], address: str, gpu: bool = False) -> Iterator[Any]:
    """Yield ``fn(job)`` for every job, in the order the Ray tasks finish."""
    ray = connect(address)
    remote = ray.remote(num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0)(_call)
    stored: dict[int, Any] = {}

    def ref(a):
        if isinstance(a, PLAIN):
            return a
        if id(a) not in stored:
            stored[id(a)] = (a, ray.put(a))  # keep a alive, so its id stays its own
        return stored[id(a)][1]

    pending = [remote.remote(fn, tuple(ref(a) for a in job), gpu) for job in jobs]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])
