"""The CLI as a careless user meets it: run folders are kept, --resume says what it does, and
every failure is one line (the traceback only with --debug)."""

import json

import pytest

from localrules.cli.main import cli

TINY = ["run", "metanca", "--dataset", "iris", "--arch", "4,8,3", "--steps-min", "2", "--steps-max", "3",
        "--samples", "4", "--pool-size", "8", "--device", "cpu"]


def test_a_run_folder_is_kept_unless_overwrite(tmp_path, console):
    out = str(tmp_path / "run")
    assert console(*TINY, "--iterations", "2", "--out", out)[0] == 0
    code, _, err = console(*TINY, "--iterations", "3", "--out", out)
    assert code == 2 and err.count("\n") == 1 and "already holds a run" in err and "--overwrite" in err
    assert json.loads((tmp_path / "run" / "model.json").read_text())["iteration"] == 2
    assert console(*TINY, "--iterations", "3", "--out", out, "--overwrite")[0] == 0
    assert json.loads((tmp_path / "run" / "model.json").read_text())["iteration"] == 3


def test_resume_goes_to_the_recorded_target_and_applies_a_new_lr(tmp_path, console):
    out = str(tmp_path / "run")
    assert console(*TINY, "--iterations", "4", "--minutes", "1e-9", "--out", out)[0] == 0
    code, text, _ = console(*TINY, "--out", out, "--resume")
    assert code == 0 and "resuming at 1 of 4 iterations" in text, text
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["iteration"] == 4 and meta["train"]["iterations"] == 4 and meta["train"]["minutes"] == 0
    code, text, _ = console(*TINY, "--out", out, "--resume")
    assert code == 0 and "nothing to do" in text and "trained" not in text
    code, text, _ = console(*TINY, "--out", out, "--resume", "--iterations", "6", "--lr", "0.002")
    assert code == 0 and "resuming at 4 of 6 iterations with lr 0.001 -> 0.002" in text, text
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["train"]["lr"] == 0.002 and meta["train_changes"] == [{"iteration": 4, "lr": [0.001, 0.002]}]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert rows[-1]["step"] == 6 and rows[-1]["lr"] == 0.002
    code, _, err = console(*TINY, "--out", out, "--resume", "--iterations", "8", "--seed", "3")
    assert code == 2 and "--seed" in err


def test_failures_are_one_line_and_debug_shows_the_traceback(tmp_path, console, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "train_state.pt").write_bytes(b"")
    code, _, err = console(*TINY, "--out", str(out), "--resume")
    assert code == 2 and err.count("\n") == 1 and "train_state.pt is empty or damaged" in err, err
    code, _, err = console(*TINY, "--steps-min", "5", "--steps-max", "2", "--out", str(tmp_path / "b"))
    assert code == 2 and err.count("\n") == 1 and "--steps-min <= --steps-max" in err, err
    assert not (tmp_path / "b" / "model.safetensors").exists()
    with pytest.raises(ValueError, match="empty or damaged"):
        cli([*TINY, "--out", str(out), "--resume", "--debug"])
    monkeypatch.setenv("LOCALRULES_DEBUG", "1")
    with pytest.raises(ValueError, match="empty or damaged"):
        cli([*TINY, "--out", str(out), "--resume"])


@pytest.mark.parametrize("args,option", [
    (["run", "metanca", "--threads", "0"], "--threads"),
    (["run", "mnist-selfclassify", "--noise", "nan"], "--noise"),
    (["run", "mnist-selfclassify", "--noise", "-1"], "--noise"),
    (["eval", "mnist-selfclassify", "--batch-size", "-1"], "--batch-size"),
    (["eval", "mnist-selfclassify", "--n", "-5"], "--n"),
    (["study", "zeroout", "--frac", "2"], "--frac"),
    (["run", "restore", "--iterations", "0"], "--iterations"),
    (["run", "metanca", "--arch", "4,,3"], "--arch"),
])
def test_out_of_range_options_are_refused_by_name(console, args, option):
    code, _, err = console(*args)
    assert code == 2 and option in err, err
