from localrules.viz.plots import plot_transform_sweep


def test_transform_sweep_plot_draws_the_one_piece_share(tmp_path):
    rows = [{"level": lv, "accuracy_at_200": 0.9, "agreement_at_200": 0.8, "connected_at_200": c}
            for lv, c in ((-1, 0.3), (0, 0.97), (1, 0.99))]
    path = plot_transform_sweep({"transform": "stroke", "n_digits": 3, "levels": rows}, tmp_path / "s.png")
    assert path.stat().st_size > 0
