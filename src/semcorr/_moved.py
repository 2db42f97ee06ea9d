"""Old import paths that keep working for one release, with a :class:`DeprecationWarning`.

When a module moves, its old dotted path stays importable: ``import semcorr.features.dinov2``
gives a forwarding module whose every name is looked up in the new module
(``semcorr.features.backbones.dinov2``) with a warning that says where it went. When a public
name is renamed, :data:`RENAMED` maps its old dotted name to the new one, for the old module path
and for the package namespaces (``semcorr.eval.FeatureStore``) alike. The finder is installed by
``import semcorr`` and answers only for the names listed here.

Both tables are the one list of what moved (``tests/test_deprecations.py`` imports every entry);
entries are deleted in the release named by :data:`REMOVED_IN`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import FrameType, ModuleType
from typing import Any

REMOVED_IN = "0.3.0"

# old module -> new module (every name moved with it)
MOVED_MODULES: dict[str, str] = {
    "semcorr.features.download": "semcorr.download",
    "semcorr.features.hub": "semcorr.weights.hub",
    "semcorr.features.safe_pickle": "semcorr.weights.safe_pickle",
    "semcorr.features.dinov2_checkpoint": "semcorr.weights.dinov2_checkpoint",
    "semcorr.features.released": "semcorr.weights.releases",
    "semcorr.features.dinov2": "semcorr.features.backbones.dinov2",
    "semcorr.features.baseline": "semcorr.features.backbones.baseline",
    "semcorr.features.sdxl": "semcorr.features.backbones.sdxl.extractor",
    "semcorr.features.sdxl_parts": "semcorr.features.backbones.sdxl.parts",
    "semcorr.features.sdxl_unet": "semcorr.features.backbones.sdxl.unet",
    "semcorr.features.taesd": "semcorr.features.backbones.sdxl.taesd",
    "semcorr.features.adapted": "semcorr.features.released.adapted",
    "semcorr.features.marco": "semcorr.features.released.marco",
    "semcorr.features.diysc": "semcorr.features.released.diysc",
    "semcorr.features.geco": "semcorr.features.released.geco",
    "semcorr.features.distilldift": "semcorr.features.released.distilldift",
    "semcorr.features.distilldift_checkpoint": "semcorr.features.released.distilldift_checkpoint",
    "semcorr.features.teacher": "semcorr.features.distill.teacher",
    "semcorr.features.student": "semcorr.features.distill.student",
    "semcorr.matcher": "semcorr.matching.matcher",
    "semcorr.pose_align": "semcorr.matching.pose_align",
    "semcorr.eval.feature_store": "semcorr.eval.cache",
    "semcorr.eval.benchmarks": "semcorr.data.benchmarks",
    "semcorr.app.store": "semcorr.app.uploads",
    "semcorr.bench": "semcorr.perf",
    "semcorr.bench.extract": "semcorr.perf.extraction",
    "semcorr.bench.sdxl": "semcorr.perf.sdxl",
    "semcorr.bench.train_step": "semcorr.perf.train_step",
    "semcorr.bench.decode": "semcorr.perf.decode",
}

# old dotted name -> new dotted name, for names that changed name or left a package namespace
RENAMED: dict[str, str] = {
    "semcorr.eval.feature_store.FeatureStore": "semcorr.eval.cache.FeatureCache",
    "semcorr.eval.FeatureStore": "semcorr.eval.cache.FeatureCache",
    "semcorr.eval.BENCHMARKS": "semcorr.data.benchmarks.BENCHMARKS",
    "semcorr.eval.Benchmark": "semcorr.data.benchmarks.Benchmark",
    "semcorr.eval.get_benchmark": "semcorr.data.benchmarks.get_benchmark",
    "semcorr.eval.load_benchmark": "semcorr.data.benchmarks.load_benchmark",
    "semcorr.app.store.ImageStore": "semcorr.app.uploads.Uploads",
    "semcorr.app.store.StoredImage": "semcorr.app.uploads.Upload",
    "semcorr.app.ImageStore": "semcorr.app.uploads.Uploads",
    "semcorr.app.StoredImage": "semcorr.app.uploads.Upload",
    "semcorr.bench.format_table": "semcorr.perf.extraction.format_speed_table",
    "semcorr.bench.extract.format_table": "semcorr.perf.extraction.format_speed_table",
    "semcorr.extract.config.Engine": "semcorr.extract.config.EngineName",
    "semcorr.eval.protocols.Matcher": "semcorr.eval.protocols.MatcherKind",
    "semcorr.features.marco.official_shapes": "semcorr.features.released.marco.marco_state_shapes",
    "semcorr.features.diysc.official_shapes": "semcorr.features.released.diysc.diysc_state_shapes",
    "semcorr.features.geco.official_shapes": "semcorr.features.released.geco.geco_state_shapes",
    "semcorr.features.distilldift_checkpoint.official_shapes":
        "semcorr.features.released.distilldift_checkpoint.distilldift_state_shapes",
    "semcorr.data.spair.find_root": "semcorr.data.pairs.find_dataset_folder",
    "semcorr.data.cub.find_root": "semcorr.data.pairs.find_dataset_folder",
    "semcorr.store.read_header": "semcorr.store.folder.read_entry_header",
    "semcorr.store.folder.read_header": "semcorr.store.folder.read_entry_header",
    "semcorr.threed.pairfile.read_header": "semcorr.threed.pairfile.read_pair_file_header",
    "semcorr.threed.read_header": "semcorr.threed.pairfile.read_pair_file_header",
}

# A class's identity in a feature store (:func:`semcorr.store.folder.extractor_identity`) is the
# dotted path it had when stores were first written, so that stores written before a move still match.
_LEGACY_CLASS_MODULES = {new: old for old, new in MOVED_MODULES.items() if old.startswith("semcorr.features.")}


def legacy_class_path(module: str, qualname: str) -> str:
    """``module.qualname`` as feature stores record it: the module's path before the moves above."""
    return f"{_LEGACY_CLASS_MODULES.get(module, module)}.{qualname}"


def _probed_by_import() -> bool:
    """True when ``from module import name`` only checks that the name exists (it then asks again)."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(4):
        if frame is None:
            return False
        if frame.f_code.co_name == "_handle_fromlist":
            return True
        frame = frame.f_back
    return False


def warn_moved(old: str, new: str, stacklevel: int = 3) -> None:
    """One :class:`DeprecationWarning` at the user's line, saying where ``old`` went."""
    if not _probed_by_import():
        warnings.warn(f"{old} moved to {new}; the old name works until semcorr {REMOVED_IN}", DeprecationWarning,
                      stacklevel=stacklevel)


def resolve(dotted: str) -> Any:
    """The object a dotted name ``package.module.name`` names."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def renamed(old: str) -> Any:
    """The object that ``old`` (a key of :data:`RENAMED`) now is, with the warning."""
    new = RENAMED[old]
    warn_moved(old, new, stacklevel=4)
    return resolve(new)


class _ForwardingModule(ModuleType):
    """Stands at a moved module's old path; every name it is asked for comes from the new module."""

    __path__: list[str] = []  # so that moved submodules of a moved package import too

    def __init__(self, name: str, target: str) -> None:
        super().__init__(name, f"Deprecated: moved to {target}")
        self.__dict__["_target"] = target

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        old = f"{self.__name__}.{name}"
        if old in RENAMED:
            return renamed(old)
        value = getattr(importlib.import_module(self._target), name)
        warn_moved(old, f"{self._target}.{name}")
        return value

    def __dir__(self) -> list[str]:
        return dir(importlib.import_module(self._target))


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths of :data:`MOVED_MODULES` (and nothing else)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return _ForwardingModule(spec.name, MOVED_MODULES[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module forwards."""


def install() -> None:
    """Put the finder on :data:`sys.meta_path` once (after the standard finders: a real module wins)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
