"""``study architectures --arch``: named MLPs and CNNs grown by one rule against Adam, with a figure."""

import json

import pytest
import torch
from typer.testing import CliRunner

from localrules.cli.main import app
from tests.cli.plain import words
from localrules.data.tabular import load_split
from localrules.studies.adam_baseline import train_adam
from localrules.tasks import metanca as mn
from localrules.train.loop import TrainConfig, train

runner = CliRunner()


@pytest.fixture(scope="module")
def conv_rule(tmp_path_factory):
    """A tiny rule meta-trained on 8x8 digits for 2 iterations, on a CNN and an MLP."""
    out = tmp_path_factory.mktemp("conv_rule")
    torch.manual_seed(0)
    cfg = mn.Config(dataset="digits", archs=("conv:2", (64, 6, 10)), hidden=3, pos_dim=4, rule_hidden=(16,),
                    samples=4, pool_size=8, data_batch=32)
    train(mn.MetaNCATask(cfg, load_split("digits"), torch.device("cpu")),
          TrainConfig(iterations=2, steps_min=2, steps_max=2, lr_milestones=()), out, torch.device("cpu"),
          progress=False)
    return out / "model.safetensors"


def test_adam_trains_a_cnn_above_chance():
    r = train_adam("conv:4", load_split("digits"), epochs=2, lr=1e-2, seed=0)
    assert r["adam_accuracy"] > 0.5 and r["steps"] == 23


def test_cli_listed_architectures(conv_rule, tmp_path):
    js, png = tmp_path / "cnn.json", tmp_path / "cnn.png"
    r = runner.invoke(app, ["study", "architectures", "--checkpoint", str(conv_rule), "--arch", "conv:2",
                            "--arch", "conv:2,res", "--arch", "64,6,10", "--samples", "2", "--steps", "2",
                            "--adam-epochs", "0.2", "--threads", "1", "--json", str(js), "--png", str(png)])
    assert r.exit_code == 0, r.output
    res = json.loads(js.read_text())
    assert [c["arch"] for c in res["cells"]] == ["conv:2", "conv:2,res", "64,6,10"]
    assert [c["in_training"] for c in res["cells"]] == [True, False, True]
    assert [c["kind"] for c in res["cells"]] == ["cnn", "cnn", "mlp"]
    assert all(0 <= c["mean_accuracy"] <= 1 and c["ratio"] > 0 for c in res["cells"])
    assert res["trained_archs"] == ["conv:2", "64,6,10"] and png.stat().st_size > 0
    assert "conv:2,res (only evaluated)" in r.output
    card = tmp_path / "card.md"
    r = runner.invoke(app, ["eval", "metanca", "--checkpoint", str(conv_rule), "--samples", "2", "--steps", "2",
                            "--adam-epochs", "0.2", "--architectures", str(js), "--card", str(card)])
    assert r.exit_code == 0, r.output
    text = card.read_text()
    assert "meta-trained on ['conv:2', [64, 6, 10]]" in text and "| conv:2 | " in text
    assert "| conv:2,res | no: only evaluated |" in text and "| conv:2 | yes |" in text


@pytest.mark.parametrize("arch,hint", [("conv:2,y", "'y'"), ("conv:2,2,2,2", "too many pooled"),
                                       ("64,6,3", "needs 64 inputs and 10 outputs")])
def test_cli_refuses_bad_architectures(conv_rule, tmp_path, arch, hint):
    r = runner.invoke(app, ["study", "architectures", "--checkpoint", str(conv_rule), "--arch", arch,
                            "--json", str(tmp_path / "x.json")])
    assert r.exit_code != 0 and hint in r.output, r.output


def test_cli_run_metanca_refuses_a_bad_conv_arch(tmp_path, console):
    r = runner.invoke(app, ["run", "metanca", "--dataset", "digits", "--arch", "conv:8,,16", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "conv:8,,16" in r.output, r.output
    code, _, err = console("run", "metanca", "--dataset", "wine", "--arch", "conv:4", "--iterations", "1",
                           "--out", str(tmp_path / "w"))
    assert code == 2 and "error: a convolutional task network needs square grey images" in err, err


def test_cli_zeroout_and_stability_of_a_cnn(conv_rule, tmp_path):
    """`study zeroout` and `study stability --checkpoint` take a CNN (issue 38: zero-out and
    long-horizon stability of grown CNNs); the JSON names the architecture as given."""
    js = tmp_path / "z.json"
    r = runner.invoke(app, ["study", "zeroout", "--checkpoint", str(conv_rule), "--arch", "conv:2,res", "--samples", "2",
                            "--steps-before", "3", "--steps-after", "4", "--threads", "1", "--json", str(js),
                            "--png", str(tmp_path / "z.png")])
    assert r.exit_code == 0, r.output
    res = json.loads(js.read_text())
    assert res["sizes"] == "conv:2,res" and len(res["accuracy"]) == 3 + 1 + 4
    assert all(0 <= a <= 1 for a in res["accuracy"]) and "architecture conv:2,res" in r.output
    r = runner.invoke(app, ["study", "stability", "--checkpoint", str(conv_rule), "--arch", "conv:2", "--samples", "2",
                            "--horizon", "5", "--threads", "1", "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "s" / "accuracy_stability.json").read_text())
    assert res["arch"] == "conv:2" and len(res["accuracy_curve"]) == 5
    r = runner.invoke(app, ["study", "stability", "--arch", "conv:2", "--out", str(tmp_path / "t")])
    assert r.exit_code == 2 and "a CNN needs --checkpoint" in words(r.output), r.output
