"""How much of the machine a training run uses: samples/s, FLOP/s against the card's peak, and the
fraction of time the GPU is busy.

    iterations/s   plain iterations (after ``warmup``, none counted or profiled) / their wall time;
                   an iteration's wall time runs from one ``training_loss`` call to the next, so it
                   holds the rollout, backward, Adam step and the trainer's logging and checkpoints
                   (the GPU is synchronised at the ends of the phases only: a sum over many
                   iterations, not each one)
    samples/s      iterations/s x samples per iteration (the task's batch: its Config field BATCH
                   names it, or ``task.samples_per_iteration``)
    FLOPs / iter   torch.utils.flop_counter.FlopCounterMode over ``flops`` iterations (forward,
                   backward, optimizer step), averaged; it counts matrix products and convolutions
                   (elementwise ops count 0), so FLOP/s is a lower bound of the arithmetic done.
                   A convolution's backward is counted as its forward's FLOPs per gradient asked
                   for (:func:`conv_backward_flops`): torch 2.13's own count takes a grouped
                   convolution's (the restorers' CA perception; vmap's batched runs) as 3x its
                   forward where the arithmetic is 2x
    FLOP/s         FLOPs / iter x iterations/s; ``peak_fraction_fp32`` / ``_bf16``: FLOP/s over the
                   card's dense peak (PEAK_FLOPS)
    gpu_busy       CUDA only: the union of the GPU's kernel and copy intervals that torch.profiler
                   recorded over ``profile`` iterations / the wall time of those iterations

A :class:`Meter` watches a task by wrapping its ``training_loss``: each call begins an iteration,
and the previous one (its backward and Adam step) has finished, so the trainer's loop needs only
``task = watch(task, device, out)``. It is on when ``LOCALRULES_UTILISATION`` is set ("1": the
defaults; or e.g. "warmup=0,flops=1,profile=1"); scripts/gpu-job sets it. The meter writes
OUT/utilisation.json after each phase and every ``WRITE_EVERY`` iterations (a field it could not
measure is None, with the reason under "missing"), and adds its numbers to the metrics the trainer
logs. A measurement that fails is recorded as missing; it never stops the training.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import time
import traceback
from pathlib import Path

import torch

ENV = "LOCALRULES_UTILISATION"
WRITE_EVERY = 100  # iterations between rewrites of utilisation.json
FILE = "utilisation.json"

# Dense peak FLOP/s (float32 on the CUDA cores, bf16 on the tensor cores without sparsity), from
# NVIDIA's data sheets: "NVIDIA H100 Tensor Core GPU" (nvidia.com/en-us/data-center/h100/: FP32
# 67 / 51 / 60 TFLOPS for SXM / PCIe / NVL, BF16 1,979 / 1,513 / 1,671 TFLOPS "with sparsity")
# and "NVIDIA H200 Tensor Core GPU" (nvidia.com/en-us/data-center/h200/: FP32 67 / 60 TFLOPS for
# SXM / NVL, BF16 1,979 / 1,671 "with sparsity"). Dense tensor-core figures are half the sparse ones.
PEAK_FLOPS = {  # card: (float32, bf16)
    "H100 SXM": (67e12, 989.5e12),
    "H100 PCIe": (51e12, 756.5e12),
    "H100 NVL": (60e12, 835.5e12),
    "H200 SXM": (67e12, 989.5e12),
    "H200 NVL": (60e12, 835.5e12),
}


def card_of(name: str) -> str | None:
    """The PEAK_FLOPS row of a CUDA device name ("NVIDIA H100 80GB HBM3" -> "H100 SXM"); None if unknown."""
    n = name.upper()
    for chip in ("H200", "H100"):
        if chip in n:
            if "NVL" in n:
                return f"{chip} NVL"
            if "PCIE" in n:
                return f"{chip} PCIe"
            return f"{chip} SXM"
    return None


def busy_time(intervals) -> float:
    """Length of the union of (start, end) intervals (overlapping kernels on several streams count once)."""
    total, end = 0.0, -float("inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **_) -> int:
    """FLOPs of aten.convolution_backward: the forward's, 2 x (output elements) x (the weight's
    elements per output channel: C_in / groups x kernel), once for each of grad_input and
    grad_weight asked for (output_mask); the output is the input for a transposed convolution."""
    per_out = 2 * math.prod(w_shape[1:])
    forward = per_out * math.prod(x_shape if transposed else grad_out_shape)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def samples_per_iteration(task) -> int | None:
    n = getattr(task, "samples_per_iteration", None)
    if n is None and hasattr(task, "cfg"):
        n = getattr(task.cfg, getattr(task, "BATCH", ("batch_size",))[0], None)
    return int(n) if isinstance(n, (int, float)) else None


def settings(text: str) -> dict[str, int]:
    """The phases from LOCALRULES_UTILISATION: "1" -> defaults; "warmup=2,flops=1,profile=3" overrides."""
    out = {"warmup": 10, "flops": 3, "profile": 10}
    for item in filter(None, (t.strip() for t in text.split(","))):
        if "=" in item:
            key, value = item.split("=", 1)
            if key not in out or not value.isdigit():
                raise ValueError(f"{ENV}: {item!r} is not one of warmup=N, flops=N, profile=N")
            out[key] = int(value)
    if out["flops"] < 1:
        raise ValueError(f"{ENV}: flops must be at least 1")
    return out


class Meter:
    """Measures one training run through its task's ``training_loss`` calls (see the module's docstring).

    Phases by call (each call starts one iteration): ``warmup`` iterations, then ``flops``
    iterations under FlopCounterMode, then (CUDA) ``profile`` iterations under torch.profiler; all
    other iterations after the warm-up are timed for iterations/s."""

    def __init__(self, task, device: torch.device, out: str | Path | None = None, warmup: int = 10,
                 flops: int = 3, profile: int = 10):
        self.device = torch.device(device)
        self.path = Path(out) / FILE if out is not None else None
        self.warmup, self.n_flops = warmup, flops
        self.n_profile = profile if self.device.type == "cuda" else 0
        self.calls, self.last_t, self.last_kind = 0, None, None
        self.plain_iters, self.plain_s = 0, 0.0
        self.counter = self.prof = None
        self.prof_t0 = 0.0
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        card = card_of(name) if self.device.type == "cuda" else None
        peak = PEAK_FLOPS.get(card, (None, None))
        self.result = {"device": name, "card": card, "samples_per_iteration": samples_per_iteration(task),
                       "iterations_timed": 0, "sec_per_iter": None, "iterations_per_s": None, "samples_per_s": None,
                       "flops_per_iter": None, "flop_iterations": 0, "flops_per_s": None,
                       "peak_flops_fp32": peak[0], "peak_flops_bf16": peak[1],
                       "peak_fraction_fp32": None, "peak_fraction_bf16": None,
                       "gpu_busy": None, "gpu_busy_iterations": 0, "missing": {}}
        self.missing = self.result["missing"]
        if self.device.type != "cuda":
            self.missing["gpu_busy"] = "a CPU run: no GPU"
            self.missing["peak"] = "no peak table for the CPU"
        elif card is None:
            self.missing["peak"] = f"{name} is not in the peak table (PEAK_FLOPS)"
        self.missing.setdefault("flops_per_iter", f"not reached (needs {warmup + flops + 1} iterations)")
        self.missing.setdefault("iterations_per_s", "not reached (needs an iteration past the warm-up, "
                                                    "not counted or profiled, and the call after it)")
        if self.n_profile:
            self.missing["gpu_busy"] = f"not reached (needs {warmup + flops + profile + 1} iterations)"
        self.write()

    # --- the phases

    def kind(self, i: int) -> str:
        """What iteration ``i`` (1-based) is: warmup, flops, profile or plain."""
        if i <= self.warmup:
            return "warmup"
        if i <= self.warmup + self.n_flops:
            return "flops"
        if i <= self.warmup + self.n_flops + self.n_profile:
            return "profile"
        return "plain"

    def tick(self) -> None:
        """Called as an iteration begins: closes the last one's phase, opens this one's. The GPU is
        synchronised only where a phase begins or ends and where the file is rewritten, so the
        trainer's queue of launches is not drained every iteration."""
        self.calls += 1
        kind, changed = self.kind(self.calls), False
        if kind != self.last_kind or self.calls % WRITE_EVERY == 0:
            self.sync()
        now = time.perf_counter()
        if self.last_kind == "plain" and self.last_t is not None:
            self.plain_iters += 1
            self.plain_s += now - self.last_t
        if self.last_kind == "flops" and kind != "flops":
            self._stop_flops()
            changed = True
        if self.last_kind == "profile" and kind != "profile":
            self._stop_profile(now)
            changed = True
        if kind == "flops" and self.last_kind != "flops":
            self._guard("flops_per_iter", self._start_flops)
        if kind == "profile" and self.last_kind != "profile":
            self._guard("gpu_busy", self._start_profile)
        self.last_kind, self.last_t = kind, time.perf_counter()
        if changed or (self.plain_iters and self.calls % WRITE_EVERY == 0):
            self.update()
            self.write()

    def _start_flops(self) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        self.counter = FlopCounterMode(display=False, custom_mapping={
            torch.ops.aten.convolution_backward: conv_backward_flops})
        self.counter.__enter__()

    def _stop_flops(self) -> None:
        counter, self.counter = self.counter, None
        if counter is None:
            return
        try:
            counter.__exit__(None, None, None)
            total = counter.get_total_flops()
        except Exception:
            self.missing["flops_per_iter"] = "FlopCounterMode failed: " + traceback.format_exc(limit=1).strip()
            return
        if total <= 0:
            self.missing["flops_per_iter"] = "FlopCounterMode counted no operations (a compiled or graph-captured step?)"
            return
        self.result["flops_per_iter"] = total / self.n_flops
        self.result["flop_iterations"] = self.n_flops
        self.missing.pop("flops_per_iter", None)

    def _start_profile(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        self.prof = profile(activities=[ProfilerActivity.CUDA])  # the GPU's activity only: no per-op CPU cost
        self.prof.start()
        self.sync()
        self.prof_t0 = time.perf_counter()

    def _stop_profile(self, now: float) -> None:
        prof, self.prof = self.prof, None
        if prof is None:
            return
        try:
            prof.stop()
            from torch.autograd import DeviceType

            spans = [(e.time_range.start, e.time_range.end) for e in prof.events()
                     if e.device_type == DeviceType.CUDA]
        except Exception:
            self.missing["gpu_busy"] = "torch.profiler failed: " + traceback.format_exc(limit=1).strip()
            return
        if not spans:
            self.missing["gpu_busy"] = "torch.profiler recorded no GPU activity"
            return
        wall_us = (now - self.prof_t0) * 1e6
        self.result["gpu_busy"] = min(1.0, busy_time(spans) / wall_us)
        self.result["gpu_busy_iterations"] = self.n_profile
        self.missing.pop("gpu_busy", None)

    def _guard(self, field: str, start) -> None:
        try:
            start()
        except Exception:
            self.missing[field] = "could not start: " + traceback.format_exc(limit=1).strip()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # --- the numbers

    def update(self) -> None:
        r = self.result
        if self.plain_iters:
            r["iterations_timed"] = self.plain_iters
            r["sec_per_iter"] = self.plain_s / self.plain_iters
            r["iterations_per_s"] = self.plain_iters / self.plain_s if self.plain_s > 0 else None
            self.missing.pop("iterations_per_s", None)
        ips = r["iterations_per_s"]
        if ips and r["samples_per_iteration"]:
            r["samples_per_s"] = ips * r["samples_per_iteration"]
        if ips and r["flops_per_iter"]:
            r["flops_per_s"] = r["flops_per_iter"] * ips
            for p in ("fp32", "bf16"):
                if r[f"peak_flops_{p}"]:
                    r[f"peak_fraction_{p}"] = r["flops_per_s"] / r[f"peak_flops_{p}"]

    def metrics(self) -> dict[str, float]:
        """The numbers measured so far, for the trainer's metrics log (numbers only)."""
        keys = ("samples_per_s", "flops_per_iter", "flops_per_s", "peak_fraction_fp32", "gpu_busy")
        return {k: float(self.result[k]) for k in keys if isinstance(self.result[k], (int, float))}

    def write(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name("." + FILE + ".tmp")
            tmp.write_text(json.dumps(self.result, indent=1))
            tmp.replace(self.path)

    def close(self) -> dict:
        """Stop an open counter or profiler (a run that ended inside a phase) and write the result."""
        if self.counter is not None:
            try:
                self.counter.__exit__(None, None, None)
            finally:
                self.counter = None
        if self.prof is not None:
            try:
                self.prof.stop()
            finally:
                self.prof = None
        self.update()
        self.write()
        return self.result

    # --- watching a task

    def wrap(self, training_loss):
        def measured(steps):
            self.tick()
            loss, info = training_loss(steps)
            return loss, {**info, **self.metrics()}

        return measured


OPEN: list[Meter] = []  # meters of runs in this process not yet closed


def watch(task, device: torch.device, out: str | Path | None = None, meter: Meter | None = None):
    """``task`` with its ``training_loss`` measured by ``meter`` (default: one made from
    LOCALRULES_UTILISATION, when that is set); unchanged otherwise. The meter is closed by
    :func:`close_open` (scripts/gpu-job calls it after each run) or at the process's exit."""
    if meter is None:
        text = os.environ.get(ENV, "")
        if text in ("", "0"):
            return task
        meter = Meter(task, device, out, **settings(text))
    task.training_loss = meter.wrap(task.training_loss)
    task.utilisation = meter
    if not OPEN:
        atexit.register(close_open)
    OPEN.append(meter)
    return task


def close_open() -> list[dict]:
    """Close every meter still open (see :meth:`Meter.close`); returns their results."""
    results = []
    while OPEN:
        try:
            results.append(OPEN.pop(0).close())
        except Exception:
            traceback.print_exc()
    return results
