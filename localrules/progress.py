"""Progress for long work, on stderr, unless ``localrules --quiet`` or LOCALRULES_QUIET=1.

On a terminal (stderr and stdout both one): a tqdm bar. Otherwise (a pipe such as
``localrules eval ... | cat``, ``make``, CI, a notebook cell): plain lines,
``desc: n/total unit (p %), t s``, one each time another 10 % is done or 30 s have passed since
the last line, whichever comes first; never a bar's control characters. A transient bar
(``leave=False``, e.g. the inner loops of an outer bar) prints only the 30 s lines off a terminal.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm

QUIET_ENV = "LOCALRULES_QUIET"
EVERY_FRACTION = 0.1  # off a terminal: a line per 10 % done ...
EVERY_SECONDS = 30.0  # ... or per 30 s, whichever comes first


def quiet() -> bool:
    return os.environ.get(QUIET_ENV, "") not in ("", "0")


def terminal() -> bool:
    """Whether stderr and stdout are both a terminal (so a bar's redraws stay out of a pipe)."""
    return sys.stderr.isatty() and sys.stdout.isatty()


def shown() -> bool:
    """Whether the bar is drawn (on a terminal and not quiet)."""
    return not quiet() and terminal()


class Lines:
    """The off-terminal stand-in for a tqdm bar: the same calls (iterate, ``update``,
    ``set_postfix``, ``close``, ``disable``), plain lines on stderr."""

    def __init__(self, iterable=None, desc: str | None = None, total=None, initial: int = 0,
                 unit: str = "it", leave: bool = True, disable: bool = False, clock=time.monotonic,
                 **_ignored):
        self.iterable, self.desc, self.unit, self.leave, self.disable = iterable, desc or "progress", unit, leave, disable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = initial + len(iterable)
        self.total, self.n, self.clock, self.postfix = total, initial, clock, ""
        self.start = self.last_time = clock()
        self.last_step = self._step(initial)
        self.printed_n = initial

    def _step(self, n: int) -> int:
        """Which 10 % band ``n`` lies in (-1 without a total)."""
        return int(n / self.total / EVERY_FRACTION + 1e-9) if self.total else -1

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()

    def __len__(self):
        return self.total or 0

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.disable:
            return
        now, step = self.clock(), self._step(self.n)
        if (self.leave and step > self.last_step) or now - self.last_time >= EVERY_SECONDS:
            self._print(now)

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc=None, refresh=True) -> None:
        self.desc = desc or self.desc

    def refresh(self) -> None:
        pass

    def _print(self, now: float) -> None:
        done = f"{self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f} %)" if self.total \
            else f"{self.n} {self.unit}"
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done}, {now - self.start:.0f} s{extra}", file=sys.stderr, flush=True)
        self.last_time, self.last_step, self.printed_n = now, self._step(self.n), self.n

    def close(self) -> None:
        """A last line if the end was not printed yet (only for bars that stay)."""
        if not self.disable and self.leave and self.n != self.printed_n and self.n > 0:
            self._print(self.clock())
        self.disable = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def bar(iterable=None, **kwargs):
    """``tqdm(iterable, **kwargs)`` on a terminal, :class:`Lines` off one; ``disable=True`` in
    kwargs, --quiet or LOCALRULES_QUIET=1 turn either off."""
    disable = kwargs.pop("disable", False) or quiet()
    if terminal():
        return tqdm(iterable, disable=disable, dynamic_ncols=True, **kwargs)
    return Lines(iterable, disable=disable, **kwargs)
