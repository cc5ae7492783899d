import json

import numpy as np
import torch
import pytest
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.tasks import mnist_selfclassify as ms
from localrules.train.checkpoint import save_model
from dataclasses import asdict

runner = CliRunner()


def test_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "run" in res.output and "eval" in res.output
    for cmd in ("run", "eval"):
        res = runner.invoke(app, [cmd, "mnist-selfclassify", "--help"])
        assert res.exit_code == 0 and "--device" in res.output


@pytest.fixture
def untrained_ckpt(tmp_path):
    cfg = ms.Config()
    return save_model(tmp_path / "m", ms.build_model(cfg),
                      {"task": {"name": "mnist-selfclassify", **asdict(cfg)}})


def test_eval_user_arrays_writes_json_and_plots(tmp_path, small_digits, untrained_ckpt):
    x, y = small_digits
    np.save(tmp_path / "x.npy", x[:12])
    np.save(tmp_path / "y.npy", y[:12])
    res = runner.invoke(app, [
        "eval", "mnist-selfclassify", "--checkpoint", str(untrained_ckpt),
        "--images", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
        "--steps", "6", "--mutate-at", "3", "--json", str(tmp_path / "o.json"),
        "--plots", str(tmp_path / "plots"), "--device", "cpu",
    ])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "o.json").read_text())
    assert len(out["accuracy"]) == 6 and len(out["agreement"]) == 6
    assert 0 <= out["top_accuracy"] <= 1
    for f in ("curves.png", "magnitudes.png", "cells.gif"):
        assert (tmp_path / "plots" / f).stat().st_size > 0


def test_eval_bad_input_gets_clear_errors(tmp_path, small_digits, untrained_ckpt):
    res = runner.invoke(app, ["eval", "mnist-selfclassify", "--checkpoint", str(tmp_path / "nope.safetensors")])
    assert res.exit_code != 0 and "no checkpoint" in res.output
    x, _ = small_digits
    np.save(tmp_path / "x.npy", x[:4])
    res = runner.invoke(app, ["eval", "mnist-selfclassify", "--checkpoint", str(untrained_ckpt),
                              "--images", str(tmp_path / "x.npy")])
    assert res.exit_code != 0 and "--labels" in res.output
    res = runner.invoke(app, ["eval", "mnist-selfclassify", "--checkpoint", str(untrained_ckpt),
                              "--device", "tpu"])
    assert res.exit_code != 0


def test_run_trains_and_resumes(tmp_path, mnist_dir):
    args = ["run", "mnist-selfclassify", "--out", str(tmp_path / "r"), "--data-dir", str(mnist_dir),
            "--iterations", "4", "--steps", "3", "--checkpoint-every", "2", "--device", "cpu"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "model.safetensors").exists()
    res = runner.invoke(app, args[:-6] + ["--iterations", "6", "--steps", "3", "--resume", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    steps = [json.loads(l)["step"] for l in (tmp_path / "r" / "metrics.jsonl").open()]
    assert steps[-1] == 6
    ckpt = json.loads((tmp_path / "r" / "model.json").read_text())
    assert ckpt["iteration"] == 6 and ckpt["task"]["loss"] == "l2"
    assert [c["from_iteration"] for c in ckpt["commands"]] == [0, 4]


def test_run_pretrained_evaluates_shipped_model(tmp_path, mnist_dir):
    if not ms.pretrained_path("l2").exists():
        pytest.skip("no shipped checkpoint in this checkout")
    res = runner.invoke(app, ["run", "mnist-selfclassify", "--pretrained", "--n", "20",
                              "--out", str(tmp_path), "--data-dir", str(mnist_dir), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "eval.json").read_text())
    assert out["n_digits"] == 20 and len(out["accuracy"]) == 400
    assert (tmp_path / "cells.gif").exists()


def test_run_metanca_pretrained_grows_mnist_networks(mnist_dir):
    from localrules.tasks import metanca as mn

    if not mn.PRETRAINED_PATH.exists():
        pytest.skip("no shipped MetaNCA rule in this checkout")
    res = runner.invoke(app, ["run", "metanca", "--pretrained", "--samples", "2", "--grow-steps", "3",
                              "--data-dir", str(mnist_dir), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert res.output.count("test accuracy") == len(mn.load(mn.PRETRAINED_PATH)[1].archs)


def test_metanca_run_and_studies_on_iris(tmp_path):
    run_dir = tmp_path / "rule"
    res = runner.invoke(app, ["run", "metanca", "--dataset", "iris", "--arch", "4,8,3", "--iterations", "6",
                              "--steps-min", "2", "--steps-max", "3", "--samples", "4", "--pool-size", "8",
                              "--out", str(run_dir), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    ckpt = str(run_dir / "model.safetensors")
    res = runner.invoke(app, ["eval", "metanca", "--checkpoint", ckpt, "--samples", "3", "--steps", "2",
                              "--device", "cpu", "--card", str(tmp_path / "card.md")])
    assert res.exit_code == 0 and "[4, 8, 3]: test accuracy" in res.output, res.output
    assert "| [4, 8, 3] |" in (tmp_path / "card.md").read_text()
    hm = tmp_path / "hm.json"
    args = ["study", "heatmap", "--checkpoint", ckpt, "--x", "4,8", "--y", "3,8", "--samples", "3",
            "--steps", "2", "--json", str(hm), "--png", str(tmp_path / "hm.png")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(hm.read_text())
    assert len(out["cells"]) == 4 and all(0 <= c["mean_accuracy"] <= 1 for c in out["cells"])
    assert [c["in_training"] for c in out["cells"]] == [False] * 4  # [4, X, Y, 3] vs trained [4, 8, 3]
    res = runner.invoke(app, args[:5] + ["4,8,16"] + args[6:])  # resumes: only X = 16 is new
    assert res.exit_code == 0 and "6 cells" in res.output, res.output
    zo = tmp_path / "zo.json"
    res = runner.invoke(app, ["study", "zeroout", "--checkpoint", ckpt, "--samples", "4", "--steps-before", "3",
                              "--steps-after", "3", "--json", str(zo), "--png", str(tmp_path / "zo.png"),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    z = json.loads(zo.read_text())
    assert len(z["accuracy"]) == 7 and {"accuracy_before", "accuracy_min_after", "accuracy_recovered",
                                     "accuracy_best_after", "updates_to_within_0.02"} <= set(z)
    assert z["accuracy_best_after"] == max(z["accuracy"][4:])  # updates 1..3 after the zero-out at entry 3
    back = z["updates_to_within_0.02"]
    assert back is None or z["accuracy_before"] - z["accuracy"][3 + back] <= 0.02
    res = runner.invoke(app, ["study", "transfer", "--checkpoint", ckpt, "--dataset", "digits", "--arch", "64,12,10",
                              "--samples", "3", "--steps", "2", "--json", str(tmp_path / "tr.json"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "tr.json").read_text())["trained_on"] == "iris"
    res = runner.invoke(app, ["study", "transfer", "--checkpoint", ckpt, "--arch", "4,12,10"])
    assert res.exit_code != 0 and "64 inputs" in res.output
    res = runner.invoke(app, ["eval", "metanca", "--checkpoint", ckpt, "--samples", "2", "--steps", "2", "--heatmap",
                              str(hm), "--zeroout", str(zo), "--card", str(tmp_path / "card2.md")])
    assert res.exit_code == 0, res.output
    card = (tmp_path / "card2.md").read_text()
    assert "worst cell" in card and "Zero-out" in card


def test_metanca_init_rule_starts_from_saved_weights(tmp_path):
    from safetensors.torch import load_file

    base = ["run", "metanca", "--dataset", "iris", "--arch", "4,8,3", "--steps-min", "1", "--steps-max", "1",
            "--samples", "2", "--pool-size", "4", "--device", "cpu"]
    res = runner.invoke(app, base + ["--iterations", "2", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    rule = str(tmp_path / "a" / "model.safetensors")
    res = runner.invoke(app, base + ["--iterations", "1", "--lr", "0", "--init-rule", rule, "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    a, b = load_file(rule), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    res = runner.invoke(app, base + ["--iterations", "1", "--hidden", "4", "--init-rule", rule,
                                     "--out", str(tmp_path / "c")])
    assert res.exit_code != 0 and "another rule shape" in res.output


def test_metanca_bad_arch_is_a_clear_error(tmp_path):
    res = runner.invoke(app, ["run", "metanca", "--arch", "4,x,3", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "comma-separated integers" in res.output
    res = runner.invoke(app, ["run", "metanca", "--arch", "5,8,3", "--out", str(tmp_path), "--iterations", "1"])
    assert res.exit_code != 0
