"""The evaluation's metric conventions on digits without alive cells (issue 36): a blank digit
(every pixel <= 0.1, as a user's empty drawing) has no cell that disagrees, so it counts as
agreeing and as one piece, and adds nothing to the accuracy's cell counts."""

import pytest
import torch

from localrules.data.arrays import to_unit_pixels
from localrules.studies.curves import selfclassify_curves
from localrules.tasks import mnist_selfclassify as ms


# catches: the agreement formula counting a digit without alive cells as disagreeing
def test_a_blank_digit_agrees_and_adds_no_cells(small_digits):
    x, y = small_digits
    px, y = to_unit_pixels(x[:8]), torch.as_tensor(y[:8])
    px[3] = 0.05  # blank: no pixel above the alive threshold 0.1
    model = ms.build_model(ms.Config())  # untrained: every alive cell says label 0
    res = selfclassify_curves(model, px, y, steps=2, mutate_at=None, batch_size=8, progress=False)
    alive = (px > ms.ALIVE_THRESHOLD).flatten(1).sum(1).double()
    assert alive[3] == 0
    assert res["agreement"] == [1.0, 1.0]
    assert res["agreement_connected"] == [1.0, 1.0]
    assert res["accuracy"] == pytest.approx([((alive * (y == 0)).sum() / alive.sum()).item()] * 2)
