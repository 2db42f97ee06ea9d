"""Export extractors for other runtimes: ONNX at a fixed input size, checked against PyTorch.

    from semcorr.export import export_onnx, format_report
    print(format_report(export_onnx(build_extractor("student", adapter="run/adapter"), "student.onnx")))

Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

ONNX_OPSET = 18  # the default ONNX opset of export_onnx and `semcorr export-onnx`

_EXPORTS = {"ExportReport": "onnx", "export_onnx": "onnx", "format_report": "onnx", "require_onnx": "onnx"}
__all__ = ["ONNX_OPSET", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
