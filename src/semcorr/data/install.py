"""Installing the datasets of :mod:`semcorr.data.catalog` under a data root: :func:`download_dataset`.

    from semcorr.data import download_dataset, verify_dataset
    folder = download_dataset("spair-71k", "data")      # data/spair-71k/SPair-71k, what load_spair takes
    verify_dataset("spair-71k", "data", load=True).require()

Where things go under the root ``ROOT``:

* ``ROOT/.downloads/<name>/<file>``: the files while they download (``.part`` files resume with
  HTTP ``Range`` after a cut, in this run or a later one) and until the dataset is complete; then
  deleted, unless ``keep_archives``.
* ``ROOT/<name>/``: the dataset. Archives are extracted into a hidden temporary sibling, the
  preparation step runs there, the layout is checked there, and only then is the folder renamed
  into place: ``ROOT/<name>`` exists only complete (CO3D: the same per category folder).
* ``ROOT/<name>.lock.json``: what was downloaded: each file's address, size and SHA-256, and the
  counts the layout showed. Written before the rename; a later download must bring the same bytes
  (where the publisher gives no checksum this is the check), and ``verify`` compares with it.

A file is checked, before anything is extracted, against the publisher's SHA-256 (CO3D, and files
pinned to a repository commit), else against the lock's (the first download's); a mismatch is one
line and the file is deleted. A damaged archive, or one with a member that would land outside the
dataset folder, is refused and deleted. A disk that refuses the bytes stops the download with one
line; what arrived is kept to resume.

Mirrors: ``mirror`` (or ``$SEMCORR_DATA_MIRROR``) replaces every publisher's address by
``MIRROR/<dataset name>/<file name>`` (CO3D: the zip's own name; COCO images ``train2017/<file>``).
A file placed by hand at ``ROOT/.downloads/<name>/<file>`` is used (and checked) instead of a download.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..fileio import check_output_folder, file_lock, make_folder, remove_stale_temporaries
from .catalog import get_dataset
from .co3d_download import download_categories
from .fetch import DataLock, Fetcher, Part, build_part, dataset_path, resolve_mirror, say
from .prepare import PREPARATIONS


def download_dataset(
    name: str,
    root: str | os.PathLike,
    *,
    mirror: str | None = None,
    categories: Sequence[str] | None = None,
    keep_archives: bool = False,
    progress: bool = True,
    dry_run: bool = False,
) -> Path:
    """Download dataset ``name`` into ``root/<name>``, checked and extracted; nothing if it is there.

    Args:
        name: a dataset of :data:`~semcorr.data.catalog.DATASETS` (``semcorr data list``).
        root: the data folder (created if needed).
        mirror: base address serving ``<name>/<file>`` instead of the publishers (default
            ``$SEMCORR_DATA_MIRROR``).
        categories: CO3D only (required there): category names, or ``["all"]``.
        keep_archives: keep the downloaded archives in ``root/.downloads`` (``verify`` then checks them).
        progress: progress bars on stderr.
        dry_run: show what would be downloaded (licence, size, destination) and stop.
    Returns:
        the folder semcorr's loaders take (:func:`dataset_path`).
    Raises:
        InputError: an unknown name, a root that cannot be written, a disk that fills, an archive
            that is damaged or unsafe, a layout that does not match.
        DownloadError: the file cannot be fetched, or its checksum differs.
    """
    dataset = get_dataset(name)
    if categories and not dataset.by_category:
        raise InputError(f"--categories applies to co3d and co3d-single-sequence, not {dataset.name}")
    if dataset.by_category and not categories:
        raise InputError(
            f"{dataset.name}: choose categories with --categories a,b (or --categories all: {dataset.size})"
        )
    mirror = resolve_mirror(mirror)
    root = make_folder(check_output_folder(Path(root).expanduser().absolute(), what="data root"))
    busy = f"{root}: another `semcorr data download {dataset.name}` is running into this root; wait for it"
    with file_lock(root / f".{dataset.name}.busy", wait=False, busy=busy):
        remove_stale_temporaries(root.glob(f".{dataset.name}*.tmp"))
        fetcher = Fetcher(dataset, root, mirror, progress, DataLock(root, dataset))
        if dataset.by_category:
            download_categories(fetcher, list(categories or ()), keep_archives=keep_archives, dry_run=dry_run)
            return dataset_path(name, root)
        final = root / dataset.name
        if final.exists():
            if not fetcher.lock.exists:
                raise InputError(
                    f"{final}: already exists, but semcorr has no record of downloading it (no "
                    f"{fetcher.lock.path}); check it with `semcorr data verify {dataset.name} --root "
                    f"{root}`, or move it away to download afresh"
                )
            say(f"{dataset.name}: already in {final} (`semcorr data verify` checks it)")
            return dataset_path(name, root)
        fetcher.show_plan(
            dataset.files, final, "" if keep_archives else f" (downloads in {fetcher.downloads}, deleted once complete)"
        )
        if dry_run:
            return dataset_path(name, root)
        prepare = PREPARATIONS[dataset.prepare] if dataset.prepare is not None else None
        build_part(fetcher, Part(dataset.files, final, dataset.counts, prepare=prepare), keep_archives=keep_archives)
    say(f"{dataset.name}: ready in {final}")
    return dataset_path(name, root)
