"""``study heatmap|zeroout|stability --ray``: cells as Ray tasks on a local 2-CPU Ray instance give
the same JSON as the local path for the same seeds; resume keeps working; clear errors."""

import json
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.data.tabular import load_split
from localrules.studies import ray_cells
from localrules.studies.metanca_studies import heatmap

runner = CliRunner()


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _heatmap(rule, path, xs=(3, 5), **kw):
    return heatmap(rule, load_split("iris"), list(xs), [3, 5], 3, 2, path, seed=1, progress=False, **kw)


def test_heatmap_on_ray_equals_local_workers_and_resumes(rule, local_ray, tmp_path):
    local = _heatmap(rule, tmp_path / "local.json", workers=2)
    assert len(local["cells"]) == 4
    on_ray = _heatmap(rule, tmp_path / "ray.json", ray="auto")
    assert on_ray == local
    assert json.loads((tmp_path / "ray.json").read_text()) == json.loads((tmp_path / "local.json").read_text())
    part = _heatmap(rule, tmp_path / "resumed.json", xs=(3,))  # two cells here, the rest on Ray
    kept = {(c["x"], c["y"]): c for c in part["cells"]}
    resumed = _heatmap(rule, tmp_path / "resumed.json", ray="auto")
    assert resumed == local and all(c in resumed["cells"] for c in kept.values())


def _cli(*args):
    res = runner.invoke(app, [*args, "--device", "cpu", "--threads", "1"])
    assert res.exit_code == 0, res.output
    return res


def test_zeroout_and_stability_on_ray_equal_the_local_path(rule, local_ray, tmp_path):
    zo = ["study", "zeroout", "--checkpoint", str(rule), "--samples", "3", "--steps-before", "2",
          "--steps-after", "2"]
    _cli(*zo, "--json", str(tmp_path / "zo-local.json"))
    _cli(*zo, "--json", str(tmp_path / "zo-ray.json"), "--ray", "auto")
    assert (tmp_path / "zo-ray.json").read_text() == (tmp_path / "zo-local.json").read_text()
    st = ["study", "stability", "--dataset", "iris", "--arch", "4,6,3", "--iterations", "2", "--horizon", "4",
          "--samples", "3", "--steps-max", "10"]
    _cli(*st, "--out", str(tmp_path / "st-local"))
    _cli(*st, "--out", str(tmp_path / "st-ray"), "--ray", "auto")
    local = json.loads((tmp_path / "st-local" / "stability.json").read_text())
    assert json.loads((tmp_path / "st-ray" / "stability.json").read_text()) == local
    assert list(local) == ["sample_pooling", "no_pooling"] and "pool" not in local["no_pooling"]


def test_ray_is_not_imported_without_ray(rule, tmp_path):
    code = (f"import sys; from localrules.cli.main import cli; "
            f"sys.argv = ['localrules', 'study', 'heatmap', '--checkpoint', {str(rule)!r}, '--x', '3', '--y', '3', "
            f"'--samples', '2', '--steps', '1', '--adam-epochs', '0', '--json', {str(tmp_path / 'h.json')!r}, "
            f"'--device', 'cpu']\ntry:\n    cli()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            f"print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr


def test_ray_missing_or_unreachable_is_one_clear_error(rule, monkeypatch, tmp_path):
    with socket.socket() as s:  # bound and not listening: a connection is refused, and no other
        s.bind(("127.0.0.1", 0))  # process can take the port meanwhile (it stays ours until the check is done)
        port = s.getsockname()[1]
        with pytest.raises(ValueError, match=rf"--ray 127.0.0.1:{port}: no Ray cluster answers there"):
            ray_cells._reachable(f"127.0.0.1:{port}")
    with pytest.raises(ValueError, match="--ray needs auto or HOST:PORT"):
        ray_cells._reachable("somewhere")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    res = runner.invoke(app, ["study", "zeroout", "--checkpoint", str(rule), "--samples", "2", "--steps-before", "1",
                              "--steps-after", "1", "--json", str(tmp_path / "z.json"), "--ray", "auto"])
    assert res.exit_code != 0
    assert "--ray needs Ray, which is not installed: pip install 'localrules[distributed]'" in str(res.exception)
