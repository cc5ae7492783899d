"""Compiled steps (--compile), CUDA graphs (--cuda-graphs) and bf16 autocast (--precision): the
compiled paths give the eager numbers from the same seed, the options refuse what cannot work.

On the CPU the tests compile with ``aot_eager`` (dynamo's tracing and AOT autograd, no code
generation: seconds, where inductor takes a minute on this project's CPU); the ``device`` tests
compile with inductor, the backend training uses, on CUDA in scripts/gpu-job. The bench checks
inductor on the CPU (``localrules bench SYSTEM``: ``agreement_compiled``)."""

import json

import pytest
import torch

from localrules.tasks import metanca as mn
from localrules.tasks import mnist_selfclassify as ms
from localrules.tasks import restore as rs
from localrules.train.accelerate import AUTO_MIN_ITERATIONS, COMPILE_DEFAULT, compile_model, eager, mark_step, resolve
from localrules.train.loop import TrainConfig, train
from localrules.train.precision import autocast

CPU = torch.device("cpu")


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setenv("LOCALRULES_COMPILE_BACKEND", "aot_eager")


def _selfclassify(small_digits, **kw):
    x, y = small_digits
    torch.manual_seed(0)
    cfg = ms.Config(batch_size=4, pool_size=8, perception_dim=16, hidden=(16,), **kw)
    return ms.SelfClassifyTask(cfg, x[:64], y[:64], CPU)


def _rollout(model, px, steps=4, seed=1):
    """A training rollout with drawn noise and fire masks: (final state, loss, grads)."""
    torch.manual_seed(seed)
    zeros = px.new_zeros(*px.shape[:3], 19)
    eng = ms.Engine("alive", px, zeros)
    s = model.rollout(eng.topology, eng.fixed, eng.pack(zeros), eng.alive, steps, 0.02)
    loss = (ms.labels_of(s) ** 2).sum()
    model.zero_grad()
    loss.backward()
    return s.detach(), loss.detach(), [p.grad.clone() for p in model.parameters()]


def _assert_same(a, b, tol=1e-5):
    (sa, la, ga), (sb, lb, gb) = a, b
    assert torch.allclose(sa, sb, atol=tol) and torch.allclose(la, lb, rtol=tol)
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.device
def test_compiled_step_equals_eager_with_the_same_random_draws(small_digits, monkeypatch, device):
    """The alive-cell rollout with drawn noise and fire masks, eager and compiled, from one seed:
    the same state, loss and gradients. Catches compiled random draws of their own (inductor's
    RNG without fallback_random), a step that drops the noise or the mask, a compiled model whose
    eager path stays compiled."""
    monkeypatch.setenv("LOCALRULES_COMPILE_BACKEND", "inductor" if device.type == "cuda" else "aot_eager")
    model = ms.build_model(ms.Config(perception_dim=8, hidden=(8,))).to(device)
    torch.nn.init.normal_(model.rule.mlp[-1].weight, std=0.05)
    px = torch.as_tensor(small_digits[0][:2, :12, :12] / 255.0, dtype=torch.float32, device=device)[..., None]
    want = _rollout(model, px)
    compile_model(model, device)
    assert model.step_fn is not None
    _assert_same(_rollout(model, px), want)
    assert eager(model).step_fn is None
    _assert_same(_rollout(model, px), want)


def test_compiled_training_equals_eager_training(small_digits, tmp_path, aot_eager):
    """Five iterations of the pool trainer, eager and compiled: the same losses and weights
    (the alive-cell count changes per batch: a dynamic graph, not one per batch)."""
    cfg = TrainConfig(iterations=5, steps_min=3, steps_max=5, log_every=1, checkpoint_every=100)
    runs = []
    for compiled in (False, True):
        task = _selfclassify(small_digits)
        if compiled:
            compile_model(task.model, CPU)
        train(task, TrainConfig(**vars(cfg)), tmp_path / str(compiled), CPU, progress=False)
        losses = [json.loads(ln)["loss"] for ln in (tmp_path / str(compiled) / "metrics.jsonl").read_text().splitlines()]
        runs.append((losses, [p.detach().clone() for p in task.model.parameters()]))
    (l0, w0), (l1, w1) = runs
    assert l0 == pytest.approx(l1, rel=1e-4)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(w0, w1))


def test_compiled_metanca_and_restore_steps_equal_eager(aot_eager):
    """MetaNCA's sparse update (index_add on the firing cells) and the restorer's post hook
    (LayerNorm, gate) through the compiled step; the CNN auto-encoder (no NCA) compiles its forward."""
    torch.manual_seed(0)
    cfg = mn.Config()
    rule = mn.build_rule(cfg)
    torch.nn.init.normal_(rule.rule.mlp[-1].weight, std=0.05)
    topo = mn.topology((6, 4, 3))
    state = mn.init_networks(topo, 2, cfg)
    fires = torch.rand(3, 2, topo.n_cells, 1) <= cfg.fire_rate
    want = rule.rollout(topo, None, state, None, 3, fires=fires)
    compile_model(rule, CPU)
    assert torch.allclose(rule.rollout(topo, None, state, None, 3, fires=fires), want, atol=1e-6)

    x = torch.rand(2, 28, 28)
    for name in ("hybrid", "cnn-ae"):
        model = rs.build_model(rs.Config(model=name, gate_hidden=16)).eval()
        want = model(x)
        compile_model(model, CPU)
        assert torch.allclose(model(x), want, atol=1e-5)
        assert set(model.state_dict()) == set(rs.build_model(rs.Config(model=name, gate_hidden=16)).state_dict())


def test_compile_defaults_and_cuda_graphs_need_cuda():
    """--compile's default (None: auto) per device and system, for long trainings only; given
    values win; --cuda-graphs refused off CUDA."""
    cuda = torch.device("cuda")
    for system in ("mnist-selfclassify", "metanca", "restore"):
        assert resolve(None, CPU, system, 100_000) is COMPILE_DEFAULT["cpu"][system]
        assert resolve(None, cuda, system, 100_000) is COMPILE_DEFAULT["cuda"][system]
        assert not resolve(None, cuda, system, AUTO_MIN_ITERATIONS - 1)  # compiling would not pay
        assert resolve(True, CPU, system, 1) and not resolve(False, cuda, system, 100_000)
    assert not resolve(None, torch.device("mps"), "metanca", 100_000)
    with pytest.raises(ValueError, match="CUDA"):
        compile_model(ms.build_model(ms.Config()), CPU, graphs=True)


def test_bf16_training_keeps_float32_weights_and_pool_near_the_fp32_loss(small_digits, tmp_path):
    """--precision bf16: autocast of the forward pass; weights and pool states stay float32, the
    losses of a short run stay finite and near fp32's from the same seed (bf16 keeps 8 bits of
    mantissa: within 2 %), and an unknown precision is refused."""
    task = _selfclassify(small_digits)
    with autocast(CPU, "bf16"):
        loss, _ = task.training_loss(5)
    assert loss.dtype == torch.float32 and task.pool.slots["state"].dtype == torch.float32
    runs = {}
    for precision in ("fp32", "bf16"):
        task = _selfclassify(small_digits)
        cfg = TrainConfig(iterations=10, steps_min=5, steps_max=5, log_every=1, precision=precision)
        train(task, cfg, tmp_path / precision, CPU, progress=False)
        lines = (tmp_path / precision / "metrics.jsonl").read_text().splitlines()
        runs[precision] = [json.loads(ln)["loss"] for ln in lines]
        assert all(p.dtype == torch.float32 for p in task.model.parameters())
    assert all(torch.isfinite(torch.tensor(runs["bf16"])))
    assert runs["bf16"][:3] == pytest.approx(runs["fp32"][:3], rel=2e-2)
    with pytest.raises(ValueError, match="--precision"):
        TrainConfig(precision="fp16").validate()


def test_bf16_sparse_update_adds_in_the_state_dtype():
    """MetaNCA's index_add of bf16 rule outputs into a float32 state (it refused mixed dtypes)."""
    torch.manual_seed(0)
    cfg = mn.Config()
    rule = mn.build_rule(cfg)
    topo = mn.topology((6, 4, 3))
    state = mn.init_networks(topo, 2, cfg)
    with autocast(CPU, "bf16"):
        out = rule.rollout(topo, None, state, None, 2)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.device
def test_cuda_graph_captured_restorer_equals_eager(device):
    """On CUDA: the restorer's training step (forward, backward) with its steps recorded as CUDA
    graphs and replayed gives the eager loss and gradients."""
    if device.type != "cuda":
        pytest.skip("CUDA graphs need a CUDA device: scripts/gpu-job runs this with LOCALRULES_TEST_DEVICE=cuda")
    dev = device
    torch.manual_seed(0)
    model = rs.build_model(rs.Config(model="hybrid")).to(dev).eval()
    x, y = torch.rand(8, 28, 28, device=dev), torch.rand(8, 28, 28, device=dev)

    def step():
        mark_step()
        loss = torch.nn.functional.mse_loss(model(x), y)
        model.zero_grad()
        loss.backward()
        return loss.detach().clone(), [p.grad.clone() for p in model.parameters()]

    want = step()
    compile_model(model, dev, graphs=True)
    for _ in range(3):  # warm-up, record, replay
        got = step()
    assert torch.allclose(got[0], want[0], rtol=1e-4)
    assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-6) for a, b in zip(got[1], want[1]))


def test_compiled_evaluation_equals_eager(small_digits, aot_eager):
    """eval mnist-selfclassify --compile: the paper's protocol (mutation included) with compiled
    steps gives the eager curves; the model is left eager."""
    from localrules.studies.curves import selfclassify_curves

    model = ms.build_model(ms.Config(perception_dim=8, hidden=(8,)))
    torch.nn.init.normal_(model.rule.mlp[-1].weight, std=0.05)
    px = torch.as_tensor(small_digits[0][:6] / 255.0, dtype=torch.float32)
    y = torch.as_tensor(small_digits[1][:6])
    kw = dict(steps=6, mutate_at=3, batch_size=3, noise_std=0.02, progress=False)
    with torch.inference_mode():
        want = selfclassify_curves(model, px, y, **kw)
        got = selfclassify_curves(model, px, y, compile=True, **kw)
    assert got["accuracy"] == pytest.approx(want["accuracy"], abs=1e-6)
    assert got["state_magnitude"] == pytest.approx(want["state_magnitude"], rel=1e-5)
    assert model.step_fn is None
