"""What one trainer iteration does to the weights (issue 36), checked against a hand-written
reference loop on a two-parameter toy task: each parameter's gradient divided by (its norm +
1e-8), Adam, the learning rate divided by 10 at each milestone, and rollout lengths drawn from
the whole range [steps_min, steps_max].
"""

import json

import pytest
import torch
from torch import nn

from localrules.train.loop import TrainConfig, train

CPU = torch.device("cpu")


class ToyTask:
    """loss_t = c_t * (w . a + b) + ||w||^2 with a scale c_t that changes every iteration, so a
    gradient scaled by its norm and a raw one give different Adam steps."""

    def __init__(self):
        torch.manual_seed(0)
        self.model = nn.Linear(3, 1)
        self.a = torch.tensor([[1.0, -2.0, 0.5]])
        self.steps_seen = []

    def scale(self, t):
        return 10.0 ** ((t % 3) - 1)  # 0.1, 1, 10, 0.1, ...

    def loss_at(self, model, t):
        return self.scale(t) * model(self.a).sum() + (model.weight ** 2).sum()

    def training_loss(self, steps):
        self.steps_seen.append(steps)
        return self.loss_at(self.model, len(self.steps_seen) - 1), {}

    def extra_state(self):
        return {}

    def load_extra_state(self, state):
        pass

    def config_dict(self):
        return {"name": "toy"}


def _reference(iterations, lr, milestones, normalize=True):
    """The recipe by hand: Adam on (optionally norm-scaled) gradients, lr x 0.1 at each milestone."""
    task = ToyTask()
    model = task.model
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    lrs = []
    for t in range(iterations):
        for g in opt.param_groups:
            g["lr"] = lr * 0.1 ** sum(t >= m for m in milestones)
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        task.loss_at(model, t).backward()
        if normalize:
            for p in model.parameters():
                p.grad /= p.grad.norm() + 1e-8
        opt.step()
    return model.state_dict(), lrs


def _cfg(**kw):
    return TrainConfig(**{"iterations": 9, "lr": 0.05, "lr_milestones": (3, 6), "steps_min": 1, "steps_max": 1,
                          "log_every": 1, "checkpoint_minutes": 0, **kw})


# catches: gradients not divided by their norm (or by a global norm), the wrong lr decay factor at
# a milestone (the recipe's x0.1, TrainConfig.lr_gamma's default), milestones not applied
def test_an_iteration_is_adam_on_norm_scaled_gradients_with_the_lr_steps(tmp_path):
    task = ToyTask()
    train(task, _cfg(), tmp_path, CPU, progress=False)
    want, lrs = _reference(9, 0.05, (3, 6))
    for k, v in task.model.state_dict().items():
        torch.testing.assert_close(v, want[k], rtol=1e-5, atol=1e-6)
    assert lrs == pytest.approx([0.05] * 3 + [0.005] * 3 + [0.0005] * 3)
    # the lr logged after iteration t is the one iteration t + 1 runs with
    logged = [json.loads(line)["lr"] for line in (tmp_path / "metrics.jsonl").open()]
    assert logged == pytest.approx(lrs[1:] + [0.0005])


# catches: normalize_grads=False still normalising (the restoration recipe trains without it)
def test_without_normalisation_an_iteration_is_plain_adam(tmp_path):
    task = ToyTask()
    train(task, _cfg(normalize_grads=False), tmp_path, CPU, progress=False)
    want, _ = _reference(9, 0.05, (3, 6), normalize=False)
    for k, v in task.model.state_dict().items():
        torch.testing.assert_close(v, want[k], rtol=1e-5, atol=1e-6)
    other, _ = _reference(9, 0.05, (3, 6), normalize=True)
    assert not torch.allclose(task.model.weight, other["weight"])


# catches: rollout lengths drawn from [steps_min, steps_max) (the top of the range never used)
def test_rollout_lengths_cover_the_whole_range(tmp_path):
    task = ToyTask()
    train(task, _cfg(iterations=60, steps_min=2, steps_max=4, lr_milestones=()), tmp_path, CPU, progress=False)
    assert len(task.steps_seen) == 60 and set(task.steps_seen) == {2, 3, 4}
    task = ToyTask()
    train(task, _cfg(iterations=5, steps_min=7, steps_max=7), tmp_path / "b", CPU, progress=False)
    assert task.steps_seen == [7] * 5
