"""Performance: what things cost in time and memory (accuracy is :mod:`semcorr.eval`).

Feature extraction per model (:mod:`.extraction`, ``semcorr bench``), the SDXL-Turbo teacher
(:mod:`.sdxl`, ``semcorr bench-sdxl``), a training step (:mod:`.train_step`, ``semcorr bench-train``)
and decoding images for extraction (:mod:`.decode`, ``semcorr bench-decode``).
Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "BenchSettings": "extraction",
    "default_reference": "extraction",
    "format_speed_table": "extraction",
    "measure": "extraction",
    "run_bench": "extraction",
    "run_sdxl_bench": "sdxl",
    "run_train_step_bench": "train_step",
    "format_train_step_table": "train_step",
    "time_steps": "train_step",
    "bench_decode": "decode",
    "format_decode_table": "decode",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
