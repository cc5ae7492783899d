"""Importing the library shows no torch.jit.script deprecation warning (raised by PyG's import)."""

import subprocess
import sys


def test_no_jit_script_warning_on_import():
    code = "import localrules.core.topology, localrules.core.weightgraph, localrules.cli.main"
    res = subprocess.run([sys.executable, "-W", "error::DeprecationWarning:torch.jit._script", "-c", code],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
