"""scripts/gpu-job's packing: every returned file within the size limit, the group within its file
share, and unpacking gives back exactly what was packed. (CI also runs the whole job: --smoke.)"""

import importlib.util
import json
import os
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu-job"


@pytest.fixture
def job(monkeypatch):
    loader = SourceFileLoader("gpu_job", str(SCRIPT))
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader("gpu_job", loader))
    monkeypatch.setitem(sys.modules, "gpu_job", mod)  # dataclasses look their module up there
    loader.exec_module(mod)
    monkeypatch.setattr(mod, "PART", 1 << 20)  # 1 MiB parts instead of 15
    return mod


def _run(folder: Path, state_mib: float) -> None:
    folder.mkdir(parents=True)
    (folder / "model.json").write_text('{"iteration": 3}')
    (folder / "train_state.pt").write_bytes(os.urandom(int(state_mib * (1 << 20))))  # incompressible
    (folder / "tensorboard").mkdir()
    (folder / "tensorboard" / "events").write_text("x")


def test_split_into_parts_and_unpacked_exactly(job, tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    out.mkdir()
    _run(work / "hybrid", 2.5)  # 3 parts of 1 MiB: the hybrid group may take 3 files
    job.pack("2-hybrid", work, out, {}, print)
    parts = sorted(out.iterdir())
    assert [p.name for p in parts] == [f"2-hybrid.tar.gz.part{i}" for i in range(3)]
    assert all(p.stat().st_size <= job.PART for p in parts)
    job.unpack(out, tmp_path / "back")
    back = tmp_path / "back" / "hybrid"
    assert (back / "train_state.pt").read_bytes() == (work / "hybrid" / "train_state.pt").read_bytes()
    assert (back / "model.json").read_text() == '{"iteration": 3}'
    assert not (back / "tensorboard").exists()


def test_too_large_a_group_travels_without_its_state(job, tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    out.mkdir()
    _run(work / "ca", 1.5)  # the ca + selfclassify group may take one file
    job.pack("4-ca-selfclassify", work, out, {}, print)
    job.pack("4-ca-selfclassify", work, out, {}, print)  # rewritten after the next stage: still one file
    assert [p.name for p in out.iterdir()] == ["4-ca-selfclassify.tar.gz"]
    job.unpack(out, tmp_path / "back")
    assert (tmp_path / "back" / "ca" / "model.json").is_file()
    assert not (tmp_path / "back" / "ca" / "train_state.pt").exists()


def test_a_stage_that_keeps_no_state_never_packs_it(job, tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    out.mkdir()
    _run(work / "metanca", 0.01)
    job.pack("1-setup-metanca", work, out, {"metanca": False}, print)
    job.unpack(out, tmp_path / "back")
    assert sorted(p.name for p in (tmp_path / "back" / "metanca").iterdir()) == ["model.json"]


def test_groups_fit_the_returned_file_limit(job):
    assert sum(most for _, most in job.GROUPS.values()) + 1 <= 8  # + the log
    stages = {s.name for s in job.stages(smoke=True)}
    assert stages | {"setup", "studies"} == {n for names, _ in job.GROUPS.values() for n in names}


def _started(folder: Path, command: str) -> None:
    (folder / "model.json").write_text(json.dumps({"commands": [{"command": command, "from_iteration": 0}]}))


def test_carry_keeps_what_resuming_needs(job, tmp_path):
    work = tmp_path / "work"
    _run(work / "hybrid", 0.1)
    _started(work / "hybrid", "localrules run restore --model hybrid --init-model shipped.safetensors")
    (work / "hybrid" / "model.safetensors").write_bytes(b"w")
    _run(work / "cnn-ae", 0.1)  # a run of the earlier from-scratch recipe: not carried
    _started(work / "cnn-ae", "localrules run restore --model cnn-ae --iterations 40000")
    _run(work / "metanca", 0.1)
    (work / "metanca" / "model.safetensors").write_bytes(b"rule")
    (work / "ca").mkdir()  # a run without a state: starts afresh next time
    (work / "ca" / "model.json").write_text("{}")
    job.carry(work, tmp_path / "carry")
    files = sorted(str(f.relative_to(tmp_path / "carry")) for f in (tmp_path / "carry").rglob("*") if f.is_file())
    assert files == ["hybrid/model.json", "hybrid/train_state.pt", "metanca/model.json", "metanca/model.safetensors"]


def test_metanca_stage_continues_only_a_data_conditioned_rule(job, tmp_path, monkeypatch):
    """The stage meta-trains the data-conditioned rule: it continues the last slot's rule only
    when that rule is data-conditioned, else it starts from the shipped metanca-mnist-dc."""
    shipped = job.ROOT / "localrules" / "pretrained" / "metanca-mnist-dc.safetensors"
    for conditioned in (True, False):
        work = tmp_path / str(conditioned)
        (work / "metanca").mkdir(parents=True)
        (work / "metanca" / "model.safetensors").write_bytes(b"rule")
        (work / "metanca" / "model.json").write_text(f'{{"task": {{"data_conditioned": {str(conditioned).lower()}}}}}')
        calls = []
        monkeypatch.setattr(job, "sh", lambda cmd, log, env, **kw: calls.append(cmd) or 0)
        stage = next(s for s in job.stages(smoke=True) if s.name == "metanca")
        job.train_stage(stage, work, tmp_path, "cpu", job.time.monotonic() + 600, 1.0, print, {})
        start = calls[0][calls[0].index("--init-rule") + 1]
        assert start == str(work / "metanca.prev" / "model.safetensors" if conditioned else shipped)


def test_studies_measure_shipped_rules_and_travel_in_the_setup_group(job):
    names, _ = job.GROUPS["1-setup-metanca"]
    assert "studies" in names
    for name, args in job.studies(smoke=False).items():
        checkpoint = Path(args[args.index("--checkpoint") + 1])
        assert checkpoint.is_file(), name
        assert args[args.index("--samples") + 1] == "100"  # issue 17's protocol


def test_restorers_resume_only_a_fine_tune_of_the_shipped_model(job, tmp_path, monkeypatch):
    """The restore stages fine-tune the shipped models with the pool recipe: an earlier slot's
    fine-tune resumes; a from-scratch run of the earlier recipe is set aside and the stage starts
    from the shipped model."""
    stage = next(s for s in job.stages(smoke=True) if s.name == "hybrid")
    shipped = job.ROOT / "localrules" / "pretrained" / "restore" / "hybrid" / "model.safetensors"
    assert stage.args[stage.args.index("--init-model") + 1] == str(shipped) and shipped.is_file()
    for fine_tune in (True, False):
        work = tmp_path / str(fine_tune)
        _run(work / "hybrid", 0.01)
        _started(work / "hybrid", "localrules run restore " + ("--init-model x" if fine_tune else "--iterations 40000"))
        calls = []
        monkeypatch.setattr(job, "sh", lambda cmd, log, env, **kw: calls.append(cmd) or 0)
        job.train_stage(stage, work, tmp_path, "cpu", job.time.monotonic() + 600, 1.0, print, {})
        assert ("--resume" in calls[0]) == fine_tune
        assert (work / "hybrid.prev").is_dir() == (not fine_tune)


def test_lattice_restorers_train_on_long_runs(job):
    """The hybrid and the CA alone draw up to 56 CA steps per batch (5x+ their 10 evaluation
    steps); the CNN auto-encoder, ahead in batches, is not trained by the job."""
    args = {s.name: s.args for s in job.stages(smoke=True)}
    for name in ("hybrid", "ca"):
        assert args[name][args[name].index("--steps-max") + 1] == "56"
    assert "cnn-ae" not in args
