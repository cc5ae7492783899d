"""``study datasets``: scikit-learn datasets with their own input widths, grown by a rule from
another dataset, zero-shot and fine-tuned, beside Adam and logistic regression; the new splits."""

import json

import pytest
import torch
from typer.testing import CliRunner

from localrules.cli.main import app
from localrules.data.tabular import load_split
from localrules.studies.dataset_transfer import dataset_row
from localrules.tasks import metanca as mn
from localrules.viz.plots import plot_stability

runner = CliRunner()


@pytest.mark.parametrize("name,features,classes", [("wine", 13, 3), ("breast_cancer", 30, 2)])
def test_new_splits_are_standardised_80_20(name, features, classes):
    d = load_split(name)
    assert d.n_features == features and d.n_classes == classes
    n = len(d.x_train) + len(d.x_test)
    assert len(d.x_test) == round(0.2 * n)
    torch.testing.assert_close(d.x_train.mean(0), torch.zeros(features), atol=1e-4, rtol=0)
    torch.testing.assert_close(d.x_train.std(0, unbiased=False), torch.ones(features), atol=1e-4, rtol=0)


def test_dataset_row_grows_with_the_datasets_own_widths(rule, tmp_path):
    row = dataset_row(rule, "wine", (5,), 3, 2, 2, (0.5,), tmp_path, seed=0)
    assert row["arch"] == [13, 5, 3] and row["chance"] == pytest.approx(1 / 3)
    for k in ("grown", "finetuned", "logistic_regression"):
        assert 0.0 <= row[k] <= 1.0
    assert set(row["adam"]) == {"0.5"} and (tmp_path / "wine" / "model.safetensors").is_file()
    _, cfg, _ = mn.load(tmp_path / "wine" / "model.safetensors")
    assert cfg.dataset == "wine" and cfg.archs == ((13, 5, 3),)


def test_cli_study_datasets(rule, tmp_path):
    r = runner.invoke(app, ["study", "datasets", "--checkpoint", str(rule), "--datasets", "iris,breast_cancer",
                            "--hidden", "4", "--samples", "2", "--steps", "2", "--finetune-iters", "0",
                            "--adam-epochs", "0.5", "--out", str(tmp_path), "--png", str(tmp_path / "d.png"),
                            "--threads", "1"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "datasets.json").read_text())
    assert [row["arch"] for row in res["rows"]] == [[4, 4, 3], [30, 4, 2]]
    assert "finetuned" not in res["rows"][0] and (tmp_path / "d.png").stat().st_size > 0
    r = runner.invoke(app, ["study", "datasets", "--checkpoint", str(rule), "--datasets", "mnist"])
    assert r.exit_code != 0 and "--datasets" in r.output


def test_run_metanca_accepts_the_new_datasets(tmp_path):
    r = runner.invoke(app, ["run", "metanca", "--dataset", "breast_cancer", "--iterations", "1", "--samples", "2",
                            "--pool-size", "4", "--steps-min", "1", "--steps-max", "1", "--threads", "1",
                            "--out", str(tmp_path / "bc")])
    assert r.exit_code == 0, r.output
    _, cfg, _ = mn.load(tmp_path / "bc" / "model.safetensors")
    assert cfg.archs[0][0] == 30 and cfg.archs[0][-1] == 2


def test_stability_figures(tmp_path):
    acc = {"arch": [4, 8, 3], "accuracy_curve": [0.3, 0.8, 0.9, 0.89], "best_accuracy": 0.9, "updates_to_best": 3}
    loss = {"sample_pooling": {"loss_curve": [1.0, 0.5, 0.4]}, "no_pooling": {"loss_curve": [1.0, 0.6, 0.9]}}
    for res, name in ((acc, "a.png"), (loss, "b.png")):
        assert plot_stability(res, tmp_path / name).stat().st_size > 0
