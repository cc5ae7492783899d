"""The Adam baseline of the MetaNCA studies lowers its loss and beats chance."""

import torch

from localrules.data.tabular import load_split
from localrules.studies.adam_baseline import init_mlp, mlp_forward, train_adam


def test_mlp_forward_by_hand():
    params = init_mlp((3, 4, 2))
    x = torch.randn(5, 3)
    ref = torch.tanh(x @ params[0].T + params[1]) @ params[2].T + params[3]
    torch.testing.assert_close(mlp_forward(params, x, "tanh"), ref)


def test_adam_baseline_lowers_its_loss_on_iris():
    data = load_split("iris")
    res = train_adam((4, 16, 3), data, epochs=40, batch=32, lr=1e-2, seed=0)
    assert res["steps"] == 150  # ceil(40 epochs * 120 flowers / 32)
    first, last = sum(res["losses"][:8]) / 8, sum(res["losses"][-8:]) / 8
    assert last < 0.5 * first, (first, last)
    assert res["adam_accuracy"] > 0.8  # chance is 1/3
