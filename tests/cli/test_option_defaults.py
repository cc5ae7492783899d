"""One declaration of each default: every ``run`` option named like a field of its task's Config or
of TrainConfig (or set to one, cli.options.ALIASES) has that field's default, unless its command
lists it in cli.options.CLI_DEFAULTS, and then it has the listed one."""

import dataclasses
import enum
import sys
import textwrap

import click
import pytest
import typer.main

from localrules.cli import options
from localrules.cli.main import app
from localrules.cli.options import ALIASES, CLI_DEFAULTS, MN, MS, RS, TRAIN, Dataclass

CLASSES = {"mnist-selfclassify": (MS, TRAIN), "metanca": (MN, TRAIN), "restore": (RS, TRAIN)}


def run_command(name: str) -> click.Command:
    return typer.main.get_command(app).commands["run"].commands[name]


def field_defaults(cls: Dataclass) -> dict:
    out = {}
    for f in dataclasses.fields(cls.load()):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def as_field(value, like):
    """An option's default as the field value it sets: an Enum's value, "4,16,3" -> (4, 16, 3)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(like, tuple) and (value is None or isinstance(value, str)):
        return tuple(int(v) for v in value.split(",")) if value else ()
    return value


def same(a, b) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


@pytest.mark.parametrize("command", sorted(CLASSES))
def test_run_options_take_the_dataclass_defaults(command):
    defaults = [field_defaults(cls) for cls in CLASSES[command]]
    params = {p.name: p for p in run_command(command).params}
    listed = CLI_DEFAULTS.get(command, {})
    assert set(listed) <= set(params), f"CLI_DEFAULTS[{command!r}] names no option {set(listed) - set(params)}"
    assert set(ALIASES.get(command, {})) <= set(params)
    checked, wrong = [], []
    for name, p in params.items():
        fields = ALIASES.get(command, {}).get(name) or (name,)
        for field in fields:
            found = [d[field] for d in defaults if field in d]
            if not found:
                continue
            checked.append(name)
            if name in listed:
                assert same(p.default, listed[name]), f"--{name}: {p.default!r}, CLI_DEFAULTS says {listed[name]!r}"
                assert not any(same(as_field(p.default, f), f) for f in found), (
                    f"--{name}: CLI_DEFAULTS lists {listed[name]!r}, which is the dataclass default now: "
                    "drop it from CLI_DEFAULTS and use options.option()")
                continue
            if any(not same(found[0], f) for f in found[1:]):
                wrong.append(f"{p.opts[0]}: fields {field} disagree ({found}); list its default in CLI_DEFAULTS")
            elif not same(as_field(p.default, found[0]), found[0]):
                wrong.append(f"{p.opts[0]}: default {p.default!r}, but {field} = {found[0]!r}")
    assert not wrong, "\n".join(wrong)
    assert len(set(checked)) >= 8  # the walk found the mirrored options


def test_every_builtin_run_command_is_checked():
    names = set(typer.main.get_command(app).commands["run"].commands)
    assert set(CLASSES) <= names


@pytest.mark.parametrize("cls", [MS, MN, RS, TRAIN], ids=lambda c: c.module.rsplit(".", 1)[-1])
def test_defaults_read_from_the_source_are_the_classes(cls):
    for field, value in field_defaults(cls).items():
        assert same(options.default(cls, field), value), field


def test_help_shows_the_config_default(console):
    code, out, _ = console("run", "mnist-selfclassify", "--help")
    assert code == 0
    batch = out[out.index("--batch-size"):out.index("--pool-size")]  # its rows, however wrapped
    assert f"default: {options.default(MS, 'batch_size')}]" in batch


def test_default_follows_a_changed_dataclass(tmp_path, monkeypatch):
    """The default is read from the class's source (a literal) or its import (anything else)."""
    (tmp_path / "optdefaults_probe.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass, field

        SIZE = 7

        @dataclass
        class C:
            batch_size: int = 16
            sizes: tuple[int, ...] = (3, 4)
            named: int = SIZE
            made: list = field(default_factory=lambda: [1])
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "optdefaults_probe", raising=False)
    cls = Dataclass("optdefaults_probe", "C")
    info = options.option(cls, "batch_size", help="h")
    assert info.default == 16 and info.help == "h"
    assert options.option(cls, "sizes", to=options.ints).default == "3,4"
    assert options.default(cls, "named") == 7 and options.default(cls, "made") == [1]
    with pytest.raises(KeyError):
        options.default(cls, "nothing")
