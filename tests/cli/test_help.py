"""--help reads well: the main verbs first, paragraphs not broken mid-sentence, no <bool> on
flags, the stability study names its paper, the demo's default checkpoint uncut, the long
training command grouped into panels."""

import re

import pytest
from typer.testing import CliRunner

from localrules.cli.main import app


def _help(*args: str) -> str:
    res = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    return res.output


def test_main_verbs_come_first():
    listed = re.findall(r"^│ (\w[\w-]*) ", _help().split("Commands")[1], re.M)
    assert listed[:5] == ["run", "eval", "study", "bench", "demo"]


@pytest.mark.parametrize("args", [(), ("bench",), ("study",), ("study", "restore-basins"), ("demo",),
                                  ("run", "mnist-selfclassify"), ("study", "stability")])
def test_no_bool_type_and_no_break_mid_sentence(args):
    text = _help(*args)
    assert "<bool>" not in text
    # a hard-wrapped docstring shows as a short line in the middle of a paragraph (e.g. bench's
    # "reference: checks they" / "agree, then ..."): every line of a paragraph but its last is full
    desc = [r.strip() for r in text.split("╭")[0].splitlines()[3:]]
    for para in "\n".join(desc).split("\n\n"):
        rows = [r.strip() for r in para.splitlines() if r.strip()]
        assert all(len(r) >= 60 for r in rows[:-1]), rows
    if "Commands" in text:
        rows = [r.rstrip("│ ").rstrip() for r in text.split("Commands")[1].split("╰")[0].splitlines()[1:]]
        for a, b in zip(rows, rows[1:]):
            if b.startswith("│" + " " * 8):  # b goes on with a's text
                assert len(a) >= 65, (a, b)

def test_stability_names_its_paper():
    assert "MetaNCA abstract" in _help("study", "stability") and "Barot" in _help("study")


def test_demo_shows_the_default_checkpoint_uncut():
    text = _help("demo")
    assert "mnist-selfclassify-robust" in text and "mnist-selfclassify-l2noise" in text and "…" not in text


def test_training_options_are_grouped():
    text = _help("run", "mnist-selfclassify")
    for panel in ("Run", "Model", "Training", "Machine"):
        assert re.search(rf"╭─ {panel} ─", text), panel
