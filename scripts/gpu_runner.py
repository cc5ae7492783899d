"""The reusable part of `scripts/gpu-job`: run one GPU slot blind from a plan (scripts/gpu_plan.py).

Nothing here is specific to a slot: the stages, their shares, commands and archive groups come from
the plan (see its docstring for the fields). This module needs only the standard library of
Python >= 3.10, so that it runs before the project is installed.

The job, all logged to OUT/gpu-job.log:
  1. install the project offline (`pip install --no-deps --no-build-isolation --no-index -e .`;
     if the machine's build backend refuses, a staged copy of the package goes on PYTHONPATH);
     nvidia-smi;
then ONE Python process (this script again, with the hidden --in-process DEADLINE) does the rest,
so Python, torch, the project and the CUDA context start once, not once per command (the slots
measured 10-15 s per command, about 2 of 8.5 minutes):
  2. Python, torch, CUDA and torch-geometric versions;
  3. the device tests (pytest -m device, LOCALRULES_TEST_DEVICE=cuda) in their own process, started
     first so that they run while the job's process imports; the job stops with a clear message
     if they fail;
  4. `localrules bench SYSTEM --device cuda --json ...` for each of the plan's BENCHES;
  5. the plan's STAGES, then its STUDIES, one after another, each `localrules ARGS` called in the
     process (localrules.cli.inprocess: the typer app with standalone_mode=False) with its share
     of the time left when it starts (renormalised over the runs still to run, so time a run
     leaves unused goes to the next); a training gets it as `--minutes` and is stopped (it writes
     its checkpoint) 60 s past it, a study is stopped at it (it resumes from its JSON). A run that
     crashes is logged with its traceback and the next one starts. After each run the log gives
     its utilisation (localrules.train.utilisation, on through LOCALRULES_UTILISATION): iterations/s,
     samples/s, FLOPs per iteration and FLOP/s as a fraction of the card's dense fp32 and bf16
     peak, and the fraction of the time the GPU was busy.

Why one after another and not interleaved: threads in one process share the global random
generators (the runs would no longer be reproducible, nor resume exactly) and the GIL, which
serialises the Python half of every launch-bound step (where interleaving would pay); CUDA
streams need threads or one loop over all runs. (Not measured: no GPU slot came while this was
built.) One run at a time keeps each run exact, its crash its own
and its GPU-busy figure its own. Where a run alone leaves the GPU idle, the remedy is more work per
launch: compiled and graph-captured steps, and several runs batched into one model
(`localrules run mnist-selfclassify --runs N`). `--processes` keeps the job as it was before
(every run its own process, all at once, each with all the time, studies beside them): the third
slot measured each run there at 0.4-0.9x its speed alone, so for runs that leave the GPU idle it
trains more per slot; the utilisation lines of both modes compare them.

What comes back: OUT holds at most 8 files of at most 16 MiB: the log and the plan's archive
groups, each rewritten after its stage, so a job cut off at its time limit still returns what
finished. A group larger than its share of files is packed without its train_state.pt (the log
says so); a stage with keep_state False never packs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
PART = 15 * MIB  # one returned file: at most 16 MiB
MAX_FILES = 8  # files OUT may hold: the log and the archives' parts
RESERVE_S = 25  # kept back at the end for packing
BENCH_S = 120  # the most one bench may take (a bench cut off keeps the rows it measured: its JSON is written as it goes)
OVERHEAD_S = 20  # --processes: start-up of one training command (imports, data, CUDA context)
INPROCESS_OVERHEAD_S = 5  # one process: a run's set-up (data, model) before its --minutes start
GRACE_S = 60  # one process: a training past its --minutes by this much is stopped (it checkpoints)
STOPPED = 3  # the in-process job's exit code when the device tests failed
UTILISATION = "LOCALRULES_UTILISATION"  # turns on localrules.train.utilisation in every training
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
DEVICE_TESTS = ("tests/test_device.py", "tests/core/test_topology.py")
SETUP, STUDIES = "setup", "studies"  # the run folders of steps 1-4 and of the studies


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass
class Stage:
    name: str  # also the run folder under the work dir
    share: float  # of the time left when the stage starts, renormalised over the runs still to run
    args: list[str]
    keep_state: bool = True  # pack train_state.pt for an exact resume in the next slot
    archive: str = ""
    resume: str = "state"  # the plan's "continue": "state" or "rule"
    rule_if: dict = field(default_factory=dict)
    rule_default: str = ""
    why: str = ""


@dataclass
class Plan:
    stages: list[Stage]
    studies: dict[str, list[str]]  # name -> command
    study_shares: dict[str, float]  # name -> share, as a stage's (after the stages)
    archives: dict[str, tuple[tuple[str, ...], int]]  # name -> (run folders packed into it, most files)
    benches: list[str]

    @property
    def keep(self) -> dict[str, bool]:
        """Which runs' train_state.pt may travel."""
        return {st.name: st.keep_state for st in self.stages}

    def archive_of(self, folder: str) -> str:
        return next(a for a, (folders, _) in self.archives.items() if folder in folders)


def _expand(args: list[str], size: dict, smoke: bool) -> list[str]:
    """``args`` with "{root}" filled in and the element "{size}" replaced by the mode's sizes."""
    sized = [str(a) for a in size["smoke" if smoke else "full"]]
    args = [str(a) for a in args]
    if "{size}" not in args:
        args.append("{size}")
    out = []
    for a in args:
        out += sized if a == "{size}" else [a.replace("{root}", str(ROOT))]
    return out


def build_plan(plan: ModuleType, smoke: bool) -> Plan:
    """Read a plan module's tables (see scripts/gpu_plan.py) into stages and archive groups,
    checking that they fit: each archive's folders derive from the stages that name it."""
    stages = []
    for d in plan.STAGES:
        st = Stage(name=d["name"], share=float(d["share"]), args=_expand(d["args"], d["size"], smoke),
                   keep_state=bool(d.get("keep_state", True)), archive=d["archive"],
                   resume=d.get("continue", "state"), rule_if=dict(d.get("rule_if", {})),
                   rule_default=d.get("rule_default", "").replace("{root}", str(ROOT)), why=d.get("why", ""))
        if st.resume not in ("state", "rule"):
            raise ValueError(f"plan: stage {st.name}: continue must be 'state' or 'rule', not {st.resume!r}")
        if st.resume == "rule" and (st.keep_state or not st.rule_default):
            raise ValueError(f"plan: stage {st.name}: continue 'rule' needs keep_state False and rule_default")
        if st.share <= 0:
            raise ValueError(f"plan: stage {st.name}: share must be > 0")
        stages.append(st)
    studies = {d["name"]: _expand(d["args"], d["size"], smoke) for d in getattr(plan, "STUDIES", [])}
    study_shares = {d["name"]: float(d.get("share", 0)) for d in getattr(plan, "STUDIES", [])}
    if any(v <= 0 for v in study_shares.values()):
        raise ValueError(f"plan: every study needs a share > 0: {study_shares}")
    names = [st.name for st in stages]
    if len(set(names)) != len(names) or {SETUP, STUDIES} & set(names):
        raise ValueError(f"plan: stage names must be unique and not {SETUP!r} or {STUDIES!r}: {names}")
    folders: dict[str, list[str]] = {a: [] for a in plan.ARCHIVES}
    for name, archive in [(SETUP, plan.SETUP_ARCHIVE), *[(st.name, st.archive) for st in stages],
                          *([(STUDIES, plan.SETUP_ARCHIVE)] if studies else [])]:
        if archive not in folders:
            raise ValueError(f"plan: {name} goes into archive {archive!r}, which ARCHIVES lacks")
        folders[archive].append(name)
    archives = {a: (tuple(f), int(plan.ARCHIVES[a]["files"])) for a, f in folders.items()}
    unused = [a for a, (f, _) in archives.items() if not f]
    if unused:
        raise ValueError(f"plan: no stage goes into archive(s) {', '.join(unused)}")
    if sum(most for _, most in archives.values()) + 1 > MAX_FILES:
        raise ValueError(f"plan: the archives take more than the {MAX_FILES - 1} files beside the log")
    return Plan(stages, studies, study_shares, archives, list(getattr(plan, "BENCHES", [])))


def load_plan_file(path: Path) -> ModuleType:
    """A plan module from a file (``--plan``); the default is scripts/gpu_plan.py."""
    spec = importlib.util.spec_from_file_location("gpu_plan_file", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------------------------
# running commands


class Log:
    """Every line goes to stdout and to OUT/gpu-job.log at once (a cut-off job keeps its log)."""

    def __init__(self, path: Path):
        self.file = path.open("a", buffering=1)
        self.t0 = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, text: str) -> None:
        with self.lock:
            for line in text.splitlines() or [""]:
                line = f"[{time.monotonic() - self.t0:6.0f}s] {line}"
                print(line, flush=True)
                self.file.write(line + "\n")


def python_cwd(work: Path) -> Path:
    """The folder Python children run in: an empty one in the work folder, outside the source tree.

    The checkout's localrules/ folder is not the package: its tasks/ and cli/ subpackages live in
    ROOT/tasks and ROOT/cli (pyproject's package-dir). For `python -m` and `python -c` the first
    entry of sys.path is the current folder, so a child started in ROOT would import that
    incomplete folder ahead of the installed (or staged) package. The job used to start its
    children with `python -P` (Python >= 3.11: no such entry) in ROOT; starting them here does the
    same on every Python, and every path they are given is absolute."""
    folder = work / ".python-cwd"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sh(cmd: list[str], log: Callable, env: dict, timeout: float | None = None, tag: str = "",
       cwd: Path = ROOT) -> int:
    """Run ``cmd`` in ``cwd``, streaming its output into the log (each line prefixed with ``tag``).
    Past ``timeout`` it gets SIGTERM (a training writes its checkpoint then), 30 s later SIGKILL.
    Returns the exit code."""
    log = (lambda text, log=log: log("\n".join(f"{tag}{line}" for line in text.splitlines()))) if tag else log
    log("$ " + shlex.join(cmd))
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, errors="replace")
    reader = threading.Thread(target=lambda: [log(line.rstrip()) for line in p.stdout], daemon=True)
    reader.start()
    try:
        rc = p.wait(timeout=None if timeout is None else max(timeout, 1.0))
    except subprocess.TimeoutExpired:
        log(f"still running after {timeout:.0f} s: SIGTERM")
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
    reader.join(timeout=10)
    log(f"exit code {rc}")
    return rc


def install(work: Path, log: Callable, env: dict) -> dict:
    """Make ``python -m localrules`` work without a package index; returns the environment to use."""
    # the package's layout, without importing torch (the job's process imports the rest)
    check = [sys.executable, "-c", "import importlib.util as u; assert u.find_spec('localrules.tasks.metanca') "
             "and u.find_spec('localrules.cli.inprocess')"]
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
           "--no-index", "-e", str(ROOT)]
    if sh(pip, log, env) == 0 and sh(check, log, env, cwd=python_cwd(work)) == 0:
        return env
    log("pip could not install the project here; using a staged copy on PYTHONPATH instead")
    staged = work / "staged"
    shutil.rmtree(staged, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "localrules", staged / "localrules", ignore=ignore)
    shutil.copytree(ROOT / "tasks", staged / "localrules" / "tasks", ignore=ignore)
    shutil.copytree(ROOT / "cli", staged / "localrules" / "cli", ignore=ignore)
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(staged), env.get("PYTHONPATH")]))}
    if sh(check, log, env, cwd=python_cwd(work)) != 0:
        raise SystemExit("gpu-job: the project imports neither installed nor staged; see the log")
    return env


ENV_REPORT = """
import sys, torch
print("python", sys.version.split()[0])
print("torch", torch.__version__, "cuda", torch.version.cuda, "cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
for name in ("torch_geometric", "numpy", "sklearn", "typer", "safetensors", "setuptools", "pip"):
    try:
        print(name, __import__(name).__version__)
    except Exception as e:
        print(name, "missing:", type(e).__name__)
"""


# ---------------------------------------------------------------------------------------------
# what travels: pack, unpack, carry


def pack(plan: Plan, group: str, work: Path, out: Path, log: Callable) -> None:
    """Write OUT/GROUP.tar.gz (split into 15 MiB parts if larger) from the group's run folders."""
    names, most = plan.archives[group]
    keep_state = plan.keep
    folders = [work / n for n in names if (work / n).is_dir()]
    if not folders:
        return
    tmp = out / f".{group}.tar.gz"

    def write(with_state: bool) -> int:
        def keep(info: tarfile.TarInfo):
            parts = Path(info.name).parts
            if "tensorboard" in parts:
                return None
            if parts[-1] == "train_state.pt" and not (with_state and keep_state.get(parts[0], True)):
                return None
            return info

        with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
            for f in folders:
                tar.add(f, arcname=f.name, filter=keep)
        return tmp.stat().st_size

    size = write(True)
    if size > most * PART:
        log(f"{group}: {size / MIB:.1f} MiB exceeds its {most} file(s); packed without train_state.pt "
            f"(the next slot cannot resume it exactly)")
        size = write(False)
    for old in out.glob(f"{group}.tar.gz*"):
        old.unlink()
    if size <= PART:
        tmp.rename(out / f"{group}.tar.gz")
    else:
        with tmp.open("rb") as src:
            for i in range(-(-size // PART)):
                (out / f"{group}.tar.gz.part{i}").write_bytes(src.read(PART))
        tmp.unlink()
    log(f"packed {group}: {size / MIB:.1f} MiB")


def unpack(src: Path, work: Path) -> None:
    """Reassemble each archive in ``src`` (parts in order) and extract it into ``work``. The
    archives are found by name (GROUP.tar.gz or GROUP.tar.gz.partN), so a slot run with an older
    plan unpacks too."""
    work.mkdir(parents=True, exist_ok=True)
    groups = sorted({p.name.split(".tar.gz")[0] for p in src.glob("*.tar.gz*")
                     if not p.name.startswith(".") and (p.name.endswith(".tar.gz") or ".tar.gz.part" in p.name)})
    for group in groups:
        parts = sorted(src.glob(f"{group}.tar.gz.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
        whole = src / f"{group}.tar.gz"
        tmp = work / f".{group}.tar.gz"
        with tmp.open("wb") as dst:
            for p in parts or [whole]:
                dst.write(p.read_bytes())
        with tarfile.open(tmp) as tar:
            names = {Path(m.name).parts[0] for m in tar.getmembers()}
            for n in names:  # a slot's folder replaces the older one
                shutil.rmtree(work / n, ignore_errors=True)
            tar.extractall(work, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        tmp.unlink()
        print(f"{group}: {', '.join(sorted(names))} -> {work}")


def carry(plan: Plan, work: Path, dest: Path) -> None:
    """Copy into ``dest`` only what the next slot needs from ``work``: each run's train_state.pt
    (it holds the weights), model.json and metrics.jsonl, the rule a "rule" stage starts from, the
    bench JSONs and the studies' JSONs (a bench whose paths agreed is not repeated); the weights
    files stay home (the device's carried paths hold 64 MiB in all)."""
    shutil.rmtree(dest, ignore_errors=True)
    for st in plan.stages:
        run = work / st.name
        keep = ["model.json", "metrics.jsonl", "train_state.pt" if st.keep_state else "model.safetensors"]
        if st.keep_state and not resumable(st, run):
            continue  # nothing to resume: the next slot starts this run afresh
        for name in keep:
            if (run / name).is_file():
                (dest / st.name).mkdir(parents=True, exist_ok=True)
                shutil.copy2(run / name, dest / st.name / name)
    for bench in (work / SETUP).glob("bench-*.json"):  # a bench that agreed is not run again
        (dest / SETUP).mkdir(parents=True, exist_ok=True)
        shutil.copy2(bench, dest / SETUP / bench.name)
    if (work / STUDIES).is_dir():  # the studies' JSONs: a cut-off study resumes from them
        shutil.copytree(work / STUDIES, dest / STUDIES)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file()) if dest.exists() else 0
    print(f"{dest}: {size / MIB:.1f} MiB; carry it and run the job with --work {dest}")


# ---------------------------------------------------------------------------------------------
# the stages


def resumable(st: Stage, run: Path) -> bool:
    """Whether an earlier slot's ``run`` folder continues exactly: it has a state and, for a
    stage that starts from a checkpoint (--init-model), that run started from one too (runs of
    an earlier from-scratch recipe are set aside, not resumed with new options)."""
    if not (st.keep_state and st.resume == "state" and (run / "train_state.pt").is_file()):
        return False
    if "--init-model" not in st.args:
        return True
    try:
        return "--init-model" in json.loads((run / "model.json").read_text())["commands"][0]["command"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False


def task_matches(card: Path, want: dict) -> bool:
    """Whether the run described by ``card`` (a model.json) has every item of ``want`` in its
    "task" (e.g. a data-conditioned rule: an older slot's data-free rule would restart the
    data-conditioned training from the data-free recipe)."""
    try:
        task = json.loads(card.read_text())["task"]
        return all(task[k] == v for k, v in want.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def stage_args(st: Stage, work: Path, data: Path, device: str) -> list[str]:
    """The stage's `localrules` arguments for this slot, without --minutes: --resume when its run
    folder continues exactly; otherwise that folder is set aside as NAME.prev and a "rule" stage
    starts from the last slot's rule (if its card matches) or the plan's default."""
    run = work / st.name
    args = [*st.args, "--out", str(run), "--device", device, "--data-dir", str(data)]
    if resumable(st, run):
        return args + ["--resume"]
    prev = work / f"{st.name}.prev"
    if run.exists():  # a finished or cut-off run that cannot be resumed: keep it aside
        shutil.rmtree(prev, ignore_errors=True)
        run.rename(prev)
    if st.resume == "rule":
        start = prev / "model.safetensors"
        if not (start.is_file() and task_matches(prev / "model.json", st.rule_if)):
            start = Path(st.rule_default)
        args += ["--init-rule", str(start)]
    return args


def study_args(name: str, args: list[str], work: Path, data: Path, device: str) -> list[str]:
    """A study's arguments: into work/studies/NAME.json (+ .png), which it resumes from."""
    folder = work / STUDIES
    folder.mkdir(parents=True, exist_ok=True)
    return [*args, "--json", str(folder / f"{name}.json"), "--png", str(folder / f"{name}.png"),
            "--device", device, "--data-dir", str(data)]


def utilisation_line(run: Path) -> str | None:
    """The run's utilisation.json (localrules.train.utilisation) as one log line; None without one."""
    try:
        r = json.loads((run / "utilisation.json").read_text())
    except (OSError, ValueError):
        return None

    def num(v, scale=1.0, fmt=".4g"):
        return "?" if v is None else format(v * scale, fmt)

    line = (f"{num(r.get('iterations_per_s'))} it/s, {num(r.get('samples_per_s'))} samples/s, "
            f"{num(r.get('flops_per_iter'), 1e-9)} GFLOP/iter, {num(r.get('flops_per_s'), 1e-12)} TFLOP/s")
    if r.get("peak_fraction_fp32") is not None:
        line += (f" = {num(r['peak_fraction_fp32'], 100, '.3g')} % of the {r.get('card')}'s dense fp32 peak "
                 f"({num(r.get('peak_fraction_bf16'), 100, '.3g')} % of bf16)")
    if r.get("gpu_busy") is not None:
        line += f", GPU busy {num(r['gpu_busy'], 100, '.3g')} % (profiler, {r.get('gpu_busy_iterations')} iterations)"
    if r.get("missing"):
        line += "; not measured: " + "; ".join(f"{k}: {v}" for k, v in r["missing"].items())
    return line


# one process per slot (the default) --------------------------------------------------------------


def run_in_process(plan: Plan, work: Path, out: Path, data: Path, device: str, deadline: float,
                   log: Callable, run_command: Callable[[list[str], float], int]) -> None:
    """Step 5 in this process: the stages, then the studies, one after another, each
    ``run_command(args, limit_s)`` (localrules.cli.inprocess) with its share of the time left when
    it starts (renormalised over those still to run, so time a run leaves unused goes to the
    next). A run that fails is logged and the next one starts; after each, its archive group is
    packed and its utilisation logged."""
    jobs = [(st.name, st.share, st) for st in plan.stages] + [(n, plan.study_shares[n], None) for n in plan.studies]
    for i, (name, share, st) in enumerate(jobs):
        left = deadline - time.monotonic() - RESERVE_S
        seconds = share / sum(j[1] for j in jobs[i:]) * left - INPROCESS_OVERHEAD_S
        if seconds < 10:  # decided before anything is moved, so a skipped run stays where it is
            log(f"== {name}: skipped, {left:.0f} s left")
            continue
        if st is not None:
            args = [*stage_args(st, work, data, device), "--minutes", f"{seconds / 60:.3f}"]
            limit = min(seconds + GRACE_S, left)  # the training stops itself at --minutes
        else:
            args, limit = study_args(name, plan.studies[name], work, data, device), seconds
        log(f"== {name}: {seconds / 60:.2f} min")
        log("$ localrules " + shlex.join(args))
        t0 = time.monotonic()
        try:
            rc = run_command(args, limit)
        except KeyboardInterrupt:  # SIGTERM from the runner's parent: the job's time is up
            log(f"== {name}: interrupted; the other runs are not started")
            pack(plan, plan.archive_of(name), work, out, log)
            raise
        log(f"== {name}: exit code {rc} after {time.monotonic() - t0:.0f} s")
        if st is not None:
            line = utilisation_line(work / name)
            if line:
                log(f"== {name}: {line}")
        pack(plan, plan.archive_of(st.name if st else STUDIES), work, out, log)


def in_process_job(plan: Plan, work: Path, out: Path, data: Path, device: str, deadline: float, smoke: bool,
                   log: Callable) -> int:
    """Steps 2-5 in the one process that imports the project (started by :func:`main` after the
    install): the versions, the device tests (their own process, started first so that it runs
    while this one imports torch), the benches and the runs, all through localrules.cli.inprocess."""
    tests = {}
    tester = threading.Thread(target=lambda: tests.update(rc=device_tests(work, device, smoke, log, dict(os.environ),
                                                                          "[tests] ")))
    tester.start()
    exec(ENV_REPORT, {})
    from localrules.cli.inprocess import run_command

    tester.join()
    if not tests_passed(tests["rc"], plan, work, out, device, log):
        return STOPPED
    for system in plan.benches:
        if not bench_due(work, system, smoke, log):
            continue
        args = ["bench", system, "--device", device, "--json", str(work / SETUP / f"bench-{system}.json"),
                *(["--quick"] if smoke else [])]
        log("$ localrules " + shlex.join(args))
        log(f"exit code {run_command(args, min(BENCH_S, deadline - time.monotonic() - RESERVE_S))}")
    pack(plan, plan.archive_of(SETUP), work, out, log)
    run_in_process(plan, work, out, data, device, deadline, log, run_command)
    return 0


def device_tests(work: Path, device: str, smoke: bool, log: Callable, env: dict, tag: str = "") -> int:
    """Step 3: pytest -m device on ``device`` in its own process (without the utilisation meter);
    its exit code. With --smoke only the quick ones (the suite runs them all on the CPU)."""
    quick = ["-k", "step_equal or means_agree"] if smoke else []
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "device", *quick,
           *(str(ROOT / t) for t in DEVICE_TESTS)]
    env = {**{k: v for k, v in env.items() if k != UTILISATION}, "LOCALRULES_TEST_DEVICE": device}
    return sh(cmd, log, env, timeout=240, tag=tag, cwd=python_cwd(work))


def tests_passed(rc: int, plan: Plan, work: Path, out: Path, device: str, log: Callable) -> bool:
    """False (the job stops, its setup group packed) when the device tests failed."""
    if rc == 0:
        return True
    log(f"gpu-job: STOPPED: the device tests failed on {device} (exit code {rc}); nothing was trained. "
        f"Read the failures above, fix them on the CPU, and run the job in the next slot.")
    pack(plan, plan.archive_of(SETUP), work, out, log)
    return False


def bench_due(work: Path, system: str, smoke: bool, log: Callable) -> bool:
    """Whether to run the bench of ``system``: not when an earlier slot's JSON agreed and has the
    compiled rows (issue 40; an eager-only JSON is measured again)."""
    done = work / SETUP / f"bench-{system}.json"
    res = json.loads(done.read_text()) if done.is_file() and not smoke else {}
    if res.get("agreement", {}).get("ok") and "agreement_compiled" in res:
        log(f"bench {system}: measured by an earlier slot ({done}); delete it to measure again")
        return False
    return True


# --processes: each run its own process, all at once (the job before issue 40) ---------------------


def train_stage(st: Stage, work: Path, data: Path, device: str, deadline: float, share: float,
                log: Callable, env: dict, tag: bool = False) -> None:
    left = deadline - time.monotonic() - RESERVE_S
    seconds = share * left - OVERHEAD_S
    if seconds < 10:  # decided before anything is moved, so a skipped run stays where it is
        log(f"== {st.name}: skipped, {left:.0f} s left")
        return
    args = stage_args(st, work, data, device)
    log(f"== {st.name}: {seconds / 60:.2f} min of training")
    sh([sys.executable, "-m", "localrules", *args, "--minutes", f"{seconds / 60:.3f}"], log, env,
       timeout=deadline - time.monotonic() - RESERVE_S, tag=f"[{st.name}] " if tag else "", cwd=python_cwd(work))
    line = utilisation_line(work / st.name)
    if line:
        log(f"== {st.name}: {line}")


def run_study(name: str, args: list[str], work: Path, data: Path, device: str, deadline: float,
              log: Callable, env: dict) -> None:
    """One study into work/studies/NAME.json (+ .png), stopped at the training deadline."""
    sh([sys.executable, "-m", "localrules", *study_args(name, args, work, data, device)],
       log, env, timeout=deadline - time.monotonic() - RESERVE_S, tag=f"[{name}] ", cwd=python_cwd(work))


def train(plan: Plan, work: Path, out: Path, data: Path, device: str, deadline: float, log: Callable,
          env: dict) -> None:
    """Step 5 with --processes: every stage its own `python -m localrules` process with all the time
    left, the studies beside them, all at once; each archive group packed by the last of its runs."""
    packing = threading.Lock()

    def then_pack(name: str, job) -> None:
        job()
        with packing:
            pack(plan, plan.archive_of(name), work, out, log)

    jobs = [(st.name, lambda st=st: train_stage(st, work, data, device, deadline, 1.0, log, env, True))
            for st in plan.stages]
    jobs += [(STUDIES, lambda kv=kv: run_study(*kv, work, data, device, deadline, log, env))
             for kv in plan.studies.items()]
    threads = [threading.Thread(target=then_pack, args=j) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ---------------------------------------------------------------------------------------------
# the command line


def main(plan_module: ModuleType | None = None, doc: str | None = None, argv: list[str] | None = None) -> int:
    doc = doc or __doc__
    ap = argparse.ArgumentParser(prog="gpu-job", description=doc.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    ap.add_argument("--minutes", type=float, default=8.5, help="Total budget, set-up included (default 8.5).")
    ap.add_argument("--data", type=Path, help="MNIST folder (default .gpu-data/mnist, else $LOCALRULES_DATA).")
    ap.add_argument("--out", type=Path, help="Where the archives go (default $OUT, else runs/gpu-out).")
    ap.add_argument("--work", type=Path, help="Run folders (default runs/gpu; --smoke: runs/gpu-smoke).")
    ap.add_argument("--device", default=None, help="cuda (default) or cpu (--smoke's default).")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: proves the path, trains nothing useful.")
    ap.add_argument("--unpack", type=Path, metavar="DIR", help="Extract the archives in DIR into the work folder.")
    ap.add_argument("--processes", action="store_true",
                    help="Each run its own `python -m localrules` process, all at once, each with all the "
                         "time (the job before issue 40); default: one process, the runs one after another.")
    ap.add_argument("--carry", type=Path, nargs="?", const=ROOT / "runs/gpu-carry", metavar="DIR",
                    help="Copy what resuming needs from the work folder into DIR (default runs/gpu-carry).")
    ap.add_argument("--plan", type=Path, metavar="FILE",
                    help="The plan to run, a Python file of tables (default scripts/gpu_plan.py).")
    ap.add_argument("--in-process", type=float, metavar="DEADLINE", help=argparse.SUPPRESS)  # steps 2-5, see main
    a = ap.parse_args(argv)
    plan_file = a.plan or Path(getattr(plan_module, "__file__", None) or Path(__file__).resolve().parent / "gpu_plan.py")
    if a.plan or plan_module is None:
        plan_module = load_plan_file(plan_file)
    work = (a.work or ROOT / ("runs/gpu-smoke" if a.smoke else "runs/gpu")).resolve()
    if a.unpack:
        unpack(a.unpack, work)
        return 0
    if a.carry:
        carry(build_plan(plan_module, smoke=False), work, a.carry.resolve())
        return 0
    plan = build_plan(plan_module, a.smoke)
    t0 = time.monotonic()
    deadline = t0 + 60 * a.minutes
    device = a.device or ("cpu" if a.smoke else "cuda")
    out = (a.out or Path(os.environ.get("OUT") or ROOT / "runs/gpu-out")).resolve()
    data = a.data or (ROOT / ".gpu-data/mnist" if (ROOT / ".gpu-data/mnist").is_dir()
                      else Path(os.environ.get("LOCALRULES_DATA", ROOT / ".gpu-data/mnist")))
    data = data.resolve()
    if a.in_process is not None:  # the one process after the install: its deadline is wall-clock time
        deadline = t0 + a.in_process - time.time()
        return in_process_job(plan, work, out, data, device, deadline, a.smoke, lambda text: print(text, flush=True))
    missing = [f for f in MNIST_FILES if not any((data / (f + s)).is_file() for s in ("", ".gz"))]
    if missing:
        raise SystemExit(f"gpu-job: {data} lacks {', '.join(missing)}; copy MNIST there first "
                         f"(mkdir -p .gpu-data && cp -r ../shared/data/mnist .gpu-data/) or pass --data")
    out.mkdir(parents=True, exist_ok=True)
    (work / SETUP).mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu-job.log")
    log(f"gpu-job: {a.minutes} min budget, device {device}, data {data}, work {work}, out {out}, "
        + ("each run its own process, all at once" if a.processes else "one process, the runs one after another"))
    for st in plan.stages:
        log(f"plan: {st.name}, share {st.share:.2f}, archive {st.archive}: {st.why}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "30", "LOCALRULES_DATA": str(data)}
    env.setdefault(UTILISATION, "warmup=0,flops=1,profile=1" if a.smoke else "1")
    if a.processes:  # the runs share the machine's cores
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 5) // len(plan.stages))))

    env = install(work, log, env)
    pycwd = python_cwd(work)
    if shutil.which("nvidia-smi"):
        sh(["nvidia-smi"], log, env, timeout=30)
    if a.processes:
        return processes_job(plan, work, out, data, device, deadline, a.smoke, log, env)
    # steps 2-5 in one Python process that imports the installed (or staged) project
    child = [sys.executable, str(Path(__file__).resolve().parent / "gpu-job"), "--in-process",
             str(time.time() + deadline - time.monotonic()), "--plan", str(plan_file), "--work", str(work),
             "--out", str(out), "--data", str(data), "--device", device, *(["--smoke"] if a.smoke else [])]
    rc = sh(child, log, env, timeout=deadline - time.monotonic() - 10, cwd=pycwd)
    if rc == STOPPED:
        return 1
    if rc != 0:  # cut off or crashed: whatever the runs left is packed once more
        log(f"gpu-job: the job's process ended with exit code {rc}; packing what the runs left")
        for group in plan.archives:
            pack(plan, group, work, out, log)
    log(f"gpu-job: done in {(time.monotonic() - t0) / 60:.1f} min; archives in {out}")
    return 0


def processes_job(plan: Plan, work: Path, out: Path, data: Path, device: str, deadline: float, smoke: bool,
                  log: Callable, env: dict) -> int:
    """Steps 2-5 with --processes: every command its own Python process."""
    pycwd = python_cwd(work)
    sh([sys.executable, "-c", ENV_REPORT], log, env, timeout=60, cwd=pycwd)
    if not tests_passed(device_tests(work, device, smoke, log, env), plan, work, out, device, log):
        return 1
    for system in plan.benches:
        if bench_due(work, system, smoke, log):
            sh([sys.executable, "-m", "localrules", "bench", system, "--device", device,
                "--json", str(work / SETUP / f"bench-{system}.json"), *(["--quick"] if smoke else [])],
               log, env, timeout=min(150, deadline - time.monotonic() - RESERVE_S), cwd=pycwd)
    pack(plan, plan.archive_of(SETUP), work, out, log)
    train(plan, work, out, data, device, deadline, log, env)
    log(f"gpu-job: done; archives in {out}")
    return 0
