"""ONNX export: each exported graph run in onnxruntime equals the library's own PyTorch path on
the same inputs and random draws (fire masks and noise passed in), within float tolerance."""

from dataclasses import asdict

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[export]')")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install -e '.[export]')")

from localrules.export import ExportError, export_onnx  # noqa: E402
from localrules.tasks import metanca as mn  # noqa: E402
from localrules.tasks import mnist_selfclassify as ms  # noqa: E402
from localrules.tasks import restore as rs  # noqa: E402
from localrules.train.checkpoint import save_model  # noqa: E402

STEPS, TOL = 20, 1e-4


def _session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _digits(n):
    """n digits (n, 28, 28) in [0, 1]: scikit-learn's, upscaled as the playground does."""
    from localrules.demo.session import sklearn_digits

    return sklearn_digits().images[:n]


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


def test_selfclassify_20_steps_equal_pytorch(out_dir):
    info = export_onnx("mnist-selfclassify-robust", out_dir / "sc.onnx")
    assert info["inputs"] == ["pixels", "state", "fire", "noise"] and info["outputs"] == ["state_out"]
    model, cfg, _ = ms.load(ms.pretrained_path("robust"))
    px = _digits(2)[..., None]
    B, H, W, C = *px.shape[:3], cfg.channels
    g = torch.Generator().manual_seed(1)
    fires = torch.rand(STEPS, B, H, W, 1, generator=g) <= cfg.fire_rate
    noises = torch.randn(STEPS, B, H, W, C, generator=g)
    sess = _session(info["out"])
    state = np.zeros((B, H, W, C), np.float32)
    for t in range(STEPS):
        state = sess.run(None, {"pixels": px.numpy(), "state": state, "fire": fires[t].numpy(),
                                "noise": noises[t].numpy()})[0]
    # the library's own fast path (alive cells only), with the same draws at the alive cells
    eng = ms.Engine("alive", px, torch.zeros(B, H, W, C))
    with torch.no_grad():
        rows = model.rollout(eng.topology, eng.fixed, eng.pack(torch.zeros(B, H, W, C)), eng.alive, STEPS,
                             cfg.noise_std, fires=torch.stack([eng.pack(f) for f in fires]),
                             noises=torch.stack([eng.pack(n) for n in noises]))
    ref = eng.unpack(rows).numpy()
    diff = np.abs(state - ref).max()
    assert diff < TOL, diff
    assert np.abs(ref).max() > 0.1  # the cells did change
    labels = lambda s: np.where(px[..., 0].numpy() > ms.ALIVE_THRESHOLD, s[..., -10:].argmax(-1), -1)  # noqa: E731
    assert (labels(state) == labels(ref)).all()


@pytest.mark.parametrize("name", ["hybrid", "ca", "cnn-ae", "unet", "classifier"])
def test_restorers_equal_pytorch(out_dir, name):
    info = export_onnx(f"restore-{name}", out_dir / f"{name}.onnx")
    model = rs.load(rs.PRETRAINED_DIR / name / "model.safetensors")[0]
    _check_restorer(info, model, expect_keep=name in ("hybrid", "unet"))  # the shipped models that read the mask


def test_mask_reading_hybrid_takes_keep(out_dir, tmp_path):
    """A hybrid with the mask and the masked image as fixed channels: keep is the graph's second input."""
    cfg = rs.Config(model="hybrid", mask_channel=True, keep_visible=True, gate_writes=4, gate_hidden=32)
    torch.manual_seed(0)
    model = rs.build_model(cfg)
    path = save_model(tmp_path / "mk" / "model", model, {"task": {"name": "restore", **asdict(cfg)}})
    _check_restorer(export_onnx(path, out_dir / "mk.onnx"), model.eval(), expect_keep=True)


def _check_restorer(info, model, expect_keep):
    """The exported restoration equals model(masked[, keep=keep]) on 3 digits with 70 % masks."""
    assert info["inputs"] == (["masked", "keep"] if expect_keep else ["masked"])
    clean = _digits(3)
    keep = torch.rand(clean.shape, generator=torch.Generator().manual_seed(2)) >= 0.7
    masked = clean * keep
    feeds = {"masked": masked.numpy(), **({"keep": keep.numpy()} if expect_keep else {})}
    got = _session(info["out"]).run(None, feeds)[0]
    with torch.no_grad():
        ref = (model(masked, keep=keep) if expect_keep else model(masked)).numpy()
    assert got.shape == ref.shape == ((3, 10) if info["outputs"] == ["logits"] else (3, 28, 28))
    assert np.abs(got - ref).max() < TOL
    if expect_keep:  # the mask is read: another mask, another restoration
        other = _session(info["out"]).run(None, {**feeds, "keep": np.ones_like(feeds["keep"])})[0]
        assert np.abs(other - got).max() > 1e-3


def test_metanca_20_updates_equal_pytorch(out_dir):
    arch = (784, 50, 30, 10)
    info = export_onnx("metanca-mnist", out_dir / "rule.onnx", arch=arch)
    rule, cfg, _ = mn.load(mn.PRETRAINED_PATH)
    topo = mn.topology(arch)
    torch.manual_seed(3)
    state0 = mn.init_networks(topo, 2, cfg)
    fires = torch.rand(STEPS, 2, topo.n_cells, 1) <= cfg.fire_rate
    sess = _session(info["out"])
    state = state0.numpy()
    for t in range(STEPS):
        state = sess.run(None, {"state": state, "fire": fires[t].numpy()})[0]
    with torch.no_grad():  # the rule's own (sparse) path
        ref = rule.rollout(topo, None, state0, None, STEPS, fires=fires).numpy()
    assert np.abs(state - ref).max() < TOL
    assert np.abs(ref - state0.numpy()).max() > 0.1


def test_user_trained_checkpoint_and_refusals(out_dir, tmp_path):
    cfg = ms.Config(hidden_channels=5)  # an untrained user checkpoint of another shape
    path = save_model(tmp_path / "run" / "model", ms.build_model(cfg), {"task": {"name": ms.SelfClassifyTask.NAME, **asdict(cfg)}})
    info = export_onnx(path.parent, out_dir / "user.onnx")
    assert _session(info["out"]).get_inputs()[1].shape[-1] == cfg.channels
    with pytest.raises(ExportError, match="neither a shipped model"):
        export_onnx("no-such-model", out_dir / "x.onnx")
    with pytest.raises(ExportError, match="data-conditioned"):
        export_onnx("metanca-mnist-dc", out_dir / "dc.onnx")


def test_cli_export(console, out_dir):
    code, out, err = console("export", "restore-ca", "--format", "onnx", "--out", str(out_dir / "cli.onnx"))
    assert code == 0, err
    assert "inputs masked" in out and (out_dir / "cli.onnx").stat().st_size > 1000
    code, _, err = console("export", "metanca-mnist", "--out", str(out_dir / "bad.onnx"), "--arch", "784,x")
    assert code != 0 and "--arch" in err


def test_missing_extra_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "onnxscript", None)  # as if not installed
    with pytest.raises(ExportError, match="export extra"):
        export_onnx("restore-ca", tmp_path / "x.onnx")


def test_the_core_does_not_import_onnx():
    import subprocess
    import sys

    code = ("import sys, localrules, localrules.api, localrules.cli.main, localrules.export; "
            "from localrules.tasks import metanca, mnist_selfclassify, restore; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime', 'onnxscript')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
