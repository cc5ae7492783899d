"""Progress bars for long work (tqdm, on stderr): shown only when stderr is a terminal and
neither ``localrules --quiet`` nor LOCALRULES_QUIET=1 turned them off."""

from __future__ import annotations

import os
import sys

from tqdm import tqdm

QUIET_ENV = "LOCALRULES_QUIET"


def shown() -> bool:
    return os.environ.get(QUIET_ENV, "") in ("", "0") and sys.stderr.isatty()


def bar(iterable=None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, disabled unless :func:`shown`; ``disable=True`` in kwargs
    turns it off as well."""
    disable = kwargs.pop("disable", False) or not shown()
    return tqdm(iterable, disable=disable, dynamic_ncols=True, **kwargs)
