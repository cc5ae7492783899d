"""Issue 39: the kNN fill and U-Net baselines, the hybrid's mask flags, and the eval table's
params / batches / FLOPs columns."""

import json

import pytest
import torch
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.studies.knn_fill import knn_fill
from localrules.studies.restore_eval import count_flops, evaluate
from localrules.tasks import restore as rs
from localrules.tasks.restore_unet import UNet
from localrules.train.loop import TrainConfig, train


# --- kNN fill -------------------------------------------------------------------------------


def _knn_case():
    """4 training 'digits' of 4 pixels; pixels 0, 1 visible in the query [0, 0, ?, ?]."""
    train = torch.tensor([[0.0, 1, 1, 1],    # distance on the visible pixels 1
                          [0.0, 2, 4, 7],    # 2
                          [3.0, 0, 9, 9],    # 3
                          [0.0, 4, 5, 5]]).view(4, 2, 2)  # 4
    x = torch.tensor([0.0, 0, 0.5, 0.5]).view(1, 2, 2)
    keep = torch.tensor([True, True, False, False]).view(1, 2, 2)
    return train, x, keep


def test_knn_fill_is_the_inverse_distance_weighted_mean_of_the_k_nearest():
    train, x, keep = _knn_case()
    out = knn_fill(train, x * keep, keep, k=2, eps=0.0)
    # neighbours 0 and 1 at distances 1 and 2: weights 1 and 1/2; hidden pixels ([1, 1] + [4, 7] / 2) / 1.5
    torch.testing.assert_close(out.flatten(), torch.tensor([0.0, 0.0, 2.0, 3.0]))
    one = knn_fill(train, x * keep, keep, k=1, eps=0.0)
    torch.testing.assert_close(one.flatten(), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    # all four: weights 1, 1/2, 1/3, 1/4
    w = torch.tensor([1, 1 / 2, 1 / 3, 1 / 4])
    want = (w[:, None] * train.flatten(1)).sum(0) / w.sum()
    torch.testing.assert_close(knn_fill(train, x * keep, keep, k=4, eps=0.0).flatten()[2:], want[2:])
    with pytest.raises(ValueError, match="k must be"):
        knn_fill(train, x, keep, k=5)


def test_knn_fill_keeps_visible_pixels_chunks_alike_and_survives_an_exact_match():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(50, 6, 6, generator=g)
    images = torch.rand(7, 6, 6, generator=g)
    keep = torch.rand(7, 6, 6, generator=g) > 0.5
    a = knn_fill(train, images * keep, keep, k=3, chunk=2)
    b = knn_fill(train, images * keep, keep, k=3, chunk=256)
    torch.testing.assert_close(a, b)
    assert torch.equal(a[keep], images[keep])
    exact = knn_fill(train, train[:1], torch.ones(1, 6, 6, dtype=torch.bool) & keep[:1], k=3)
    assert torch.isfinite(exact).all()  # distance 0: weight 1 / eps, no inf / nan
    torch.testing.assert_close(exact[0][~keep[0]], train[0][~keep[0]], rtol=0, atol=1e-4)


# --- U-Net ----------------------------------------------------------------------------------


def _conv(cin, cout, k, hw):  # FLOPs (2 per multiply-add) and parameters of a conv, per sample
    return 2 * cin * cout * k * k * hw, cin * cout * k * k + cout


def test_unet_counts_by_hand():
    w = 2
    blocks = [(2, w, 784), (w, w, 784), (w, 2 * w, 196), (2 * w, 2 * w, 196), (2 * w, 4 * w, 49), (4 * w, 4 * w, 49),
              (4 * w, 2 * w, 196), (2 * w, 2 * w, 196), (2 * w, w, 784), (w, w, 784)]
    flops = sum(_conv(a, b, 3, hw)[0] for a, b, hw in blocks)
    params = sum(_conv(a, b, 3, hw)[1] for a, b, hw in blocks)
    # transposed 2x2 convs: counted on their input grid (7x7, 14x14); the 1x1 read-out
    for (a, b, hw) in ((4 * w, 2 * w, 49), (2 * w, w, 196)):
        flops, params = flops + 2 * a * b * 4 * hw, params + a * b * 4 + b
    flops, params = flops + 2 * w * 784, params + w + 1
    m = UNet(width=w).eval()
    x, keep = torch.rand(1, 28, 28), torch.rand(1, 28, 28) > 0.5
    assert sum(p.numel() for p in m.parameters()) == params
    assert count_flops(m, x * keep, keep) == flops
    assert sum(p.numel() for p in UNet(rs.Config(model="unet")).parameters()) == 1_326_133  # ~ the hybrid's


def test_unet_shapes_reads_the_mask_and_clamps():
    torch.manual_seed(0)
    m = rs.build_model(rs.Config(model="unet", unet_width=8)).eval()
    x = torch.rand(3, 28, 28)
    keep = torch.rand(3, 28, 28) > 0.7
    y = m(x * keep, keep=keep)
    assert y.shape == (3, 28, 28) and y.min() >= 0 and y.max() <= 1
    other = keep.clone()
    other[:, :14] = ~other[:, :14] & (x[:, :14] * keep[:, :14] == 0)  # same masked image, other mask
    with torch.no_grad():
        m.out.bias.fill_(0.5)  # keep the output off the clamp, so differences show
        assert not torch.allclose(m(x * keep, keep=keep), m(x * keep, keep=other))
    with pytest.raises(ValueError, match="reads the mask"):
        m(x)
    damaged = m(x * keep, keep=keep, damage_frac=1.0)  # the bottleneck zeroed: another output
    assert damaged.shape == y.shape and not torch.equal(damaged, m(x * keep, keep=keep))


def _imgs(small_digits, n=200):
    x, y = small_digits
    return torch.nn.functional.pad(torch.as_tensor(x[:n]).float() / 255, (6, 6, 6, 6)), torch.as_tensor(y[:n])


@pytest.mark.parametrize("model,kw", [("unet", {"unet_width": 8}),
                                      ("hybrid", {"mask_channel": True, "keep_visible": True, "pool_size": 32}),
                                      ("hybrid", {"clamp_output": True, "masked_loss": True, "pool_size": 32}),
                                      ("hybrid", {"gate_reads": 2, "gate_pool": 2, "rule_hidden": 16, "pool_size": 32}),
                                      ("hybrid", {"mask_channel": True, "keep_visible": True, "gate_writes": 4,
                                                  "pool_size": 32})])
def test_tiny_training_lowers_the_loss(tmp_path, small_digits, model, kw):
    imgs, labels = _imgs(small_digits)
    torch.manual_seed(0)
    cfg = rs.Config(model=model, batch_size=16, gate_hidden=64, steps_min=3, steps_max=5, **kw)
    task = rs.RestoreTask(cfg, imgs, labels, torch.device("cpu"))
    assert ("keep" in task.pool.slots) == cfg.needs_keep if task.pool else model == "unet"
    train(task, TrainConfig(iterations=40, steps_min=3, steps_max=5, lr=3e-3, lr_milestones=(), log_every=1,
                            normalize_grads=False), tmp_path, torch.device("cpu"), progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").open()]
    assert sum(losses[-5:]) / 5 < 0.7 * losses[0], losses


# --- the hybrid's flags ---------------------------------------------------------------------


def _small(**kw):
    return rs.CARestorer(rs.Config(gate_hidden=16, gate_out=16, **kw))


def test_default_hybrid_is_unchanged():
    m = rs.CARestorer(rs.Config())
    assert m.n_fixed == 0 and not m.reads_mask and m.fixed(torch.rand(1, 28, 28), None) is None
    assert tuple(m.ca.perception.weight.shape) == (64, 1, 3, 3)  # 16 channels x 4, as shipped
    x = torch.rand(2, 28, 28)
    m.eval()
    torch.testing.assert_close(m(x), m(x, keep=torch.zeros(2, 28, 28, dtype=torch.bool)))  # keep not read


def test_keep_visible_keeps_the_visible_pixels_exactly():
    torch.manual_seed(0)
    x = torch.rand(4, 28, 28)
    keep = torch.rand(4, 28, 28) > 0.7
    m = _small(keep_visible=True)
    for mode in (m.eval(), m.train()):
        y = mode(x * keep, keep=keep)
        assert torch.equal(y[keep], x[keep]) and y.shape == (4, 28, 28)
    f = m.fixed(x * keep, keep)
    assert f.shape == (4, 32, 32, 1) and torch.equal(f[:, 2:30, 2:30, 0], x * keep) and f[:, :2].eq(0).all()
    with pytest.raises(ValueError, match="reads the mask"):
        m(x)


def test_mask_channel_is_a_fixed_input_of_every_step():
    torch.manual_seed(0)
    m = _small(mask_channel=True).eval()
    x = torch.rand(2, 28, 28)
    keep = torch.rand(2, 28, 28) > 0.5
    f = m.fixed(x * keep, keep)
    assert f.shape == (2, 32, 32, 1) and torch.equal(f[:, 2:30, 2:30, 0], keep.float())
    assert f[:, :2].eq(1).all()  # the border counts as known
    seen = []
    orig = m.ca.step
    m.ca.step = lambda topo, fixed, state, *a, **k: (seen.append(fixed), orig(topo, fixed, state, *a, **k))[1]
    m(x * keep, keep=keep, steps=3)
    assert len(seen) == 3 and all(torch.equal(s, f) for s in seen)
    assert m.ca.perception.channels == 17
    with torch.no_grad():  # the rule's last layer starts at zero: give it weights, so the input shows
        for p in m.ca.rule.parameters():
            p.normal_(0, 0.1)
    other = keep.clone()
    other[0, :10] = ~other[0, :10] & (x[0, :10] * keep[0, :10] == 0)  # same masked image, other mask
    assert not torch.allclose(m(x * keep, keep=keep), m(x * keep, keep=other))


def test_flag_flops_by_hand():
    """--mask-channel adds one fixed channel: per step its 4 depthwise outputs (9 multiply-adds per
    cell) and their 4 x 16 weights in the rule's 1x1 layer, on 32 x 32 cells."""
    x, keep = torch.rand(1, 28, 28), torch.rand(1, 28, 28) > 0.5
    base = count_flops(rs.CARestorer(rs.Config()).eval(), x * keep)
    more = count_flops(rs.CARestorer(rs.Config(mask_channel=True)).eval(), x * keep, keep)
    assert more - base == 10 * 1024 * (2 * 4 * 9 + 2 * 4 * 16)


def test_clamp_output_and_masked_loss(small_digits):
    torch.manual_seed(0)
    m = _small(clamp_output=True)
    x = torch.rand(4, 28, 28)
    with torch.no_grad():
        m.readout.bias.fill_(3.0)  # a linear read-out well above 1
        assert m.eval()(x).max() <= 1 and m(x).min() >= 0
        assert m.train()(x).max() > 1  # in training the read-out is linear (as the CNN-AE's)
    imgs, labels = _imgs(small_digits, 50)
    task = rs.RestoreTask(rs.Config(model="hybrid", batch_size=8, gate_hidden=16, gate_out=16, pool_size=16,
                                    masked_loss=True), imgs, labels, torch.device("cpu"))
    out, clean = torch.rand(2, 28, 28), torch.rand(2, 28, 28)
    keep = torch.rand(2, 28, 28) > 0.5
    want = ((out - clean)[~keep] ** 2).mean()
    torch.testing.assert_close(task.loss(out, clean, keep), want)
    assert task.loss(out, clean, torch.ones_like(keep)).item() == 0.0  # nothing blanked: 0, not nan


def test_gradients_are_finite_on_a_zeroed_lattice():
    """The LayerNorm of an all-zero cell (damage) and the masked loss with nothing blanked give
    finite gradients (torch.autograd's anomaly mode raises on a nan)."""
    torch.manual_seed(0)
    for kw in ({}, {"mask_channel": True, "keep_visible": True}):
        m = _small(**kw).train()
        x = torch.rand(2, 28, 28)
        keep = torch.rand(2, 28, 28) > 0.5
        with torch.autograd.detect_anomaly():
            s = m.run(m.encode(x * keep), 4, damage_frac=1.0, fixed=m.fixed(x * keep, keep))
            m.read(s, x * keep, keep).mean().backward()
        assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_gate_reads_pooled_maps_and_the_rule_gets_a_hidden_layer():
    """--gate-reads K --gate-pool P: the gate's first layer takes K (L / P)^2 inputs, the K maps
    r = s W_r average-pooled; --rule-hidden H: perception -> ReLU -> H -> ReLU -> C. Defaults as shipped."""
    torch.manual_seed(0)
    m = _small(gate_reads=3, gate_pool=4, rule_hidden=8, channels=6).eval()
    assert m.gate[0].in_features == 3 * 8 * 8 and m.gate_read.out_features == 3
    assert [l.out_features for l in m.ca.rule.mlp if isinstance(l, torch.nn.Linear)] == [8, 6]
    s = torch.randn(2, 32, 32, 6)
    with torch.no_grad():  # the post hook: LayerNorm, then the gate reads the pooled maps
        captured = []
        h = m.gate[0].register_forward_hook(lambda mod, inp, out: captured.append(inp[0]))
        m.after_update(s)
        h.remove()
        r = (m.norm(s) @ m.gate_read.weight.T + m.gate_read.bias).permute(0, 3, 1, 2)  # (2, 3, 32, 32)
    torch.testing.assert_close(captured[0], r.reshape(2, 3, 8, 4, 8, 4).mean((3, 5)).flatten(1))
    with pytest.raises(ValueError, match="gate_pool"):
        _small(gate_pool=3)
    shipped = _small()
    assert shipped.gate[0].in_features == 32 * 32 and len(shipped.ca.rule.mlp) == 2  # ReLU, 1x1


def test_gate_writes_k_maps_mixed_into_the_channels():
    """--gate-writes K: the gate's last layer gives K maps g (B, K, L, L), added as s + g^T A with
    A (K, C); K = 1 keeps the shipped per-channel scale a (C,)."""
    torch.manual_seed(0)
    m = _small(gate_writes=3, channels=6).eval()
    assert m.gate[3].out_features == 3 * 16 and m.gate_scale.shape == (3, 6)
    s = torch.randn(2, 32, 32, 6)
    with torch.no_grad():
        n = m.norm(s)
        g = m.gate((n @ m.gate_read.weight.T + m.gate_read.bias).permute(0, 3, 1, 2).flatten(1))  # (2, 3, 32, 32)
        want = n + torch.einsum("bkhw,kc->bhwc", g, m.gate_scale)
        torch.testing.assert_close(m.after_update(s), want)
    assert _small().gate_scale.shape == (16,)
    with pytest.raises(ValueError, match="gate_writes"):
        _small(gate_writes=0)


def test_run_restore_flags_only_for_lattice_models(tmp_path):
    res = CliRunner().invoke(app, ["run", "restore", "--model", "cnn-ae", "--mask-channel", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "apply to hybrid and ca only" in res.output
    res = CliRunner().invoke(app, ["run", "restore", "--mask-min", "0.8", "--mask-max", "0.5", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "mask_min <= mask_max" in res.output
    res = CliRunner().invoke(app, ["run", "restore", "--model", "ca", "--gate-reads", "2", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "--gate-reads do not apply to ca" in res.output
    res = CliRunner().invoke(app, ["run", "restore", "--model", "unet", "--gate-writes", "4", "--gate-hidden", "512",
                                   "--out", str(tmp_path)])
    assert res.exit_code != 0 and "--gate-writes, --gate-hidden do not apply to unet" in res.output
    res = CliRunner().invoke(app, ["run", "restore", "--model", "ca", "--dropout", "0", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "--dropout do not apply to ca" in res.output


def test_gate_dropout_is_configurable():
    """--dropout sets the gate's dropout (0.5 as shipped); outside [0, 1] is refused."""
    assert _small().gate[2].p == 0.5 and _small(dropout=0.0).gate[2].p == 0.0
    with pytest.raises(ValueError, match="dropout must be in"):
        rs.Config(dropout=1.5).validate()


# --- the eval table -------------------------------------------------------------------------


def test_eval_table_has_knn_unet_and_a_variant_with_counts(small_digits):
    imgs, labels = _imgs(small_digits, 12)
    torch.manual_seed(0)
    models = {"hybrid": rs.build_model(rs.Config()).eval(),
              "unet": rs.build_model(rs.Config(model="unet", unet_width=4)).eval(),
              "hybrid-mk": rs.build_model(rs.Config(mask_channel=True, keep_visible=True)).eval()}
    models["unet"].batches_trained = 7
    clf = rs.build_model(rs.Config(model="classifier")).eval()
    train_digits, _ = _imgs(small_digits, 300)
    res, restored = evaluate(models, clf, imgs, labels, 0.7, knn_train=train_digits[100:])
    table = res["models"]
    assert list(table) == ["hybrid", "unet", "hybrid-mk", "knn", "interpolation"]
    keep = restored["keep"]
    torch.testing.assert_close(restored["knn"], knn_fill(train_digits[100:], imgs * keep, keep))
    assert torch.equal(restored["hybrid-mk"][keep], imgs[keep])  # keep-visible
    assert table["unet"]["batches"] == 7 and table["hybrid"]["batches"] is None and table["knn"]["batches"] is None
    assert table["unet"]["params"] == sum(p.numel() for p in models["unet"].parameters())
    assert table["knn"]["params"] == 0 and table["hybrid-mk"]["params"] == 1_314_002
    # kNN: per digit two (1 x 784) @ (784 x 200) products over the 200 training digits
    assert table["knn"]["flops_per_sample"] == 2 * 2 * 784 * 200
    assert table["hybrid-mk"]["flops_per_sample"] > table["hybrid"]["flops_per_sample"] > 0
    assert table["interpolation"]["flops_per_sample"] > 0
    assert res["knn_train_digits"] == 200


# --- restore-basins: damage mid-run ---------------------------------------------------------


class _TwoNoiseBasins(torch.nn.Module):
    """Stand-in restorer: a noise start ends in basin 0 or 1 by the sign of its sum, an encoded
    image in basin 2; damaged mid-run, basin 1 falls into basin 0 (the others slide back)."""

    def __init__(self):
        super().__init__()
        import types

        self.cfg = types.SimpleNamespace(lattice=4, channels=2, steps=1)

    def encode(self, x):
        return torch.zeros(len(x), 4, 4, 2)

    def run(self, s, steps, damage_frac=0.0):
        noise = s[..., 1].abs().flatten(1).mean(1) > 0.1
        basin = torch.where(noise, (s.flatten(1).sum(1) > 0).long(), 2)
        if damage_frac:
            basin = torch.where(basin == 1, 0, basin)
        final = torch.zeros_like(s)
        final[..., 0] = 10.0 * (basin + 1)[:, None, None]
        return final

    def read(self, s):
        return s[..., 0].mean((1, 2))[:, None, None].expand(-1, 28, 28)


def test_basins_damage_counts_the_starts_that_slide_back(small_digits):
    from localrules.studies.restore_basins import basins

    imgs, labels = _imgs(small_digits, 20)
    reads = lambda im: torch.nn.functional.one_hot((im.flatten(1).mean(1) / 10).round().long().clamp(0, 9), 10).float()  # noqa: E731
    res, arrays = basins(_TwoNoiseBasins(), reads, imgs, labels, n_noise=12, steps=2, k_max=4, damage_frac=0.3)
    assert res["n_basins"] == 3
    moved = res["digits_read_from_noise"][2]  # noise starts in basin 1 (read as digit 2)
    assert 0 < moved < 12
    d = res["damage"]
    assert d["frac"] == 0.3 and d["same_basin"] == pytest.approx(1 - moved / 33) and d["same_digit"] == d["same_basin"]
    assert d["by_start"]["masked"] == {"same_basin": 1.0, "same_digit": 1.0}
    assert d["by_start"]["noise"]["same_basin"] == pytest.approx(1 - moved / 12)
    assert "damage" not in basins(_TwoNoiseBasins(), reads, imgs, labels, n_noise=12, steps=2, k_max=4)[0]
