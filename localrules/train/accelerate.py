"""Compiled steps and CUDA graphs: ``--compile`` and ``--cuda-graphs`` of the training commands.

    compiled step   = torch.compile(NCA.step)       one traced graph for perceive -> rule -> noise
                                                    -> fire mask -> residual update -> post, called by
                                                    NCA.rollout for every step (the ``step_fn`` hook)
    graph-captured  = the same with mode="reduce-overhead": on CUDA each static-shape compiled
                      graph (forward and backward) is recorded once as a CUDA graph and replayed,
                      its memory pool kept on the GPU

The unit compiled is one step, not the unrolled rollout: the step count drawn per iteration
then costs no new graph, and one step's graph compiles in 30-60 s on a CPU core where an unrolled
rollout of 20 steps would take many times that. A model without an NCA
(the CNN auto-encoder, the U-Net, the classifier) has its forward compiled instead. The
self-classifier's alive-cell table changes size every batch: its graph is compiled with a
dynamic row count after the second size (no recompilation per batch), and CUDA graphs skip such
dynamic graphs (they would be recorded once per size).

Random draws inside a compiled step are PyTorch's own (``fallback_random``), so the compiled
and eager paths give the same numbers to float tolerance from the same seed
(tests/train/test_compile.py). ``LOCALRULES_COMPILE_BACKEND`` picks another backend than
inductor (the tests use ``aot_eager``: the same tracing, no code generation).
"""

from __future__ import annotations

import os

import torch

from localrules.core.nca import NCA

# --compile's default (auto) per device type and system, from `localrules bench SYSTEM` and short
# trainings (docs/benchmarks.md, "Compiled steps"): True where the compiled step measured faster.
# CPU self-classifier: off since its eager step updates the firing cells only (a data-dependent
# shape the compiler breaks its graph on): compiled 0.78x that eager step. CUDA: on for all (there
# the self-classifier keeps the masked update), to be confirmed by the next GPU slot's bench.
COMPILE_DEFAULT = {
    "cpu": {"mnist-selfclassify": False, "metanca": False, "restore": False, "mnist-selfclassify eval": False},
    "cuda": {"mnist-selfclassify": True, "metanca": True, "restore": True, "mnist-selfclassify eval": True},
}
# auto compiles a training of at least this many iterations only: compiling takes 30-60 s on a CPU
# core, repaid after about 600 iterations of a step that compiles 1.3x faster
AUTO_MIN_ITERATIONS = 1000
_graphs = False  # a model of this process was compiled with CUDA graphs


def backend() -> str:
    return os.environ.get("LOCALRULES_COMPILE_BACKEND", "inductor")


def resolve(compile: bool | None, device: torch.device, system: str, iterations: int | None = None) -> bool:
    """``--compile`` as given, or (None: auto) :data:`COMPILE_DEFAULT` for this device type and
    system, for a training of at least :data:`AUTO_MIN_ITERATIONS` (``iterations`` None: an evaluation)."""
    if compile is not None:
        return compile
    long_enough = iterations is None or iterations >= AUTO_MIN_ITERATIONS
    return long_enough and COMPILE_DEFAULT.get(device.type, {}).get(system, False)


def compile_model(model: torch.nn.Module, device: torch.device, graphs: bool = False,
                  fallback: bool = False) -> torch.nn.Module:
    """Compile every NCA step of ``model`` in place (its ``step_fn``), or the forward of a model
    without an NCA; ``graphs``: CUDA graphs as well (CUDA only); ``fallback``: a step that fails to
    compile runs eagerly, with a warning (the device default, so that a slot's training does not
    stop on a compiler error). Weights and state_dict keys are unchanged; returns ``model``."""
    if graphs and device.type != "cuda":
        raise ValueError(f"--cuda-graphs needs a CUDA device, not {device}")
    import torch._dynamo.config as dynamo
    import torch._inductor.config as inductor

    dynamo.suppress_errors = fallback
    inductor.fallback_random = True  # torch.rand / randn as in eager: the same draws from a seed
    inductor.triton.cudagraph_skip_dynamic_graphs = True  # no graph recorded per alive-cell count
    global _graphs
    _graphs = _graphs or graphs
    kw = {"backend": backend(), "mode": "reduce-overhead" if graphs else None}
    ncas = [m for m in model.modules() if isinstance(m, NCA)]
    for nca in ncas:
        nca.step_fn = torch.compile(nca.step, **kw)
    if not ncas:
        model.compile(**kw)
    return model


def eager(model: torch.nn.Module) -> torch.nn.Module:
    """Undo :func:`compile_model`: the plain steps and forward again."""
    for m in model.modules():
        if isinstance(m, NCA):
            m.step_fn = None
    model._compiled_call_impl = None
    return model


def mark_step() -> None:
    """A new training iteration begins: CUDA graphs recorded by ``reduce-overhead`` may reuse the
    memory of the previous iteration's outputs (a no-op unless a model was compiled with graphs)."""
    if _graphs:
        torch.compiler.cudagraph_mark_step_begin()
