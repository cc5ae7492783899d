"""Every `localrules ...` command in the README's shell blocks parses against the real CLI:
known commands, known options, values of the right type and range (nothing is run)."""

import re
import shlex
from pathlib import Path

import pytest
import typer

from localrules.cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLE = README.parent / "examples" / "game-of-life"


@pytest.fixture(autouse=True)
def example_task_installed(monkeypatch):
    """The README installs examples/game-of-life before it runs `localrules run game-of-life`."""
    import sys
    from importlib.metadata import EntryPoint

    from localrules.cli import plugins
    from localrules.cli.common import run_app

    monkeypatch.syspath_prepend(str(EXAMPLE))
    ep = EntryPoint(name="game-of-life", value="game_of_life:run", group=plugins.GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [ep])
    before = list(run_app.registered_commands)
    plugins.register(run_app)
    yield
    run_app.registered_commands[:] = before
    sys.modules.pop("game_of_life", None)


def readme_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if re.match(r"^(\S+=\S+ )*(\.venv/bin/)?localrules ", line):
                commands.append(line)
    return commands


def parse(args: list[str]) -> None:
    """Parse ``args`` down the command tree as click would, without calling any command (typer
    may bring its own copy of click, so groups and errors are recognised by what they do)."""
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("localrules", list(args))
    while hasattr(cmd, "resolve_command"):  # a group: on to the subcommand
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
        name, cmd, rest = cmd.resolve_command(ctx, [*protected, *ctx.args])
        ctx = cmd.make_context(name, rest, parent=ctx)


def test_readme_shows_commands():
    assert len(readme_commands()) >= 20


@pytest.mark.parametrize("line", readme_commands())
def test_readme_command_parses(line):
    from localrules.train.launch import split_nproc

    words = shlex.split(line)
    while "=" in words[0]:  # VAR=value prefixes
        words.pop(0)
    words = [words[0], *split_nproc(words[1:])[1]]  # `cli()` reads --nproc before the command tree
    try:
        parse(words[1:])
    except Exception as e:
        if type(e).__name__ == "Exit":  # --help
            return
        if hasattr(e, "format_message"):  # a usage error
            pytest.fail(f"README command does not parse: {line}\n{e.format_message()}")
        raise


@pytest.mark.parametrize("args", [["run", "mnist-selfclassify", "--bogus"], ["eval", "metanca", "--samples", "x"],
                                  ["run", "nope"], ["study", "zeroout", "--frac"]])
def test_the_parser_rejects_bad_commands(args):
    with pytest.raises(Exception) as err:
        parse(args)
    assert hasattr(err.value, "format_message")
