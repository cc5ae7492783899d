"""The MetaNCA model card names how the rule was meta-trained and checks the zero-out target."""

from dataclasses import asdict

from localrules.studies.report import metanca_card
from localrules.tasks import metanca as mn
from localrules.train.checkpoint import save_model


def _zeroout(after: list[float]) -> dict:
    acc = [0.5, 0.9, 0.1, *after]  # zeroed after 2 updates: entry 2 is the damaged network
    return {"sizes": [4, 8, 3], "samples": 2, "frac": 0.3, "zero_out_at": 2, "accuracy": acc,
            "accuracy_before": 0.9, "accuracy_min_after": min(acc[2:]), "accuracy_recovered": acc[-1],
            "accuracy_best_after": max(acc[3:]), "updates_to_within_0.02": 3}


def test_card_names_the_width_range_the_clip_and_the_late_zero_out_accuracy(tmp_path):
    cfg = mn.Config(dataset="iris", archs=((4, 8, 3),), arch_range=(2, 30), hidden_clip=2.5)
    path = save_model(tmp_path / "rule", mn.build_rule(cfg), {"task": {"name": "metanca", **asdict(cfg)}})
    res = {"samples": 2, "steps": 3, "archs": [{"arch": [4, 8, 3], "mean_accuracy": 0.9, "std": 0.01}]}
    held = _zeroout([0.5, 0.7, 0.89] + [0.89] * 7 + [0.885, 0.9])  # 10 and more updates after: >= 0.88
    card = metanca_card(path, res, {"zeroout": held})
    assert "every hidden width drawn from 2..30" in card and "bounded to [-2.5, 2.5]" in card
    assert "the lowest is 0.8850: within 0.02 of before at every update" in card
    dropped = _zeroout([0.5, 0.7, 0.89] + [0.89] * 7 + [0.85, 0.9])
    assert "the lowest is 0.8500: not within 0.02" in metanca_card(path, res, {"zeroout": dropped})
