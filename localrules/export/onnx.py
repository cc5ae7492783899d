"""Write a model's step (or full restoration, or rule update) as an ONNX file.

    export_onnx(MODEL, out)     MODEL: a shipped model's name (:func:`shipped_names`) or a
                                checkpoint (model.safetensors / its .json) of any system

The graphs are :mod:`localrules.export.graphs`, exported with ``torch.onnx.export`` (the
torch.export-based exporter) into one self-contained file (weights inside); the batch axis
(and the self-classifier's height and width) stay dynamic. Needs the ``export`` extra
(``pip install 'localrules[export]'``: onnx, onnxscript; onnxruntime to run the files).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

SELFCLASSIFY, RESTORE, METANCA = "mnist-selfclassify", "restore", "metanca"


class ExportError(ValueError):
    """A model that cannot be exported as asked (unknown name, unsupported rule, no exporter)."""


@dataclass
class Source:
    """A resolved MODEL: the system, the checkpoint's path and its name in messages."""

    system: str
    path: Path
    name: str


def shipped_names() -> dict[str, Path]:
    """name -> checkpoint of every shipped model: mnist-selfclassify[-ce|-robust],
    metanca-mnist[-dc|-relative], restore-hybrid | -ca | -cnn-ae | -classifier."""
    from localrules.tasks import metanca as mn
    from localrules.tasks import mnist_selfclassify as ms
    from localrules.tasks import restore as rs

    names = {"mnist-selfclassify": ms.pretrained_path("l2")}
    names.update({f"mnist-selfclassify-{k}": ms.pretrained_path(k) for k in ms.PRETRAINED})
    names.update({p.stem: p for p in sorted(mn.PRETRAINED_PATH.parent.glob("metanca-*.safetensors"))})
    names.update({f"restore-{m}": rs.PRETRAINED_DIR / m / "model.safetensors" for m in rs.MODELS})
    return names


def resolve(model: str | Path) -> Source:
    """A shipped model's name, or a checkpoint path (the system is read from its JSON)."""
    shipped = shipped_names()
    if str(model) in shipped:
        path = shipped[str(model)]
    else:
        path = Path(model)
        if path.is_dir():
            path = path / "model.safetensors"
        if not path.with_suffix(".json").is_file():
            raise ExportError(f"{model} is neither a shipped model ({', '.join(shipped)}) nor a checkpoint "
                              f"(no {path.with_suffix('.json')})")
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
    except ValueError as e:
        raise ExportError(f"{path.with_suffix('.json')} is not valid JSON ({e})") from e
    task = meta.get("task", meta) if isinstance(meta, dict) else None
    system = task.get("name") if isinstance(task, dict) else None
    if system not in (SELFCLASSIFY, RESTORE, METANCA):
        raise ExportError(f"{path} is a checkpoint of {system!r}; export knows {SELFCLASSIFY}, {RESTORE}, {METANCA}")
    return Source(system, path, str(model))


def build_graph(src: Source, arch: tuple[int, ...] | None = None, batch: int = 2):
    """(graph module, example inputs, input names, output names, dynamic shapes) for ``src``."""
    from torch.export import Dim

    from . import graphs

    if src.system == SELFCLASSIFY:
        from localrules.tasks import mnist_selfclassify as ms

        model, cfg, _ = ms.load(src.path)
        g = graphs.SelfClassifyStep(model, cfg.noise_std)
        C = cfg.channels
        ex = (torch.rand(batch, 28, 28, 1), torch.zeros(batch, 28, 28, C),
              torch.ones(batch, 28, 28, 1, dtype=torch.bool), torch.zeros(batch, 28, 28, C))
        names = ["pixels", "state", "fire", "noise"]
        dims = {0: Dim("batch"), 1: Dim("height"), 2: Dim("width")}
        return g, ex, names, ["state_out"], {n: dims for n in names}
    if src.system == RESTORE:
        from localrules.tasks import restore as rs

        model, cfg, _ = rs.load(src.path)
        out = "logits" if cfg.model == "classifier" else "restored"
        names, ex = ["masked"], [torch.rand(batch, 28, 28)]
        if getattr(model, "reads_mask", False):  # the mask is an input: True = visible
            names.append("keep")
            ex.append(torch.rand(batch, 28, 28) < 0.3)
        dims = {0: Dim("batch")}
        return graphs.Restoration(model), tuple(ex), names, [out], {n: dims for n in names}
    from localrules.tasks import metanca as mn

    rule, cfg, _ = mn.load(src.path)
    if cfg.data_conditioned:
        raise ExportError(f"{src.name} is a data-conditioned rule: its perception runs the task networks on "
                          "data and differentiates them, which the exported update does not hold")
    if cfg.hidden_code == "random":
        raise ExportError(f"{src.name} gives every network its own random neuron positions; export a rule "
                          "with the index or relative code")
    arch = tuple(arch or cfg.archs[0])
    topo = mn.coded(mn.topology(arch, "dense"), cfg, None)
    g = graphs.RuleUpdate(rule, topo)
    ex = (mn.init_networks(topo, batch, cfg), torch.ones(batch, topo.n_cells, 1, dtype=torch.bool))
    dims = {0: Dim("networks")}
    return g, ex, ["state", "fire"], ["state_out"], {"state": dims, "fire": dims}


def export_onnx(model: str | Path, out: str | Path, arch: tuple[int, ...] | None = None,
                opset: int | None = None) -> dict:
    """Export MODEL to the ONNX file ``out``; returns what was written (for the CLI and tests):
    {"system", "model", "out", "inputs", "outputs", "bytes"}. ``arch``: a MetaNCA rule's task
    network layer sizes (default: its first meta-training architecture)."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ExportError(f"ONNX export needs the export extra ({e.name} is missing): "
                          "pip install 'localrules[export]'") from None
    src = resolve(model)
    g, ex, ins, outs, dyn = build_graph(src, arch)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed": not needed here
    try:  # the exporter prints progress lines and warns about its own internals
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(g.eval(), ex, str(out), dynamo=True, external_data=False, input_names=ins,
                              output_names=outs, dynamic_shapes=dyn, opset_version=opset)
    finally:
        quiet.setLevel(level)
    return {"system": src.system, "model": str(src.path), "out": str(out), "inputs": ins, "outputs": outs,
            "bytes": out.stat().st_size}
