"""Export extractors for other runtimes: ONNX at a fixed input size, checked against PyTorch.

    from semcorr.export import export_onnx, format_report
    print(format_report(export_onnx(build_extractor("student", adapter="run/adapter"), "student.onnx")))

Names load on first use, so importing the ``semcorr export-onnx`` command stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

ONNX_OPSET = 18  # the default ONNX opset of export_onnx and `semcorr export-onnx`

_EXPORTS = {"ExportReport": "onnx_export", "export_onnx": "onnx_export",
            "format_report": "onnx_export", "require_onnx": "onnx_export"}

__all__ = ["ONNX_OPSET", "ExportReport", "export_onnx", "format_report", "require_onnx"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
