"""The short human line a command ends with: what ran, on what, the headline numbers rounded
(at most 4 decimals), and where the files are."""

from __future__ import annotations

import json
import math
from pathlib import Path


def number(v) -> str:
    """A number for people: ints as they are, floats to at most 4 decimals (tiny ones as 1.2e-05)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    if not math.isfinite(v):
        return str(v)
    if v != 0 and abs(v) < 1e-4:
        return f"{v:.1e}"
    text = f"{v:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def numbers(d: dict, keys=None) -> str:
    """``k value, k value`` for the (chosen) numeric entries of ``d``."""
    keys = [k for k in (keys or d) if k in d and isinstance(d[k], (int, float))]
    return ", ".join(f"{k.replace('_', ' ')} {number(d[k])}" for k in keys)


def _last_step(out: Path) -> int | None:
    try:
        lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
        return int(json.loads(lines[-1])["step"]) if lines else None
    except (OSError, ValueError, KeyError):
        return None


def training(what: str, last: dict, out: Path, weights: str = "weights") -> str:
    """E.g. ``trained mnist-selfclassify (loss l2, noise 0.02) to iteration 3: loss 67.6207, lr
    0.002, 0.495 s/iteration; weights in runs/x/model.safetensors, metrics in runs/x/metrics.jsonl``."""
    out = Path(out)
    step = _last_step(out)
    head = f"trained {what}" + (f" to iteration {step}" if step else "")
    rest = {k: v for k, v in last.items() if k != "sec_per_iter"}
    speed = f", {number(last['sec_per_iter'])} s/iteration" if "sec_per_iter" in last else ""
    return (f"{head}: {numbers(rest)}{speed}; {weights} in {out / 'model.safetensors'}, "
            f"metrics in {out / 'metrics.jsonl'}")
