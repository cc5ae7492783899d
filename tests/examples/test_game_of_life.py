"""The documented path to your own task: examples/game-of-life, on the core and the trainer,
listed by `localrules run` through the `localrules.tasks` entry-point group."""

import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "game-of-life"


@pytest.fixture
def gol(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import game_of_life

    yield game_of_life
    sys.modules.pop("game_of_life", None)


def test_life_step_by_hand(gol):
    blinker = torch.zeros(1, 5, 5, 1)
    blinker[0, 2, 1:4] = 1
    turned = torch.zeros(1, 5, 5, 1)
    turned[0, 1:4, 2] = 1
    assert torch.equal(gol.life_step(blinker), turned)
    assert torch.equal(gol.life_step(turned), blinker)


def test_learns_the_rule_through_the_cli_entry_point(gol, monkeypatch, tmp_path):
    from localrules.cli import plugins
    from localrules.cli.common import run_app
    from localrules.cli.main import app

    ep = EntryPoint(name="game-of-life", value="game_of_life:run", group=plugins.GROUP)
    broken = EntryPoint(name="broken", value="no_such_module:run", group=plugins.GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [ep, broken] if group == plugins.GROUP else [])
    before = list(run_app.registered_commands)
    try:
        assert plugins.register(run_app) == ["game-of-life"]  # the broken one is skipped
        torch.manual_seed(0)
        res = CliRunner().invoke(app, ["run", "game-of-life", "--iterations", "200", "--out", str(tmp_path)])
        assert res.exit_code == 0, res.output
    finally:
        run_app.registered_commands[:] = before
    assert "cell accuracy" in res.output and (tmp_path / "model.safetensors").is_file()
    # an independent check on boards the rule has never seen
    from localrules.train.checkpoint import load_model_files

    task = gol.GameOfLife()
    weights, _ = load_model_files(tmp_path / "model.safetensors")
    task.model.load_state_dict(weights)
    boards = task.boards(64)
    with torch.no_grad():
        guess = task.model.step(gol.Grid2D(), None, boards, None)
    assert ((guess > 0.5).float() == gol.life_step(boards)).float().mean() >= 0.999
