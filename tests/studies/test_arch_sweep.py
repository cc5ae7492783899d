"""``study heatmap --depth --width`` and ``study architectures``: any [in, h_1..h_k, out] against
Adam; the X x Y heatmap's JSON byte-identical to what it was before the sweep (a golden file
written by the code at commit 270add4); resume; clear errors."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.data.tabular import load_split
from localrules.studies.arch_sweep import depth_width, depth_width_archs, in_training, random_archs, sweep
from localrules.studies.metanca_studies import heatmap
from localrules.tasks import metanca as mn

runner = CliRunner()
GOLDEN = Path(__file__).parent / "data" / "heatmap_xy_golden.json"


def test_xy_heatmap_json_is_byte_identical_to_before(rule, tmp_path):
    path = tmp_path / "heatmap.json"
    heatmap(rule, load_split("iris"), [3, 5], [4, 6], 3, 2, path, seed=1, progress=False, adam_epochs=0.5)
    assert path.read_text().replace(str(rule), "CKPT") == GOLDEN.read_text()


def test_depth_width_cells_and_equal_widths_match_the_xy_heatmap(rule, tmp_path):
    data = load_split("iris")
    res = depth_width(rule, data, [1, 2, 3], [3, 5], 3, 2, tmp_path / "dw.json", seed=1, progress=False,
                      adam_epochs=0.5)
    assert [(c["depth"], c["width"]) for c in res["cells"]] == [(d, w) for d in (1, 2, 3) for w in (3, 5)]
    assert [c["hidden"] for c in res["cells"]] == [list(a) for a in depth_width_archs([1, 2, 3], [3, 5])]
    assert set(res["by_depth"]) == {"1", "2", "3"} and res["mode"] == "depth_width"
    assert json.loads((tmp_path / "dw.json").read_text())["cells"] == res["cells"]
    # depth 2 is the X = Y diagonal of the heatmap: the same networks, the same Adam run
    xy = heatmap(rule, data, [3, 5], [3, 5], 3, 2, tmp_path / "xy.json", seed=1, progress=False, adam_epochs=0.5)
    diag = {c["x"]: c for c in xy["cells"] if c["x"] == c["y"]}
    for c in res["cells"]:
        if c["depth"] == 2:
            for k in ("mean_accuracy", "std", "adam_accuracy", "in_training"):
                assert c[k] == diag[c["width"]][k]
    assert [c["in_training"] for c in res["cells"]] == [False, False, False, False, False, False]


def test_sweep_resumes_and_layer_code_is_recorded(rule, tmp_path):
    data = load_split("iris")
    path = tmp_path / "a.json"
    part = sweep(rule, data, [(3,), (4, 4)], 2, 2, path, progress=False, layer_code="role")
    full = sweep(rule, data, [(3,), (4, 4), (2, 3, 4)], 2, 2, path, progress=False, layer_code="role")
    assert full["layer_code"] == "role" and full["cells"][:2] == part["cells"]
    assert [c["depth"] for c in full["cells"]] == [1, 2, 3]
    other = sweep(rule, data, [(3,)], 2, 2, path, progress=False)  # another code: nothing resumed
    assert other["layer_code"] == "index" and len(other["cells"]) == 1


def test_wrap_reads_the_rule_own_code_up_to_span_and_is_recorded(rule, tmp_path):
    data = load_split("iris")
    archs = [(3,), (4, 4)]
    own = sweep(rule, data, archs, 2, 2, tmp_path / "own.json", progress=False)
    wrapped = sweep(rule, data, archs, 2, 2, tmp_path / "wrap.json", progress=False, wrap=6)
    assert wrapped["wrap"] == 6.0 and "wrap" not in own
    assert [c["mean_accuracy"] for c in wrapped["cells"]] == [c["mean_accuracy"] for c in own["cells"]]
    xy = heatmap(rule, data, [3], [4], 2, 2, tmp_path / "xy.json", progress=False, wrap=6)
    plain = heatmap(rule, data, [3], [4], 2, 2, tmp_path / "xy0.json", progress=False)
    assert xy["wrap"] == 6.0 and "wrap" not in plain and xy["cells"] == plain["cells"]
    with pytest.raises(ValueError, match="index-coded"):
        mn.code_overrides(mn.Config(hidden_code="relative", hidden_span=10.0), wrap=100)
    r = runner.invoke(app, ["study", "architectures", "--checkpoint", str(rule), "--arch", "4,3,3", "--wrap", "6",
                            "--json", str(tmp_path / "x.json")])
    assert r.exit_code != 0 and "--wrap" in r.output


def test_random_archs_are_distinct_in_range_and_seeded():
    a = random_archs(30, (1, 4), (5, 400), seed=3)
    assert len(a) == len(set(a)) == 30 and a == random_archs(30, (1, 4), (5, 400), seed=3)
    assert all(1 <= len(h) <= 4 and all(5 <= w <= 400 for w in h) for h in a)
    assert len(random_archs(50, (1, 1), (2, 4))) == 3  # only three exist
    with pytest.raises(ValueError):
        random_archs(3, (2, 1), (5, 10))


def test_in_training_reads_archs_and_width_range():
    cfg = mn.Config(dataset="mnist", archs=((784, 10, 10, 10),), arch_range=(10, 100))
    assert in_training(cfg, (784, 10, 10, 10)) and in_training(cfg, (784, 100, 37, 10))
    assert not in_training(cfg, (784, 5, 50, 10)) and not in_training(cfg, (784, 50, 10))


def test_cli_depth_width_and_architectures(rule, tmp_path):
    args = ["--checkpoint", str(rule), "--samples", "2", "--steps", "2", "--adam-epochs", "0.5", "--threads", "1"]
    r = runner.invoke(app, ["study", "heatmap", "--depth", "1,2", "--width", "3", *args,
                            "--json", str(tmp_path / "dw.json"), "--png", str(tmp_path / "dw.png")])
    assert r.exit_code == 0, r.output
    assert "1 hidden: 1 cells" in r.output and (tmp_path / "dw.png").stat().st_size > 0
    r = runner.invoke(app, ["study", "architectures", "--random", "3", "--depth-range", "1,3", "--width-range", "3,6",
                            "--layer-code", "role", *args, "--json", str(tmp_path / "a.json"),
                            "--png", str(tmp_path / "a.png")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "a.json").read_text())
    assert len(res["cells"]) == 3 and res["layer_code"] == "role" and (tmp_path / "a.png").stat().st_size > 0


@pytest.mark.parametrize("extra,hint", [(["--depth", "1,2"], "--width"), (["--layer-code", "role"], "--layer-code"),
                                        (["--depth", "1", "--width", "3", "--layer-code", "depth"], "--layer-code")])
def test_cli_heatmap_refuses_bad_sweeps(rule, tmp_path, extra, hint):
    r = runner.invoke(app, ["study", "heatmap", "--checkpoint", str(rule), *extra, "--json", str(tmp_path / "x.json")])
    assert r.exit_code != 0 and hint in r.output
