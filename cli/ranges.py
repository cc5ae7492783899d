"""One range check for every numeric option of every command, at the command-line boundary.

``RANGES`` names each numeric parameter once (lo, hi; None = unbounded) and ``OVERRIDES`` the
few that mean something else in one command. :func:`apply_ranges` gives each such option typer's
``min`` / ``max`` (unless it set its own), so ``--threads 0`` ends in "Invalid value for
'--threads': Input should be greater than or equal to 1", and NaN is refused too.
"""

from __future__ import annotations

RANGES: dict[str, tuple[float | None, float | None]] = {
    "iterations": (1, None), "checkpoint_every": (1, None), "steps": (1, None), "steps_min": (1, None),
    "steps_max": (1, None), "samples": (1, None), "threads": (1, None), "workers": (0, None),
    "batch_size": (0, None), "pool_size": (0, None), "n": (0, None), "repeats": (1, None),
    "lr": (0, None), "noise": (0, None), "minutes": (0, None), "mutate_at": (0, None),
    "frac": (0, 1), "mask_frac": (0, 1), "damage_frac": (0, 1), "fresh_frac": (0, 1),
    "zero_out_prob": (0, 1), "arch_redraw": (0, 1), "steps_before": (0, None), "steps_after": (0, None),
    "horizon": (1, None), "grow_steps": (1, None), "hidden": (1, None), "pos_dim": (2, None),
    "arch_pools": (1, None), "k_max": (2, None), "adam_epochs": (0, None), "hidden_span": (0, None),
    "port": (0, 65535), "max_bad_steps": (1, None),
}
OVERRIDES: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("run mnist-selfclassify", "batch_size"): (1, None),
    ("run mnist-selfclassify", "pool_size"): (1, None),
    ("study restore-basins", "noise"): (1, None),  # a count of noise seeds there
    ("study restore-basins", "steps"): (0, None),  # 0 = five times the trained steps
}


def apply_ranges(app, path: str = "") -> None:
    """Give every numeric option of the typer ``app``'s commands (and sub-apps) without a range of
    its own the range in OVERRIDES / RANGES; typer then refuses out-of-range values and NaN."""
    import inspect

    for info in app.registered_commands:
        name = f"{path} {info.name or info.callback.__name__}".strip()
        for param in inspect.signature(info.callback).parameters.values():
            opt = param.default
            bounds = OVERRIDES.get((name, param.name), RANGES.get(param.name))
            if bounds and hasattr(opt, "min") and opt.min is None and opt.max is None \
                    and _numeric(param.annotation):
                opt.min, opt.max = bounds
    for group in app.registered_groups:
        apply_ranges(group.typer_instance, f"{path} {group.name}".strip())


def _numeric(annotation) -> bool:
    """int, float or Optional of them, as a type or as a string (``from __future__ import annotations``)."""
    text = annotation if isinstance(annotation, str) else str(annotation).replace("typing.", "")
    return annotation in (int, float) or text in ("int", "float", "Optional[int]", "Optional[float]",
                                                  "int | None", "float | None")
