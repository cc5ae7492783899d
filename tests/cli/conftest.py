"""Fixtures of the CLI tests."""

import pytest

from localrules.cli.main import cli


@pytest.fixture
def console(capsys):
    """``console(*args)`` -> (exit code, stdout, stderr) of ``localrules ARGS`` through the console
    entry point, which turns a failure into one line (CliRunner on ``app`` would catch the
    exception instead)."""
    def call(*args):
        try:
            cli(list(args))
            code = 0
        except SystemExit as e:
            code = e.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err
    return call
