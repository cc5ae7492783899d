"""Augmented pool training (--augment): changed digits in the pool, exact resume kept."""

import torch

from localrules.tasks import mnist_selfclassify as ms
from localrules.train.loop import TrainConfig, train


def _task(small_digits, augment):
    x, y = small_digits
    x = torch.nn.functional.pad(torch.as_tensor(x[:200]), (6, 6, 6, 6)).numpy()  # 28x28
    cfg = ms.Config(batch_size=8, pool_size=16, perception_dim=24, hidden=(24,), augment=augment)
    torch.manual_seed(0)
    return ms.SelfClassifyTask(cfg, x, y[:200], torch.device("cpu"))


def test_augment_changes_the_digits_drawn_into_the_pool(small_digits):
    plain, aug = _task(small_digits, False), _task(small_digits, True)
    assert torch.equal(plain.pool.slots["label"], aug.pool.slots["label"])  # the same digits...
    assert not torch.equal(plain.pool.slots["pixels"], aug.pool.slots["pixels"])  # ...changed
    px = aug.pool.slots["pixels"]
    assert torch.equal((px * 255).round() / 255, px)  # bytes, so the saved pool restores exactly
    assert ms.Config.from_dict({"loss": "l2"}).augment is False  # older checkpoints: no augmentation


def test_augmented_training_resumes_exactly(small_digits, tmp_path):
    cfg = TrainConfig(iterations=4, steps_min=2, steps_max=2, checkpoint_every=2, log_every=1, lr_milestones=())
    straight = _task(small_digits, True)
    train(straight, cfg, tmp_path / "a", torch.device("cpu"), progress=False)
    first = _task(small_digits, True)
    train(first, TrainConfig(**{**cfg.__dict__, "iterations": 2}), tmp_path / "b", torch.device("cpu"), progress=False)
    resumed = _task(small_digits, True)
    train(resumed, cfg, tmp_path / "b", torch.device("cpu"), resume=True, progress=False)
    assert torch.equal(straight.pool.slots["pixels"], resumed.pool.slots["pixels"])
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
