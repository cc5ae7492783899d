"""The learning rate for a batch size other than the recipe's (issue 40: more work per GPU launch).

    lr(B) = lr_0 (B / B_0)^k,   k = 0 (none), 1/2 (sqrt), 1 (linear)

lr_0 is the learning rate given (``--lr``), B_0 the recipe's batch (self-classifier 16, restorers
64). ``sqrt`` is the square-root rule for Adam (Malladi et al. 2022, "On the SDEs and scaling rules
for adaptive gradient algorithms"); ``linear`` is the SGD rule of Goyal et al. 2017. The rule and
its numbers are recorded in the run's schedule (``TrainConfig.lr_scaling``), so the model card says
how the learning rate was chosen.
"""

from __future__ import annotations

RULES = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}


def scaled_lr(lr: float, batch: int, base_batch: int, rule: str) -> tuple[float, str]:
    """(lr(B), the record for the card); the record is "" where nothing was scaled (rule none or
    B = B_0), so runs without a rule keep their recorded schedule as before."""
    if rule not in RULES:
        raise ValueError(f"--lr-rule must be one of {', '.join(RULES)}, not {rule!r}")
    if batch < 1 or base_batch < 1:
        raise ValueError(f"batch sizes must be >= 1, not {batch} and {base_batch}")
    if rule == "none" or batch == base_batch:
        return lr, ""
    out = lr * (batch / base_batch) ** RULES[rule]
    return out, f"{rule}: {lr:g} x ({batch} / {base_batch})^{RULES[rule]:g} = {out:.6g}"
