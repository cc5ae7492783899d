"""Progress: a bar on a terminal; plain lines (every 10 % or 30 s) off one; nothing with
--quiet / LOCALRULES_QUIET=1."""

import io
import os
import re

from tqdm import tqdm
from typer.testing import CliRunner

from localrules import progress
from localrules.cli.main import app

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but \t and \n


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_bars_follow_the_terminal_and_quiet(monkeypatch):
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    monkeypatch.setattr("sys.stderr", _Tty())
    monkeypatch.setattr("sys.stdout", _Tty())
    assert progress.shown() and isinstance(progress.bar(range(3)), tqdm) and not progress.bar(range(3)).disable
    assert progress.bar(range(3), disable=True).disable  # a caller's own switch still works
    monkeypatch.setenv(progress.QUIET_ENV, "1")
    assert not progress.shown() and progress.bar(range(3)).disable
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a pipe or a file
    monkeypatch.delenv(progress.QUIET_ENV)
    assert not progress.shown() and isinstance(progress.bar(range(3)), progress.Lines)
    monkeypatch.setattr("sys.stderr", _Tty())
    monkeypatch.setattr("sys.stdout", io.StringIO())  # `localrules ... | cat`: lines, not a bar
    assert not progress.shown() and isinstance(progress.bar(range(3)), progress.Lines)


def test_off_a_terminal_one_plain_line_per_tenth(monkeypatch):
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    items = list(progress.bar(range(200), desc="eval", unit="digit"))
    assert items == list(range(200))
    lines = err.getvalue().splitlines()
    assert len(lines) == 10 and not CONTROL.search(err.getvalue())
    assert lines[0].startswith("eval: 20/200 digit (10 %)") and lines[-1].startswith("eval: 200/200 digit (100 %)")


def test_off_a_terminal_a_line_every_30_seconds(monkeypatch):
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    err, now = io.StringIO(), [0.0]
    monkeypatch.setattr("sys.stderr", err)
    lines = progress.Lines(total=1000, desc="train", clock=lambda: now[0])
    for _ in range(5):  # 0.5 % done per update: only the clock can trigger a line
        now[0] += 31
        lines.update(5)
    lines.set_postfix(loss="0.25")
    lines.update(1)  # too soon and too little for a line ...
    lines.close()  # ... but the end gets one
    out = err.getvalue().splitlines()
    assert len(out) == 6 and out[0] == "train: 5/1000 it (0 %), 31 s" and out[-1].endswith("s, loss=0.25")
    transient = progress.Lines(total=10, desc="grow", leave=False, clock=lambda: now[0])
    for _ in range(10):
        transient.update()
    transient.close()
    assert len(err.getvalue().splitlines()) == 6  # an inner bar prints only the 30 s lines


def test_quiet_and_disable_silence_the_lines(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setenv(progress.QUIET_ENV, "1")
    list(progress.bar(range(50)))
    monkeypatch.delenv(progress.QUIET_ENV)
    list(progress.bar(range(50), disable=True))
    assert err.getvalue() == ""


def test_quiet_option_sets_the_environment(monkeypatch):
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    res = CliRunner().invoke(app, ["--quiet", "run", "--help"])
    assert res.exit_code == 0 and os.environ.get(progress.QUIET_ENV) == "1"
    monkeypatch.delenv(progress.QUIET_ENV)
