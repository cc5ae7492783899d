"""Shared fixtures of the study tests."""
import pytest
import torch

from localrules.data.tabular import load_split
from localrules.tasks import metanca as mn
from localrules.train.loop import TrainConfig, train


@pytest.fixture(scope="session")
def rule(tmp_path_factory):
    """A tiny rule meta-trained on iris for 2 iterations (seeded: the golden heatmap file's rule)."""
    out = tmp_path_factory.mktemp("rule")
    torch.manual_seed(0)
    cfg = mn.Config(archs=((4, 6, 3),), hidden=3, pos_dim=4, rule_hidden=(16,), samples=4, pool_size=8)
    train(mn.MetaNCATask(cfg, load_split("iris"), torch.device("cpu")),
          TrainConfig(iterations=2, steps_min=2, steps_max=2, lr_milestones=()), out, torch.device("cpu"),
          progress=False)
    return out / "model.safetensors"
