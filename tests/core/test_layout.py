"""--layout: the restorer's lattice convolution in NCHW or channels-last gives the same numbers."""

import pytest
import torch

from localrules.core.layout import LAYOUT_DEFAULT, NCHWGrid2D, resolve_layout, use_layout
from localrules.core.topology import Grid2D
from localrules.tasks import restore as rs


def test_nchw_layout_restorer_equals_channels_last():
    """The hybrid restorer's output and gradients with either layout (catches a layout that moves
    channels, or a model whose grid is not replaced)."""
    torch.manual_seed(0)
    model = rs.build_model(rs.Config(model="hybrid", gate_hidden=16)).eval()
    torch.nn.init.normal_(model.ca.rule.mlp[-1].weight, std=0.05)
    x = torch.rand(3, 28, 28)

    def run():
        y = model(x)
        model.zero_grad()
        y.square().sum().backward()
        return y.detach(), [p.grad.clone() for p in model.parameters()]

    want = run()
    assert type(use_layout(model, "nchw").grid) is NCHWGrid2D
    got = run()
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(got[1], want[1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert type(use_layout(model, "channels-last").grid) is Grid2D


def test_layout_defaults_per_device_and_bad_names():
    assert resolve_layout("auto", torch.device("cpu")) == LAYOUT_DEFAULT["cpu"]
    assert resolve_layout("auto", torch.device("cuda")) == LAYOUT_DEFAULT["cuda"]
    assert resolve_layout("nchw", torch.device("cpu")) == "nchw"
    with pytest.raises(ValueError, match="--layout"):
        resolve_layout("nhwc", torch.device("cpu"))
