"""A MetaNCA rule meta-trained on one dataset grows networks for others, with their own input widths.

For each dataset D (scikit-learn's 8x8 digits, wine, breast cancer, iris; 80/20 split, seed 0)
and task architecture [n_in(D), h_1, ..., h_k, n_out(D)]:

- ``grown``: mean test accuracy of ``samples`` networks grown for ``steps`` updates by the rule
  as it is (zero-shot: its codes name input neurons 0..n_in - 1 it knew as MNIST pixels);
- ``finetuned``: the same after ``finetune_iters`` meta-training iterations on D started from the
  rule's weights (the rule's own options; a fresh pool and optimizer; only this architecture);
- ``adam``: the same architecture (the grown networks' init and activation) trained by Adam for
  each of ``adam_epochs`` epochs (lr 1e-3, batch 128), as in the heatmap;
- ``logistic_regression``: scikit-learn's LogisticRegression (lbfgs, max_iter 5000) on the
  same features and split.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from localrules.data.tabular import load_split
from localrules.studies.adam_baseline import train_adam
from localrules.studies.metanca_studies import grow_accuracy
from localrules.tasks import metanca as mn

SKLEARN_DATASETS = ("digits", "wine", "breast_cancer", "iris")


def logistic_regression(data) -> float:
    """Test accuracy of scikit-learn's multinomial logistic regression on the split."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=5000).fit(data.x_train.numpy(), data.y_train.numpy())
    return float(clf.score(data.x_test.numpy(), data.y_test.numpy()))


def finetune(rule, cfg: mn.Config, dataset: str, sizes, iterations: int, out, lr: float = 1e-3, seed: int = 0,
             progress: bool = False):
    """Meta-train a copy of ``rule`` on ``dataset`` with architecture ``sizes`` for ``iterations``
    (rollouts of 4..8 updates, as the shipped rule's stages) into ``out``; -> (rule, cfg)."""
    from localrules.train.loop import TrainConfig, train

    torch.manual_seed(seed)
    dev = next(rule.parameters()).device
    fcfg = replace(cfg, dataset=dataset, archs=(tuple(sizes),), arch_range=()).validate()
    task = mn.MetaNCATask(fcfg, load_split(dataset, fcfg.split_seed), dev)
    task.model.load_state_dict(rule.state_dict())
    train(task, TrainConfig(iterations=iterations, lr=lr, lr_milestones=(), steps_min=4, steps_max=8, seed=seed),
          out, dev, overwrite=True, progress=progress)
    return task.model.eval(), fcfg


def dataset_row(checkpoint, dataset: str, hidden, samples: int, steps: int, finetune_iters: int,
                adam_epochs=(1.0,), out=None, lr: float = 1e-3, seed: int = 0, device="cpu",
                progress: bool = False) -> dict:
    """One dataset: grown (zero-shot and fine-tuned), Adam and logistic-regression test accuracy."""
    rule, cfg, _ = mn.load(checkpoint, device)
    data = load_split(dataset, cfg.split_seed)
    sizes = (data.n_features, *hidden, data.n_classes)
    row = {"dataset": dataset, "arch": list(sizes), "n_train": len(data.x_train), "n_test": len(data.x_test),
           "chance": 1.0 / data.n_classes}
    acc = grow_accuracy(rule, cfg, sizes, data, samples, steps, seed)
    row.update(grown=acc.mean().item(), grown_std=acc.std().item() if samples > 1 else 0.0)
    if finetune_iters > 0:
        ft, fcfg = finetune(rule, cfg, dataset, sizes, finetune_iters, Path(out) / dataset, lr, seed, progress)
        acc = grow_accuracy(ft, fcfg, sizes, data, samples, steps, seed)
        row.update(finetune_iters=finetune_iters, finetuned=acc.mean().item(),
                   finetuned_std=acc.std().item() if samples > 1 else 0.0,
                   finetuned_rule=str(Path(out) / dataset / "model.safetensors"))
    row["adam"] = {f"{e:g}": train_adam(sizes, data, e, activation=cfg.activation, seed=seed)["adam_accuracy"]
                   for e in adam_epochs}
    row["logistic_regression"] = logistic_regression(data)
    return row
