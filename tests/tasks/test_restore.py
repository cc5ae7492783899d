import json
import types

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.studies.restore_eval import count_flops, evaluate, evaluate_masks, evaluate_steps, normalized_convolution, psnr
from localrules.tasks import restore as rs
from localrules.train.loop import TrainConfig, train
from localrules.train.perturb import mask_pixels, mask_region


def test_mask_pixels_exact_fraction_and_visible_untouched():
    x = torch.rand(5, 28, 28) + 0.1
    masked, keep = mask_pixels(x, 0.7)
    assert keep.shape == x.shape
    assert (~keep).flatten(1).sum(1).tolist() == [549] * 5  # round(0.7 * 784)
    assert torch.equal(masked[keep], x[keep]) and torch.all(masked[~keep] == 0)
    with pytest.raises(ValueError):
        mask_pixels(x, 1.2)


def test_psnr_by_hand():
    a = torch.zeros(2, 4, 4)
    b = torch.full((2, 4, 4), 0.1)  # MSE 0.01 -> 20 dB
    b[1] = 0.5  # MSE 0.25 -> 6.0206 dB
    torch.testing.assert_close(psnr(b, a), torch.tensor([20.0, 6.020600]))


def test_flop_counter_on_a_known_layer():
    lin = torch.nn.Linear(10, 7)
    assert count_flops(lin, torch.zeros(3, 10)) == 2 * 3 * 10 * 7


def test_shapes_and_parameter_counts():
    x = torch.rand(3, 28, 28)
    for name, count in (("hybrid", 1_313_794), ("ca", 1_761), ("cnn-ae", 1_025_793)):  # the README's counts
        m = rs.build_model(rs.Config(model=name)).eval()
        assert m(x).shape == (3, 28, 28)
        assert sum(p.numel() for p in m.parameters()) == count, name
        assert m(x).min() >= 0 and m(x).max() <= 1
    enc = rs.CARestorer(rs.Config()).encoder
    assert enc(torch.zeros(1, 1, 32, 32)).shape == (1, 16, 32, 32)


def test_the_gate_sees_the_image():
    """Regression: a gate reading the channel mean right after the LayerNorm saw a constant."""
    torch.manual_seed(0)
    m = rs.CARestorer(rs.Config()).eval()
    seen = []
    m.gate[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    m(torch.rand(2, 28, 28), steps=1)
    assert seen[0].std(1).min() > 1e-3  # varies over the lattice
    assert (seen[0][0] - seen[0][1]).abs().max() > 1e-3  # and between images


def test_interpolation_keeps_visible_and_fills_blanks():
    x = torch.rand(2, 28, 28)
    _, keep = mask_pixels(x, 0.5)
    out = normalized_convolution(x, keep)
    assert torch.equal(out[keep], x[keep]) and torch.all(out[~keep] > 0)


def _imgs(small_digits, n=300):
    x, y = small_digits
    return torch.nn.functional.pad(torch.as_tensor(x[:n]).float() / 255, (6, 6, 6, 6)), torch.as_tensor(y[:n])


@pytest.mark.parametrize("model,recipe", [("hybrid", "pool"), ("ca", "pool"), ("cnn-ae", "pool"), ("hybrid", "plain")])
def test_tiny_training_lowers_the_loss(tmp_path, small_digits, model, recipe):
    imgs, labels = _imgs(small_digits)
    torch.manual_seed(0)
    recipe_kw = {**rs.PLAIN, "steps_min": 4, "steps_max": 4} if recipe == "plain" else {"pool_size": 32,
                                                                                       "steps_min": 3, "steps_max": 5}
    cfg = rs.Config(model=model, batch_size=16, gate_hidden=64, **recipe_kw)
    task = rs.RestoreTask(cfg, imgs, labels, torch.device("cpu"))
    assert (task.pool is not None) == (recipe == "pool" and model != "cnn-ae")
    train(task, TrainConfig(iterations=40, steps_min=cfg.steps_min, steps_max=cfg.steps_max, lr=3e-3,
                            lr_milestones=(), log_every=1, normalize_grads=False), tmp_path,
          torch.device("cpu"), progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").open()]
    assert sum(losses[-5:]) / 5 < 0.7 * losses[0], losses


def _pool_task(small_digits, **kw):
    imgs, labels = _imgs(small_digits, 100)
    cfg = rs.Config(batch_size=8, gate_hidden=16, gate_out=16, pool_size=16, **kw)
    return rs.RestoreTask(cfg, imgs, labels, torch.device("cpu"))


def test_pool_states_persist_and_are_committed(small_digits):
    task = _pool_task(small_digits)
    for _ in range(3):
        before = {k: v.clone() for k, v in task.pool.slots.items()}
        task.training_loss(steps=3)
        last = task.last
        idx, fresh, remask = last["idx"], last["fresh"], last["remask"]
        assert fresh.sum() == 4 and not (remask & fresh).any() and remask.sum() <= 4
        kept = ~fresh & ~remask  # continued unchanged from the pool
        torch.testing.assert_close(last["start"][kept], before["state"][idx[kept]], rtol=0, atol=0)
        torch.testing.assert_close(task.pool.slots["clean"][idx[~fresh]], before["clean"][idx[~fresh]], rtol=0, atol=0)
        for r in torch.nonzero(remask).flatten():  # re-masked: some interior cells zeroed, the rest kept
            zero = (last["start"][r] == 0).all(-1)
            assert zero[2:30, 2:30].sum() > 0 and not zero[:2].any()
            torch.testing.assert_close(last["start"][r][~zero], before["state"][idx[r]][~zero], rtol=0, atol=0)
        # the final states are committed, the rest of the pool untouched
        torch.testing.assert_close(task.pool.slots["state"][idx], last["final"], rtol=0, atol=0)
        other = torch.ones(16, dtype=torch.bool)
        other[idx] = False
        torch.testing.assert_close(task.pool.slots["state"][other], before["state"][other], rtol=0, atol=0)
        assert not torch.equal(last["final"], last["start"])
    # the pool survives a checkpoint round trip exactly (clean pixels stored as uint8)
    twin = _pool_task(small_digits)
    twin.load_extra_state(task.extra_state())
    for k in ("state", "clean"):
        torch.testing.assert_close(twin.pool.slots[k], task.pool.slots[k], rtol=0, atol=0)


def test_damage_zeroes_the_stated_fraction_of_whole_cells_in_the_chosen_rows():
    s = torch.randn(64, 32, 32, 16) + 5.0
    rows = torch.zeros(64, dtype=torch.bool)
    rows[::4] = True
    out = rs.damage_rows(s, 0.3, rows)
    zero = (out == 0).all(-1)
    assert torch.equal(zero, (out == 0).any(-1))  # whole cells
    assert not zero[~rows].any() and torch.equal(out[~rows], s[~rows])
    assert 0.28 < zero[rows].float().mean() < 0.32
    # in training a damaged row loses those cells halfway through its rollout
    m = rs.CARestorer(rs.Config(gate_hidden=16, gate_out=16)).eval()
    seen = []
    m.norm.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0]))
    torch.manual_seed(0)
    s0 = m.encode(torch.rand(2, 28, 28))
    m.run(s0, 4, damage_frac=1.0, damaged=torch.tensor([True, False]))
    # step 2's CA input was zeroed in row 0: its update starts from 0, so the pre-norm state is
    # the rule applied to an all-zero lattice, the same in every cell
    assert len(seen) == 4 and torch.allclose(seen[2][0], seen[2][0][0, 0].expand_as(seen[2][0]))
    assert not torch.allclose(seen[2][1], seen[2][1][0, 0].expand_as(seen[2][1]))
    for t in (0, 1, 3):  # only at the halfway step: before it row 0 is intact, after it the lattice regrew
        assert not torch.allclose(seen[t][0], seen[t][0][0, 0].expand_as(seen[t][0])), t


def test_training_masks_mix_rates_and_regions():
    cfg = rs.Config()
    keep = rs.training_masks(torch.rand(2000, 28, 28), cfg)
    blank = (~keep).flatten(1).float().mean(1)
    assert blank.min() >= 0.09 and blank.max() <= 0.91
    rows_full = keep.all(2)  # a region leaves whole unblanked rows; pixel masks at >= 30 % never do
    region = rows_full.any(1)
    assert 0.2 < region.float().mean() < 0.3
    assert 0.3 < blank[~region].mean() < 0.9 and abs(blank[~region].mean() - 0.6) < 0.02
    plain = rs.training_masks(torch.rand(50, 28, 28), rs.Config(**rs.PLAIN))
    assert torch.equal((~plain).flatten(1).sum(1), torch.full((50,), 549))


def test_mask_region_blanks_one_square_inside():
    x = torch.ones(200, 28, 28)
    masked, keep = mask_region(x, 0.25)
    assert torch.equal((~keep).flatten(1).sum(1), torch.full((200,), 196))  # 14 x 14
    cols = (~keep).any(1).sum(1)
    assert torch.equal(cols, torch.full((200,), 14)) and torch.equal(masked, keep.float())
    _, keep = mask_region(torch.ones(3, 28, 28), torch.tensor([0.0, 1.0, 0.5]))
    assert (~keep).flatten(1).sum(1).tolist() == [0, 784, 20 * 20]


def test_steps_vary_per_batch(small_digits):
    task = _pool_task(small_digits)
    seen = []
    real = task.training_loss
    task.training_loss = lambda steps: (seen.append(steps), real(steps))[1]
    cfg = rs.Config()
    tcfg = rs.train_config(cfg, iterations=12)
    assert (tcfg.steps_min, tcfg.steps_max) == (8, 16) and tcfg.lr_milestones == (7, 10)
    tcfg.steps_min, tcfg.steps_max = 1, 4
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        train(task, tcfg, d, torch.device("cpu"), progress=False)
    assert len(seen) == 12 and len(set(seen)) > 1 and set(seen) <= {1, 2, 3, 4}
    assert rs.train_config(rs.Config(**rs.PLAIN), 10).steps_min == 10


def test_hybrid_train_state_stays_small(tmp_path, small_digits):
    """The GPU job brings train_state.pt back: the hybrid's weights, Adam and pool < 24 MiB."""
    imgs, labels = _imgs(small_digits, 200)
    task = rs.RestoreTask(rs.Config(), imgs, labels, torch.device("cpu"))
    train(task, rs.train_config(task.cfg, 1), tmp_path, torch.device("cpu"), progress=False)
    assert (tmp_path / "train_state.pt").stat().st_size < 24 * 2**20


def test_old_checkpoints_keep_the_plain_recipe():
    old = {"batch_size": 64, "ca_multiplier": 4, "channels": 16, "dropout": 0.5, "gate_hidden": 1024,
           "gate_out": 256, "lattice": 32, "mask_frac": 0.7, "model": "hybrid", "state_noise": 0.02, "steps": 10}
    cfg = rs.config_from_fields(old)  # the fields of a checkpoint from before the pool recipe
    assert (cfg.pool_size, cfg.mask_min, cfg.mask_max, cfg.damage_share, cfg.region_share) == (0, 0.7, 0.7, 0, 0)
    assert (cfg.steps_min, cfg.steps_max, cfg.steps) == (10, 10, 10)
    new = rs.config_from_fields(dict(vars(rs.Config())))
    assert new == rs.Config()


def _untrained(folder):
    """Untrained models saved as a models folder; returns (restorers, classifier)."""
    from dataclasses import asdict

    from localrules.train.checkpoint import save_model

    models = {n: rs.build_model(rs.Config(model=n)).eval() for n in ("hybrid", "ca", "cnn-ae")}
    clf = rs.build_model(rs.Config(model="classifier")).eval()
    for n, m in {**models, "classifier": clf}.items():
        save_model(folder / n / "model", m, {"task": {"name": "restore", **asdict(rs.Config(model=n))}})
    return models, clf


def test_eval_table(tmp_path, small_digits):
    x, y = small_digits
    imgs = torch.nn.functional.pad(torch.as_tensor(x[:20]).float() / 255, (6, 6, 6, 6))
    labels = torch.as_tensor(y[:20])
    models, clf = _untrained(tmp_path / "m")
    res, restored = evaluate(models, clf, imgs, labels, 0.7)
    assert set(res["models"]) == {"hybrid", "ca", "cnn-ae", "interpolation"}
    keep = restored["keep"]
    assert torch.equal(keep.sum((1, 2)), torch.full((20,), 235))
    # every number by hand from the restorations (seeded untrained models: each row differs). Catches
    # PSNR of the whole batch instead of a mean over images, scores against the masked input instead
    # of the clean digit, a model fed the clean digit, and accuracy from the wrong labels or images.
    for name, row in res["models"].items():
        rec = restored[name]
        with torch.inference_mode():
            want = models[name](imgs * keep) if name in models else normalized_convolution(imgs, keep)
            hits = sum(int(clf(rec[i : i + 1]).argmax(1).item() == labels[i]) for i in range(20))
        torch.testing.assert_close(rec, want, rtol=0, atol=1e-6, msg=name)
        mse = ((rec.double() - imgs.double()) ** 2).flatten(1).mean(1)
        assert row["psnr_db"] == pytest.approx((10 * torch.log10(1 / mse)).mean().item(), rel=1e-5), name
        assert row["digit_id_accuracy"] == pytest.approx(hits / 20, rel=1e-6), name
    assert res["models"]["interpolation"]["params"] == 0 and res["models"]["hybrid"]["params"] == 1_313_794
    with torch.inference_mode():
        hits = sum(int(clf(imgs[i : i + 1]).argmax(1).item() == labels[i]) for i in range(20))
    assert res["classifier_accuracy_on_clean"] == pytest.approx(hits / 20, rel=1e-6)
    assert len({row["psnr_db"] for row in res["models"].values()}) == 4  # four different restorations
    masks = evaluate_masks(models, clf, imgs, labels, (0.5, 0.9), (0.25,))
    assert set(masks) == {"pixels-0.5", "pixels-0.9", "region-0.25"}
    assert set(masks["region-0.25"]) == {"hybrid", "ca", "cnn-ae", "interpolation"}
    # the same masks as the main table at the same rate give the same numbers
    same = evaluate_masks(models, clf, imgs, labels, (0.7,), ())["pixels-0.7"]
    for name, row in res["models"].items():
        assert same[name]["psnr_db"] == pytest.approx(row["psnr_db"], rel=1e-6)
    calls = []
    models["hybrid"].norm.register_forward_hook(lambda *a: calls.append(1))  # one LayerNorm per CA step
    steps = evaluate_steps(models, clf, imgs, labels, (1, 2))
    assert len(calls) == 10 + 20  # 20 digits, one batch each run
    assert set(steps) == {"1x", "2x"} and set(steps["2x"]) == {"hybrid", "ca"}  # the CNN-AE has no steps
    assert steps["2x"]["hybrid"]["steps"] == 20
    assert steps["1x"]["ca"]["psnr_db"] == pytest.approx(res["models"]["ca"]["psnr_db"], rel=1e-6)


def test_restore_cli_on_real_digits(tmp_path, mnist_dir):
    folder = tmp_path / "m"
    _untrained(folder)
    res = CliRunner().invoke(app, ["eval", "restore", "--models", str(tmp_path / "nothing")])
    assert res.exit_code != 0 and "missing checkpoints" in res.output
    res = CliRunner().invoke(app, ["eval", "restore", "--models", str(folder), "--n", "16", "--data-dir",
                                   str(mnist_dir), "--json", str(tmp_path / "t.json"),
                                   "--png", str(tmp_path / "t.png"), "--device", "cpu",
                                   "--card", str(tmp_path / "card.md")])
    assert res.exit_code == 0, res.output
    table = json.loads((tmp_path / "t.json").read_text())
    # off a terminal: one plain progress line per condition before the table, no control characters
    lines = res.output.splitlines()
    progress = [i for i, ln in enumerate(lines) if ln.startswith("eval restore: ")]
    done = [int(lines[i].split(": ")[1].split("/")[0]) for i in progress]  # a slow machine adds 30 s lines
    k = 1 + len(table["masks"]) + len(table["steps"])
    assert set(done) == set(range(1, k + 1)) and done == sorted(done) and f"{k}/{k} conditions (100 %)" in lines[progress[-1]]
    assert progress[-1] < next(i for i, ln in enumerate(lines) if ln.startswith("16 digits"))
    assert not any(c in res.output for c in "\r\x1b")
    assert set(table["models"]) == {"hybrid", "ca", "cnn-ae", "knn", "interpolation"}  # kNN on by default
    assert table["knn_train_digits"] == 60_000 and table["models"]["knn"]["flops_per_sample"] == 4 * 784 * 60_000
    assert all(set(r) >= {"params", "batches", "flops_per_sample"} for r in table["models"].values())
    assert set(table["masks"]) == {"pixels-0.5", "pixels-0.7", "pixels-0.85", "pixels-0.9", "region-0.25", "region-0.5"}
    assert set(table["steps"]) == {"1x", "2x", "5x"} and table["steps"]["5x"]["hybrid"]["steps"] == 50
    from PIL import Image

    with Image.open(tmp_path / "t.png") as im:  # 8 digits x 7 rows (masked, 3 models, kNN, floor, clean) at 110 dpi
        assert im.format == "PNG" and im.size == (1100, 847)
    assert "| hybrid |" in (tmp_path / "card.md").read_text() and "| knn |" in (tmp_path / "card.md").read_text()
    res = CliRunner().invoke(app, ["eval", "restore", "--models", str(folder), "--n", "4", "--data-dir", str(mnist_dir),
                                   "--json", str(tmp_path / "t2.json"), "--device", "cpu", "--no-knn",
                                   "--mask-fracs", "", "--region-fracs", "", "--steps", ""])
    assert res.exit_code == 0, res.output
    assert set(json.loads((tmp_path / "t2.json").read_text())["models"]) == {"hybrid", "ca", "cnn-ae", "interpolation"}
    res = CliRunner().invoke(app, ["study", "restore-damage", "--models", str(folder), "--n", "16",
                                   "--data-dir", str(mnist_dir), "--json", str(tmp_path / "d.json"),
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    d = json.loads((tmp_path / "d.json").read_text())
    assert set(d["models"]["hybrid"]) == {"accuracy_intact", "accuracy_damaged", "accuracy_drop"}


def test_purity_by_hand():
    import numpy as np

    from localrules.studies.restore_basins import purity

    assert purity(np.array([0, 0, 1, 1]), np.array([3, 3, 3, 5])) == 0.75
    assert purity(np.array([0, 1, 2]), np.array([1, 2, 3])) == 1.0


class _ThreeBasins(torch.nn.Module):
    """A stand-in restorer whose attractors are known: a noise start (channel 1 nonzero) falls to
    basin 0 or 1 by the sign of its sum, every encoded image (the blank included) to basin 2.
    Basin k's final lattice is 10 (k + 1) in channel 0, plus a small trace of the start; its read-out
    is a flat image of that value, which the stand-in classifier reads as digit k + 1."""

    def __init__(self):
        super().__init__()
        self.cfg = types.SimpleNamespace(lattice=4, channels=2, steps=1)

    def encode(self, x):  # (N, 28, 28) -> (N, 4, 4, 2): 7x7 means in channel 0, channel 1 zero
        s = torch.zeros(len(x), 4, 4, 2)
        s[..., 0] = torch.nn.functional.avg_pool2d(x[:, None], 7)[:, 0]
        return s

    def run(self, s, steps):
        noise = s[..., 1].abs().flatten(1).mean(1) > 0.1
        basin = torch.where(noise, (s.flatten(1).sum(1) > 0).long(), 2)
        final = 0.01 * torch.tanh(s)
        final[..., 0] += 10.0 * (basin + 1)[:, None, None]
        return final

    def read(self, s):
        return s[..., 0].mean((1, 2))[:, None, None].expand(-1, 28, 28)


def _reads_the_level(images):
    """The stand-in classifier: logits peaking at digit round(mean / 10)."""
    digit = (images.flatten(1).mean(1) / 10).round().long().clamp(0, 9)
    return torch.nn.functional.one_hot(digit, 10).float()


@pytest.mark.parametrize("k_max", [3, 4, 6])
def test_basins_finds_the_known_number_of_attractors(small_digits, k_max):
    """Three known basins, found as three whatever the top of the search range. Catches: the k of
    the worst silhouette, the top or the bottom of the range taken, points counted in another basin
    than their cluster, a purity or a basin image of other points."""
    from localrules.studies.restore_basins import basins

    imgs, labels = _imgs(small_digits, 30)
    res, arrays = basins(_ThreeBasins(), _reads_the_level, imgs, labels, n_noise=12, steps=3, k_max=k_max)
    assert res["n_basins"] == 3 and sorted(res["silhouette"]) == list(range(2, k_max + 1))
    assert max(res["silhouette"], key=res["silhouette"].get) == 3 and res["silhouette"][3] > 0.9
    images = next(b for b in res["basins"] if b["from"]["blank"])
    assert images["from"] == {"noise": 0, "blank": 1, "masked": 30} and images["size"] == 31
    assert images["digit"] == 3 and images["digit_share"] == 1.0
    noise = [b for b in res["basins"] if not b["from"]["blank"]]
    assert sorted(b["digit"] for b in noise) == [1, 2] and all(b["digit_share"] == 1.0 for b in noise)
    assert all(b["from"]["masked"] == 0 and b["size"] == b["from"]["noise"] > 0 for b in noise)
    assert sum(b["size"] for b in noise) == 12
    assert res["purity_by_classifier"] == 1.0  # each basin is read as one digit
    # all 30 masked digits share one basin: purity is the share of their most common label
    assert res["purity_by_true_label_masked"] == np.bincount(labels.numpy()).max() / 30
    assert res["classifier_accuracy_masked"] == (labels == 3).sum().item() / 30  # every one read as 3
    assert sorted(res["digits_read_from_noise"][1:3]) == sorted(b["size"] for b in noise)
    assert sum(res["digits_read_from_noise"]) == 12
    levels = arrays["basin_images"].flatten(1).mean(1)
    digit_of = torch.tensor([b["digit"] for b in res["basins"]], dtype=torch.float32)
    torch.testing.assert_close(levels, 10 * digit_of, rtol=0, atol=0.05)  # each basin's own mean image
    assert arrays["basin_images"].shape == (3, 28, 28) and len(arrays["clusters"]) == 43


def test_basins_tell_a_mask_reading_model_what_each_start_knows(small_digits):
    """Noise and blank starts know no pixel (keep all False), masked digits their visible ones;
    the runs are the model's own with those fixed channels, and its read-out keeps the visible pixels."""
    from localrules.studies.restore_basins import basins
    from localrules.train.perturb import mask_pixels

    imgs, labels = _imgs(small_digits, 12)
    cfg = rs.Config(model="hybrid", mask_channel=True, keep_visible=True, gate_writes=2, gate_hidden=16)
    torch.manual_seed(0)
    model = rs.build_model(cfg).eval()
    clf = rs.build_model(rs.Config(model="classifier")).eval()
    seen = []
    run = model.run
    model.run = lambda s, steps, **kw: seen.append(kw["fixed"]) or run(s, steps, **kw)
    res, arrays = basins(model, clf, imgs, labels, n_noise=5, steps=3, k_max=3, seed=0, damage_frac=0.3)
    assert len(seen) == 2 and sum(b["size"] for b in res["basins"]) == 18 and "damage" in res
    fixed = seen[0]  # (18, L, L, 2): [masked image, mask], zero-padded image, mask border 1
    p = model.pad
    assert torch.equal(seen[1], fixed)
    assert torch.all(fixed[:6, p:p + 28, p:p + 28] == 0)  # noise and blank: nothing known
    g = torch.Generator().manual_seed(0)
    torch.randn(5, cfg.lattice, cfg.lattice, cfg.channels, generator=g)  # the noise seeds' draw comes first
    masked, keep = mask_pixels(imgs, 0.95, g)
    torch.testing.assert_close(fixed[6:], model.fixed(masked, keep))
    assert res["n_masked"] == 12


def test_basins_on_a_tiny_case(tmp_path, small_digits, mnist_dir):
    from localrules.studies.restore_basins import basins, purity

    imgs, labels = _imgs(small_digits, 30)
    folder = tmp_path / "m"
    models, clf = _untrained(folder)
    res, arrays = basins(models["hybrid"], clf, imgs, labels, n_noise=10, steps=3, k_max=4)
    assert set(res["silhouette"]) == {2, 3, 4}
    # the count is the k of the best silhouette, and the rows, sizes and images agree with it
    assert res["n_basins"] == max(res["silhouette"], key=res["silhouette"].get) == len(res["basins"])
    assert sum(b["size"] for b in res["basins"]) == 41  # 10 noise + blank + 30 digits
    assert sum(b["from"]["blank"] for b in res["basins"]) == 1
    assert [b["size"] for b in res["basins"]] == np.bincount(arrays["clusters"], minlength=res["n_basins"]).tolist()
    masked = arrays["kinds"] == "masked"
    assert res["purity_by_true_label_masked"] == purity(arrays["clusters"][masked], labels.numpy())
    assert arrays["basin_images"].shape == (res["n_basins"], 28, 28)
    out = CliRunner().invoke(app, ["study", "restore-basins", "--models", str(folder), "--n", "20", "--noise", "5",
                                   "--steps", "2", "--k-max", "3", "--data-dir", str(mnist_dir), "--device", "cpu",
                                   "--json", str(tmp_path / "b.json"), "--png", str(tmp_path / "b.png")])
    assert out.exit_code == 0, out.output
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["n_masked"] == 20 and b["n_noise"] == 5 and b["steps"] == 2 and set(b["silhouette"]) == {"2", "3"}
    assert sum(r["size"] for r in b["basins"]) == 26 and len(b["basins"]) == b["n_basins"]
    from PIL import Image

    with Image.open(tmp_path / "b.png") as im:  # 6 x 6 inches at 120 dpi for up to 5 basins
        assert im.format == "PNG" and im.size == (720, 720)
