"""scripts/crash-safety at test size: 3 `kill -9`s during a 6-iteration run, each resumed with
--resume, and the final weights, Adam state and sample pools bit-equal to an uninterrupted run.

The script kills each run a random 0-0.8 s after that run's first new checkpoint; here each killed
run is held (its process waits) at a chosen point after that checkpoint, so every run is killed
before it can finish whatever the machine's speed, the checkpoint on disk is exactly one
iteration further each time, and the kills land where a crash hurts most:
  kill 1  in the middle of writing train_state.pt (the temporary file half written),
  kill 2  in the middle of writing model.safetensors,
  kill 3  in the middle of an iteration (after its random draws began).
(A kill that comes before the held point, when the random wait is short, lands in the iteration
before it; the checkpoint on disk is the same.)
"""

import importlib.util
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "crash-safety"

# Runs in each training process before the CLI: with HOLD set, the process stops at the chosen
# point of its second iteration or checkpoint (its first checkpoint is what the script waits for).
CHILD = '''
import os, sys, time
HOLD = {hold!r}

def hold():
    time.sleep(120)  # killed long before; a process never killed fails the test instead of hanging it
    os._exit(99)

if HOLD == "iteration":
    from localrules.tasks import metanca as mn
    real_loss, calls = mn.MetaNCATask.training_loss, [0]
    def training_loss(self, steps):
        calls[0] += 1
        if calls[0] == 2:
            hold()
        return real_loss(self, steps)
    mn.MetaNCATask.training_loss = training_loss
elif HOLD:
    from localrules.train import checkpoint as C
    real_atomic, calls = C._atomic, [0]
    def _atomic(path, write):
        if path.name == HOLD:
            calls[0] += 1
            if calls[0] == 2:
                def torn(tmp):  # the whole file, then cut in half: a write the kill interrupted
                    write(tmp)
                    with open(tmp, "r+b") as f:
                        f.truncate(os.path.getsize(tmp) // 2)
                    hold()
                return real_atomic(path, torn)
        return real_atomic(path, write)
    C._atomic = _atomic
from localrules.cli.main import cli
cli()
'''

HOLDS = {1: "train_state.pt", 2: "model.safetensors", 3: "iteration"}  # by the run's number (0: uninterrupted)


@pytest.fixture
def script(monkeypatch):
    loader = SourceFileLoader("crash_safety", str(SCRIPT))
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader("crash_safety", loader))
    loader.exec_module(mod)
    monkeypatch.setattr(sys, "path", list(sys.path))  # main() puts the checkout first
    return mod


def test_three_kills_resume_to_the_uninterrupted_state(script, tmp_path, monkeypatch, capsys):
    """Catches: a checkpoint written in place (a torn file read back, or a restart from scratch),
    a resume that loses part of the state (Adam moments, RNG streams, the sample pools: the final
    tensors would differ), a run that reads a temporary file, a resume that cannot continue after a
    kill (the script then exits 1)."""
    runs = []
    real_command = script.command

    def command(out, iterations, seed, *extra):
        cmd = real_command(out, iterations, seed, *extra)
        assert cmd[1] == "-c"
        cmd[2] = CHILD.format(hold=HOLDS.get(len(runs)))
        runs.append(list(extra))
        return cmd

    monkeypatch.setattr(script, "command", command)
    monkeypatch.setattr(sys, "argv", ["crash-safety", "--kills", "3", "--iterations", "6", "--keep", str(tmp_path)])
    code = script.main()
    out = capsys.readouterr().out
    assert code == 0, out
    assert runs == [[], [], ["--resume"], ["--resume"], ["--resume"]], runs
    lines = out.splitlines()
    kills = [ln for ln in lines if ln.startswith("kill ") and ":" in ln and "kills" not in ln]
    assert kills == ["kill  1: started at scratch, checkpoint on disk at 1",
                     "kill  2: started at 1, checkpoint on disk at 2",
                     "kill  3: started at 2, checkpoint on disk at 3"], out
    assert any(ln.startswith("kill -9: 3 kills, 3 resumed with --resume, 0 before the first checkpoint")
               for ln in lines), out
    assert "bit-equal to the uninterrupted run: True (max |difference| 0)" in out, out

    crashed = tmp_path / "crashed"
    # a kill in the middle of a write (kills 1 and 2) tears a temporary file beside the checkpoint,
    # never the checkpoint itself, and the next --resume deletes it: none is left (catches a resume
    # that leaves them to pile up, and a write that is not atomic)
    assert sorted(p.name for p in crashed.glob(".*.tmp")) == []
    assert "temporary files left by kills in the middle of a write: 0 " in out
    from localrules.train.checkpoint import load_model_files, load_state

    assert load_state(crashed / "train_state.pt")["iteration"] == 6
    assert load_model_files(crashed / "model")[1]["iteration"] == 6
