import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.tasks import mnist_selfclassify as ms

runner = CliRunner()


def test_run_selfclassify_init_model_starts_from_the_shipped_weights(tmp_path, mnist_dir):
    base = ["run", "mnist-selfclassify", "--iterations", "1", "--steps", "2", "--batch-size", "4",
            "--pool-size", "8", "--lr", "0", "--augment", "--data-dir", str(mnist_dir), "--device", "cpu",
            "--init-model", str(ms.pretrained_path("l2"))]
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    a, b = load_file(str(ms.pretrained_path("l2"))), load_file(str(tmp_path / "a" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    res = runner.invoke(app, [*base, "--perception", "sobel", "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "another model shape" in res.output
