"""Correspondence generation over a whole multi-view dataset, into a resumable pair file.

    from semcorr.threed import make_3d_pairs, PairSettings
    summary = make_3d_pairs("data/co3d", "co3d_pairs.h5", settings=PairSettings(nms_radius=10))

Per sequence: :func:`~semcorr.threed.correspondence.select_frames` picks ``settings.frames``
evenly spaced frames, the first is the source, and :func:`~semcorr.threed.correspondence.make_pairs`
gives its correspondences with each of the others. A sequence the readers or generation refuse
(fewer frames than needed, missing image or depth files, frames without a camera or depth
annotation, unreadable files) is skipped with a one-line warning, or stops the run with
``strict=True``. Pixels without depth are simply not used (source) or not trusted (target).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from ..errors import InputError
from ..fileio import check_output_file
from .co3d import CO3D, FRAME_FILE
from .correspondence import PairSettings, make_pairs, select_frames
from .pairfile import PairWriter, SequenceEntry, make_header
from .rgbd import CAMERAS_FILE, RGBDFolders
from .views import ViewDataset

DatasetFormat = Literal["auto", "co3d", "rgbd"]
FORMATS = ("auto", "co3d", "rgbd")


def open_views(root: str | Path, format: DatasetFormat = "auto", **co3d_options: Any) -> ViewDataset:
    """A reader for ``root``: CO3D v2 (``format="co3d"``), posed RGB-D folders (``"rgbd"``) or
    whichever the folder looks like (``"auto"``: CO3D when a ``frame_annotations.jgz`` is in it or
    one level down). ``co3d_options`` go to :class:`~semcorr.threed.co3d.CO3D`."""
    root = Path(root)
    if format not in FORMATS:
        raise InputError(f"dataset format must be one of {FORMATS}, got {format!r}")
    if not root.is_dir():
        raise InputError(f"{root}: not found or not a folder")
    if format == "auto":
        is_co3d = (root / FRAME_FILE).is_file() or any(root.glob(f"*/{FRAME_FILE}"))
        format = "co3d" if is_co3d else "rgbd"
    given = {k: v for k, v in co3d_options.items() if v is not None}
    if format == "co3d":
        return CO3D(root, **given)
    if given:
        raise InputError(
            f"{root}: options {', '.join(sorted(given))} apply to CO3D only, not to RGB-D folders ({CAMERAS_FILE})"
        )
    return RGBDFolders(root)


def sequence_entry(
    dataset: ViewDataset, name: str, settings: PairSettings, warn: Callable[[str], None] | None = None
) -> SequenceEntry:
    """Correspondences of one sequence (InputError when it cannot give any)."""
    sequence = dataset.sequence(name)
    for note in sequence.notes:
        if warn is not None:
            warn(note)
    indices = select_frames(len(sequence.frames), settings.frames)
    views = [sequence.frames[i].load() for i in indices]
    pairs = make_pairs(views, settings)
    images = tuple(_relative(view.image_path, dataset.root) for view in views)
    return SequenceEntry(
        name,
        tuple(v.name for v in views),
        images,
        tuple(v.image_size for v in views),
        len(sequence.frames),
        tuple(pairs),
    )


def make_3d_pairs(
    data: str | Path | ViewDataset,
    out: str | Path,
    *,
    format: DatasetFormat = "auto",
    settings: PairSettings = PairSettings(),
    strict: bool = False,
    overwrite: bool = False,
    max_sequences: int | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
    **co3d_options: Any,
) -> dict[str, Any]:
    """Generate the correspondences of every sequence of a dataset into the pair file ``out``.

    Resumable: sequences already in ``out`` (or in the parts a killed run left) are skipped.

    Args:
        data: the dataset folder, or a reader (:func:`open_views`).
        out: the HDF5 pair file (layout: :mod:`semcorr.threed.pairfile`).
        format: how to read ``data`` when it is a folder (see :func:`open_views`).
        co3d_options: the CO3D reader's options then (see :func:`open_views`).
        settings: frames per sequence, occlusion tolerance, thinning.
        strict: stop at the first sequence that cannot be used instead of skipping it.
        overwrite: start afresh instead of resuming.
        max_sequences: generate at most this many new sequences in this run (the rest later).
        progress: show a progress bar (stderr).
        warn: where one-line warnings go (default: stderr, above the progress bar).
    Returns:
        A summary: ``out``, ``sequences`` (in the dataset), ``already_done``, ``written``,
        ``skipped``, ``in_file``, ``pairs`` and ``correspondences`` (written in this run),
        ``seconds`` and ``seconds_per_sequence`` (of this run's generation).
    """
    check_output_file(out, suffixes=(".h5", ".hdf5"), what="pair file")
    dataset = data if not isinstance(data, (str, os.PathLike)) else open_views(data, format, **co3d_options)
    if max_sequences is not None and max_sequences < 0:
        raise InputError(f"max_sequences must be >= 0, got {max_sequences}")
    say = warn or (lambda message: tqdm.write(f"semcorr: warning: {message}", file=sys.stderr))
    names = dataset.sequence_names()
    header = make_header(dataset.root, dataset.describe(), settings)
    summary: dict[str, Any] = {
        "out": str(out),
        "sequences": len(names),
        "written": 0,
        "skipped": 0,
        "pairs": 0,
        "correspondences": 0,
    }
    started = time.perf_counter()
    with PairWriter(out, header, overwrite=overwrite) as writer:
        todo = [name for name in names if name not in writer.done]
        summary["already_done"] = len(names) - len(todo)
        if max_sequences is not None:
            todo = todo[:max_sequences]
        for name in tqdm(todo, desc="make-3d-pairs", unit="seq", disable=not progress, file=sys.stderr):
            try:
                entry = sequence_entry(dataset, name, settings, say)
            except InputError as error:
                if strict:
                    raise InputError(f"sequence {name}: {error}") from None
                say(f"skipped sequence {name}: {error}")
                summary["skipped"] += 1
                continue
            writer.add(entry)
            summary["written"] += 1
            summary["pairs"] += len(entry.pairs)
            summary["correspondences"] += sum(len(pair) for pair in entry.pairs)
        seconds = time.perf_counter() - started
        summary["in_file"] = writer.finish()
    summary["seconds"] = round(seconds, 3)
    summary["seconds_per_sequence"] = round(seconds / summary["written"], 3) if summary["written"] else None
    return summary


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (POSIX separators) when below it, else absolute (links are kept)."""
    absolute, base = os.path.abspath(path), os.path.abspath(root)
    try:
        relative = os.path.relpath(absolute, base)
    except ValueError:  # another drive
        return absolute
    return absolute if relative.startswith("..") else Path(relative).as_posix()
