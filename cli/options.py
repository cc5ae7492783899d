"""One declaration of each default: the ``run`` options that mirror a field of a task's Config or of
TrainConfig take their default from that dataclass, so ``--help`` shows it and a changed Config
default changes the CLI with it.

    batch_size: int = option(MS, "batch_size", help="Digits per iteration.")

The dataclasses live in modules that import torch, which the CLI only imports when a command runs
(``localrules --help`` starts in a fraction of a second). So :func:`default` reads a field's default
from the class's source text (a literal: a number, string, bool, tuple or None) and imports the
module only for a default that is not one. tests/cli/test_option_defaults.py checks every ``run``
option named like a field against the imported classes.

A CLI default that deliberately differs from the dataclass's is declared in :data:`CLI_DEFAULTS`
(with the reason), and the option takes it from there.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import importlib.util
from functools import lru_cache
from typing import Any, Callable, NamedTuple, Optional

import typer


class Dataclass(NamedTuple):
    """A dataclass named by module and class, read without importing the module."""

    module: str
    name: str

    def load(self) -> type:
        return getattr(importlib.import_module(self.module), self.name)

    def default(self, field: str) -> Any:
        return default(self, field)


MS = Dataclass("localrules.tasks.mnist_selfclassify", "Config")
MN = Dataclass("localrules.tasks.metanca", "Config")
RS = Dataclass("localrules.tasks.restore", "Config")
TRAIN = Dataclass("localrules.train.loop", "TrainConfig")

# The CLI defaults that are not the dataclass's, on purpose: command -> option -> default.
CLI_DEFAULTS: dict[str, dict[str, Any]] = {
    "restore": {
        # the text's schedule (40k mini-batches of 64), given to restore.train_config; TrainConfig's
        # 100k is the self-classifying NCA's
        "iterations": 40_000,
        # None: the --recipe's range (pool: Config.steps_min / steps_max, plain: PLAIN's 10), and
        # on --resume the run's recorded one
        "steps_min": None,
        "steps_max": None,
        # None: the --recipe's pixel-mask range (pool: Config.mask_min / mask_max, plain: 0.7)
        "mask_min": None,
        "mask_max": None,
    },
    "metanca": {
        # meta-training converges in a few thousand iterations; TrainConfig's 100k is the
        # self-classifying NCA's
        "iterations": 2000,
        # rule updates per iteration drawn in [10, 30] (the abstract); TrainConfig's 20 / 20 are
        # the self-classifying NCA's CA steps
        "steps_min": 10,
        "steps_max": 30,
        # the dataset's architectures (_default_archs), not Config.archs (iris's one network)
        "arch": None,
    },
}

# Options that set fields of another name (command -> option -> those fields), beside the
# options named as their field; tests/cli/test_option_defaults.py checks them too.
ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "mnist-selfclassify": {"noise": ("noise_std",), "milestones": ("lr_milestones",),
                           "steps": ("steps_min", "steps_max")},
    "metanca": {"arch": ("archs",)},
}


def ints(values) -> Optional[str]:
    """A tuple of ints as the comma-separated text of its option; () as None (not given)."""
    return ",".join(str(v) for v in values) or None


@lru_cache(maxsize=None)
def _literal_defaults(cls: Dataclass) -> dict[str, Any]:
    """The literal field defaults of ``cls`` read from its source; a field whose default is no
    literal (a call, a name) maps to ``...``."""
    spec = importlib.util.find_spec(cls.module)
    if spec is None or not spec.origin:
        return {}
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read(), spec.origin)
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.name), None)
    if node is None:
        return {}
    found = {}
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            try:
                found[stmt.target.id] = ast.literal_eval(stmt.value)
            except ValueError:
                found[stmt.target.id] = ...
    return found


def default(cls: Dataclass, field: str) -> Any:
    """The default of ``cls``'s ``field``, read from the source when it is a literal, else from the
    imported class."""
    value = _literal_defaults(cls).get(field, ...)
    if value is not ...:
        return value
    fields = {f.name: f for f in dataclasses.fields(cls.load())}
    if field not in fields:
        raise KeyError(f"{cls.module}.{cls.name} has no field {field!r}")
    f = fields[field]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise KeyError(f"{cls.module}.{cls.name}.{field} has no default")


def option(cls: Dataclass, field: str, *param_decls: str, to: Callable[[Any], Any] | None = None, **kw) -> Any:
    """``typer.Option`` whose default is ``cls.field``'s, made the option's type by ``to`` (an Enum,
    :func:`ints`); the rest as for ``typer.Option``."""
    value = default(cls, field)
    return typer.Option(to(value) if to else value, *param_decls, **kw)


# --compile, --cuda-graphs, --precision: the same on every command that trains (localrules.train.accelerate,
# localrules.train.precision; measured in docs/benchmarks.md, "Compiled steps")
COMPILE_HELP = ("torch.compile each CA step (or a model's forward): the same numbers as eager. Default (auto): on "
                "where it measured faster (on CUDA; on the CPU for none of the systems) and, in training, "
                "for 1,000 iterations or more: the first iterations pay the compilation (30-60 s on a CPU core).")
GRAPHS_HELP = "With --compile on CUDA: also record each static-shape compiled step as a CUDA graph and replay it."
PRECISION_HELP = "fp32, or bf16: autocast of the convolutions and rule MLPs (weights, pool and Adam stay float32)."


class Precision(str, enum.Enum):
    fp32 = "fp32"
    bf16 = "bf16"


def compile_option() -> Any:
    return typer.Option(None, "--compile/--no-compile", help=COMPILE_HELP, show_default="auto")


def graphs_option() -> Any:
    return typer.Option(False, "--cuda-graphs", help=GRAPHS_HELP)


def precision_option() -> Any:
    return option(TRAIN, "precision", to=Precision, help=PRECISION_HELP)


class LRRule(str, enum.Enum):
    none = "none"
    sqrt = "sqrt"
    linear = "linear"


def lr_rule_option(base_batch: int) -> Any:
    """--lr-rule (localrules.train.lr_rule) for a command whose recipe's batch is ``base_batch``."""
    return typer.Option(LRRule.none, help=f"With a --batch-size other than the recipe's {base_batch}: scale --lr "
                        f"by (batch / {base_batch})^k, k = 1/2 (sqrt, the rule for Adam) or 1 (linear); none "
                        "keeps --lr. The rule and the learning rate it gives are recorded in the model card.")


LAYOUT_HELP = ("Memory layout of the lattice's convolution: channels-last (the state as it is) or nchw (copied "
               "to contiguous NCHW first); the same numbers; auto: the one measured faster on the device "
               "(localrules.core.layout).")


class Layout(str, enum.Enum):
    auto = "auto"
    channels_last = "channels-last"
    nchw = "nchw"
