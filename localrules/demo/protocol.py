"""The playground's WebSocket protocol: JSON text messages, validated before they touch a grid.

Client -> server (every message is one JSON object with a ``type``)::

    {"type": "draw", "points": [[x, y], ...], "radius": 1.5, "erase": false}   cell units
    {"type": "load", "digit": 3}                a random test digit of that label (again: re-sample)
    {"type": "clear"}
    {"type": "speed", "steps_per_second": 30}   0 pauses
    {"type": "step", "n": 1}                    advance now (e.g. while paused); n <= 200
    {"type": "knockout", "fraction": 0.7}       restore only: blank that fraction of pixels

Server -> client::

    {"type": "hello", "task": ..., "width": 28, "height": 28, "palettes": ..., ...}   once
    {"type": "frame", "step": ..., "labels" | "input" + "output": base64 uint8 (H*W), ...}
    {"type": "error", "error": "what was wrong", "request": the type, when known}

A message that fails validation gets an error back and changes nothing; the session goes on.
"""

from __future__ import annotations

import base64
import json
import math

import numpy as np

from localrules.viz.palette import DEAD_COLOUR, LABEL_COLOURS

MAX_MESSAGE_BYTES = 64 * 1024  # larger messages are answered with an error
MAX_POINTS = 2048
MAX_RADIUS = 8.0
MIN_RADIUS = 0.25
MAX_STEPS_PER_SECOND = 240.0
MAX_STEPS_PER_REQUEST = 200  # the server also caps step messages per second per connection
COORD_LIMIT = 1e4  # points may lie off the grid (they touch nothing there), not absurdly far

DEFAULT_PALETTE = "colour-blind safe (Tol muted)"
PALETTES = {
    DEFAULT_PALETTE: LABEL_COLOURS,
    "classic (matplotlib tab10)": ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"],
}

COMMON = ("draw", "load", "clear", "speed", "step")
TYPES = {"mnist-selfclassify": COMMON, "restore": (*COMMON, "knockout")}


class MessageError(ValueError):
    """A client message that cannot be applied; ``request`` is its type when one was readable."""

    def __init__(self, message: str, request: str | None = None):
        super().__init__(message)
        self.request = request


def _finite(v) -> bool:
    return not isinstance(v, float) or math.isfinite(v)


def _number(msg: dict, key: str, lo: float, hi: float, default=None, integer: bool = False):
    v = msg.get(key, default)
    kind = "an integer" if integer else "a number"
    if v is None:
        raise MessageError(f"{key!r} is required", msg["type"])
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
        raise MessageError(f"{key!r} must be {kind}, not {type(v).__name__}", msg["type"])
    if not _finite(v) or not lo <= v <= hi:
        raise MessageError(f"{key!r} must be {kind} in [{lo:g}, {hi:g}], got {v!r}", msg["type"])
    return int(v) if integer else float(v)


def _points(msg: dict) -> list[tuple[float, float]]:
    pts = msg.get("points")
    if not isinstance(pts, list) or not pts:
        raise MessageError("'points' must be a non-empty list of [x, y] pairs", "draw")
    if len(pts) > MAX_POINTS:
        raise MessageError(f"'points' holds {len(pts)} points; at most {MAX_POINTS} per message", "draw")
    out = []
    for p in pts:
        if (not isinstance(p, list) or len(p) != 2
                or any(isinstance(c, bool) or not isinstance(c, (int, float)) for c in p)
                or not all(_finite(c) and abs(c) <= COORD_LIMIT for c in p)):
            raise MessageError(f"each point must be [x, y] with finite numbers (|x|, |y| <= "
                               f"{COORD_LIMIT:g}), got {json.dumps(p)[:60]}", "draw")
        out.append((float(p[0]), float(p[1])))
    return out


def parse_message(raw: str | bytes, task: str) -> dict:
    """Validate one client message for ``task``; returns a normalised dict or raises MessageError."""
    if not isinstance(raw, str):
        raise MessageError("binary messages are not accepted; send JSON text")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message too large ({len(raw):,} characters; at most {MAX_MESSAGE_BYTES:,} bytes)")
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, or an int too long to read
        raise MessageError(f"malformed JSON: {e}") from None
    if not isinstance(msg, dict):
        raise MessageError(f"a message must be a JSON object, not {type(msg).__name__}")
    kind = msg.get("type")
    allowed = TYPES[task]
    if not isinstance(kind, str):
        raise MessageError(f"a message needs a string 'type', one of {', '.join(allowed)}")
    if kind not in allowed:
        raise MessageError(f"unknown message type {kind[:40]!r} for {task}; expected one of "
                           f"{', '.join(allowed)}", kind[:40])
    if kind == "draw":
        erase = msg.get("erase", False)
        if not isinstance(erase, bool):
            raise MessageError("'erase' must be true or false", kind)
        return {"type": kind, "points": _points(msg), "erase": erase,
                "radius": _number(msg, "radius", MIN_RADIUS, MAX_RADIUS, default=1.0)}
    if kind == "load":
        return {"type": kind, "digit": _number(msg, "digit", 0, 9, integer=True)}
    if kind == "speed":
        return {"type": kind, "steps_per_second": _number(msg, "steps_per_second", 0, MAX_STEPS_PER_SECOND)}
    if kind == "step":
        return {"type": kind, "n": _number(msg, "n", 1, MAX_STEPS_PER_REQUEST, default=1, integer=True)}
    if kind == "knockout":
        return {"type": kind, "fraction": _number(msg, "fraction", 0, 1, default=0.7)}
    return {"type": kind}


def apply_message(session, msg: dict) -> None:
    """Apply a validated message to a session (``speed`` is the connection's, not the grid's)."""
    kind = msg["type"]
    if kind == "draw":
        session.draw(msg["points"], msg["radius"], msg["erase"])
    elif kind == "load":
        session.load_digit(msg["digit"])
    elif kind == "clear":
        session.clear()
    elif kind == "step":
        session.step(msg["n"])
    elif kind == "knockout":
        session.knockout(msg["fraction"])


def error(message: str, request: str | None = None) -> str:
    out = {"type": "error", "error": message}
    if request:
        out["request"] = request
    return json.dumps(out)


def _b64(a) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).decode("ascii")


def _u8(t) -> np.ndarray:
    return (np.asarray(t, dtype=np.float32).clip(0, 1) * 255).round().astype(np.uint8)


def frame(session, **extra) -> str:
    """The grid as one JSON frame: per-cell uint8 arrays (row-major, base64) plus a summary."""
    out = {"type": "frame", "task": session.task, **session.summary(), **extra}
    if session.task == "mnist-selfclassify":
        out["labels"] = _b64(session.labels())
        out["pixels"] = _b64(_u8(session.pixels))
    else:
        out["input"] = _b64(_u8(session.image))
        out["output"] = _b64(_u8(session.output))
    return json.dumps(out)


def hello(demo, speed: float) -> str:
    return json.dumps({
        "type": "hello", "task": demo.task, "width": 28, "height": 28,
        "palettes": PALETTES, "default_palette": DEFAULT_PALETTE, "dead_colour": DEAD_COLOUR,
        "digits": demo.digits.source, "n_digits": len(demo.digits),
        "steps_per_second": speed, "max_steps_per_second": MAX_STEPS_PER_SECOND,
        "max_points": MAX_POINTS, "radius": [MIN_RADIUS, MAX_RADIUS],
        "max_message_bytes": MAX_MESSAGE_BYTES, **demo.info,
    })
