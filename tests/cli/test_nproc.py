"""``localrules run ... --nproc N`` starts N torchrun processes; bad uses end in one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localrules.train.launch import split_nproc

TINY = ["--arch", "4,8,3", "--samples", "4", "--pool-size", "8", "--steps-min", "2", "--steps-max", "2",
        "--threads", "1", "--checkpoint-every", "2"]


def test_split_nproc():
    assert split_nproc(["run", "metanca", "--nproc", "2", "--out", "x"]) == (2, ["run", "metanca", "--out", "x"])
    assert split_nproc(["run", "metanca", "--nproc=3"]) == (3, ["run", "metanca"])
    assert split_nproc(["run", "metanca"]) == (None, ["run", "metanca"])
    assert split_nproc(["--quiet", "run", "metanca", "--nproc", "2"]) == (2, ["--quiet", "run", "metanca"])
    with pytest.raises(ValueError, match="--nproc needs a number of processes >= 1, not '0'"):
        split_nproc(["run", "metanca", "--nproc", "0"])
    with pytest.raises(ValueError, match="--nproc is an option of `localrules run TASK`"):
        split_nproc(["study", "heatmap", "--nproc", "2"])


def _localrules(*args):
    exe = Path(sys.executable).with_name("localrules")
    env = {**os.environ, "LOCALRULES_QUIET": "1"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)


def test_two_processes_from_the_command_line_then_refused_resume(tmp_path):
    r = _localrules("run", "metanca", "--out", str(tmp_path / "two"), "--iterations", "2", *TINY, "--nproc", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("metanca on iris") == 1  # rank 0 alone prints
    meta = json.loads((tmp_path / "two" / "model.json").read_text())
    assert (meta["iteration"], meta["hardware"]["processes"], meta["train"]["shards"]) == (2, 2, 2)
    assert "--nproc" not in meta["commands"][0]["command"]
    r = _localrules("run", "metanca", "--out", str(tmp_path / "one"), "--iterations", "2", *TINY)
    assert r.returncode == 0, r.stderr
    r = _localrules("run", "metanca", "--out", str(tmp_path / "one"), "--iterations", "4", "--resume", *TINY,
                    "--nproc", "2")
    assert r.returncode == 2
    assert "error: --resume: this run was trained in one process without shards" in r.stderr
    assert "error: the 2-process run stopped" in r.stderr and "Traceback" not in r.stderr
