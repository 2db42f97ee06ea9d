"""Old import paths that keep working for one release, with a :class:`DeprecationWarning`.

When a module moves, its old dotted path stays importable: ``import semcorr.features.dinov2``
gives a forwarding module whose every name is looked up in the new module
(``semcorr.features.backbones.dinov2``) with a warning that says where it went. When a public
name is renamed or leaves its module, :data:`RENAMED` maps its old dotted name to the new one, for
a moved module's old path, for the package namespaces (``semcorr.eval.FeatureStore``) and for
modules that still exist (each has ``__getattr__ = renamed_names(__name__)``) alike. Where the
replacement takes other arguments, the old name points at a small adapter in
:mod:`semcorr._legacy` that keeps old calls giving the same results, and the warning names the
replacement (:data:`ADAPTED`). The finder is installed by ``import semcorr`` and answers only for
the names listed here.

The tables are the one list of what moved (``tests/test_deprecations.py`` imports every entry, and
docs/reliability.md lists them for users); entries are deleted in the release named by
:data:`REMOVED_IN`. Left out, since nothing outside the command line could use them: the modules
that only registered commands (``semcorr.cli`` as a module, ``semcorr.cli_apps``,
``semcorr.checkpoint_command``, ``semcorr.{cache,eval,export,threed,train}.command``) and the
``main`` of the old benchmark scripts; ``semcorr`` runs every command.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any

REMOVED_IN = "0.3.0"

# old module -> new module (every name moved with it)
MOVED_MODULES: dict[str, str] = {
    "semcorr.features.download": "semcorr.download",
    "semcorr.features.hub": "semcorr.weights.hub",
    "semcorr.features.safe_pickle": "semcorr.weights.safe_pickle",
    "semcorr.features.dinov2_checkpoint": "semcorr.weights.dinov2_checkpoint",
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
    # moved before the layout of the feature store (teacher cache), the command packages and perf/
    "semcorr.cache": "semcorr.store.folder",
    "semcorr.cache.store": "semcorr.store.folder",
    "semcorr.cache.run": "semcorr.extract.local",
    "semcorr.hub": "semcorr.weights.hub",
    "semcorr.fast": "semcorr.runtime",
    "semcorr.video_io": "semcorr.video.io",
    "semcorr.segment_refine": "semcorr.segment.refine",
    "semcorr.train.distill": "semcorr.train.distillation",
    "semcorr.train.finetune": "semcorr.train.refinement",
    "semcorr.train.step_bench": "semcorr.perf.train_step",
    "semcorr.features.sdxl_bench": "semcorr.perf.sdxl",
    "semcorr.export.onnx_export": "semcorr.export.onnx",
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
    "semcorr.eval.protocol_match.match_diysc": "semcorr.eval.protocol_match.match_cells",
    "semcorr.eval.protocol_match.match_geco": "semcorr.eval.protocol_match.match_pixels",
    "semcorr.features.marco.official_shapes": "semcorr.features.released.marco.marco_state_shapes",
    "semcorr.features.diysc.official_shapes": "semcorr.features.released.diysc.diysc_state_shapes",
    "semcorr.features.geco.official_shapes": "semcorr.features.released.geco.geco_state_shapes",
    "semcorr.features.distilldift_checkpoint.official_shapes": (
        "semcorr.features.released.distilldift_checkpoint.distilldift_state_shapes"
    ),
    "semcorr.data.spair.find_root": "semcorr._legacy.spair_find_root",
    "semcorr.data.cub.find_root": "semcorr._legacy.cub_find_root",
    "semcorr.store.read_header": "semcorr.store.folder.read_entry_header",
    "semcorr.store.folder.read_header": "semcorr.store.folder.read_entry_header",
    "semcorr.threed.pairfile.read_header": "semcorr.threed.pairfile.read_pair_file_header",
    "semcorr.threed.read_header": "semcorr.threed.pairfile.read_pair_file_header",
    # the teacher cache (semcorr.cache) became the feature store and the extraction engines
    "semcorr.cache.TeacherCache": "semcorr._legacy.TeacherCache",
    "semcorr.cache.store.TeacherCache": "semcorr._legacy.TeacherCache",
    "semcorr.cache.cache_teacher": "semcorr._legacy.cache_teacher",
    "semcorr.cache.run.cache_teacher": "semcorr._legacy.cache_teacher",
    "semcorr.cache.CacheReport": "semcorr._legacy.CacheReport",
    "semcorr.cache.run.CacheReport": "semcorr._legacy.CacheReport",
    "semcorr.cache.teacher_identity": "semcorr.store.folder.extractor_identity",
    "semcorr.cache.run.teacher_identity": "semcorr.store.folder.extractor_identity",
    "semcorr.cache.store.FORMAT": "semcorr.store.folder.LEGACY_FORMAT",
    "semcorr.cache.store.VERSION": "semcorr.store.folder.LEGACY_VERSION",
    "semcorr.cache.ImageItem": "semcorr.images.ImageItem",
    "semcorr.cache.run.ImageItem": "semcorr.images.ImageItem",
    "semcorr.cache.list_images": "semcorr.images.list_images",
    "semcorr.cache.run.list_images": "semcorr.images.list_images",
    "semcorr.cache.run.IMAGE_SUFFIXES": "semcorr.images.IMAGE_SUFFIXES",
    "semcorr.cache.resolve_rank": "semcorr.runtime.resolve_rank",
    "semcorr.cache.run.resolve_rank": "semcorr.runtime.resolve_rank",
    "semcorr.cache.run.OnError": "semcorr.settings.OnError",
    # names that left a module that still exists, or a moved module for another place than the rest
    "semcorr.bench.Probe": "semcorr.perf.extraction.Probe",
    "semcorr.bench.memory_method": "semcorr.perf.extraction.memory_method",
    "semcorr.bench.weight_bytes": "semcorr.perf.extraction.weight_bytes",
    "semcorr.bench.cpu_name": "semcorr.runtime.cpu_name",
    "semcorr.bench.machine_info": "semcorr.runtime.machine_info",
    "semcorr.data.ap10k.SUBSETS": "semcorr.data.ap10k_pairs.SUBSETS",
    "semcorr.data.ap10k.load_ap10k": "semcorr.data.ap10k_pairs.load_ap10k",
    "semcorr.data.ap10k.load_prepared": "semcorr.data.ap10k_pairs.load_prepared",
    "semcorr.data.pairs.read_json": "semcorr.fileio.read_json",
    "semcorr.eval.feature_store.fingerprint": "semcorr._legacy.fingerprint",
    "semcorr.fast.compile_extractor": "semcorr._legacy.compile_extractor",
    "semcorr.features.resolve_device": "semcorr.runtime.resolve_device",
    "semcorr.features.base.Precision": "semcorr.settings.Precision",
    "semcorr.features.dinov2.DinoSize": "semcorr.features.config.DinoSize",
    "semcorr.features.dinov2.default_hub_id": "semcorr.features.config.default_hub_id",
    "semcorr.features.distilldift.CACHE_VARIABLE": "semcorr.download.CACHE_VARIABLE",
    "semcorr.features.released.Release": "semcorr.weights.releases.Release",
    "semcorr.features.released.RELEASES": "semcorr.weights.releases.RELEASES",
    "semcorr.features.released.sha256": "semcorr._legacy.sha256",
    "semcorr.features.released.released_file": "semcorr.weights.releases.released_file",
    "semcorr.features.released.read_release": "semcorr.weights.releases.read_release",
    "semcorr.features.released.check_state": "semcorr.weights.releases.check_state",
    "semcorr.matcher.Transfer": "semcorr.matching.points.Transfer",
    "semcorr.segment.border_cells": "semcorr.segment.masks.border_cells",
    "semcorr.segment.cell_pixels": "semcorr.segment.masks.cell_pixels",
    "semcorr.segment.mask_paths": "semcorr.segment.masks.mask_paths",
    "semcorr.segment.squared_distances": "semcorr.segment.masks.squared_distances",
    "semcorr.segment.upsample_to_image": "semcorr.segment.masks.upsample_to_image",
    "semcorr.threed.rgbd.IMAGE_SUFFIXES": "semcorr.threed.rgbd.FRAME_SUFFIXES",
    "semcorr.train.distill.DistillConfig": "semcorr.train.config.DistillConfig",
    "semcorr.train.distill.OPERATIONAL": "semcorr.train.config.OPERATIONAL",
    "semcorr.train.distill.RUN_FORMAT": "semcorr.train.config.DistillConfig.RUN_FORMAT",
    "semcorr.train.finetune.FinetuneConfig": "semcorr.train.config.FinetuneConfig",
    "semcorr.train.finetune.RUN_FORMAT": "semcorr.train.config.FinetuneConfig.RUN_FORMAT",
    "semcorr.train.engine.TrainSettings": "semcorr.train.config.TrainConfig",
    "semcorr.train.engine.RUN_VERSION": "semcorr.train.config.CONFIG_VERSION",
    "semcorr.train.engine.config_digest": "semcorr._legacy.config_digest",
    "semcorr.train.pairing.spair_training_pairs": "semcorr._legacy.spair_training_pairs",
    "semcorr.video.build_tracking_extractor": "semcorr.video.tracking.build_tracking_extractor",
    "semcorr.video.frame_tensor": "semcorr.video.tracking.frame_tensor",
}

# Adapters (semcorr._legacy) of old names whose replacement takes other arguments: the replacement,
# as the warning names it (how it differs in parentheses).
ADAPTED: dict[str, str] = {
    "semcorr._legacy.sha256": "semcorr.download.file_digests (file_digests(path)['sha256'])",
    "semcorr._legacy.TeacherCache": (
        "semcorr.store.FeatureFolder (put takes the image's ImageGeometry instead of its original size; "
        "geometry(key).original_size gives the size back)"
    ),
    "semcorr._legacy.cache_teacher": (
        "semcorr.extract.extract_features (settings=ExtractSettings(embeddings=False); returns an ExtractReport)"
    ),
    "semcorr._legacy.CacheReport": "semcorr.extract.ExtractReport (already_done for already_cached)",
    "semcorr._legacy.fingerprint": "semcorr.store.folder.identity_digest(extractor_identity(extractor))",
    "semcorr._legacy.compile_extractor": "semcorr.features.base.Extractor.compile (extractor.compile(mode=...))",
    "semcorr._legacy.config_digest": "semcorr.train.config.TrainConfig.digest (config.digest())",
    "semcorr._legacy.spair_training_pairs": (
        "semcorr.train.pairing.benchmark_pairs (benchmark_pairs('spair', root, split))"
    ),
    "semcorr._legacy.spair_find_root": (
        "semcorr.data.pairs.find_dataset_folder (find_dataset_folder(root, *semcorr.data.spair.FOLDER))"
    ),
    "semcorr._legacy.cub_find_root": (
        "semcorr.data.pairs.find_dataset_folder (find_dataset_folder(root, *semcorr.data.cub.FOLDER))"
    ),
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
    """One :class:`DeprecationWarning` at the user's line, saying where ``old`` went (for an adapter
    of :data:`ADAPTED`: what replaces it)."""
    if _probed_by_import():
        return
    if new in ADAPTED:
        message = f"{old} is replaced by {ADAPTED[new]}; the old name works until semcorr {REMOVED_IN}"
    else:
        message = f"{old} moved to {new}; the old name works until semcorr {REMOVED_IN}"
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel)


def resolve(dotted: str) -> Any:
    """The object a dotted name names: ``package.module.name``, or an attribute of it
    (``semcorr.train.config.DistillConfig.RUN_FORMAT``)."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError as error:
            if error.name != ".".join(parts[:split]):
                raise  # a module that exists, missing something it imports
            continue
        for name in parts[split:]:
            value = getattr(value, name)
        return value
    raise ModuleNotFoundError(dotted)


def renamed(old: str) -> Any:
    """The object that ``old`` (a key of :data:`RENAMED`) now is, with the warning."""
    new = RENAMED[old]
    warn_moved(old, new, stacklevel=4)
    return resolve(new)


def renamed_names(module: str) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for a module that still exists but whose old names moved:
    ``__getattr__ = renamed_names(__name__)`` (under ``if not TYPE_CHECKING``, so that type
    checkers still see which names the module has)."""

    def __getattr__(name: str) -> Any:
        if f"{module}.{name}" in RENAMED:
            return renamed(f"{module}.{name}")
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


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
