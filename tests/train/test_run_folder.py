"""A new run never silently replaces a finished one: refused unless overwrite=True."""

import json

import pytest
import torch

from localrules.tasks import mnist_selfclassify as ms
from localrules.train.checkpoint import load_model_files
from localrules.train.loop import TrainConfig, train


def _task(small_digits):
    x, y = small_digits
    cfg = ms.Config(batch_size=4, pool_size=8, perception_dim=8, hidden=(8,))
    return ms.SelfClassifyTask(cfg, x[:60], y[:60], torch.device("cpu"))


def test_a_new_run_into_a_run_folder_is_refused_unless_overwrite(tmp_path, small_digits):
    cfg = TrainConfig(iterations=3, steps_min=2, steps_max=2, log_every=1)
    train(_task(small_digits), cfg, tmp_path, torch.device("cpu"), progress=False)
    before = {f: (tmp_path / f).read_bytes() for f in ("model.safetensors", "train_state.pt", "metrics.jsonl")}
    with pytest.raises(ValueError, match="already holds a run.*--resume.*new --out.*--overwrite"):
        train(_task(small_digits), TrainConfig(iterations=2, steps_min=2, steps_max=2), tmp_path,
              torch.device("cpu"), progress=False)
    assert {f: (tmp_path / f).read_bytes() for f in before} == before  # nothing touched
    train(_task(small_digits), TrainConfig(iterations=2, steps_min=2, steps_max=2, log_every=1), tmp_path,
          torch.device("cpu"), progress=False, overwrite=True)
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").open()] == [1, 2]
    assert load_model_files(tmp_path / "model.safetensors")[1]["iteration"] == 2


def test_an_out_that_is_a_file_is_one_clear_error(tmp_path, small_digits):
    (tmp_path / "run").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        train(_task(small_digits), TrainConfig(iterations=1), tmp_path / "run", torch.device("cpu"), progress=False)


@pytest.mark.parametrize("minutes,saved", [(0.0, [4]), (1e-9, [1, 2, 3, 4])])
def test_checkpoints_also_follow_the_clock(tmp_path, small_digits, monkeypatch, minutes, saved):
    """checkpoint_minutes: a checkpoint after any iteration that ends that long after the last one."""
    import localrules.train.checkpointer as loop

    seen, real = [], loop.save_state
    monkeypatch.setattr(loop, "save_state", lambda path, state: (seen.append(state["iteration"]), real(path, state)))
    cfg = TrainConfig(iterations=4, steps_min=2, steps_max=2, checkpoint_every=1000, checkpoint_minutes=minutes)
    train(_task(small_digits), cfg, tmp_path, torch.device("cpu"), progress=False)
    assert seen == saved


def test_a_resume_deletes_the_temporary_files_of_torn_writes(tmp_path, small_digits):
    """A kill in the middle of a checkpoint write leaves ``.NAME.*.tmp`` beside the run files;
    --resume deletes those (catches temporaries piling up after crashes) and nothing else."""
    cfg = TrainConfig(iterations=1, steps_min=2, steps_max=2)
    train(_task(small_digits), cfg, tmp_path, torch.device("cpu"), progress=False)
    torn = [tmp_path / ".train_state.pt.x1y2.tmp", tmp_path / ".model.safetensors.z3.tmp"]
    for p in torn:
        p.write_bytes(b"half a file")
    mine = tmp_path / ".notes.tmp"
    mine.write_text("not a run file")
    train(_task(small_digits), TrainConfig(iterations=2, steps_min=2, steps_max=2), tmp_path, torch.device("cpu"),
          resume=True, progress=False)
    assert not any(p.exists() for p in torn) and mine.exists()
