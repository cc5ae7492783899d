"""Labels shared by the console and the figures, so both say the same thing."""

from __future__ import annotations


def adam_label(epochs) -> str:
    """``Adam (1 epoch)``, ``Adam (0.5 epochs)``, ``Adam (3 epochs)``: the Adam baseline's name."""
    try:
        e = float(epochs)
    except (TypeError, ValueError):
        return "Adam"
    return f"Adam ({e:g} epoch{'' if e == 1 else 's'})"
