"""``semcorr data verify`` and ``list``: is a downloaded dataset whole, and what is there.

:func:`verify_dataset` checks, without the network:

* the files the lock file says are kept (placed pair lists and images, archives kept with
  ``keep_archives``) still have the SHA-256 recorded at download;
* the layout's counts (images, annotation files, pair files, lines of the pair lists) against the
  publisher's figures, else against the figures recorded at the first download;
* with ``load``, semcorr's own loaders: each benchmark split the catalog names loads, with the
  expected number of pairs (CO3D: every annotated frame has its image).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..download import file_digests
from ..errors import InputError
from .catalog import DATASETS, get_dataset
from .checks import CheckResult, check_co3d_frames, check_counts, check_load, co3d_counts
from .fetch import DOWNLOADS, DataLock, dataset_path

_SHOWN_FAILURES = 10


@dataclass
class Verification:
    """The checks of one dataset.

    Attributes:
        dataset: its name.
        folder: ``ROOT/<name>``.
        results: every check, in order.
    """

    dataset: str
    folder: Path
    results: list[CheckResult]

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    def lines(self) -> list[str]:
        return [result.line() for result in self.results]

    def problem(self) -> str | None:
        """One line naming the first failed check (and how many more failed), or None."""
        failed = [result for result in self.results if not result.ok]
        if not failed:
            return None
        more = f" (and {len(failed) - 1} more check(s) failed)" if len(failed) > 1 else ""
        return f"{self.dataset} in {self.folder}: {failed[0].text}{more}"

    def require(self) -> None:
        """Raise an :class:`InputError` with :meth:`problem` unless every check passed."""
        problem = self.problem()
        if problem:
            raise InputError(problem)


def check_kept_files(root: Path, lock: DataLock) -> list[CheckResult]:
    """The kept files of the lock (placed files; archives kept after extraction) against their SHA-256."""
    kept = {name: entry for name, entry in lock.files.items() if isinstance(entry, dict) and entry.get("path")}
    failed = []
    for entry in kept.values():
        path = root / entry["path"]
        if not path.is_file():
            failed.append(CheckResult(False, f"{entry['path']}: missing"))
        elif file_digests(path)["sha256"] != entry.get("sha256"):
            failed.append(CheckResult(False, f"{entry['path']}: its SHA-256 differs from the one recorded at download"))
    results = failed[:_SHOWN_FAILURES]
    if len(failed) > _SHOWN_FAILURES:
        results.append(CheckResult(False, f"... and {len(failed) - _SHOWN_FAILURES:,} more kept files differ"))
    if len(kept) > len(failed):
        results.append(CheckResult(True, f"{len(kept) - len(failed):,} kept file(s): SHA-256 as recorded at download"))
    return results


def verify_dataset(name: str, root: str | os.PathLike, *, load: bool = False) -> Verification:
    """Check the downloaded dataset ``name`` under ``root`` (no network needed).

    Args:
        load: also load the benchmark splits with semcorr's loaders (slower: reads every pair).
    Returns:
        every check; :meth:`Verification.require` raises on the first failure.
    Raises:
        InputError: an unknown name, or the dataset is not there at all.
    """
    dataset = get_dataset(name)
    root = Path(root).expanduser().absolute()
    folder = root / dataset.name
    if not folder.is_dir():
        if root.name == dataset.name:
            raise InputError(
                f"{folder}: not found; --root is the folder that holds {dataset.name}/: "
                f"did you mean --root {root.parent}?"
            )
        raise InputError(f"{folder}: not found; download it with `semcorr data download {dataset.name} --root {root}`")
    lock = DataLock(root, dataset)
    results: list[CheckResult] = []
    if not lock.exists:
        results.append(
            CheckResult(
                True,
                f"no {lock.path.name}: not downloaded by semcorr, so no checksums to "
                "compare; counts checked against the publisher's figures only",
            )
        )
    results += check_kept_files(root, lock)
    if dataset.by_category:
        categories = lock.categories or sorted(p.parent.name for p in folder.glob("*/frame_annotations.jgz"))
        if not categories:
            results.append(CheckResult(False, "no category folders (<category>/frame_annotations.jgz)"))
        for category in categories:
            results += check_counts(folder, co3d_counts(category), lock.counts)[0]
            if load:
                results.append(check_co3d_frames(folder, category))
    else:
        counted, measured = check_counts(folder, dataset.counts, lock.counts)
        results += counted
        if load:
            results += [
                check_load(check, dataset_path(name, root), {**lock.counts, **measured}) for check in dataset.loads
            ]
    return Verification(dataset.name, folder, results)


def dataset_status(name: str, root: str | os.PathLike) -> str:
    """A word or two on dataset ``name`` under ``root``: installed, partly downloaded, absent, ..."""
    dataset = get_dataset(name)
    root = Path(root).expanduser()
    folder = root / dataset.name
    lock = root / f"{dataset.name}.lock.json"
    partial = any((root / DOWNLOADS / dataset.name).glob("*.part"))
    if dataset.by_category and lock.is_file():
        categories = DataLock(root, dataset).categories
        return f"{len(categories)} categor{'y' if len(categories) == 1 else 'ies'}" if categories else "absent"
    if folder.is_dir():
        return "installed" if lock.is_file() else "present (not by semcorr)"
    return "partly downloaded" if partial else "absent"


def list_datasets() -> list[str]:
    """The names ``semcorr data`` knows, in catalog order."""
    return list(DATASETS)
