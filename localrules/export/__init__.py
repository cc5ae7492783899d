"""Export to ONNX: each system's step as a self-contained graph for ONNX Runtime (any language,
the browser included). Needs the ``export`` extra; nothing else in the package imports it."""

from .onnx import ExportError, export_onnx, shipped_names

__all__ = ["ExportError", "export_onnx", "shipped_names"]
