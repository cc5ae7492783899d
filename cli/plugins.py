"""Tasks from other packages: `localrules run NAME` for every entry point in the group
``localrules.tasks``, whose value names a typer command function (``NAME = "module:function"``).

A package registers one in its pyproject.toml (see examples/game-of-life)::

    [project.entry-points."localrules.tasks"]
    game-of-life = "game_of_life:run"
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer

GROUP = "localrules.tasks"


def register(app: typer.Typer) -> list[str]:
    """Add each installed task to ``app`` (the `run` group); returns their names. A task whose
    name is taken or whose module fails to import is skipped with one line on stderr."""
    taken = {c.name for c in app.registered_commands}
    added = []
    for ep in entry_points(group=GROUP):
        if ep.name in taken:
            print(f"localrules: task {ep.name!r} from {ep.value} is skipped: the name is taken", file=sys.stderr)
            continue
        try:
            command = ep.load()
        except Exception as e:  # a broken plug-in must not break the whole command line
            print(f"localrules: task {ep.name!r} ({ep.value}) could not be loaded: {e}", file=sys.stderr)
            continue
        app.command(ep.name)(command)
        taken.add(ep.name)
        added.append(ep.name)
    return added
