"""``extract_features``: a folder or list of images into the feature store, by one of the engines.

    from semcorr.extract import extract_features, ExtractSettings
    report = extract_features("photos/", "photos-features", model="dinov2-b-reg")
    FeatureFolder("photos-features").get("cats/1.jpg")        # (768, 31, 31) float16

Engines: ``local`` (this process; under ``torchrun`` / ``accelerate launch`` each process its
share) and ``ray`` (a Ray Data pipeline on a Ray cluster). Both write the same store.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..features.base import Extractor
from ..features.config import DEFAULT_MODEL
from ..fileio import check_output_folder
from ..images import ImageItem, list_images
from ..runtime import resolve_rank
from .config import ENGINES, EngineName, ExtractSettings, ModelSpec, RaySettings
from .local import run_local
from .report import ExtractReport


def extract_features(
    images: str | os.PathLike | Sequence[ImageItem],
    out: str | os.PathLike,
    *,
    model: str | ModelSpec | Extractor = DEFAULT_MODEL,
    settings: ExtractSettings = ExtractSettings(),
    engine: EngineName = "local",
    ray: RaySettings = RaySettings(),
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
) -> ExtractReport:
    """Dense features (fp16) and, with ``settings.embeddings``, a global embedding of every image,
    one entry per image in the store ``out`` (:class:`~semcorr.store.FeatureFolder`).

    Resumable: a rerun skips every whole entry and writes damaged ones again. Unreadable images are
    reported by path and skipped (``settings.on_error="stop"`` stops the run instead).

    Args:
        images: a folder (searched recursively; keys are paths relative to it), a text file listing
            images (keys as written), or :class:`~semcorr.images.ImageItem` records.
        out: the store folder; refused when it holds another model's features.
        model: a preset name, a :class:`ModelSpec` (preset and arguments) or a built extractor.
        settings: batch size, decoding workers, errors, embeddings.
        engine: ``local`` or ``ray``.
        ray: the Ray engine's cluster address and resources.
        rank: the local engine's share (default ``RANK``, else the whole list).
        world_size: the number of shares (default ``WORLD_SIZE``, else 1).
        progress: a progress bar on stderr.
    """
    if engine not in ENGINES:
        raise InputError(f"--engine {engine!r}: must be one of {', '.join(ENGINES)}")
    check_output_folder(out, what="store folder")
    items = list_images(images) if isinstance(images, (str, os.PathLike)) else list(images)
    spec = ModelSpec(model) if isinstance(model, str) else model
    if engine == "ray":
        if (world_size or resolve_rank()[1]) > 1:
            raise InputError(
                "the ray engine shares the work among its actors itself; run it once, not under "
                "torchrun or with --world-size"
            )
        from .ray_engine import run_ray

        return run_ray(spec, items, Path(out), settings, ray, progress=progress)
    rank, world_size = resolve_rank(rank, world_size)
    extractor = spec if isinstance(spec, Extractor) else spec.build()
    return run_local(extractor, items, Path(out), settings, rank=rank, world_size=world_size, progress=progress)
