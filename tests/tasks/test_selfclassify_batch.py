"""Promises of the self-classifier's recipe and evaluation (issue 23): the training batch is a
quarter fresh digits with zeroed states and a quarter mutated into new digits; evaluation adds
the training noise by default and none with noise 0."""

import torch

from localrules.studies.report import selfclassify_report
from localrules.tasks import mnist_selfclassify as ms


def test_training_batch_quarter_fresh_quarter_mutated_half_continued(small_digits):
    x, y = small_digits
    torch.manual_seed(0)
    task = ms.SelfClassifyTask(ms.Config(batch_size=16, pool_size=32, perception_dim=24, hidden=(24,)),
                               x[:300], y[:300], torch.device("cpu"))
    task.pool.slots["state"] += task.pool.slots["pixels"] > ms.ALIVE_THRESHOLD  # non-zero where alive
    pool = {k: v.clone() for k, v in task.pool.slots.items()}
    idx, b = task.training_batch()
    images = task.images.flatten(1)
    known = lambda px: (images == px.flatten()).all(1)  # noqa: E731  (rows of images equal to px)
    for k in range(4):  # fresh: a training digit and its label, state zero
        assert torch.all(b["state"][k] == 0)
        assert (known(b["pixels"][k]) & (task.labels == b["label"][k])).any()
    for k in range(4, 12):  # continued: exactly the pooled entry
        for slot in ("pixels", "state", "label"):
            assert torch.equal(b[slot][k], pool[slot][idx[k]])
    for k in range(12, 16):  # mutated: new digit and label, old state kept where both are alive
        assert (known(b["pixels"][k]) & (task.labels == b["label"][k])).any()
        old = pool["pixels"][idx[k]][..., 0] > ms.ALIVE_THRESHOLD
        new = b["pixels"][k][..., 0] > ms.ALIVE_THRESHOLD
        assert torch.equal(b["state"][k][old & new], pool["state"][idx[k]][old & new])
        assert torch.all(b["state"][k][~(old & new)] == 0)


def test_evaluation_noise_defaults_to_the_training_noise(small_digits):
    x, y = small_digits
    px = torch.nn.functional.pad(torch.as_tensor(x[:16]).float() / 255, (6, 6, 6, 6))
    ckpt = ms.pretrained_path("l2")
    run = lambda noise: selfclassify_report(ckpt, px, torch.as_tensor(y[:16]), None, noise_std=noise,  # noqa: E731
                                            steps=6, mutate_at=None, batch_size=16, progress=False)
    default, trained, off = run(None), run(ms.load(ckpt)[1].noise_std), run(0.0)
    assert ms.load(ckpt)[1].noise_std == 0.02
    assert default["noise_std"] == 0.02 and off["noise_std"] == 0.0
    assert default["update_magnitude"] == trained["update_magnitude"]
    assert off["update_magnitude"] != default["update_magnitude"]
