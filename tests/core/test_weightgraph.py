"""MetaNCA neighbourhoods: hand-computed means, dense == graph, DAG task networks."""

import torch

from localrules.core.weightgraph import Block, DenseLayers, WeightGraph, fourier, positional_code


def test_means_by_hand_on_a_2_2_1_network():
    # layer 0: W0 (2 x 2) + b0 (2); layer 1: W1 (1 x 2) + b1 (1); one channel = the weight value
    W0 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b0 = torch.tensor([5.0, 6.0])
    W1 = torch.tensor([[7.0, 8.0]])
    b1 = torch.tensor([9.0])
    flat = torch.cat([torch.cat([W0, b0[:, None]], 1).flatten(), torch.cat([W1, b1[:, None]], 1).flatten()])
    x = flat[None, :, None]  # (S=1, cells=9, C=1)
    p = DenseLayers([2, 2, 1]).perceive(x)[0]  # (9, 3): [w, w_f, w_b]
    # W0[0, 1] = 2 enters hidden neuron 0; weights leaving it: W1[0, 0] = 7 -> w_f = 7;
    # it leaves input neuron 1, which has no inputs -> w_b = 0
    assert p[1].tolist() == [2.0, 7.0, 0.0]
    # b0[1] = 6 enters hidden neuron 1 -> w_f = W1[0, 1] = 8; bias neuron: no inputs -> 0
    assert p[5].tolist() == [6.0, 8.0, 0.0]
    # W1[0, 1] = 8 leaves hidden neuron 1, entered by W0[1, :] and b0[1]: mean(3, 4, 6)
    # and enters the output neuron, which nothing leaves -> w_f = 0
    torch.testing.assert_close(p[7], torch.tensor([8.0, 0.0, 13.0 / 3]))
    assert p[8].tolist() == [9.0, 0.0, 0.0]  # output bias


def test_dense_equals_graph_on_chains():
    for sizes in ([4, 3, 2], [7, 5, 6, 3], [2, 1]):
        dense, graph = DenseLayers(sizes), WeightGraph(sizes)
        assert dense.n_cells == graph.n_cells
        x = torch.randn(3, dense.n_cells, 4)
        torch.testing.assert_close(dense.perceive(x), graph.perceive(x))
        torch.testing.assert_close(positional_code(dense, 4), positional_code(graph, 4))


def test_graph_runs_a_dag_with_a_skip_connection():
    # 3 -> 2 -> 2 plus a skip 3 -> 2 (layer 0 -> layer 2); the skip block has no bias
    g = WeightGraph([3, 2, 2], [Block(0, 1), Block(0, 2), Block(1, 2)])
    assert [s for s in g.block_shapes] == [(2, 4), (2, 3), (2, 3)]
    x = torch.randn(1, g.n_cells, 1)
    p = g.perceive(x)[0]
    blocks = g.split(x)
    last = blocks[2][0, ..., 0]
    first = blocks[0][0, ..., 0]
    # an input->hidden weight (block 0, row 1, col 0) enters hidden neuron 1; leaving it: last[:, 1]
    torch.testing.assert_close(p[1 * 4 + 0, 1], last[:, 1].mean())
    # a skip weight (row 0, col 2) leaves input neuron 2 (no inputs) and enters output 0 (nothing leaves)
    k = 8 + 0 * 3 + 2
    assert p[k, 1] == 0 and p[k, 2] == 0
    # a hidden->output weight (row 1, col 0) leaves hidden neuron 0, entered by first[0, :] incl. bias
    k = 8 + 6 + 1 * 3 + 0
    torch.testing.assert_close(p[k, 2], first[0].mean())


def test_positional_code_tells_weights_apart():
    code = positional_code(DenseLayers([5, 4, 3]), 6)  # periods 2, 4, 8: 8 positions
    assert code.shape == (4 * 6 + 3 * 5, 18)
    assert len(torch.unique(code, dim=0)) == len(code)


def test_fourier_code_tells_1024_positions_apart():
    code = fourier(torch.arange(-1, 1023), 20)
    assert code.shape == (1024, 20)
    assert len(torch.unique(code.round(decimals=4), dim=0)) == 1024
