"""Optional dependencies: which ``pip install 'semcorr[EXTRA]'`` brings which package.

The core install is what ``semcorr match`` and ``semcorr demo`` need (torch, transformers, peft,
Pillow, matplotlib). Everything else is an extra, imported where it is used through :func:`require_extra`,
so a command whose extra is missing stops with one line naming it:

    av = require_extra("av", "decoding video")      # MissingExtraError: ... pip install 'semcorr[video]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError

# extra -> (the import names it provides, what it is for); pyproject.toml's optional-dependencies
# list the same packages (tests/test_extras.py compares them).
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "demo": (("skimage",), "the demo's sample images (scikit-image's motorcycle pair)"),
    "eval": (("scipy",), "benchmarks annotated in MATLAB files (PF-WILLOW, PF-PASCAL)"),
    "teacher": (("diffusers",), "the SDXL-Turbo teacher and its tiny autoencoder"),
    "video": (("av",), "reading and writing video"),
    "3d": (("h5py",), "3D pair files (HDF5)"),
    "onnx": (("onnx", "onnxruntime", "onnxscript"), "ONNX export"),
    "ray": (("ray",), "the Ray extraction engine"),
    "app": (("starlette", "uvicorn"), "the web servers of semcorr app and semcorr label-studio"),
}
_EXTRA_OF = {module: extra for extra, (modules, _) in EXTRAS.items() for module in modules}


def require_extra(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (e.g. ``"av"``, ``"ray.data"``), or say which extra brings it.

    Args:
        purpose: what needs it, for the message (``"semcorr video"``).
    Raises:
        MissingExtraError: ``module`` is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        extra = _EXTRA_OF.get(top)
        how = f"pip install 'semcorr[{extra}]'" if extra else f"pip install {top}"
        raise MissingExtraError(f"{purpose} needs {top}, which is not installed ({error.msg}): {how}") from None
