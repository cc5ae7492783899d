"""Data-parallel training (localrules.train.shards): 2 gloo processes with 2 shards train exactly
like 1 process with the same 2 shards, for all three tasks; resume across process counts; a
dying rank stops the other with a message and leaves the last checkpoint intact."""

import os

import pytest
import torch

from localrules.train.checkpoint import load_model_files, load_state
from localrules.train.loop import TrainConfig, train

CPU = torch.device("cpu")
KINDS = ("metanca", "mnist-selfclassify", "restore")
TOL = dict(rtol=1e-5, atol=1e-7)


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread, as in each of the 2 processes: the same kernels, so the same rounding."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _digits():
    from sklearn.datasets import load_digits
    import numpy as np

    d = load_digits()
    x = np.kron(d.images[:80], np.ones((2, 2))) / 16.0
    return (x * 255).round().astype(np.uint8), d.target[:80].astype(np.int64)


def _task(kind: str):
    """A tiny task of each kind, built from seed 0 (so every process builds the same one)."""
    torch.manual_seed(0)
    if kind == "metanca":
        from localrules.data.tabular import load_split
        from localrules.tasks import metanca as mn

        cfg = mn.Config(archs=((4, 6, 3),), hidden=3, pos_dim=4, rule_hidden=(16,), samples=4, pool_size=8,
                        data_batch=32)
        return mn.MetaNCATask(cfg, load_split("iris", 0), CPU)
    x, y = _digits()
    if kind == "mnist-selfclassify":
        from localrules.tasks import mnist_selfclassify as ms

        return ms.SelfClassifyTask(ms.Config(batch_size=4, pool_size=8, perception_dim=8, hidden=(8,)), x, y, CPU)
    from localrules.tasks import restore as rs

    imgs = torch.nn.functional.pad(torch.as_tensor(x).float() / 255, (6, 6, 6, 6))
    cfg = rs.Config(model="hybrid", batch_size=4, pool_size=8, gate_hidden=16, gate_out=16, channels=8)
    return rs.RestoreTask(cfg, imgs, torch.as_tensor(y), CPU)


def _tcfg(**kw):
    return TrainConfig(**{"steps_min": 2, "steps_max": 3, "log_every": 1, "lr_milestones": (), "shards": 2,
                          "checkpoint_every": 2, "lr": 1e-2, **kw})


def _grad(kind: str):
    """The gradient of the 2-shard loss after one iteration: {name: tensor}, and the loss."""
    from localrules.train.shards import data_parallel

    task = _task(kind)
    dp, ranks = data_parallel(task, _tcfg(), CPU)
    torch.manual_seed(0)
    loss, _ = dp.training_loss(3)
    loss.backward()
    return {n: p.grad.clone() for n, p in task.model.named_parameters()}, loss.item()


def _store():
    """The rendezvous of a test's ranks: a TCPStore served by this (the test) process on a port the
    OS picks and that stays bound until the ranks are done. The ranks join it as clients, as they
    join torchrun's agent store (TORCHELASTIC_USE_AGENT_STORE), through the library's own env://
    join (ranks.from_env). No port is picked, released and hoped to be still free when rank 0 binds
    it (another process could take it in between: a test failing only sometimes)."""
    from torch.distributed import TCPStore

    return TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)


def _join(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True", LOCALRULES_DIST_TIMEOUT="300")
    torch.set_num_threads(1)


def _two_process_runs(rank: int, port: int, out: str) -> None:
    """Rank ``rank`` of the 2-process job: every kind's gradient, 3 iterations, and a run of 2."""
    _join(rank, 2, port)
    for kind in KINDS:
        grads, loss = _grad(kind)
        if rank == 0:
            torch.save({"grads": grads, "loss": loss}, f"{out}/{kind}-grad.pt")
        train(_task(kind), _tcfg(iterations=3), f"{out}/{kind}", CPU, progress=False)
    train(_task("metanca"), _tcfg(iterations=2), f"{out}/half", CPU, progress=False)


def _spawn(fn, world: int, *args) -> None:
    import torch.multiprocessing as mp

    store = _store()  # served until every rank has finished
    mp.start_processes(fn, args=(store.port, *args), nprocs=world, start_method="spawn")
    del store


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """The folder of the 2-process job (run once for the module)."""
    out = tmp_path_factory.mktemp("two")
    _spawn(_two_process_runs, 2, str(out))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_after_one_iteration_matches_one_process(two, kind):
    grads, loss = _grad(kind)
    saved = torch.load(two / f"{kind}-grad.pt")
    assert saved["loss"] == pytest.approx(loss, rel=1e-5)
    assert set(saved["grads"]) == set(grads)
    for n, g in grads.items():
        torch.testing.assert_close(saved["grads"][n], g, **TOL, msg=f"{kind} {n}")
    assert any(g.abs().sum() > 0 for g in grads.values())


@pytest.mark.parametrize("kind", KINDS)
def test_weights_after_three_iterations_match_one_process(two, tmp_path, kind):
    train(_task(kind), _tcfg(iterations=3), tmp_path, CPU, progress=False)
    w1, meta1 = load_model_files(tmp_path / "model")
    w2, meta2 = load_model_files(two / kind / "model")
    for n in w1:
        torch.testing.assert_close(w2[n], w1[n], **TOL, msg=f"{kind} {n}")
    assert meta2["hardware"]["processes"] == 2 and "processes" not in meta1["hardware"]
    assert meta1["train"]["shards"] == meta2["train"]["shards"] == 2
    first = _task(kind).model.state_dict()
    assert any(not torch.equal(first[n], w1[n]) for n in w1)  # it trained


def test_resume_on_one_process_continues_a_two_process_run(two, tmp_path):
    import shutil

    shutil.copytree(two / "half", tmp_path / "resumed")
    train(_task("metanca"), _tcfg(iterations=4), tmp_path / "resumed", CPU, resume=True, progress=False)
    train(_task("metanca"), _tcfg(iterations=4), tmp_path / "straight", CPU, progress=False)
    w1, _ = load_model_files(tmp_path / "straight" / "model")
    w2, meta = load_model_files(tmp_path / "resumed" / "model")
    assert meta["iteration"] == 4
    for n in w1:
        torch.testing.assert_close(w2[n], w1[n], **TOL)
    assert len(load_state(tmp_path / "resumed" / "train_state.pt")["task"]["shards"]) == 2


def test_resume_refuses_another_shard_count(two, tmp_path):
    import shutil

    shutil.copytree(two / "half", tmp_path / "r")
    with pytest.raises(ValueError, match="trained as 2 shards and resumes with 2 shards on 1, 2 process"):
        train(_task("metanca"), _tcfg(iterations=4, shards=4), tmp_path / "r", CPU, resume=True, progress=False)
    train(_task("metanca"), TrainConfig(iterations=1, steps_min=2, steps_max=2, lr_milestones=()),
          tmp_path / "plain", CPU, progress=False)
    with pytest.raises(ValueError, match="trained in one process without shards"):
        train(_task("metanca"), _tcfg(iterations=2), tmp_path / "plain", CPU, resume=True, progress=False)


def test_shards_must_divide_the_batch():
    from localrules.train.shards import data_parallel

    with pytest.raises(ValueError, match="--samples 4 and --pool-size 8 must be multiples of the 3"):
        data_parallel(_task("metanca"), _tcfg(shards=3), CPU)


class _Dies:
    """Wraps a task: on rank 1, the process ends abruptly in iteration ``at``."""

    def __init__(self, task, at: int):
        self.task, self.model, self.at, self.n = task, task.model, at, 0

    def __getattr__(self, name):
        return getattr(self.task, name)

    def shard(self, k):
        part = self.task.shard(k)
        outer = self

        class Part:
            model = part.model

            def __getattr__(self, name):
                return getattr(part, name)

            def training_loss(self, steps):
                outer.n += 1
                if outer.n == outer.at and int(os.environ["RANK"]) == 1:
                    os._exit(3)
                return part.training_loss(steps)

        return Part()


def _dying_run(rank: int, port: int, out: str) -> None:
    _join(rank, 2, port)
    from localrules.train.ranks import DistributedError

    try:
        train(_Dies(_task("metanca"), at=3), _tcfg(iterations=6), out, CPU, progress=False)
    except DistributedError as e:
        with open(f"{out}/rank{rank}.err", "w") as f:
            f.write(str(e))


def test_a_dying_rank_stops_the_other_and_keeps_the_checkpoint(tmp_path):
    import multiprocessing as mp

    store, ctx = _store(), mp.get_context("spawn")
    procs = [ctx.Process(target=_dying_run, args=(r, store.port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)  # a bound for a hung rank, not a speed requirement (a silent peer times out after 300 s)
    assert [p.exitcode for p in procs] == [0, 3]
    msg = (tmp_path / "rank0.err").read_text()
    assert "another process of this 2-process run stopped" in msg
    assert f"the last checkpoint (iteration 2) in {tmp_path} is intact; continue with --resume" in msg
    assert load_state(tmp_path / "train_state.pt")["iteration"] == 2
    assert load_model_files(tmp_path / "model")[1]["iteration"] == 2


def test_leaving_frees_what_holds_the_group_before_destroying_it(monkeypatch):
    """A DDP wrapper left in a reference cycle holds the gloo group; freed only at interpreter
    finalization, its worker threads abort the process (SIGABRT) after a peer died."""
    import gc
    import weakref

    from localrules.train import ranks

    class Holder:  # stands for the DDP wrapper: unreachable, but in a cycle
        pass

    h = Holder()
    h.me = h
    alive = weakref.ref(h)
    del h
    seen = []
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: seen.append(alive() is None))
    gc.disable()  # no automatic collection between here and _leave
    try:
        ranks._leave()
    finally:
        gc.enable()
    assert seen == [True]
