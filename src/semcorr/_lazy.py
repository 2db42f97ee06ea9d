"""Lazy package namespaces: a package's public names load on first use.

Every ``semcorr`` package ``__init__`` maps its public names to the submodules that define them,
so ``import semcorr`` and the ``semcorr`` command's startup (``--help``, argument errors) import
no model code and no torch, while ``from semcorr.train import distill`` still works.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_namespace(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps a name to its submodule
    (relative, e.g. ``"runner"``), imported when the name is first looked up."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(f".{exports[name]}", package), name)
            globals_of_package = importlib.import_module(package).__dict__
            globals_of_package[name] = value  # looked up once
            return value
        from ._moved import RENAMED, renamed  # an old name keeps working for a release, with a warning

        if f"{package}.{name}" in RENAMED:
            return renamed(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(exports) | set(importlib.import_module(package).__dict__))

    return __getattr__, __dir__
