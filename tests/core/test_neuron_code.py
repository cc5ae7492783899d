"""Size-independent neuron code: index code reproduced, hidden codes free of width and index."""

import torch

from localrules.core.neuron_code import (NeuronCode, hidden_neurons, network_code, neuron_positions,
                                         random_positions, relative_positions)
from localrules.core.weightgraph import DenseLayers, WeightGraph, positional_code


def test_index_positions_give_the_index_code():
    for topo in (DenseLayers([5, 4, 3, 2]), WeightGraph([5, 4, 3, 2])):
        q = neuron_positions(topo)[None]
        torch.testing.assert_close(network_code(topo, q, 20)[0], positional_code(topo, 20))


def test_only_hidden_neurons_get_random_positions():
    topo = DenseLayers([6, 5, 4, 3])
    q = random_positions(topo, 3, 20, span=100)
    idx = neuron_positions(topo)
    hid = hidden_neurons(topo)
    assert int(hid.sum()) == 5 + 4
    assert torch.equal(q[:, ~hid], idx[~hid].expand(3, -1))  # pixels, classes, bias neurons keep theirs
    assert ((q[:, hid] >= 0) & (q[:, hid] < 100)).all()
    assert not torch.equal(q[0, hid], q[1, hid])  # drawn per network
    full = random_positions(topo, 200, 20)[:, hid]
    assert full.max() > 100 and full.max() < 2**10 - 2  # the whole code range, away from the bias position


def _code_by_neuron(topo, q, dim=20):
    """{(src position, dst position, layer): code} over all weights of one network."""
    c = network_code(topo, q[None], dim)[0]
    pos, layer = q, torch.cat([torch.full((o * i,), b.dst - 1) for b, (o, i) in zip(topo.blocks, topo.block_shapes)])
    return {(float(pos[s]), float(pos[d]), int(l)): c[k] for k, (s, d, l) in enumerate(zip(topo.src, topo.dst, layer))}


def test_hidden_code_does_not_depend_on_the_width():
    # the same hidden neuron (same random position) in a layer of 8 and in one of 150 neurons,
    # connected to the same pixel and the same class, reads the same code
    narrow, wide = DenseLayers([7, 8, 6, 3]), DenseLayers([7, 150, 120, 3])
    qn, qw = random_positions(narrow, 1, 20)[0], random_positions(wide, 1, 20)[0]
    hn, hw = hidden_neurons(narrow), hidden_neurons(wide)
    # give neurons 0..7 / 0..5 of the wide network the narrow one's positions
    qw[wide.layer_offset[1] : wide.layer_offset[1] + 8] = qn[narrow.layer_offset[1] : narrow.layer_offset[2]]
    qw[wide.layer_offset[2] : wide.layer_offset[2] + 6] = qn[narrow.layer_offset[2] : narrow.layer_offset[3]]
    cn, cw = _code_by_neuron(narrow, qn), _code_by_neuron(wide, qw)
    shared = set(cn) & set(cw)
    assert len(shared) == len(cn)  # every weight of the narrow network has its twin in the wide one
    for k in shared:
        torch.testing.assert_close(cn[k], cw[k])
    assert hn.sum() == 14 and hw.sum() == 270


def test_index_code_of_a_hidden_neuron_beyond_the_trained_width_is_new():
    # the reason for the random code: index 120 of a wide layer has a code no narrow layer has
    narrow, wide = DenseLayers([3, 50, 2]), DenseLayers([3, 150, 2])
    seen = {tuple(c.tolist()) for c in positional_code(narrow, 20)}
    assert any(tuple(c.tolist()) not in seen for c in positional_code(wide, 20))


def test_neuron_code_serves_per_network_codes_and_delegates():
    topo = DenseLayers([4, 6, 3])
    q = random_positions(topo, 2, 10)
    wrapped = NeuronCode(topo, q)
    code = wrapped.cell_code(30)
    assert code.shape == (2, topo.n_cells, 30)
    assert wrapped.cell_code(30) is code  # computed once per rollout
    assert wrapped.n_cells == topo.n_cells and wrapped.split is not None
    assert not torch.equal(code[0], code[1])


def test_relative_code_is_equal_for_the_same_relative_neuron_in_two_widths():
    # neuron 3 of a layer of 10 and neuron 6 of a layer of 20 sit at the same place of their layer
    narrow, wide = DenseLayers([7, 10, 4, 3]), DenseLayers([7, 20, 8, 3])
    qn, qw = relative_positions(narrow, 100), relative_positions(wide, 100)
    cn, cw = _code_by_neuron(narrow, qn), _code_by_neuron(wide, qw)
    assert set(cn) <= set(cw)  # every weight of the narrow network has its twin in the wide one
    for k in cn:
        torch.testing.assert_close(cn[k], cw[k])
    assert qw[wide.layer_offset[1] + 6] == qn[narrow.layer_offset[1] + 3] == 30.0
    for topo in (narrow, wide, DenseLayers([7, 300, 3])):  # every width inside [0, span)
        h = relative_positions(topo, 100)[hidden_neurons(topo)]
        assert h.min() == 0 and h.max() < 100


def test_relative_code_of_a_layer_of_span_neurons_is_the_index_code():
    topo = DenseLayers([6, 50, 50, 4])
    q, idx = relative_positions(topo, 50), neuron_positions(topo)
    assert torch.equal(q, idx)  # pixels, classes and bias neurons always keep their index
    torch.testing.assert_close(network_code(topo, q[None], 20)[0], positional_code(topo, 20))
