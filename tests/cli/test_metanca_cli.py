"""MetaNCA studies and eval default to the shipped MNIST rule when --checkpoint is omitted."""

import json

import pytest
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.tasks import metanca as mn

runner = CliRunner()


@pytest.fixture
def shipped():
    if not mn.PRETRAINED_PATH.exists():
        pytest.skip("no shipped MetaNCA rule in this checkout")
    return str(mn.PRETRAINED_PATH)


def test_studies_default_to_the_shipped_rule(tmp_path, mnist_dir, shipped):
    common = ["--data-dir", str(mnist_dir), "--device", "cpu"]
    hm = tmp_path / "hm.json"
    res = runner.invoke(app, ["study", "heatmap", "--x", "10", "--y", "10", "--samples", "1", "--steps", "1",
                              "--adam-epochs", "0", "--json", str(hm), *common])
    assert res.exit_code == 0, res.output
    out = json.loads(hm.read_text())
    assert out["checkpoint"] == shipped and "adam_accuracy" not in out["cells"][0]
    zo = tmp_path / "zo.json"
    res = runner.invoke(app, ["study", "zeroout", "--samples", "2", "--steps-before", "1", "--steps-after", "1",
                              "--json", str(zo), *common])
    assert res.exit_code == 0, res.output
    z, cfg = json.loads(zo.read_text()), mn.load(shipped)[1]
    assert z["sizes"] == list(cfg.archs[0]) and z["hidden_clip"] == cfg.hidden_clip
    res = runner.invoke(app, ["study", "zeroout", "--samples", "2", "--steps-before", "1", "--steps-after", "1",
                              "--hidden-clip", "0.1", "--json", str(zo), *common])
    assert res.exit_code == 0, res.output
    clipped = json.loads(zo.read_text())
    assert clipped["hidden_clip"] == 0.1 and clipped["accuracy"] != z["accuracy"]
    res = runner.invoke(app, ["study", "zeroout", "--hidden-clip", "0.1", "--ray", "auto", *common])
    assert res.exit_code == 2 and "--hidden-clip" in res.output
    tr = tmp_path / "tr.json"
    res = runner.invoke(app, ["study", "transfer", "--samples", "2", "--steps", "1", "--json", str(tr), *common])
    assert res.exit_code == 0, res.output
    assert json.loads(tr.read_text())["checkpoint"] == shipped
    ev = tmp_path / "ev.json"
    res = runner.invoke(app, ["eval", "metanca", "--samples", "1", "--steps", "1", "--adam-epochs", "0",
                              "--json", str(ev), *common])
    assert res.exit_code == 0, res.output
    assert json.loads(ev.read_text())["checkpoint"] == shipped


def test_heatmap_and_eval_report_the_adam_baseline(tmp_path, mnist_dir, shipped):
    common = ["--data-dir", str(mnist_dir), "--device", "cpu", "--adam-epochs", "0.1"]
    hm, png = tmp_path / "hm.json", tmp_path / "hm.png"
    res = runner.invoke(app, ["study", "heatmap", "--x", "10,20", "--y", "10", "--samples", "2", "--steps", "2",
                              "--json", str(hm), "--png", str(png), *common])
    assert res.exit_code == 0, res.output
    out = json.loads(hm.read_text())
    assert out["adam_epochs"] == 0.1 and png.is_file() and "grown / Adam: median" in res.output
    for c in out["cells"]:
        assert c["adam_accuracy"] > 0.5  # 44 Adam steps on MNIST are far above chance (0.1)
        assert abs(c["ratio"] - c["mean_accuracy"] / c["adam_accuracy"]) < 1e-9
    ev = tmp_path / "ev.json"
    res = runner.invoke(app, ["eval", "metanca", "--samples", "1", "--steps", "1", "--json", str(ev), *common])
    assert res.exit_code == 0, res.output
    rows = json.loads(ev.read_text())["archs"]
    assert res.output.count("grown / Adam") == len(rows) and all("ratio" in r for r in rows)


def test_stability_of_a_given_rule(tmp_path, mnist_dir, shipped):
    res = runner.invoke(app, ["study", "stability", "--checkpoint", shipped, "--dataset", "mnist", "--arch",
                              "784,10,10,10", "--horizon", "5", "--samples", "2", "--out", str(tmp_path),
                              "--data-dir", str(mnist_dir), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "accuracy_stability.json").read_text())
    assert len(out["accuracy_curve"]) == 5 and max(out["accuracy_curve"]) == out["best_accuracy"]
    assert not (tmp_path / "sample_pooling").exists()  # no rule was meta-trained
    assert out["hidden_clip"] == mn.load(shipped)[1].hidden_clip
    res = runner.invoke(app, ["study", "stability", "--checkpoint", shipped, "--dataset", "mnist", "--arch",
                              "784,10,10,10", "--horizon", "5", "--samples", "2", "--out", str(tmp_path / "c"),
                              "--hidden-clip", "0.1", "--data-dir", str(mnist_dir), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    clipped = json.loads((tmp_path / "c" / "accuracy_stability.json").read_text())
    assert clipped["hidden_clip"] == 0.1 and clipped["accuracy_curve"] != out["accuracy_curve"]


def test_stability_meta_trains_with_and_without_pooling_on_iris(tmp_path):
    """`study stability` end to end (small): two rules, their loss curves and the numbers from them."""
    import torch

    from localrules.data.tabular import load_split
    from localrules.studies.metanca_studies import loss_curve, stability_numbers

    res = runner.invoke(app, ["study", "stability", "--dataset", "iris", "--arch", "4,8,3", "--iterations", "2",
                              "--horizon", "5", "--samples", "4", "--steps-max", "10", "--out", str(tmp_path),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "stability.json").read_text())
    assert set(out) == {"sample_pooling", "no_pooling"}
    rules = {}
    for name, pool in (("sample_pooling", 128), ("no_pooling", 0)):
        rule, cfg, meta = mn.load(tmp_path / name / "model.safetensors")
        assert cfg.pool_size == pool and cfg.archs == ((4, 8, 3),) and cfg.fresh_frac == 0.25
        assert meta["iteration"] == 2
        rules[name] = rule
        curve = loss_curve(rule, cfg, (4, 8, 3), load_split("iris"), 4, 5, seed=0)
        assert out[name]["loss_curve"] == pytest.approx(curve.tolist())  # the saved rule's curve
        numbers = stability_numbers(torch.tensor(out[name]["loss_curve"]))
        assert {k: out[name][k] for k in numbers} == pytest.approx(numbers)
        assert f"{name}: {numbers['updates_to_min']} updates to the minimum loss" in res.output
    a, b = (r.state_dict() for r in rules.values())
    assert any(not torch.equal(a[k], b[k]) for k in a)  # two rules, trained apart
