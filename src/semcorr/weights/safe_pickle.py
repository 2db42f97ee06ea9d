"""Reading PyTorch checkpoint files without importing or running anything named in them.

    state = read_state_dict(Path("marco_release.pth"), what="a MARCO checkpoint")

Files are first read with ``torch.load(weights_only=True)``. Released checkpoints often also hold
Python objects beside the weights (MARCO's ``{"model": ..., "epoch": ..., "args": <OmegaConf
DictConfig>}``), which that refuses. Such a file is read again with ``torch.load`` and *this module*
as its ``pickle_module``: its :class:`Unpickler` resolves every name the pickle gives as follows.

* PyTorch's own weights-only allowlist (tensor and storage rebuilding, ``OrderedDict``, dtypes...)
  and the plain built-in containers (``dict``, ``list``, ``set``...) resolve to the real objects.
* Names that only serve to run code (``builtins.exec``/``eval``/``getattr``/``__import__``/``open``...,
  ``os``, ``subprocess``, ``sys``, ``importlib``, ``runpy``, ``pickle``, ``ctypes``, ``functools``,
  ``operator``, PyTorch functions outside the allowlist...) refuse the file: a checkpoint never
  needs them, and ``torch.load(weights_only=False)`` would call them.
* Every other name (a configuration class such as ``omegaconf.dictconfig.DictConfig``, a
  dataclass, ``collections.defaultdict``, a class that does not exist here) becomes an
  :class:`InertObject` class: constructing or restoring it only records the arguments and state.
  Nothing is imported, and no function or method from the file is ever called.

The weights themselves must be tensors: an inert object inside the state dict is refused, naming
its key. Tensors saved on a GPU are mapped to the CPU.

A file ``torch.load`` cannot read is refused in one line that says what semcorr knows
(:func:`unreadable`): the global it refused (``refused: the file names os.system, which semcorr
never loads``), ``not a checkpoint`` (neither PyTorch's zip format nor a pickle), or a damaged one.
"""

from __future__ import annotations

import builtins
import os
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..errors import CheckpointError

_SAFE_BUILTINS = {
    "dict",
    "list",
    "tuple",
    "set",
    "frozenset",
    "int",
    "float",
    "complex",
    "bool",
    "str",
    "bytes",
    "bytearray",
    "slice",
    "range",
    "object",
    "long",
    "unicode",
}
_CODE_MODULES = {
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "importlib",
    "runpy",
    "code",
    "codeop",
    "pty",
    "shutil",
    "socket",
    "pickle",
    "_pickle",
    "marshal",
    "ctypes",
    "types",
    "webbrowser",
    "multiprocessing",
    "signal",
    "threading",
    "_thread",
    "asyncio",
    "io",
    "_io",
    "operator",
    "_operator",
    "functools",
    "inspect",
    "pdb",
    "bdb",
    "timeit",
    "trace",
    "profile",
    "cProfile",
    "platform",
    "tempfile",
    "urllib",
    "http",
    "ftplib",
    "smtplib",
    "ssl",
    "select",
    "mmap",
    "gc",
    "weakref",
    "site",
    "imp",
    "zipimport",
    "pkgutil",
    "ensurepip",
    "venv",
    "dill",
    "cloudpickle",
    "joblib",
    "numpy.testing",
}
# PyTorch names outside its weights-only allowlist are refused, except classes of these packages
# (a whole pickled module or optimiser is data here: it becomes inert records).
_TORCH_DATA_PACKAGES = ("torch.nn.modules.", "torch.nn.parameter", "torch.optim.")


class UnsafePickleError(pickle.UnpicklingError):
    """The file's pickle names a function that only serves to run code."""


class InertObject:
    """Stands in for an object of a class the file names (or a call of a function it names) that
    semcorr never imports: it records what the pickle gave it and does nothing else.

    Attributes:
        qualified_name: ``module.name`` as written in the file (class attribute of each stand-in).
        args, kwargs: what the pickle constructed or called it with.
        state: what the pickle restored into it (``__setstate__``), or ``None``.
        items: dict entries and list items the pickle added to it.
    """

    qualified_name: ClassVar[str] = "?"
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: list[Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        instance = object.__new__(cls)
        instance.args, instance.kwargs, instance.state, instance.items = args, kwargs, None, []
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Nothing: the arguments were recorded by ``__new__``."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)

    def __repr__(self) -> str:
        return f"<inert {self.qualified_name}>"


def _refused(module: str, name: str) -> bool:
    """True for names that only serve to run code (see the module docstring)."""
    root = module.split(".")[0]
    if root == "builtins":
        return name not in _SAFE_BUILTINS
    if root == "torch":
        return not f"{module}.".startswith(_TORCH_DATA_PACKAGES)
    return root in _CODE_MODULES or module in _CODE_MODULES


class Unpickler(pickle.Unpickler):
    """A pickle reader that imports nothing: names resolve to PyTorch's weights-only allowlist,
    plain containers, or :class:`InertObject` stand-ins; code-running names are refused."""

    _stand_ins: dict[str, type[InertObject]] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = "builtins" if module == "__builtin__" else module  # protocol 2 writes Python 2's name
        qualified = f"{module}.{name}"
        allowed = _torch_allowlist()
        if qualified in allowed:
            return allowed[qualified]
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(builtins, {"long": "int", "unicode": "str"}.get(name, name))
        if _refused(module, name):
            raise UnsafePickleError(qualified)
        if qualified not in self._stand_ins:
            self._stand_ins[qualified] = type(
                name, (InertObject,), {"qualified_name": qualified, "__module__": __name__}
            )
        return self._stand_ins[qualified]


def load(file: Any, **kwargs: Any) -> Any:
    """``pickle.load`` with :class:`Unpickler` (torch.load reads a legacy file's header with it)."""
    return Unpickler(file, **kwargs).load()


def _torch_allowlist() -> dict[str, Any]:
    """PyTorch's own weights-only allowlist, ``"module.name" -> object`` (the names
    ``torch.load(weights_only=True)`` accepts)."""
    from torch import _weights_only_unpickler

    return _weights_only_unpickler._get_allowed_globals()


def read_checkpoint(path: Path) -> Any:
    """Everything in a ``.pth`` / ``.pt`` / ``.ckpt`` file, on the CPU, read as the module describes.

    Raises:
        CheckpointError: not a PyTorch file, damaged, or its pickle names a code-running function
            (:func:`unreadable`).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # every failure becomes a one-line CheckpointError
        if "Weights only load failed" not in str(error):
            raise unreadable(path, error) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=sys.modules[__name__])
    except Exception as error:  # every failure becomes a one-line CheckpointError
        raise unreadable(path, error) from None


# PyTorch's weights-only refusals name the global: "Unsupported global: GLOBAL numpy.dtype ...",
# "Trying to load unsupported GLOBAL posix.system whose module posix is blocked."
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_OS_MODULES = {"posix": "os", "nt": "os"}  # pickle records os.system as posix.system (nt.system on Windows)
_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"  # PyTorch's pickle format before its zip format


def unreadable(path: str | os.PathLike, error: Exception) -> CheckpointError:
    """The one-line :class:`CheckpointError` of a file that ``torch.load`` (with or without
    :class:`Unpickler`) refused with ``error``: the global it names, or "not a checkpoint", or a
    damaged checkpoint, instead of PyTorch's long explanation."""
    named = str(error) if isinstance(error, UnsafePickleError) else None
    found = _REFUSED_GLOBAL.search(str(error)) if named is None and "Weights only load failed" in str(error) else None
    if found:
        named = found.group(1)
    if named is not None:
        module, _, name = named.rpartition(".")
        return CheckpointError(
            f"{path}: refused: the file names {_OS_MODULES.get(module, module)}.{name}, which semcorr never loads"
        )
    problem = _not_a_checkpoint(Path(path))
    if problem is not None:
        return CheckpointError(f"{path}: not a checkpoint ({problem})")
    first_line = (str(error).strip().splitlines() or [""])[0].split(". ")[0]
    detail = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
    return CheckpointError(f"{path}: a damaged checkpoint, cut short or corrupted ({detail})")


def _not_a_checkpoint(path: Path) -> str | None:
    """Why the file is no PyTorch checkpoint at all, or ``None`` when it looks like one (zip format
    with a ``data.pkl``, or the older pickle format)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_LEGACY_MAGIC))
    except OSError as error:
        return error.strerror or str(error)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return None  # PyTorch's format, but cut short or corrupted
        return None if any(name.endswith("data.pkl") for name in names) else "a zip file without PyTorch's data.pkl"
    if head.startswith(_LEGACY_MAGIC) or (len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return None  # a pickle
    return "neither PyTorch's zip format nor a pickle"


def read_state_dict(path: Path, what: str = "a state dict") -> dict[str, Tensor]:
    """The weights in a checkpoint file: a plain dict of tensors, or the dict of tensors under
    ``"state_dict"`` (Lightning) or ``"model"`` of a wrapper whose other entries (``epoch``,
    ``args``, ``optimizer``...) are not used. ``what`` names the expected content in errors.

    Raises:
        CheckpointError: unreadable, code-running, or no dict of tensors (names a non-tensor key).
    """
    content = read_checkpoint(path)
    if isinstance(content, dict) and not all(isinstance(v, Tensor) for v in content.values()):
        for wrapper in ("state_dict", "model"):
            if isinstance(content.get(wrapper), dict):
                content = content[wrapper]
                break
    if not isinstance(content, dict) or not content:
        raise CheckpointError(f"{path}: expected a dict of tensors ({what}), found {type(content).__name__}")
    odd = [f"{key!r} ({type(value).__name__})" for key, value in content.items() if not isinstance(value, Tensor)]
    if odd:
        raise CheckpointError(f"{path}: expected a dict of tensors ({what}); not tensors: {', '.join(odd[:4])}")
    return {str(key): value for key, value in content.items()}
