"""Progress bars: on a terminal unless --quiet / LOCALRULES_QUIET=1; never when stderr is a pipe."""

import io
import os

from typer.testing import CliRunner

from localrules import progress
from localrules.cli.main import app


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_bars_follow_the_terminal_and_quiet(monkeypatch):
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    monkeypatch.setattr("sys.stderr", _Tty())
    assert progress.shown() and not progress.bar(range(3)).disable
    assert progress.bar(range(3), disable=True).disable  # a caller's own switch still works
    monkeypatch.setenv(progress.QUIET_ENV, "1")
    assert not progress.shown() and progress.bar(range(3)).disable
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a pipe or a file
    monkeypatch.delenv(progress.QUIET_ENV)
    assert not progress.shown()


def test_quiet_option_sets_the_environment(monkeypatch):
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    res = CliRunner().invoke(app, ["--quiet", "run", "--help"])
    assert res.exit_code == 0 and os.environ.get(progress.QUIET_ENV) == "1"
    monkeypatch.delenv(progress.QUIET_ENV)
