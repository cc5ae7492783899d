"""scripts/gpu-job: the runner (scripts/gpu_runner.py) and the plan (scripts/gpu_plan.py).

The runner's packing (every returned file within the size limit, each group within its file
share, unpacking gives back exactly what was packed), carrying, resuming, the stages run in their
groups with their shares, and the plan's checks; the plan's stages and commands. CI also runs the
whole job on the CPU: `scripts/gpu-job --smoke`."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"


@pytest.fixture
def job(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import gpu_runner

    monkeypatch.setattr(gpu_runner, "PART", 1 << 20)  # 1 MiB parts instead of 15
    return gpu_runner


@pytest.fixture
def plan_module(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import gpu_plan

    return gpu_plan


@pytest.fixture
def plan(job, plan_module):
    return job.build_plan(plan_module, smoke=True)


def _run(folder: Path, state_mib: float) -> None:
    folder.mkdir(parents=True)
    (folder / "model.json").write_text('{"iteration": 3}')
    (folder / "train_state.pt").write_bytes(os.urandom(int(state_mib * (1 << 20))))  # incompressible
    (folder / "tensorboard").mkdir()
    (folder / "tensorboard" / "events").write_text("x")


def _toy(**changes) -> SimpleNamespace:
    """A small plan module: two stages in two archives."""
    tables = dict(
        STAGES=[{"name": "a", "archive": "1-a", "share": 0.6, "args": ["run", "x", "{size}", "--k", "{root}/f"],
                 "size": {"full": ["--iterations", "100"], "smoke": ["--iterations", "2"]}},
                {"name": "b", "archive": "2-b", "share": 0.4, "args": ["run", "y"], "keep_state": False,
                 "continue": "rule", "rule_default": "{root}/rule.safetensors",
                 "size": {"full": ["--n", "9"], "smoke": ["--n", "1"]}}],
        STUDIES=[{"name": "s", "share": 0.5, "args": ["study", "z"], "size": {"full": [], "smoke": ["--tiny"]}}],
        ARCHIVES={"1-a": {"files": 1}, "2-b": {"files": 2}}, SETUP_ARCHIVE="1-a", BENCHES=["x"])
    tables.update(changes)
    return SimpleNamespace(**tables)


# ---- the runner: packing, unpacking, carrying -------------------------------------------------


def test_split_into_parts_and_unpacked_exactly(job, plan, tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    out.mkdir()
    _run(work / "hybrid-mk", 2.5)  # 3 parts of 1 MiB: the hybrid group may take 3 files
    job.pack(plan, "2-hybrid", work, out, print)
    parts = sorted(out.iterdir())
    assert [p.name for p in parts] == [f"2-hybrid.tar.gz.part{i}" for i in range(3)]
    assert all(p.stat().st_size <= job.PART for p in parts)
    job.unpack(out, tmp_path / "back")
    back = tmp_path / "back" / "hybrid-mk"
    assert (back / "train_state.pt").read_bytes() == (work / "hybrid-mk" / "train_state.pt").read_bytes()
    assert (back / "model.json").read_text() == '{"iteration": 3}'
    assert not (back / "tensorboard").exists()


def test_too_large_a_group_travels_without_its_state(job, plan, tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    out.mkdir()
    _run(work / "unet", 3.5)  # the unet + cnn-ae group may take 3 files of 1 MiB
    job.pack(plan, "3-baselines", work, out, print)
    job.pack(plan, "3-baselines", work, out, print)  # rewritten after the next stage: still one file
    assert [p.name for p in out.iterdir()] == ["3-baselines.tar.gz"]
    job.unpack(out, tmp_path / "back")
    assert (tmp_path / "back" / "unet" / "model.json").is_file()
    assert not (tmp_path / "back" / "unet" / "train_state.pt").exists()


def test_a_stage_that_keeps_no_state_never_packs_it(job, plan, tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    out.mkdir()
    _run(work / "metanca-depth", 0.01)
    job.pack(plan, "1-setup-metanca", work, out, print)
    job.unpack(out, tmp_path / "back")
    assert sorted(p.name for p in (tmp_path / "back" / "metanca-depth").iterdir()) == ["model.json"]


def test_unpack_finds_the_archives_by_name(job, tmp_path):
    """An archive of an older plan unpacks too; a half-written one (.NAME.tar.gz) does not."""
    work, out = tmp_path / "work", tmp_path / "out"
    out.mkdir()
    old = job.build_plan(_toy(), smoke=True)
    _run(work / "a", 0.01)
    job.pack(old, "1-a", work, out, print)
    (out / ".2-b.tar.gz").write_bytes(b"cut off while packing")
    (out / "gpu-job.log").write_text("log")
    job.unpack(out, tmp_path / "back")
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["a"]


def _started(folder: Path, command: str) -> None:
    (folder / "model.json").write_text(json.dumps({"commands": [{"command": command, "from_iteration": 0}]}))


def test_carry_keeps_what_resuming_needs(job, plan_module, tmp_path):
    work = tmp_path / "work"
    _run(work / "hybrid-mk", 0.1)
    _started(work / "hybrid-mk", "localrules run restore --model hybrid --mask-channel --keep-visible")
    (work / "hybrid-mk" / "model.safetensors").write_bytes(b"w")  # the state holds the weights
    _run(work / "hybrid", 0.1)  # a run of an earlier slot's plan: not a stage of this one, not carried
    _run(work / "metanca-depth", 0.1)
    (work / "metanca-depth" / "model.safetensors").write_bytes(b"rule")
    (work / "unet").mkdir()  # a run without a state: starts afresh next time
    (work / "unet" / "model.json").write_text("{}")
    (work / "setup").mkdir()
    (work / "setup" / "bench-metanca.json").write_text("{}")
    (work / "studies").mkdir()
    (work / "studies" / "heatmap-metanca-mnist.json").write_text("{}")
    job.carry(job.build_plan(plan_module, smoke=False), work, tmp_path / "carry")
    files = sorted(str(f.relative_to(tmp_path / "carry")) for f in (tmp_path / "carry").rglob("*") if f.is_file())
    assert files == ["hybrid-mk/model.json", "hybrid-mk/train_state.pt", "metanca-depth/model.json",
                     "metanca-depth/model.safetensors", "setup/bench-metanca.json", "studies/heatmap-metanca-mnist.json"]


def test_the_script_unpacks_and_carries_on_its_own(job, plan, tmp_path):
    """`scripts/gpu-job --unpack` / `--carry` (standard library only: no project import)."""
    work, out = tmp_path / "work", tmp_path / "out"
    out.mkdir()
    _run(work / "hybrid-mk", 0.01)
    _started(work / "hybrid-mk", "localrules run restore --model hybrid --mask-channel")
    job.pack(plan, "2-hybrid", work, out, print)
    script = [sys.executable, str(SCRIPTS / "gpu-job")]
    subprocess.run([*script, "--unpack", str(out), "--work", str(tmp_path / "back")], check=True, cwd=tmp_path)
    subprocess.run([*script, "--carry", str(tmp_path / "carry"), "--work", str(tmp_path / "back")], check=True,
                   cwd=tmp_path)
    assert (tmp_path / "carry" / "hybrid-mk" / "train_state.pt").read_bytes() == (work / "hybrid-mk" / "train_state.pt").read_bytes()


# ---- the runner: commands and stages ----------------------------------------------------------


def test_sh_streams_tagged_output_and_stops_a_command_past_its_time(job, tmp_path):
    lines = []
    rc = job.sh([sys.executable, "-c", "import os; print('in', os.getcwd())"], lines.append, dict(os.environ),
                tag="[t] ", cwd=tmp_path)
    assert rc == 0 and f"[t] in {tmp_path}" in "\n".join(lines)
    t0 = time.monotonic()
    rc = job.sh([sys.executable, "-c", "import time; time.sleep(60)"], lines.append, dict(os.environ), timeout=1)
    assert rc != 0 and time.monotonic() - t0 < 30 and any("SIGTERM" in line for line in lines)


def test_python_children_never_see_the_checkout_on_their_path(job, plan, tmp_path, monkeypatch):
    """The checkout's localrules/ lacks tasks/ and cli/: a child started in ROOT would import it
    ahead of the installed package. `python -P` kept it off sys.path on 3.11+; the runner starts
    its Python children outside the source tree instead, which works on 3.10 too."""
    cwd = job.python_cwd(tmp_path / "work")
    first = subprocess.run([sys.executable, "-c", "import os, sys; print(os.path.abspath(sys.path[0] or '.'))"],
                           cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(first) == cwd and not (cwd / "localrules").exists()
    calls = []
    monkeypatch.setattr(job, "sh", lambda cmd, log, env, **kw: calls.append((cmd, kw.get("cwd"))) or 0)
    job.train_stage(plan.stages[1], tmp_path / "work", tmp_path, "cpu", time.monotonic() + 600, 1.0, print, {})
    job.run_study("s", ["study", "z"], tmp_path / "work", tmp_path, "cpu", time.monotonic() + 600, print, {})
    for cmd, where in calls:
        assert cmd[:3] == [sys.executable, "-m", "localrules"] and "-P" not in cmd
        assert where == cwd


def _in_process(job, plan, tmp_path, monkeypatch, results=None, took=()):
    """job.run_in_process with a recording run_command on a clock that starts at 0 and that the
    k-th run advances by took[k - 1] s: -> (ran: [(args, limit)], packed groups, log lines)."""
    ran, packed, lines, now = [], [], [], [0.0]
    monkeypatch.setattr(job, "pack", lambda plan, group, work, out, log: packed.append(group))
    monkeypatch.setattr(job, "time", SimpleNamespace(monotonic=lambda: now[0]))

    def run_command(args, limit):
        ran.append((args, limit))
        now[0] += dict(enumerate(took, 1)).get(len(ran), 0)
        return (results or {}).get(len(ran), 0)

    job.run_in_process(plan, tmp_path, tmp_path, tmp_path, "cpu", 1000 + job.RESERVE_S, lines.append, run_command)
    return ran, packed, lines


def test_one_process_runs_the_stages_then_the_studies_in_renormalised_shares(job, tmp_path, monkeypatch):
    """Each run gets its share of the time left when it starts, over the shares still to run; a
    training as --minutes (stopped 60 s past it), a study as its limit. Catches: shares not
    renormalised (the last run would get a fraction of what is left), a study never run."""
    plan = job.build_plan(_toy(), smoke=True)  # shares: a 0.6, b 0.4, study s 0.5
    ran, packed, _ = _in_process(job, plan, tmp_path, monkeypatch, took=(100, 50))
    minutes = [float(a[a.index("--minutes") + 1]) if "--minutes" in a else None for a, _ in ran]
    over = job.INPROCESS_OVERHEAD_S
    assert minutes[0] == pytest.approx((0.6 / 1.5 * 1000 - over) / 60, abs=1e-3)
    assert minutes[1] == pytest.approx((0.4 / 0.9 * 900 - over) / 60, abs=1e-3)
    assert minutes[2] is None and ran[2][1] == pytest.approx(850 - over)  # the study: stopped at its share
    assert ran[0][1] == pytest.approx(0.6 / 1.5 * 1000 - over + job.GRACE_S)
    assert ran[2][0][:2] == ["study", "z"] and ran[2][0][ran[2][0].index("--json") + 1].endswith("studies/s.json")
    assert packed == ["1-a", "2-b", "1-a"]


def test_a_run_that_fails_does_not_stop_the_others(job, plan, tmp_path, monkeypatch):
    ran, packed, lines = _in_process(job, plan, tmp_path, monkeypatch, results={1: 1, 2: 124})
    assert [a[a.index("--out") + 1] for a, _ in ran] == [str(tmp_path / st.name) for st in plan.stages]
    assert packed == [st.archive for st in plan.stages]
    assert "== metanca-depth: exit code 1 after 0 s" in lines and "== hybrid-mk: exit code 124 after 0 s" in lines


def test_an_interrupt_packs_the_run_and_stops_the_job(job, plan, tmp_path, monkeypatch):
    """SIGTERM from the runner's parent (the job's time is up) reaches the job's process as a
    KeyboardInterrupt: the interrupted run is packed, no other starts."""
    ran, packed = [], []
    monkeypatch.setattr(job, "pack", lambda plan, group, work, out, log: packed.append(group))

    def run_command(args, limit):
        ran.append(args)
        if len(ran) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        job.run_in_process(plan, tmp_path, tmp_path, tmp_path, "cpu", time.monotonic() + 600, print, run_command)
    assert len(ran) == 2 and packed == ["1-setup-metanca", "2-hybrid"]


def test_utilisation_line(job, tmp_path):
    """The log line of a run's utilisation.json: what was measured, and why the rest was not."""
    assert job.utilisation_line(tmp_path) is None
    (tmp_path / "utilisation.json").write_text(json.dumps({
        "iterations_per_s": 20.0, "samples_per_s": 320.0, "flops_per_iter": 2.5e10, "flops_per_s": 5e11,
        "peak_fraction_fp32": 5e11 / 67e12, "peak_fraction_bf16": 5e11 / 989.5e12, "card": "H200 SXM",
        "gpu_busy": 0.25, "gpu_busy_iterations": 10, "missing": {}}))
    assert job.utilisation_line(tmp_path) == ("20 it/s, 320 samples/s, 25 GFLOP/iter, 0.5 TFLOP/s = 0.746 % of the "
                                              "H200 SXM's dense fp32 peak (0.0505 % of bf16), GPU busy 25 % "
                                              "(profiler, 10 iterations)")
    (tmp_path / "utilisation.json").write_text(json.dumps({"iterations_per_s": None, "missing": {"gpu_busy": "a CPU run"}}))
    assert job.utilisation_line(tmp_path) == "? it/s, ? samples/s, ? GFLOP/iter, ? TFLOP/s; not measured: gpu_busy: a CPU run"


def test_processes_every_stage_gets_all_the_time_beside_the_studies(job, tmp_path, monkeypatch):
    plan = job.build_plan(_toy(), smoke=True)
    ran, packed = [], []
    monkeypatch.setattr(job, "train_stage", lambda st, work, data, device, deadline, share, log, env, tag=False:
                        ran.append((st.name, share, tag)))
    monkeypatch.setattr(job, "run_study", lambda name, *a: ran.append((name, None, True)))
    monkeypatch.setattr(job, "pack", lambda plan, group, work, out, log: packed.append(group))
    job.train(plan, tmp_path, tmp_path, tmp_path, "cpu", time.monotonic() + 600, print, {})
    assert sorted(ran, key=str) == sorted([("a", 1.0, True), ("b", 1.0, True), ("s", None, True)], key=str)
    assert sorted(packed) == ["1-a", "1-a", "2-b"]


def test_rule_stage_continues_only_a_matching_rule(job, plan, tmp_path, monkeypatch):
    """The MetaNCA stage meta-trains the depth curriculum's rule (role layer code): it continues the
    last slot's rule only when that rule reads the role code, else it starts from the CPU run's rule
    in resume/metanca-depth. Catches: a stage that starts a role-code curriculum from an index-code rule."""
    start_rule = job.ROOT / "resume" / "metanca-depth" / "model.safetensors"
    stage = next(s for s in plan.stages if s.name == "metanca-depth")
    assert stage.resume == "rule" and Path(stage.rule_default) == start_rule and start_rule.is_file()
    for code in ("role", "index"):
        work = tmp_path / code
        (work / "metanca-depth").mkdir(parents=True)
        (work / "metanca-depth" / "model.safetensors").write_bytes(b"rule")
        (work / "metanca-depth" / "model.json").write_text(f'{{"task": {{"layer_code": "{code}"}}}}')
        calls = []
        monkeypatch.setattr(job, "sh", lambda cmd, log, env, **kw: calls.append(cmd) or 0)
        job.train_stage(stage, work, tmp_path, "cpu", time.monotonic() + 600, 1.0, print, {})
        start = calls[0][calls[0].index("--init-rule") + 1]
        assert start == str(work / "metanca-depth.prev" / "model.safetensors" if code == "role" else start_rule)
        assert "--resume" not in calls[0]


def test_from_scratch_restorers_resume_an_earlier_slots_run(job, plan, tmp_path, monkeypatch):
    """The equal-batch restorers train from scratch: an earlier slot's run with a state resumes
    (same batches, pool and optimizer); a folder without a state is set aside and starts afresh."""
    stage = next(s for s in plan.stages if s.name == "hybrid-mk")
    assert "--init-model" not in stage.args and {"--mask-channel", "--keep-visible"} <= set(stage.args)
    for has_state in (True, False):
        work = tmp_path / str(has_state)
        if has_state:
            _run(work / "hybrid-mk", 0.01)
        else:
            (work / "hybrid-mk").mkdir(parents=True)
        _started(work / "hybrid-mk", "localrules run restore --model hybrid --mask-channel --keep-visible")
        calls = []
        monkeypatch.setattr(job, "sh", lambda cmd, log, env, **kw: calls.append(cmd) or 0)
        job.train_stage(stage, work, tmp_path, "cpu", time.monotonic() + 600, 1.0, print, {})
        assert ("--resume" in calls[0]) == has_state
        assert (work / "hybrid-mk.prev").is_dir() == (not has_state)
        assert "--init-rule" not in calls[0]


def test_a_stage_without_time_is_skipped_and_left_in_place(job, plan, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(job, "sh", lambda cmd, log, env, **kw: calls.append(cmd) or 0)
    (tmp_path / "metanca-depth").mkdir()
    job.train_stage(plan.stages[0], tmp_path, tmp_path, "cpu", time.monotonic() + 30, 1.0, print, {})
    assert calls == [] and (tmp_path / "metanca-depth").is_dir() and not (tmp_path / "metanca-depth.prev").exists()


# ---- reading a plan: groups derived, checks ---------------------------------------------------


def test_archive_groups_derive_from_the_stages(job):
    plan = job.build_plan(_toy(), smoke=True)
    assert plan.archives == {"1-a": (("setup", "a", "studies"), 1), "2-b": (("b",), 2)}
    assert plan.keep == {"a": True, "b": False}
    assert plan.stages[0].args == ["run", "x", "--iterations", "2", "--k", f"{job.ROOT}/f"]
    assert plan.stages[1].args == ["run", "y", "--n", "1"]  # "{size}" absent: appended
    assert plan.stages[1].rule_default == f"{job.ROOT}/rule.safetensors"
    assert plan.studies == {"s": ["study", "z", "--tiny"]} and plan.study_shares == {"s": 0.5}
    assert job.build_plan(_toy(), smoke=False).stages[0].args[2:4] == ["--iterations", "100"]


@pytest.mark.parametrize("changes, message", [
    ({"ARCHIVES": {"1-a": {"files": 1}}}, "ARCHIVES lacks"),
    ({"ARCHIVES": {"1-a": {"files": 1}, "2-b": {"files": 1}, "3-c": {"files": 1}}}, "no stage goes"),
    ({"ARCHIVES": {"1-a": {"files": 4}, "2-b": {"files": 4}}}, "more than the 7 files"),
    ({"SETUP_ARCHIVE": "9-x"}, "ARCHIVES lacks"),
    ({"STUDIES": [{"name": "s", "args": ["study", "z"], "size": {"full": [], "smoke": []}}]}, "every study needs a share"),
])
def test_a_plan_that_does_not_fit_is_refused(job, changes, message):
    with pytest.raises(ValueError, match=message):
        job.build_plan(_toy(**changes), smoke=True)


def test_a_stage_must_say_how_it_continues(job):
    stages = _toy().STAGES
    with pytest.raises(ValueError, match="continue"):
        job.build_plan(_toy(STAGES=[{**stages[0], "continue": "maybe"}, stages[1]]), smoke=True)
    with pytest.raises(ValueError, match="keep_state False"):
        job.build_plan(_toy(STAGES=[stages[0], {**stages[1], "keep_state": True}]), smoke=True)
    with pytest.raises(ValueError, match="unique"):
        job.build_plan(_toy(STAGES=[stages[0], {**stages[0], "archive": "2-b"}]), smoke=True)


def test_another_plan_file_runs_through_the_same_runner(job, tmp_path):
    plan_file = tmp_path / "plan.py"
    plan_file.write_text("STAGES = [{'name': 'a', 'archive': '1-a', 'share': 1, 'args': ['run', 'x'],\n"
                         "           'size': {'full': [], 'smoke': []}}]\n"
                         "ARCHIVES = {'1-a': {'files': 1}}\nSETUP_ARCHIVE = '1-a'\n")
    _run(tmp_path / "work" / "a", 0.01)
    assert job.main(argv=["--plan", str(plan_file), "--work", str(tmp_path / "work"),
                          "--carry", str(tmp_path / "carry")]) == 0
    assert (tmp_path / "carry" / "a" / "train_state.pt").is_file()


# ---- the plan --------------------------------------------------------------------------------


def test_the_plan_fits_the_returned_file_limit(plan):
    assert sum(most for _, most in plan.archives.values()) + 1 <= 8  # + the log
    assert {n for names, _ in plan.archives.values() for n in names} == ({s.name for s in plan.stages} | {"setup"}
                                                                          | ({"studies"} if plan.studies else set()))
    assert [s.name for s in plan.stages] == ["metanca-depth", "hybrid-mk", "unet", "cnn-ae", "selfclassify-runs",
                                               "metanca-cnn"]
    assert abs(sum(s.share for s in plan.stages) - 1) < 1e-9


def test_smoke_keeps_the_commands_and_shrinks_the_sizes(job, plan_module):
    full, smoke = (job.build_plan(plan_module, smoke=s) for s in (False, True))
    for name, d in [(s["name"], s) for s in plan_module.STAGES] + [(s["name"], s) for s in plan_module.STUDIES]:
        f = next((s.args for s in full.stages if s.name == name), None) or full.studies[name]
        m = next((s.args for s in smoke.stages if s.name == name), None) or smoke.studies[name]
        i = d["args"].index("{size}")
        assert f[:i] == m[:i] and f[i + len(d["size"]["full"]):] == m[i + len(d["size"]["smoke"]):], name
        assert not any("{" in a for a in f + m), name
        for a in f:  # every checkpoint a command names is shipped
            if a.startswith(str(job.ROOT)):
                assert Path(a).is_file(), a
    for s in smoke.stages:
        assert s.args[s.args.index("--iterations") + 1] == "2"
    assert all(s.why for s in full.stages)


def test_restorers_compare_at_equal_batches(plan):
    """Issue 39's comparison: every restorer stage trains from scratch on the same number of pool
    batches with the same recipe; only the model, its flags and its learning rate (each model's best
    of the CPU screening: the hybrid 3e-3, the U-Net 1e-3, docs/restore.md) differ. Catches: a stage
    with a different batch count or CA-steps range, or one started from a checkpoint."""
    restorers = [s.args for s in plan.stages if s.args[:2] == ["run", "restore"]]
    assert len(restorers) == 3
    models = sorted(a[a.index("--model") + 1] for a in restorers)
    assert models == ["cnn-ae", "hybrid", "unet"]
    for a in restorers:
        assert a[a.index("--iterations") + 1] == restorers[0][restorers[0].index("--iterations") + 1]
        assert not {"--init-model", "--steps-min", "--steps-max"} & set(a)


def test_a_bench_is_measured_again_until_it_has_compiled_rows(job, tmp_path):
    # catches: an earlier slot's eager-only bench JSON keeping issue 40's compiled rows from ever
    # being measured on a GPU
    setup = tmp_path / job.SETUP
    setup.mkdir(parents=True)
    log = lambda line: None  # noqa: E731
    assert job.bench_due(tmp_path, "restore", False, log)  # nothing measured yet
    (setup / "bench-restore.json").write_text(json.dumps({"agreement": {"ok": True}}))
    assert job.bench_due(tmp_path, "restore", False, log)  # eager rows only
    (setup / "bench-restore.json").write_text(json.dumps({"agreement": {"ok": True}, "agreement_compiled": {"ok": True}}))
    assert not job.bench_due(tmp_path, "restore", False, log)
    assert job.bench_due(tmp_path, "restore", True, log)  # --smoke always runs it
