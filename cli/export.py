"""``localrules export``: a model's step as an ONNX file (``localrules.export``; the export extra)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer


class ExportFormat(str, Enum):
    onnx = "onnx"


def export(
    model: str = typer.Argument(..., metavar="MODEL", help="A shipped model's name (mnist-selfclassify, "
                                "mnist-selfclassify-robust, restore-hybrid, restore-ca, restore-cnn-ae, "
                                "metanca-mnist, ...) or a checkpoint (model.safetensors or its run folder)."),
    format: ExportFormat = typer.Option(ExportFormat.onnx, "--format", help="File format (onnx)."),
    out: Path = typer.Option(..., "--out", help="The file to write, e.g. runs/export/sc.onnx."),
    arch: Optional[str] = typer.Option(None, help="MetaNCA: the task networks' layer sizes, e.g. 784,50,30,10 "
                                       "(default: the rule's first meta-training architecture)."),
):
    """Export one step of a model as a graph ONNX Runtime runs (in Python, C++, the browser):
    the self-classifier's step (fire mask and noise are inputs), one full restoration, or one
    MetaNCA rule update (fire mask an input). Needs the export extra (onnx, onnxscript)."""
    from localrules.export import export_onnx

    sizes = None
    if arch:
        try:
            sizes = tuple(int(v) for v in arch.split(","))
        except ValueError:
            raise typer.BadParameter(f"{arch!r} is not a comma-separated list of layer sizes", param_hint="--arch") from None
    info = export_onnx(model, out, arch=sizes)
    typer.echo(f"{info['system']} {info['model']} -> {info['out']} ({info['bytes']:,} bytes; "
               f"inputs {', '.join(info['inputs'])}; outputs {', '.join(info['outputs'])})")
