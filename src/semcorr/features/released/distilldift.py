"""The authors' trained DistillDIFT students as presets: ``distilldift-us`` (the default model),
``distilldift-ws`` and ``distilldift-s`` (unsupervised, weakly supervised, supervised training).

    extractor = build_extractor("distilldift-us")                           # downloaded on first use
    extractor = build_extractor("distilldift-us", weights="distilled_us.ckpt")  # the authors' file
    convert_checkpoint("distilled_us.ckpt", "distilldift-us/")               # `semcorr convert-checkpoint`

Weights, in order:

1. ``weights=`` (``--weights``): the authors' ``.ckpt`` (converted in memory on every build, a few
   seconds) or a folder written by :func:`convert_checkpoint` (loaded as it is).
2. The user's cache: ``$SEMCORR_CACHE``, else ``$XDG_CACHE_HOME/semcorr``, else ``~/.cache/semcorr``;
   the converted student lives in ``CACHE/distilldift/<preset>/`` (layout in
   :mod:`.distilldift_checkpoint`), one per preset name.
3. A download, for ``distilldift-us`` only, from the address the authors' README gives
   (:data:`OFFICIAL_URLS`; ``$SEMCORR_DISTILLDIFT_URL`` or ``url=`` replace it). The file goes to
   ``CACHE/distilldift/downloads/`` with a progress bar, resuming after cut connections
   (:mod:`semcorr.download`), is converted once into the cache, written as a temporary folder and
   renamed into place, and then deleted (the converted folder is what is reused). The authors give
   no address for ``ws`` and ``s``: those need ``--weights``.

Offline (``SEMCORR_OFFLINE`` / ``HF_HUB_OFFLINE`` set, or the host unreachable in a 3 s probe)
and not cached: a one-line :class:`~semcorr.errors.WeightsUnavailableError` saying what to do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

from ...download import cache_root, download_file, unreachable_reason
from ...errors import CheckpointError, DownloadError, InputError, WeightsUnavailableError
from ...fileio import check_output_folder, file_lock, make_folder, remove_stale_temporaries, temporary_path
from ..config import DistillDiftConfig
from ..distill.student import StudentExtractor
from .distilldift_checkpoint import (
    ADAPTER_DIR,
    BACKBONE_DIR,
    MANIFEST,
    read_distilldift_checkpoint,
    read_manifest,
    save_converted,
    student_from,
)

OFFICIAL_URLS = {"distilldift-us": "https://ommer-lab.com/files/distilldift/distilldift_us.ckpt"}
URL_VARIABLE = "SEMCORR_DISTILLDIFT_URL"
VARIANTS = {"distilldift-us": "unsupervised", "distilldift-ws": "weakly supervised", "distilldift-s": "supervised"}


def cached_folder(name: str) -> Path:
    """Where the converted student of preset ``name`` is kept."""
    return cache_root() / "distilldift" / name


def download_url(name: str, config: DistillDiftConfig | None = None) -> str | None:
    """The address preset ``name`` downloads from (``url=``, then the variable, then the authors')."""
    if config is not None and config.url:
        return config.url
    if name == "distilldift-us" and os.environ.get(URL_VARIABLE):
        return os.environ[URL_VARIABLE]
    return OFFICIAL_URLS.get(name)


def convert_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Convert the authors' ``.ckpt`` into a student folder (``semcorr convert-checkpoint``).

    The folder is written under a temporary name and renamed into place, so ``out`` is complete or
    absent. It loads with ``build_extractor("distilldift-us", weights=out)``.

    Raises:
        InputError: ``out`` exists and is not empty.
        CheckpointError: the file is not an official DistillDIFT student (names the key).
    """
    out = check_output_folder(out, what="converted student folder")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out}: exists and is not empty; choose a new folder or delete it")
    converted = read_distilldift_checkpoint(checkpoint)
    return _write_folder(lambda folder: save_converted(converted, folder, source=Path(checkpoint).name), out)


def _write_folder(write: Callable[[Path], object], final: Path) -> Path:
    """Run ``write(temporary_folder)`` and rename the result to ``final`` (kept if another process won).
    Temporary folders that killed runs of this machine left beside ``final`` are removed first."""
    make_folder(final.parent)
    remove_stale_temporaries(final.parent.glob(f".{final.name}.*.tmp"))
    temporary = temporary_path(final)
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        write(temporary)
        with contextlib.suppress(FileNotFoundError):
            final.rmdir()  # an empty folder may be replaced
        try:
            os.rename(temporary, final)
        except OSError:
            if not (final / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return final


def _unavailable(name: str, folder: Path, url: str | None, reason: str) -> WeightsUnavailableError:
    convert = "or convert it once with `semcorr convert-checkpoint FILE.ckpt --out FOLDER` and pass --weights FOLDER"
    if not url:
        return WeightsUnavailableError(
            f"{name}: the authors published no download address for these weights. Pass --weights FILE.ckpt "
            f"(their file) {convert}; or use --random-weights for timing and tests."
        )
    variable = f", set {URL_VARIABLE} to a reachable copy" if name == "distilldift-us" else ""
    return WeightsUnavailableError(
        f"{name}: weights are not in the cache ({folder}) and cannot be downloaded from {url} ({reason}). "
        f"Fetch that file where the internet is reachable and pass --weights FILE.ckpt ({convert}){variable}, "
        "or use --random-weights for timing and tests."
    )


def ensure_cached(name: str, url: str | None, *, progress: bool = True) -> Path:
    """The converted folder of preset ``name`` in the cache, downloading and converting it if needed.

    Raises:
        WeightsUnavailableError: not cached, and offline, without address, or the download failed.
    """
    folder = cached_folder(name)
    if (folder / MANIFEST).is_file():
        return folder
    if not url:
        raise _unavailable(name, folder, None, "")
    reason = unreachable_reason(url)
    if reason:
        raise _unavailable(name, folder, url, reason)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = folder.parent / f".{name}.lock"
    with file_lock(lock):
        if (folder / MANIFEST).is_file():  # another process made it meanwhile
            return folder
        filename = Path(urlparse(url).path).name or f"{name}.ckpt"
        raw = folder.parent / "downloads" / filename
        try:
            download_file(url, raw, progress=progress, description=f"{name}: {filename}")
        except DownloadError as error:
            raise _unavailable(name, folder, url, str(error)) from None
        print(f"{name}: converting {raw} into {folder}", file=sys.stderr)
        try:
            converted = read_distilldift_checkpoint(raw)
        except CheckpointError as error:
            raw.unlink()  # never reuse a download that does not convert
            raise CheckpointError(f"{error} (downloaded from {url}; the file was deleted)") from None
        _write_folder(lambda tmp: save_converted(converted, tmp, source=url), folder)
        raw.unlink()
    return folder


def build_distilldift(
    config: DistillDiftConfig, *, random_weights: bool = False, name: str = "distilldift-us"
) -> StudentExtractor:
    """The presets' constructor: a student with the authors' backbone and LoRA (merged by default).

    Args:
        config: settings; ``weights`` a ``.ckpt`` file or converted folder, else cache / download.
        random_weights: the same architecture untrained (rank 8 LoRA at zero), for timing and tests.
        name: the preset name (cache folder and messages).
    """
    if config.adapter:
        raise InputError(f"{name} brings its own LoRA weights; drop --adapter (or use --model student --adapter ...)")
    if (config.size, config.registers) != ("b", True):
        raise InputError(f"{name} is a ViT-B/14 with registers; drop the size / registers settings")
    if random_weights:
        student = StudentExtractor(replace(config, weights=None), random_weights=True, name=name)
        return student.merge() if config.merge else student
    source = Path(config.weights).expanduser() if config.weights else None
    if source is not None and source.is_file():
        student = student_from(read_distilldift_checkpoint(source), config, name=name)
        return student.merge() if config.merge else student
    if source is not None and not source.exists():
        raise InputError(
            f"{name}: --weights {config.weights} does not exist (the authors' .ckpt or a folder from "
            "`semcorr convert-checkpoint`)"
        )
    folder = source if source is not None else ensure_cached(name, download_url(name, config))
    read_manifest(folder)
    settings = replace(config, weights=str(folder / BACKBONE_DIR), adapter=str(folder / ADAPTER_DIR))
    return StudentExtractor(settings, name=name)
