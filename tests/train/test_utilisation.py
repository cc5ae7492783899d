"""localrules.train.utilisation: the numbers scripts/gpu-job logs for each run (samples/s, FLOP/s
and the fraction of the card's peak, GPU busy). On the CPU the rate and the FLOPs are measured and
the GPU fields are None with a reason; the profiler's GPU path runs in the slot job."""

import json

import pytest
import torch

from localrules.tasks import mnist_selfclassify as ms
from localrules.train import utilisation as U
from localrules.train.loop import TrainConfig, train


def _task(small_digits):
    x, y = small_digits
    cfg = ms.Config(batch_size=4, pool_size=8, perception_dim=8, hidden=(8,), engine="dense")
    return ms.SelfClassifyTask(cfg, x[:64], y[:64], torch.device("cpu"))


def test_a_training_run_reports_rate_and_flops_on_the_cpu(small_digits, tmp_path, monkeypatch):
    """Catches: FLOPs not counted over forward and backward (the count would equal one forward),
    a rate taken from the counted iterations, a GPU field made up on the CPU, a file not written."""
    monkeypatch.setenv(U.ENV, "warmup=1,flops=2,profile=3")
    task = _task(small_digits)
    steps = 2
    train(task, TrainConfig(iterations=6, steps_min=steps, steps_max=steps, log_every=1), tmp_path / "run",
          torch.device("cpu"), progress=False)
    r = U.close_open()[0]
    assert r == json.loads((tmp_path / "run" / U.FILE).read_text())
    # iterations 2-3 counted; 4, 5 and 6 plain, of which 4 and 5 are timed (6 has no next call)
    assert r["flop_iterations"] == 2 and r["iterations_timed"] == 2
    assert r["samples_per_iteration"] == 4
    assert r["samples_per_s"] == pytest.approx(4 * r["iterations_per_s"])
    assert r["flops_per_s"] == pytest.approx(r["flops_per_iter"] * r["iterations_per_s"])
    # the perception conv and the rule's two layers, 2 steps x 4 digits x 28 x 28 cells, forward
    # only, is the least a forward + backward count can be; backward roughly doubles it again
    cells = steps * 4 * 16 * 16
    c_in = 1 + task.cfg.channels
    forward = 2 * cells * (9 * c_in * 8 + 8 * 8 + 8 * task.cfg.channels)
    assert r["flops_per_iter"] > 2 * forward
    assert r["gpu_busy"] is None and "CPU" in r["missing"]["gpu_busy"]
    assert r["peak_fraction_fp32"] is None and "peak" in r["missing"]
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "flops_per_iter" not in rows[1] and rows[-1]["flops_per_iter"] == r["flops_per_iter"]


def test_off_without_the_variable(small_digits, tmp_path, monkeypatch):
    monkeypatch.delenv(U.ENV, raising=False)
    task = _task(small_digits)
    train(task, TrainConfig(iterations=1, steps_min=1, steps_max=1), tmp_path / "run", torch.device("cpu"),
          progress=False)
    assert not (tmp_path / "run" / U.FILE).exists() and not hasattr(task, "utilisation")


def test_a_short_run_says_what_it_could_not_measure(small_digits, tmp_path):
    task = U.watch(_task(small_digits), torch.device("cpu"), tmp_path, U.Meter(_task(small_digits), "cpu", tmp_path))
    task.training_loss(1)
    r = U.close_open()[0]
    assert r["iterations_per_s"] is None and r["flops_per_iter"] is None
    assert "not reached" in r["missing"]["iterations_per_s"] and "not reached" in r["missing"]["flops_per_iter"]


def test_peak_fraction_uses_the_cards_row():
    """The fraction against the data sheet's dense peak; a card not in the table says so."""
    assert U.card_of("NVIDIA H100 80GB HBM3") == "H100 SXM"
    assert U.card_of("NVIDIA H100 PCIe") == "H100 PCIe"
    assert U.card_of("NVIDIA H100 NVL") == "H100 NVL"
    assert U.card_of("NVIDIA H200") == "H200 SXM"
    assert U.card_of("NVIDIA H200 NVL") == "H200 NVL"
    assert U.card_of("NVIDIA A100-SXM4-80GB") is None
    meter = U.Meter(object(), "cpu")
    meter.result.update(peak_flops_fp32=U.PEAK_FLOPS["H200 SXM"][0], peak_flops_bf16=U.PEAK_FLOPS["H200 SXM"][1],
                        flops_per_iter=67e9, card="H200 SXM")
    meter.plain_iters, meter.plain_s = 10, 1.0
    meter.update()
    assert meter.result["peak_fraction_fp32"] == pytest.approx(67e9 * 10 / 67e12)
    assert meter.result["peak_fraction_bf16"] == pytest.approx(67e9 * 10 / 989.5e12)


def test_busy_time_counts_overlaps_once():
    assert U.busy_time([]) == 0
    assert U.busy_time([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == pytest.approx(4)


@pytest.mark.parametrize("text, want", [("1", {"warmup": 10, "flops": 3, "profile": 10}),
                                        ("warmup=0,flops=1,profile=2", {"warmup": 0, "flops": 1, "profile": 2})])
def test_settings(text, want):
    assert U.settings(text) == want


@pytest.mark.parametrize("text", ["flops=0", "speed=3", "warmup=x"])
def test_bad_settings_are_refused(text):
    with pytest.raises(ValueError, match=U.ENV):
        U.settings(text)


@pytest.mark.parametrize("groups, transposed", [(1, False), (2, False), (1, True)])
def test_a_convolutions_backward_counts_its_arithmetic(groups, transposed):
    """grad_input and grad_weight each cost the forward's FLOPs, grouped or not (torch's own count
    takes a grouped convolution's backward as 3x its forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    w = torch.randn(4 if transposed else 8, 8 // groups if transposed else 4 // groups, 3, 3, requires_grad=True)
    conv = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: U.conv_backward_flops}) as fc:
        conv(x, w, padding=1, groups=groups).sum().backward()
    counts = {str(k): v for k, v in fc.get_flop_counts()["Global"].items()}
    forward = counts["aten.convolution"]
    assert forward == 2 * 2 * 8 * 36 * (4 // groups) * 9
    assert counts["aten.convolution_backward"] == 2 * forward
