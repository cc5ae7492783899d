"""Positional codes are defined for any depth and width: layer codes that do not name the depth,
hidden codes of widths 5..400 that do not depend on the widest layer seen in meta-training."""

import pytest
import torch

from localrules.core.neuron_code import (LAYER_CODES, NeuronCode, layer_positions, network_code, neuron_positions,
                                         relative_positions, wrapped_positions)
from localrules.core.weightgraph import DenseLayers, WeightGraph, positional_code
from localrules.tasks import metanca as mn

DEPTHS = (0, 1, 2, 3, 4, 6)


def _blocks(topo, mode):
    """One layer position per block (all cells of a block share it)."""
    pos = layer_positions(topo, mode)
    out, k = [], 0
    for o, i in topo.block_shapes:
        assert torch.equal(pos[k : k + o * i], pos[k].expand(o * i))
        out.append(float(pos[k]))
        k += o * i
    return out


@pytest.mark.parametrize("mode", LAYER_CODES)
@pytest.mark.parametrize("depth", DEPTHS)
def test_layer_code_defined_at_every_depth(mode, depth):
    topo = DenseLayers([6] + [5] * depth + [3])
    pos = layer_positions(topo, mode)
    assert pos.shape == (topo.n_cells,) and torch.isfinite(pos).all()
    code = NeuronCode(topo, neuron_positions(topo)[None], mode).cell_code(60)
    assert code.shape == (1, topo.n_cells, 60) and torch.isfinite(code).all()


@pytest.mark.parametrize("mode", ("role", "relative"))
def test_depth_independent_codes_equal_the_index_code_on_two_hidden_layers(mode):
    # shipped rules were trained on [n, X, Y, m] with the index code: they read the same codes there
    for topo in (DenseLayers([7, 5, 4, 3]), WeightGraph([7, 5, 4, 3])):
        coded = NeuronCode(topo, neuron_positions(topo)[None], mode)
        torch.testing.assert_close(coded.cell_code(60)[0], positional_code(topo, 20))


@pytest.mark.parametrize("depth", DEPTHS[1:])
def test_role_code_names_input_hidden_and_output_layers_at_any_depth(depth):
    topo = DenseLayers([6] + [5] * depth + [3])
    assert _blocks(topo, "role") == [0.0] + [1.0] * (depth - 1) + [2.0]
    rel = _blocks(topo, "relative")
    assert rel[0] == 0.0 and rel[-1] == 2.0 and rel == sorted(rel)
    assert set(_blocks(topo, "role")) <= {0.0, 1.0, 2.0}  # nothing a two-hidden-layer network lacks


def test_index_layer_code_of_an_unseen_depth_is_new():
    # the reason for the role code: three hidden layers put the output layer at index 3
    assert _blocks(DenseLayers([6, 5, 5, 5, 3]), "index") == [0.0, 1.0, 2.0, 3.0]
    assert _blocks(DenseLayers([6, 5, 3]), "index") == [0.0, 1.0]  # the output read as a hidden layer


@pytest.mark.parametrize("width", (5, 10, 100, 101, 250, 400))
def test_hidden_codes_of_any_width_do_not_depend_on_the_widest_layer(width):
    topo = DenseLayers([6, width, width, 3])
    q = relative_positions(topo, 10.0)
    hid = q[topo.layer_offset[1] : topo.layer_offset[3]]
    assert ((hid >= 0) & (hid < 10)).all()  # every width maps into [0, span)
    # a neuron's code depends only on its own layer: the same in a network beside a layer of 400
    other = DenseLayers([6, width, 400, 3])
    q2 = relative_positions(other, 10.0)
    lo, hi = topo.layer_offset[1], topo.layer_offset[2]
    assert torch.equal(q[lo:hi], q2[lo:hi])
    # index code: neuron i reads the same code in a layer of any width (no normalisation by a max)
    c = network_code(topo, neuron_positions(topo)[None], 20)[0]
    c_wide = network_code(other, neuron_positions(other)[None], 20)[0]
    n_first = width * 7  # the first block's cells (width x (6 + bias)) are identical
    torch.testing.assert_close(c[:n_first], c_wide[:n_first])
    assert torch.isfinite(c).all()


@pytest.mark.parametrize("layer_code", LAYER_CODES)
@pytest.mark.parametrize("hidden_code,span", [("index", 0.0), ("relative", 10.0), ("random", 100.0), ("wrap", 4.0)])
def test_coded_topologies_of_any_depth_run_the_rule(layer_code, hidden_code, span):
    cfg = mn.Config(archs=((4, 16, 3),), hidden_code=hidden_code, hidden_span=span, layer_code=layer_code).validate()
    rule = mn.build_rule(cfg)
    for sizes in ((4, 3), (4, 5, 3), (4, 5, 7, 6, 5, 3)):
        topo = mn.topology(sizes)
        state = mn.init_networks(topo, 2, cfg)
        out, _ = mn.grow(rule, mn.coded(topo, cfg, mn.new_positions(topo, 2, cfg)), state, 2)
        assert out.shape == state.shape and torch.isfinite(out).all()


def test_wrapped_code_is_the_index_code_up_to_span_and_wraps_beyond():
    topo = DenseLayers([6, 10, 25, 3])
    q, index = wrapped_positions(topo, 10.0), neuron_positions(topo)
    off = topo.layer_offset
    assert torch.equal(q[: off[2]], index[: off[2]])  # inputs and a layer of span neurons: their indices
    assert torch.equal(q[off[2] : off[3]], torch.arange(25.0) % 10)  # a wider layer: i mod span
    assert torch.equal(q[off[3] :], index[off[3] :])  # output classes and bias neurons keep theirs
    # on layers no wider than the span the rule reads exactly the index code it was trained with
    narrow = DenseLayers([6, 10, 7, 3])
    cfg = mn.Config(archs=((6, 10, 7, 3),), hidden_code="wrap", hidden_span=10.0).validate()
    torch.testing.assert_close(mn.coded(narrow, cfg, None).cell_code(60)[0], positional_code(narrow, 20))
    with pytest.raises(ValueError, match="hidden_span"):
        mn.Config(hidden_code="wrap").validate()


def test_bad_layer_code_is_refused():
    with pytest.raises(ValueError, match="layer_code"):
        mn.Config(layer_code="depth").validate()
    with pytest.raises(ValueError, match="layer code"):
        layer_positions(DenseLayers([3, 2]), "depth")
