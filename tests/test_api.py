"""The Python API (localrules/api.py) and the README's "Python API" block, run as written."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import localrules as lr

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_api_block_runs(mnist_dir, monkeypatch, capsys):
    monkeypatch.setenv("LOCALRULES_DATA", str(mnist_dir))
    text = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], "README.md (Python API)", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"{lr.__version__} torch.Size([8, 28, 28])"
    assert "[(50, 785), (30, 51), (10, 31)]" in out[1]


def test_classify_the_shipped_model_on_real_digits(mnist_dir):
    from localrules.data.mnist import load_mnist

    x, y = load_mnist("test", mnist_dir)
    votes = lr.classify(lr.load_selfclassifier(), x[:20], steps=100)
    alive = torch.as_tensor(x[:20]) > 0.1 * 255
    assert torch.equal(votes >= 0, alive)  # dead cells say -1, alive ones a label
    target = torch.as_tensor(y[:20])[:, None, None].expand_as(votes)
    # pinned on these fixed inputs (seeded noise): 2,440 of the 2,546 alive cells right after 100
    # steps (0.958; the card: ~0.95 after 200), the tolerance a few cells for float rounding across
    # machines. Catches: other weights than the shipped model's, another default noise or step
    # count, a change to the engine or the read-out that costs more than 10 cells (0.4 %)
    assert int(alive.sum()) == 2546
    assert abs(int((votes[alive] == target[alive]).sum()) - 2440) <= 10


def test_grow_and_forward_match_the_library_path():
    """A tiny untrained rule: grown weights equal the growth loop's, forward equals task_forward."""
    from localrules.tasks import metanca as mn

    cfg = mn.Config(dataset="iris", archs=((4, 6, 3),))
    rule = mn.build_rule(cfg)
    torch.nn.init.normal_(rule.rule.mlp[-1].weight, std=0.1)
    rule.cfg = cfg
    nets = lr.grow(rule, [4, 6, 3], n=2, steps=3, seed=1)
    torch.manual_seed(1)
    topo = mn.topology((4, 6, 3), cfg.engine)
    state = mn.init_networks(topo, 2, cfg)
    state, _ = mn.grow(rule, mn.coded(topo, cfg, mn.new_positions(topo, 2, cfg)), state, 3)
    assert [tuple(m.shape) for m in nets[0]] == [(6, 5), (3, 7)]
    x = torch.randn(5, 4)
    torch.testing.assert_close(lr.forward(rule, nets, x), mn.task_forward(topo, state, x, cfg.activation))


def test_restorer_and_mask():
    masked, keep = lr.mask(np.full((3, 28, 28), 255, np.uint8), 0.7)
    assert masked.shape == (3, 28, 28) and (~keep).sum(dim=(1, 2)).tolist() == [549] * 3
    assert torch.equal(masked, keep.float())
    out = lr.load_restorer("ca")(masked)
    assert out.shape == (3, 28, 28) and not out.requires_grad
    for name in ("hybrid", "ca", "cnn-ae", "unet"):  # every restorer takes keep=, as the README calls it
        restorer = lr.load_restorer(name)
        out = restorer(masked, keep=keep)
        assert out.shape == (3, 28, 28) and 0 <= out.min() and out.max() <= 1
        if getattr(restorer, "reads_mask", False):
            with pytest.raises(ValueError, match="pass keep"):
                restorer(masked)
    with pytest.raises(FileNotFoundError, match="no hybrid restorer"):
        lr.load_restorer("hybrid", folder="/nonexistent")


def test_bad_digits_and_names_are_clear_errors():
    model = lr.load_selfclassifier()
    with pytest.raises(ValueError, match=r"shape \(N, H, W\)"):
        lr.classify(model, np.zeros((28, 28), np.uint8))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        lr.classify(model, np.zeros((1, 28, 28), np.uint8), steps=0)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lr.nope


def test_shipped_rules_load_by_name():
    assert lr.load_rule("metanca-mnist-relative").cfg.hidden_code == "relative"
    assert lr.load_rule("metanca-mnist-dc").cfg.data_conditioned
    assert lr.load_rule("metanca-mnist").cfg == lr.load_rule().cfg
    wrapped = lr.load_rule(wrap=100).cfg
    assert (wrapped.hidden_code, wrapped.hidden_span) == ("wrap", 100.0) and lr.load_rule().cfg.hidden_code == "index"
    with pytest.raises(ValueError, match="index-coded"):
        lr.load_rule("metanca-mnist-relative", wrap=100)
    with pytest.raises(FileNotFoundError, match="shipped: metanca-mnist, metanca-mnist-dc, metanca-mnist-relative"):
        lr.load_rule("metanca-nope")
