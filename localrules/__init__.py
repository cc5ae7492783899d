"""localrules: learning local rules (neural cellular automata and friends) on one core.

The Python API (see :mod:`localrules.api`; imported on first use, so the command line starts fast):
``load_selfclassifier``, ``classify``, ``load_rule``, ``grow``, ``forward``, ``load_restorer``, ``mask``.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("localrules")
except _metadata.PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["load_selfclassifier", "classify", "load_rule", "grow", "forward", "load_restorer", "mask",
           "__version__"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'localrules' has no attribute {name!r}")
