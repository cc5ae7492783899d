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
                              "--json", str(hm), *common])
    assert res.exit_code == 0, res.output
    assert json.loads(hm.read_text())["checkpoint"] == shipped
    zo = tmp_path / "zo.json"
    res = runner.invoke(app, ["study", "zeroout", "--samples", "2", "--steps-before", "1", "--steps-after", "1",
                              "--json", str(zo), *common])
    assert res.exit_code == 0, res.output
    assert json.loads(zo.read_text())["sizes"] == list(mn.load(shipped)[1].archs[0])
    tr = tmp_path / "tr.json"
    res = runner.invoke(app, ["study", "transfer", "--samples", "2", "--steps", "1", "--json", str(tr), *common])
    assert res.exit_code == 0, res.output
    assert json.loads(tr.read_text())["checkpoint"] == shipped
    ev = tmp_path / "ev.json"
    res = runner.invoke(app, ["eval", "metanca", "--samples", "1", "--steps", "1", "--json", str(ev), *common])
    assert res.exit_code == 0, res.output
    assert json.loads(ev.read_text())["checkpoint"] == shipped
