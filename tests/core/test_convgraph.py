"""The weight graph of convolutional / residual task networks: neighbour means by hand, weight
sharing, the skip connection, the width-independent code, rollout == a step-by-step reference."""

import pytest
import torch
import torch.nn.functional as F

from localrules.core import NCA, Rule
from localrules.core.convgraph import ConvNet, image_shape, parse_conv_arch


def tiny():
    # 4x4 images: conv1 1->2 (pool: 2x2), residual block 2->2->2, conv2 2->3 (pool: 1x1), head 3 -> 2
    return ConvNet("conv:2,res,3", (1, 4, 4), 2)


def test_layout_one_cell_per_kernel_weight():
    net = tiny()
    assert net.sizes == (1, 2, 2, 2, 3, 2)
    # [W.reshape(o, i k^2) | b] per block: conv1, conv_a, conv_b, conv2, head (3 channels x 1 position)
    assert net.block_shapes == [(2, 10), (2, 19), (2, 19), (3, 19), (2, 4)]
    params = (2 * 9 + 2) + 2 * (2 * 2 * 9 + 2) + (3 * 2 * 9 + 3) + (2 * 3 + 2)  # nn.Conv2d / nn.Linear counts
    assert net.n_cells == params


def _mean(*parts):
    return torch.cat([p.flatten() for p in parts]).mean()


def test_neighbour_means_by_hand_with_the_skip_connection():
    net = tiny()
    x = torch.randn(1, net.n_cells, 1)
    p = net.perceive(x)[0]  # (cells, 3): [w, w_f, w_b]
    c1, ca, cb, c2, head = (m[0, ..., 0] for m in net.split(x))
    pf = [m[0, ..., 0] for m in net.split(p[None, :, 1:2])]  # forward means in the same layout
    pb = [m[0, ..., 0] for m in net.split(p[None, :, 2:3])]  # backward means
    for c in range(2):
        taps = slice(9 * c, 9 * c + 9)  # kernel columns reading channel c
        # conv1 writes x_c; x_c is read by conv_a and, through the skip, by conv2 (it is part of y_c)
        torch.testing.assert_close(pf[0][c], _mean(ca[:, taps], c2[:, taps]).expand(10))
        # conv_a writes the inner channel c, read by conv_b only
        torch.testing.assert_close(pf[1][c], _mean(cb[:, taps]).expand(19))
        # conv_b writes y_c, read by conv2
        torch.testing.assert_close(pf[2][c], _mean(c2[:, taps]).expand(19))
        # conv_a reads x_c, written by conv1's row c (with its bias): no skip backwards into x
        torch.testing.assert_close(pb[1][:, taps], _mean(c1[c]).expand(2, 9))
        # conv_b reads the inner channel c, written by conv_a's row c
        torch.testing.assert_close(pb[2][:, taps], _mean(ca[c]).expand(2, 9))
        # conv2 reads y_c = x_c + conv_b(...)_c: written by conv_b's row c and, through the skip, conv1's row c
        torch.testing.assert_close(pb[3][:, taps], _mean(cb[c], c1[c]).expand(3, 9))
    for c in range(3):
        # conv2 writes channel c, read by the head's column c (one position); the head reads conv2's row c
        torch.testing.assert_close(pf[3][c], head[:, c].mean().expand(19))
        torch.testing.assert_close(pb[4][:, c], c2[c].mean().expand(2))
    assert (pb[0] == 0).all()  # the input image has no weights entering it
    assert (pf[4] == 0).all()  # nothing leaves the classes
    for b in pb:
        assert (b[:, -1] == 0).all()  # bias neurons have no inputs


def test_head_columns_of_a_channel_cover_all_its_positions():
    net = ConvNet("conv:2", (1, 4, 4), 3)  # 2 channels x 2x2 positions into the head
    assert net.block_shapes == [(2, 10), (3, 9)]
    x = torch.randn(1, net.n_cells, 1)
    p = net.perceive(x)[0]
    conv, head = (m[0, ..., 0] for m in net.split(x))
    pf = net.split(p[None, :, 1:2])[0][0, ..., 0]
    torch.testing.assert_close(pf[1], head[:, 4:8].mean().expand(10))  # channel 1: head columns 4..7


def reference_forward(net, w, x, activation="tanh"):
    """One network, written out with nn.functional: each kernel weight used at every position."""
    act = {"tanh": torch.tanh, "relu": torch.relu}[activation]
    mats = net.split(w[None, :, None])
    c1, ca, cb, c2, head = (m[0, ..., 0] for m in mats)

    def conv(m, n_in, z):
        return F.conv2d(z, m[:, :-1].reshape(len(m), n_in, 3, 3), m[:, -1], padding=1)

    z = x.view(-1, 1, 4, 4)
    z = F.max_pool2d(act(conv(c1, 1, z)), 2)
    z = z + conv(cb, 2, act(conv(ca, 2, z)))  # the residual block
    z = F.max_pool2d(act(conv(c2, 2, z)), 2)
    return z.flatten(1) @ head[:, :-1].T + head[:, -1]


def test_grouped_forward_equals_a_per_network_conv():
    net = tiny()
    state = torch.randn(3, net.n_cells, 2)
    x = torch.rand(5, 16)
    out = net.forward(state, x, "tanh")
    assert out.shape == (3, 5, 2)
    for s in range(3):
        torch.testing.assert_close(out[s], reference_forward(net, state[s, :, 0], x), rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # in data chunks
        torch.testing.assert_close(net.forward(state, x, "tanh", chunk=4), out, rtol=1e-5, atol=1e-5)


def test_code_does_not_depend_on_channel_counts():
    a, b = ConvNet("conv:4,16", (1, 8, 8), 10), ConvNet("conv:8,32", (1, 8, 8), 10)
    qa, qb = a.code_positions(), b.code_positions()
    # first conv: output channel 1 of 4 sits where channel 2 of 8 does; input columns are kernel taps
    assert qa[1][10] == qb[1][2 * 10] == 25.0
    assert qa[0][:10].tolist() == [*range(9), -1.0]
    # second conv: input channel 1 of 4 starts where channel 2 of 8 does; its taps share its slot
    o1 = 4 * 10
    o2 = 8 * 10
    assert qa[0][o1 + 9] == qb[0][o2 + 2 * 9] == 25.0
    assert qa[0][o1 + 9 + 4] == pytest.approx((1 + 4 / 9) * 25)
    assert set(qa[2].tolist()) == {0.0, 1.0, 2.0}  # role: from the input, hidden, into the output
    code = a.cell_code(12)
    assert code.shape == (a.n_cells, 12)
    conv2 = code[o1 : o1 + 16 * 37]
    assert len(torch.unique(conv2, dim=0)) == len(conv2)  # every kernel weight of a layer has its own code


def test_rollout_equals_a_step_by_step_reference():
    torch.manual_seed(0)
    net = tiny()
    C = 3
    nca = NCA(None, Rule(3 * C, (16,), C, relu_input=False, code_dim=12), fire_rate=0.5, sparse_fire=True)
    torch.nn.init.normal_(nca.rule.mlp[-1].weight, std=0.1)
    state = torch.randn(2, net.n_cells, C)
    fires = torch.rand(4, 2, net.n_cells, 1) <= 0.5
    out = nca.rollout(net, None, state, steps=4, fires=fires)
    code = net.cell_code(12)
    ref = state
    with torch.no_grad():
        for t in range(4):
            ref = ref + fires[t] * nca.rule(net.perceive(ref), code)
    torch.testing.assert_close(out.detach(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", ["conv:", "conv:0", "conv:res,8", "conv:8,x", "784,10", "conv:8,-1"])
def test_bad_arch_strings_get_a_clear_error(bad):
    with pytest.raises(ValueError, match="conv"):
        parse_conv_arch(bad)


def test_too_many_pools_and_non_square_images():
    with pytest.raises(ValueError, match="too many pooled"):
        ConvNet("conv:2,2,2,2", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="square"):
        image_shape(30)
