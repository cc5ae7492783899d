import pytest
import torch

from localrules.data.augment import MIX, SWEEPS, affine, random_mix, stroke, sweep_level


def _dot(r=4, c=6):
    x = torch.zeros(1, 9, 9)
    x[0, r, c] = 1.0
    return x


def test_affine_by_hand():
    x = _dot()
    assert torch.equal(affine(x, 1.0, 0.0, (0.0, 0.0)), x)  # identity
    assert affine(x, 1.0, 0.0, (0.0, 2.0)).nonzero().tolist() == [[0, 4, 8]]  # 2 px right
    assert affine(x, 1.0, 0.0, (1.0, 0.0)).nonzero().tolist() == [[0, 5, 6]]  # 1 px down
    assert affine(x, 1.0, 90.0, (0.0, 0.0)).nonzero().tolist() == [[0, 6, 4]]  # right of centre -> below
    big = affine(x, 2.0, 0.0, (0.0, 0.0))  # 2 px right of centre -> 4 px (spread by the bilinear read)
    assert big[0, 4, 8] > 0 and big[0, 4, 6] == 0


def test_stroke_dilates_and_erodes_per_digit():
    x = torch.cat([_dot(), _dot()])
    out = stroke(x, torch.tensor([1, 0]))
    assert out[0].sum() == 9 and torch.equal(out[1], x[1])  # 3x3 block / untouched
    assert torch.equal(stroke(out[:1], -1), x[:1])  # erosion of the block gives the dot back
    assert stroke(x, 2)[0].sum() == 25


def test_outputs_are_bytes_in_range():
    x = torch.rand(4, 28, 28)
    for kind, levels in SWEEPS.items():
        y = sweep_level(x, kind, levels[-1], torch.Generator().manual_seed(0))
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
        assert torch.equal((y * 255).round() / 255, y)
    y = random_mix(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and torch.equal((y * 255).round() / 255, y)
    assert not torch.equal(random_mix(x, torch.Generator().manual_seed(1)), y)
    assert set(MIX) == set(SWEEPS)


def test_shift_keeps_its_length_and_unknown_kind_is_refused():
    x = _dot(4, 4)
    y = sweep_level(x, "shift", 3, torch.Generator().manual_seed(0))
    r, c = (y[0] == y[0].max()).nonzero()[0].tolist()
    assert 2 <= ((r - 4) ** 2 + (c - 4) ** 2) ** 0.5 <= 4
    with pytest.raises(ValueError, match="transform must be one of"):
        sweep_level(x, "blur", 1)
