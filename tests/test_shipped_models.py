"""Each shipped model measures, on a small fixed subset, close to what its card says for the full
test set (a random or a wrong checkpoint would be far off)."""

import json
from pathlib import Path

import torch

import localrules as lr
from localrules.data.mnist import load_mnist

PRETRAINED = Path(lr.__file__).parent / "pretrained"


def _card(name: str) -> dict:
    return json.loads((PRETRAINED / name).read_text())


def _cell_accuracy(model, digits, labels) -> float:
    votes = lr.classify(model, digits, steps=200)
    alive = votes >= 0
    return (votes[alive] == torch.as_tensor(labels)[:, None, None].expand_as(votes)[alive]).float().mean().item()


def test_selfclassifier_matches_its_card(mnist_dir):
    x, y = load_mnist("test", mnist_dir)
    acc = _cell_accuracy(lr.load_selfclassifier(), x[:40], y[:40])
    card = _card("mnist-selfclassify-l2noise.eval.json")["accuracy_at_200"]  # 0.9489 on 10,000 digits
    assert abs(acc - card) < 0.06, (acc, card)


def test_metanca_rule_matches_its_card(mnist_dir):
    from localrules.data.tabular import load_split

    rule = lr.load_rule()
    data = load_split("mnist", rule.cfg.split_seed, mnist_dir)
    nets = lr.grow(rule, [784, 50, 30, 10], n=2, steps=30)
    acc = (lr.forward(rule, nets, data.x_test).argmax(-1) == data.y_test).float().mean().item()
    card = next(a["mean_accuracy"] for a in _card("metanca-mnist.eval.json")["archs"] if a["arch"] == [784, 50, 30, 10])
    assert abs(acc - card) < 0.02, (acc, card)


def test_hybrid_restorer_matches_its_card(mnist_dir):
    from localrules.studies.restore_eval import psnr

    x, y = load_mnist("test", mnist_dir)
    clean = torch.as_tensor(x[:300]).float() / 255
    masked, _ = lr.mask(x[:300], 0.7)
    with torch.no_grad():
        restored = lr.load_restorer("hybrid")(masked)
        digit_id = (lr.load_restorer("classifier")(restored).argmax(-1) == torch.as_tensor(y[:300])).float().mean()
    card = _card("restore/eval.json")["models"]["hybrid"]  # 20.94 dB, 0.9722 on 10,000 digits
    assert abs(psnr(restored, clean).mean().item() - card["psnr_db"]) < 0.7
    assert abs(digit_id.item() - card["digit_id_accuracy"]) < 0.04


def test_cross_entropy_selfclassifier_matches_its_card(mnist_dir):
    x, y = load_mnist("test", mnist_dir)
    acc = _cell_accuracy(lr.load_selfclassifier(PRETRAINED / "mnist-selfclassify-ce.safetensors"), x[:40], y[:40])
    card = _card("mnist-selfclassify-ce.eval.json")["accuracy_at_200"]  # 0.9546 on 10,000 digits
    assert abs(acc - card) < 0.06, (acc, card)


def test_robust_selfclassifier_matches_its_card_on_changed_digits(mnist_dir):
    """On randomly scaled, shifted, rotated, thinned or thickened digits the robust model is near
    its card (0.8777 on 10,000) and well ahead of the paper's model (0.6972)."""
    from localrules.data.augment import random_mix

    x, y = load_mnist("test", mnist_dir)
    mixed = random_mix(torch.as_tensor(x[:150]).float() / 255, torch.Generator().manual_seed(0))
    robust = _cell_accuracy(lr.load_selfclassifier(PRETRAINED / "mnist-selfclassify-robust.safetensors"), mixed, y[:150])
    paper = _cell_accuracy(lr.load_selfclassifier(), mixed, y[:150])
    card = _card("mnist-selfclassify-robust.mix.json")
    assert abs(robust - card["robust"]["accuracy_at_200"]) < 0.08, (robust, card["robust"])
    assert abs(paper - card["paper_model"]["accuracy_at_200"]) < 0.1, (paper, card["paper_model"])
    assert robust > paper + 0.05, (robust, paper)


def test_data_conditioned_metanca_rule_matches_its_card(mnist_dir):
    from localrules.data.tabular import load_split
    from localrules.studies.metanca_studies import grow_accuracy
    from localrules.tasks import metanca as mn

    rule, cfg, _ = mn.load(PRETRAINED / "metanca-mnist-dc.safetensors")
    assert cfg.data_conditioned
    data = load_split("mnist", cfg.split_seed, mnist_dir)
    acc = grow_accuracy(rule, cfg, (784, 50, 30, 10), data, samples=2, steps=30).mean().item()
    card = next(a["mean_accuracy"] for a in _card("metanca-mnist-dc.eval.json")["archs"] if a["arch"] == [784, 50, 30, 10])
    assert abs(acc - card) < 0.02, (acc, card)


def test_size_independent_metanca_rule_grows_a_network_twice_as_wide_as_it_saw(mnist_dir):
    """metanca-mnist-relative at [784, 200, 150, 10] (meta-trained on widths <= 100): near its
    wide heatmap (0.914 on 14,000 digits) and far above the index-coded default rule there (0.480)."""
    from localrules.data.tabular import load_split

    wide = {(c["x"], c["y"]): c["mean_accuracy"] for c in _card("metanca-mnist-relative.wide.json")["cells"]}
    rules = {"relative": lr.load_rule(PRETRAINED / "metanca-mnist-relative.safetensors"), "default": lr.load_rule()}
    data = load_split("mnist", 0, mnist_dir)
    x, y = data.x_test[:2000], data.y_test[:2000]
    acc = {}
    for name, rule in rules.items():
        nets = lr.grow(rule, [784, 200, 150, 10], n=1, steps=30)
        acc[name] = (lr.forward(rule, nets, x).argmax(-1) == y).float().mean().item()
    assert rules["relative"].cfg.hidden_code == "relative" and max(rules["relative"].cfg.arch_range) == 100
    assert abs(acc["relative"] - wide[(200, 150)]) < 0.03, (acc, wide[(200, 150)])
    assert acc["relative"] > acc["default"] + 0.2, acc
