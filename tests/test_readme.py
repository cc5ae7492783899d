"""Every `localrules ...` command in the shell blocks of the README and of the docs pages
(docs/*.md) parses against the real CLI: known commands, known options, values of the right type
and range (nothing is run). Catches a command that a renamed or removed option, command or range
left behind in the text."""

import re
import shlex
from pathlib import Path

import pytest
import typer

from localrules.cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"
DOCS = README.parent / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
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


def page_commands(page: Path) -> list[str]:
    """The `localrules ...` lines of a page's ```bash blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
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


def readme_commands() -> list[str]:
    return page_commands(README)


def test_readme_and_docs_show_commands():
    """The README shows one command per kind; the docs pages hold the rest (moved there from the
    README, where they were checked: an empty match here would check nothing)."""
    assert len(readme_commands()) >= 8
    docs = {page.stem: len(page_commands(page)) for page in PAGES[1:]}
    assert sum(docs.values()) >= 30, docs
    for page in ("selfclassify", "metanca", "restore", "benchmarks", "scaling", "playground"):
        assert docs.get(page, 0) >= 1, f"docs/{page}.md shows no localrules command"


@pytest.mark.parametrize("line", [pytest.param(line, id=f"{page.name}: {line}")
                                  for page in PAGES for line in page_commands(page)])
def test_documented_command_parses(line):
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
            pytest.fail(f"documented command does not parse: {line}\n{e.format_message()}")
        raise


@pytest.mark.parametrize("args", [["run", "mnist-selfclassify", "--bogus"], ["eval", "metanca", "--samples", "x"],
                                  ["run", "nope"], ["study", "zeroout", "--frac"]])
def test_the_parser_rejects_bad_commands(args):
    with pytest.raises(Exception) as err:
        parse(args)
    assert hasattr(err.value, "format_message")


def test_readme_links_point_at_files():
    """The README links the model cards and the docs pages by relative path (mkdocs checks the
    links between the docs pages; nothing else checks the README's)."""
    targets = [t for t in re.findall(r"\]\(([^)#\s]+)", README.read_text()) if "://" not in t]
    assert targets
    assert [t for t in targets if not (README.parent / t).exists()] == []


def test_readme_make_targets_exist():
    """Every `make TARGET` the README names is a target of the Makefile."""
    makefile = (README.parent / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = set(re.findall(r"`make (\w[\w-]*)", README.read_text())) | set(re.findall(r"^make (\w[\w-]*)", README.read_text(), re.M))
    assert {"run", "test", "docs"} <= named and named <= targets, named - targets


def test_readme_quick_start_says_how_long_and_how_to_get_chromium():
    quick = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"`make run` takes about \d+", quick) and re.search(r"`make test` about \d+", quick)
    assert "apt-get update && apt-get install -y chromium" in quick


def test_readme_game_of_life_runs_do_not_collide():
    """The example script's own run folder and the README's `localrules run game-of-life --out`
    are different folders (a folder that holds a run is refused)."""
    import inspect

    import game_of_life

    script_out = str(inspect.signature(game_of_life.run).parameters["out"].default.default)
    outs = [shlex.split(line)[shlex.split(line).index("--out") + 1] for line in readme_commands()
            if "game-of-life" in line and "--out" in line]
    assert outs and script_out not in outs
