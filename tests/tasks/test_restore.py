import json

import pytest
import torch
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.studies.restore_eval import count_flops, evaluate, psnr
from localrules.tasks import restore as rs
from localrules.train.loop import TrainConfig, train
from localrules.train.perturb import mask_pixels


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
    for name, lo, hi in (("hybrid", 1.2e6, 1.4e6), ("ca", 1e3, 3e3), ("cnn-ae", 0.9e6, 1.1e6)):
        m = rs.build_model(rs.Config(model=name)).eval()
        assert m(x).shape == (3, 28, 28)
        assert lo < sum(p.numel() for p in m.parameters()) < hi, name
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
    out = rs.normalized_convolution(x, keep)
    assert torch.equal(out[keep], x[keep]) and torch.all(out[~keep] > 0)


@pytest.mark.parametrize("model", ["hybrid", "ca"])
def test_tiny_training_lowers_the_loss(tmp_path, small_digits, model):
    x, y = small_digits
    imgs = torch.nn.functional.pad(torch.as_tensor(x[:300]).float() / 255, (6, 6, 6, 6))  # 28x28
    torch.manual_seed(0)
    task = rs.RestoreTask(rs.Config(model=model, batch_size=16, gate_hidden=64), imgs,
                          torch.as_tensor(y[:300]), torch.device("cpu"))
    train(task, TrainConfig(iterations=40, steps_min=4, steps_max=4, lr=3e-3, lr_milestones=(),
                            log_every=1, normalize_grads=False), tmp_path, torch.device("cpu"), progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").open()]
    assert sum(losses[-5:]) / 5 < 0.7 * losses[0], losses


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
    for row in res["models"].values():
        assert 0 <= row["digit_id_accuracy"] <= 1 and row["psnr_db"] > 0
    assert torch.equal(restored["keep"].sum((1, 2)), torch.full((20,), 235))


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
    assert set(json.loads((tmp_path / "t.json").read_text())["models"]) == {"hybrid", "ca", "cnn-ae", "interpolation"}
    assert (tmp_path / "t.png").stat().st_size > 0
    assert "| hybrid |" in (tmp_path / "card.md").read_text()
    res = CliRunner().invoke(app, ["study", "restore-damage", "--models", str(folder), "--n", "16",
                                   "--data-dir", str(mnist_dir), "--json", str(tmp_path / "d.json"),
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    d = json.loads((tmp_path / "d.json").read_text())
    assert set(d["models"]["hybrid"]) == {"accuracy_intact", "accuracy_damaged", "accuracy_drop"}
