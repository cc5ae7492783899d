import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.tasks import mnist_selfclassify as ms

from plain import words

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
    assert res.exit_code == 2 and "another model shape" in words(res.output)


def test_run_restore_init_model_starts_from_the_shipped_weights_and_reseeds_the_pool(tmp_path, mnist_dir):
    from localrules.tasks import restore as rs

    shipped = rs.PRETRAINED_DIR / "hybrid" / "model.safetensors"
    base = ["run", "restore", "--iterations", "1", "--lr", "0", "--data-dir", str(mnist_dir), "--device", "cpu",
            "--init-model", str(shipped)]
    shape = ["--mask-channel", "--keep-visible", "--gate-writes", "4", "--gate-hidden", "512"]  # the shipped hybrid's
    res = runner.invoke(app, [*base, *shape, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    a, b = load_file(str(shipped)), load_file(str(tmp_path / "a" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for other in (["--model", "ca"], []):  # another model, or the hybrid without the shipped one's flags
        res = runner.invoke(app, [*base, *other, "--out", str(tmp_path / "b")])
        assert res.exit_code == 2 and "another model shape" in words(res.output)
    assert "mask_channel" in words(res.output) and not (tmp_path / "b").exists()


def test_restore_seed_pool_encodes_with_the_current_weights():
    from localrules.tasks import restore as rs

    images, labels = torch.rand(40, 28, 28), torch.randint(10, (40,))
    task = rs.RestoreTask(rs.Config(model="ca", pool_size=8, batch_size=4), images, labels, "cpu")
    with torch.no_grad():
        task.model.encoder.bias.fill_(0.25)
    task.seed_pool()
    border = task.pool.slots["state"][:, 0]  # the lattice's first row lies in the zero padding
    assert torch.allclose(border, torch.full_like(border, 0.25))


def test_run_restore_steps_range_is_recorded_and_checked(tmp_path, mnist_dir, console):
    import json

    base = ["run", "restore", "--model", "ca", "--iterations", "1", "--data-dir", str(mnist_dir), "--device", "cpu"]
    res = runner.invoke(app, [*base, "--steps-min", "3", "--steps-max", "5", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "a" / "model.json").read_text())
    assert (meta["task"]["steps_min"], meta["task"]["steps_max"]) == (3, 5)
    assert (meta["train"]["steps_min"], meta["train"]["steps_max"]) == (3, 5)
    res = runner.invoke(app, [*base, "--iterations", "2", "--out", str(tmp_path / "a"), "--resume"])
    assert res.exit_code == 0, res.output  # --resume takes the recorded range, not the recipe's 8-16
    meta = json.loads((tmp_path / "a" / "model.json").read_text())
    assert (meta["iteration"], meta["task"]["steps_min"], meta["task"]["steps_max"]) == (2, 3, 5)
    code, _, err = console(*base, "--steps-max", "4", "--out", str(tmp_path / "b"))  # the pool recipe's min is 8
    assert code == 2 and "--steps-min <= --steps-max" in err, err
    assert not (tmp_path / "b").exists()
