"""The restoration model card shows the other-mask and longer-run tables that `eval restore` measured."""

from localrules.studies.report import restore_card


def test_restore_card_has_mask_and_step_tables(tmp_path):
    row = lambda p, a: {"psnr_db": p, "digit_id_accuracy": a}  # noqa: E731
    res = {"n": 100, "mask_frac": 0.7, "seed": 0, "classifier_accuracy_on_clean": 0.99,
           "models": {"hybrid": {**row(21.0, 0.97), "params": 5, "flops_per_sample": 2e6}},
           "masks": {"pixels-0.5": {"hybrid": row(25.5, 0.98), "floor": row(20.25, 0.96)},
                     "region-0.25": {"hybrid": row(18.0, 0.9), "floor": row(15.0, 0.8)}},
           "steps": {"1x": {"hybrid": {"steps": 10, **row(21.0, 0.97)}},
                     "5x": {"hybrid": {"steps": 50, **row(9.125, 0.5)}}}}
    card = restore_card(tmp_path, res)
    assert "| | hybrid | floor |" in card
    assert "| pixels-0.5 | 25.50 / 0.9800 | 20.25 / 0.9600 |" in card
    assert "| region-0.25 | 18.00 / 0.9000 | 15.00 / 0.8000 |" in card
    assert "| 5x | 9.12 / 0.5000 |" in card and "Longer runs" in card
    assert "Other masks" not in restore_card(tmp_path, {**res, "masks": {}, "steps": {}})
