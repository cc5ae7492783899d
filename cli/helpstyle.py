"""How ``--help`` reads: the main verbs first (run, eval, study, bench, demo), help text without
the docstrings' hard line breaks (a paragraph reflows to the terminal), and no ``<bool>`` type on
flags such as ``--help``."""

from __future__ import annotations

import inspect
import re

from typer.core import TyperGroup, TyperOption

VERBS = ("run", "eval", "study", "bench", "demo")


class VerbOrder(TyperGroup):
    """A typer group listing its commands in :data:`VERBS` order, the others after them."""

    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: (VERBS.index(n) if n in VERBS else len(VERBS), names.index(n)))


def unwrap(text: str | None) -> str | None:
    """Join the single line breaks inside each paragraph (blank lines stay paragraph breaks)."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(re.sub(r"\s*\n\s*", " ", p) for p in paragraphs)


def tidy(app) -> None:
    """Give every command of the typer ``app`` (and its sub-apps) its docstring unwrapped."""
    for info in app.registered_commands:
        if info.help is None and info.callback is not None:
            info.help = unwrap(inspect.getdoc(info.callback))
        else:
            info.help = unwrap(info.help)
    for group in app.registered_groups:
        group.typer_instance.info.help = unwrap(group.typer_instance.info.help)
        tidy(group.typer_instance)


_display_type_rich = TyperOption.display_type_rich


def _no_bool(self, ctx):
    return None if self.is_flag else _display_type_rich(self, ctx)


TyperOption.display_type_rich = _no_bool  # a flag takes no value: nothing to show in the type column


def panels(callback, groups: dict[str, str]) -> None:
    """Put the options of a command in rich help panels: ``{panel title: "param names"}``
    (space-separated); options not named stay under "Options"."""
    params = inspect.signature(callback).parameters
    for title, names in groups.items():
        for name in names.split():
            params[name].default.rich_help_panel = title
