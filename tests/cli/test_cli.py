import json
import re

import numpy as np
import torch
import pytest
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.tasks import mnist_selfclassify as ms
from localrules.tasks.metanca import load as mn_load
from localrules.train.checkpoint import save_model
from dataclasses import asdict

runner = CliRunner()


WIDE = {"COLUMNS": "250", "TERMINAL_WIDTH": "250"}  # one line per option's help, whatever the terminal


def _listed_commands(text: str) -> list[str]:
    """The names in the help's Commands box, in order."""
    box = text.split("Commands", 1)[1].split("╰", 1)[0]
    return re.findall(r"^│ ([a-z][\w-]*)\s{2,}\S", box, re.M)


def test_help_lists_commands():
    """The top-level help lists every command with its summary, and the per-task helps show an
    option's own text and default. Catches: a command missing from (or hidden in) the help, a
    help string lost, a default changed without the help saying so."""
    import typer

    res = runner.invoke(app, ["--help"], env=WIDE)
    assert res.exit_code == 0
    listed = _listed_commands(res.output)
    registered = sorted(n for n, c in typer.main.get_command(app).commands.items() if not c.hidden)
    assert sorted(listed) == registered and {"run", "eval", "study", "bench", "demo"} <= set(listed), listed
    assert re.search(r"│ run\s+Train a system, or evaluate its shipped model with --pretrained", res.output)
    assert re.search(r"│ eval\s+Evaluate a checkpoint with the system's paper protocol", res.output)
    for cmd in ("run", "eval"):
        res = runner.invoke(app, [cmd, "mnist-selfclassify", "--help"], env=WIDE)
        assert res.exit_code == 0
        assert re.search(r"--device\s.*auto \(CUDA when present\), cpu or cuda\.\s+\[default: auto\]", res.output)
    assert re.search(r"--steps\s.*CA steps in total\.\s+\[default: 400\]", res.output)  # eval's protocol
    assert re.search(r"--mutate-at\s.*mutated into another test digit .*\[default: 200\]", res.output)


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
    assert (out["n_digits"], out["steps"], out["mutate_at"]) == (12, 6, 3)
    assert len(out["accuracy"]) == 6 and len(out["agreement"]) == 6
    # the summary is read off the curves (catches a top value or step of another curve, or off by one)
    acc = out["accuracy"]
    assert out["top_accuracy"] == max(acc) and out["top_accuracy_step"] == acc.index(max(acc)) + 1
    assert out["top_agreement"] == max(out["agreement"])
    from PIL import Image

    # figure sizes (inches x 120 dpi; curves.png 4.2 in high, its legend below the panels) and the GIF: 12 digits of 16 x 16 cells in rows of 8 (17 cells a
    # tile, 4 pixels a cell, 16-pixel bands above and below), every 2nd of the 6 steps
    sizes = {"curves.png": ((1320, 504), 1), "magnitudes.png": ((780, 456), 1), "cells.gif": ((544, 168), 3)}
    for f, (size, n_frames) in sizes.items():
        with Image.open(tmp_path / "plots" / f) as im:
            assert im.size == size and getattr(im, "n_frames", 1) == n_frames, f
            assert len(im.convert("RGB").getcolors(im.size[0] * im.size[1])) > 2, f  # not blank


def test_eval_bad_input_gets_clear_errors(tmp_path, small_digits, untrained_ckpt, console):
    res = runner.invoke(app, ["eval", "mnist-selfclassify", "--checkpoint", str(tmp_path / "nope.safetensors")])
    assert res.exit_code == 2 and "no checkpoint" in res.output
    x, _ = small_digits
    np.save(tmp_path / "x.npy", x[:4])
    res = runner.invoke(app, ["eval", "mnist-selfclassify", "--checkpoint", str(untrained_ckpt),
                              "--images", str(tmp_path / "x.npy")])
    assert res.exit_code == 2 and "--labels" in res.output
    code, _, err = console("eval", "mnist-selfclassify", "--checkpoint", str(untrained_ckpt), "--device", "tpu")
    assert code == 2 and err == "error: --device must be auto, cpu or cuda, not 'tpu'\n", err


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
    from PIL import Image

    with Image.open(tmp_path / "cells.gif") as im:  # the first 16 digits, 8 a row, every 2nd of 400 steps
        assert im.size == (8 * 29 * 4, 2 * 29 * 4 + 32) and im.n_frames == 200


def test_run_metanca_pretrained_grows_mnist_networks(mnist_dir):
    from localrules.tasks import metanca as mn

    if not mn.PRETRAINED_PATH.exists():
        pytest.skip("no shipped MetaNCA rule in this checkout")
    res = runner.invoke(app, ["run", "metanca", "--pretrained", "--samples", "2", "--grow-steps", "3",
                              "--data-dir", str(mnist_dir), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert res.output.count("test accuracy") == len(mn.load(mn.PRETRAINED_PATH)[1].archs)


def test_metanca_run_and_studies_on_iris(tmp_path, monkeypatch):
    from localrules.data.tabular import load_split
    from localrules.studies import metanca_studies as ms_

    run_dir = tmp_path / "rule"
    res = runner.invoke(app, ["run", "metanca", "--dataset", "iris", "--arch", "4,8,3", "--iterations", "6",
                              "--steps-min", "2", "--steps-max", "3", "--samples", "4", "--pool-size", "8",
                              "--out", str(run_dir), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    ckpt = str(run_dir / "model.safetensors")
    rule, cfg, _ = mn_load(ckpt)
    iris = load_split("iris")
    res = runner.invoke(app, ["eval", "metanca", "--checkpoint", ckpt, "--samples", "3", "--steps", "2",
                              "--device", "cpu", "--card", str(tmp_path / "card.md")])
    assert res.exit_code == 0 and "[4, 8, 3]: test accuracy" in res.output, res.output
    assert "| [4, 8, 3] |" in (tmp_path / "card.md").read_text()
    hm = tmp_path / "hm.json"
    args = ["study", "heatmap", "--checkpoint", ckpt, "--x", "4,8", "--y", "3,8", "--samples", "3",
            "--steps", "2", "--json", str(hm), "--png", str(tmp_path / "hm.png"), "--adam-epochs", "0"]
    grown = []  # (x, y) of every cell the heatmap grows
    cell_of = ms_._heatmap_cell
    monkeypatch.setattr(ms_, "_heatmap_cell", lambda a: grown.append(a[2:4]) or cell_of(a))
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(hm.read_text())
    assert sorted(grown) == [(4, 3), (4, 8), (8, 3), (8, 8)]
    assert [(c["x"], c["y"]) for c in out["cells"]] == [(4, 3), (4, 8), (8, 3), (8, 8)]
    for c in out["cells"]:  # the values: networks grown with the rule, as grow_accuracy does by hand
        acc = ms_.grow_accuracy(rule, cfg, (4, c["x"], c["y"], 3), iris, 3, 2, seed=0)
        assert c["mean_accuracy"] == pytest.approx(acc.mean().item()) and c["std"] == pytest.approx(acc.std().item())
    assert [c["in_training"] for c in out["cells"]] == [False] * 4  # [4, X, Y, 3] vs trained [4, 8, 3]
    for i, c in enumerate(out["cells"]):  # plant marks: a resumed run keeps finished cells as they are
        c["mean_accuracy"] = 0.5 + i / 100
    hm.write_text(json.dumps(out))
    grown.clear()
    res = runner.invoke(app, args[:5] + ["4,8,16"] + args[6:])  # resumes: only X = 16 is new
    assert res.exit_code == 0 and "6 cells" in res.output, res.output
    assert sorted(grown) == [(16, 3), (16, 8)]  # finished cells were not grown again
    out = json.loads(hm.read_text())
    assert [c["mean_accuracy"] for c in out["cells"][:4]] == [0.5, 0.51, 0.52, 0.53]
    new = out["cells"][4]
    assert (new["x"], new["y"]) == (16, 3) and new["mean_accuracy"] == pytest.approx(
        ms_.grow_accuracy(rule, cfg, (4, 16, 3, 3), iris, 3, 2, seed=0).mean().item())
    grown.clear()
    res = runner.invoke(app, args[:5] + ["4"] + args[6:])  # a smaller grid: summarised alone, the rest kept
    assert res.exit_code == 0 and sorted(grown) == [], res.output
    small = json.loads(hm.read_text())
    assert [(c["x"], c["y"]) for c in small["cells"]] == [(4, 3), (4, 8)] and len(small["other_cells"]) == 4
    assert small["mean_over_cells"] == pytest.approx((0.5 + 0.51) / 2) and small["worst_cell"] == 0.5
    res = runner.invoke(app, args[:5] + ["4,8,16"] + args[6:])  # and the whole grid again, nothing regrown
    assert res.exit_code == 0 and sorted(grown) == [] and json.loads(hm.read_text())["cells"] == out["cells"]
    i = args.index("--steps")
    other = [*args[: i + 1], "3", *args[i + 2 :]]  # other --steps: the JSON's settings differ, so it starts over
    res = runner.invoke(app, other)
    assert res.exit_code == 0 and "4 cells" in res.output, res.output
    assert sorted(grown) == [(4, 3), (4, 8), (8, 3), (8, 8)]
    out = json.loads(hm.read_text())
    assert out["steps"] == 3 and len(out["cells"]) == 4 and 0.5 not in [c["mean_accuracy"] for c in out["cells"]]
    zo = tmp_path / "zo.json"
    res = runner.invoke(app, ["study", "zeroout", "--checkpoint", ckpt, "--samples", "4", "--steps-before", "3",
                              "--steps-after", "3", "--json", str(zo), "--png", str(tmp_path / "zo.png"),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    z = json.loads(zo.read_text())
    assert z == ms_.zeroout_curve(rule, cfg, (4, 8, 3), iris, 4, 3, 3, 0.3, seed=0)  # the library's numbers
    acc = z["accuracy"]
    assert len(acc) == 7 and z["accuracy_before"] == acc[2] and z["accuracy_min_after"] == min(acc[3:])
    assert z["accuracy_best_after"] == max(acc[4:])  # updates 1..3 after the zero-out at entry 3
    assert z["accuracy_recovered"] == acc[-1]
    # the first update after the zero-out within 0.02 of before, or None if there is none
    # (a non-None case by hand: tests/tasks/test_metanca.py::test_zeroout_recovery_numbers_by_hand)
    assert z["updates_to_within_0.02"] == next((t for t in (1, 2, 3) if acc[2] - acc[3 + t] <= 0.02), None)
    res = runner.invoke(app, ["study", "transfer", "--checkpoint", ckpt, "--dataset", "digits", "--arch", "64,12,10",
                              "--samples", "3", "--steps", "2", "--json", str(tmp_path / "tr.json"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    tr = json.loads((tmp_path / "tr.json").read_text())
    acc = ms_.grow_accuracy(rule, cfg, (64, 12, 10), load_split("digits"), 3, 2, seed=0)
    assert tr["trained_on"] == "iris" and tr["dataset"] == "digits" and tr["arch"] == [64, 12, 10]
    assert tr["mean_accuracy"] == pytest.approx(acc.mean().item()) and tr["std"] == pytest.approx(acc.std().item())
    assert tr["chance"] == 0.1 and f"{acc.mean().item():.4f}" in res.output
    res = runner.invoke(app, ["study", "transfer", "--checkpoint", ckpt, "--arch", "4,12,10"])
    assert res.exit_code == 2 and "64 inputs" in res.output
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
    assert res.exit_code == 2 and "another rule shape" in res.output
    res = runner.invoke(app, base + ["--iterations", "1", "--lr", "0", "--data-conditioned", "--init-rule", rule,
                                     "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    d = load_file(str(tmp_path / "d" / "model.safetensors"))
    w = d["rule.mlp.0.weight"]
    assert torch.equal(w[:, :-4], a["rule.mlp.0.weight"]) and not w[:, -4:].any()


def test_metanca_arch_draw_is_recorded_and_checked(tmp_path, console):
    # catches: --arch-draw not reaching the Config (the run would draw uniform widths and record
    # nothing), or an unknown draw accepted
    res = runner.invoke(app, ["run", "metanca", "--dataset", "iris", "--arch", "4,8,3", "--arch-range", "2,30",
                              "--arch-draw", "log", "--iterations", "2", "--steps-min", "1", "--steps-max", "1",
                              "--samples", "2", "--pool-size", "4", "--out", str(tmp_path / "a"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert mn_load(str(tmp_path / "a" / "model.safetensors"))[1].arch_draw == "log"
    code, _, err = console("run", "metanca", "--arch-range", "2,30", "--arch-draw", "geometric", "--iterations", "1",
                           "--out", str(tmp_path / "b"), "--device", "cpu")
    assert code == 2 and "arch_draw must be one of ('uniform', 'log'), not 'geometric'" in err, err
    assert not (tmp_path / "b").exists()


def test_metanca_bad_arch_is_a_clear_error(tmp_path, console):
    code, _, err = console("run", "metanca", "--arch", "4,x,3", "--out", str(tmp_path / "a"))
    assert code == 2 and "--arch must be comma-separated integers, got '4,x,3'" in err and "Traceback" not in err, err
    code, _, err = console("run", "metanca", "--arch", "5,8,3", "--out", str(tmp_path / "b"), "--iterations", "1",
                        "--device", "cpu")
    assert code == 2 and err == "error: architecture [5, 8, 3] does not fit iris: it needs 4 inputs and 3 outputs\n", err
    assert not (tmp_path / "b").exists()  # refused before a run folder was made


@pytest.mark.parametrize("argv0", ["/usr/bin/localrules", "/work/main/localrules/__main__.py"])
def test_recorded_command_names_localrules(monkeypatch, argv0):
    """Model cards show the command a user can type, also for runs started by `python -m localrules`."""
    from localrules.cli.common import command_line

    monkeypatch.setattr("sys.argv", [argv0, "run", "metanca", "--out", "runs/a b"])
    assert command_line() == "localrules run metanca --out 'runs/a b'"
