"""The machinery of ``semcorr data download``: fetching a dataset's files (mirror, offline switch,
checksums), the lock file that records them, and building one part of a dataset atomically
(:func:`build_part`). The entry point is :func:`semcorr.data.install.download_dataset`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from ..download import download_file, file_digests, remote_size, unreachable_reason
from ..errors import DownloadError, InputError
from ..fileio import human_size, make_folder, read_json, temporary_path, write_json
from .archives import ArchiveError, extract_archive, is_web_page
from .catalog import Count, DataFile, Dataset, get_dataset
from .checks import check_counts

MIRROR_VARIABLE = "SEMCORR_DATA_MIRROR"
DOWNLOADS = ".downloads"
LOCK_FORMAT, LOCK_VERSION = "semcorr-data-lock", 1
_MAX_SIZE_QUESTIONS = 8


def say(message: str) -> None:
    """A progress message (stderr, so that stdout stays the command's result)."""
    print(message, file=sys.stderr, flush=True)


def dataset_path(name: str, root: str | os.PathLike) -> Path:
    """The folder semcorr's loaders take for dataset ``name`` under ``root`` (present or not)."""
    dataset = get_dataset(name)
    folder = Path(root).expanduser() / dataset.name
    return folder / dataset.loader_root if dataset.loader_root else folder


def resolve_mirror(mirror: str | None) -> str | None:
    """``mirror``, else ``$SEMCORR_DATA_MIRROR``, checked to be an http(s) address (or None: the publishers')."""
    mirror = mirror or os.environ.get(MIRROR_VARIABLE) or None
    if mirror is None:
        return None
    parsed = urlparse(mirror)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        source = "--mirror" if mirror != os.environ.get(MIRROR_VARIABLE) else f"${MIRROR_VARIABLE}"
        raise InputError(
            f"{source} {mirror!r}: must be an http(s) address (the mirror's base, serving <dataset>/<file>)"
        )
    return mirror.rstrip("/")


class DataLock:
    """``ROOT/<name>.lock.json``: the files and counts of a dataset as downloaded.

    Attributes:
        files: file name -> ``{"url", "bytes", "sha256", "checked", "path"}`` (``checked``: against
            what the SHA-256 was checked; ``path``: where the file is, relative to the root, if kept).
        counts: count pattern -> the value the layout showed.
        categories: the complete categories (CO3D).
    """

    def __init__(self, root: Path, dataset: Dataset) -> None:
        self.path = root / f"{dataset.name}.lock.json"
        self.dataset = dataset.name
        self.exists = self.path.is_file()
        content: dict[str, Any] = read_json(self.path, expect=dict) if self.exists else {}
        if self.exists and (
            content.get("format") != LOCK_FORMAT
            or content.get("version") != LOCK_VERSION
            or content.get("dataset") != dataset.name
        ):
            raise InputError(
                f"{self.path}: not a semcorr data lock file of {dataset.name} (format {LOCK_FORMAT} "
                f"version {LOCK_VERSION}); move it away to download afresh"
            )
        self.files: dict[str, dict[str, Any]] = dict(content.get("files") or {})
        self.counts: dict[str, int] = dict(content.get("counts") or {})
        self.categories: list[str] = list(content.get("categories") or [])

    def sha256(self, name: str) -> str | None:
        entry = self.files.get(name)
        return entry.get("sha256") if isinstance(entry, dict) else None

    def save(self) -> None:
        write_json(
            self.path,
            {
                "format": LOCK_FORMAT,
                "version": LOCK_VERSION,
                "dataset": self.dataset,
                "categories": sorted(self.categories),
                "counts": dict(sorted(self.counts.items())),
                "files": dict(sorted(self.files.items())),
            },
        )
        self.exists = True


@dataclass
class Fetcher:
    """Downloads and checks the files of one dataset (shared by the whole run and its preparation steps)."""

    dataset: Dataset
    root: Path
    mirror: str | None
    progress: bool
    lock: DataLock
    fetched: dict[str, dict[str, Any]] = field(default_factory=dict)  # lock entries of this run's files
    unreachable: dict[str, str | None] = field(default_factory=dict)  # per host: why it cannot be reached

    def _unreachable(self, url: str) -> str | None:
        """Why ``url``'s host cannot be reached (asked once per host and run), or None."""
        parsed = urlparse(url)
        host = f"{parsed.scheme}://{parsed.netloc}"
        if host not in self.unreachable:
            self.unreachable[host] = unreachable_reason(url)
        return self.unreachable[host]

    @property
    def downloads(self) -> Path:
        return self.root / DOWNLOADS / self.dataset.name

    def url(self, file: DataFile) -> str:
        return f"{self.mirror}/{self.dataset.name}/{quote(file.name)}" if self.mirror else file.url

    def fetch(self, file: DataFile, *, progress: bool | None = None) -> Path | None:
        """``file`` in the downloads folder, downloaded if needed and checked; None for an optional file
        that could not be fetched (a warning says so)."""
        target = self.downloads / file.name
        url = self.url(file)
        expected, checked, source = file.sha256, "the publisher's", "the publisher's"
        if expected is None and self.lock.sha256(file.name):
            expected, checked = self.lock.sha256(file.name), "the first download's"
            source = f"the first download's, recorded in {self.lock.path}"
        try:
            if not target.is_file():
                reason = self._unreachable(url)
                if reason:
                    raise DownloadError(
                        f"{self.dataset.name}: cannot download {url} ({reason}); fetch it where the "
                        f"internet is reachable and put it at {target}, or use --mirror"
                    )
            download_file(
                url,
                target,
                progress=self.progress if progress is None else progress,
                description=f"{self.dataset.name}: {file.name}",
                sha256=expected,
                sha256_source=source,
            )
            if not file.archive and is_web_page(target):  # archives: refused by name when extracted
                target.unlink()
                raise DownloadError(
                    f"{url}: the server sent a web page instead of {file.name} (a login, quota or "
                    "warning page?); it was deleted"
                )
        except DownloadError as error:
            if file.required:
                raise
            warnings.warn(f"{self.dataset.name}: optional file {file.name} skipped: {error}", stacklevel=2)
            return None
        sha256 = expected or self._check_catalog_checksum(file, target)
        self.fetched[file.name] = {
            "url": url,
            "bytes": target.stat().st_size,
            "sha256": sha256,
            "checked": checked if expected else "recorded at this first download",
        }
        return target

    def _check_catalog_checksum(self, file: DataFile, target: Path) -> str:
        """The file's SHA-256, after comparing it with the catalog's other checksum (MD5) if it has one."""
        kind, _, value = (file.checksum or "").partition(":")
        digests = file_digests(target, {"sha256", kind} if kind else {"sha256"})
        if kind and digests[kind] != value:
            if file.trusted:
                target.unlink()
                raise DownloadError(
                    f"{self.url(file)}: {kind} {digests[kind]} differs from the publisher's ({value}); "
                    "the file was deleted"
                )
            warnings.warn(
                f"{self.dataset.name}: {file.name} has {kind} {digests[kind]}, not the unverified {value} "
                "that public loaders use; its SHA-256 is recorded in the lock file",
                stacklevel=3,
            )
        return digests["sha256"]

    def show_plan(self, files: Sequence[DataFile], destination: Path, extra: str = "") -> None:
        """What is about to be downloaded: title, source, licence, terms, size and destination."""
        sizes, asked = [], 0
        for file in files:
            size = file.size
            if size is None and (self.downloads / file.name).is_file():
                size = (self.downloads / file.name).stat().st_size
            elif size is None and asked < _MAX_SIZE_QUESTIONS:
                asked += 1
                size = remote_size(self.url(file))
            sizes.append(size)
        known = sum(s for s in sizes if s is not None)
        unknown = [f.name for f, s in zip(files, sizes, strict=True) if s is None]
        total = (f"{human_size(known)} in {len(files) - len(unknown)} file(s)" if known else "") + (
            f"{' + ' if known else ''}{len(unknown)} file(s) of unknown size" if unknown else ""
        )
        dataset = self.dataset
        if not dataset.size.startswith("unknown"):
            total += f"; {dataset.size}"
        say(
            f"{dataset.name}: {dataset.title}\n  source:      {dataset.source}\n  licence:     {dataset.licence}\n"
            f"  by downloading you accept: {dataset.terms}\n  size:        {total}\n"
            f"  destination: {destination}{extra}\n  from:        {self.mirror or 'the publishers'}"
        )


def place(source: Path, target: Path) -> None:
    """Put a downloaded file at ``target`` without removing the download (a hard link, else a copy)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


@dataclass(frozen=True)
class Part:
    """What is made atomically: the files extracted into a temporary folder, prepared, checked, and
    its ``inner`` subfolder (the whole when empty) renamed to ``target``."""

    files: tuple[DataFile, ...]
    target: Path
    counts: tuple[Count, ...]
    inner: str = ""
    prepare: Callable[[Path, Fetcher], None] | None = None
    category: str | None = None


def build_part(fetcher: Fetcher, part: Part, *, keep_archives: bool) -> None:
    """Download, extract, prepare, check, record and rename one :class:`Part` into place."""
    name = fetcher.dataset.name
    downloaded = [(file, fetcher.fetch(file)) for file in part.files]
    stage = temporary_path(part.target)
    make_folder(stage)
    try:
        for file, path in downloaded:
            if path is None:
                continue
            destination = make_folder(stage / file.into)
            if not file.archive:
                place(path, destination / file.name)
                continue
            say(f"{name}: extracting {file.name}")
            try:
                extract_archive(path, destination, only=file.members, progress=fetcher.progress)
            except ArchiveError as error:
                path.unlink(missing_ok=True)
                fetcher.fetched.pop(file.name, None)
                raise ArchiveError(f"{error}; the archive was deleted: rerun to download it again") from None
        if part.prepare is not None:
            part.prepare(stage, fetcher)
        results, measured = check_counts(stage, part.counts, fetcher.lock.counts)
        failed = [result for result in results if not result.ok]
        if failed:
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise InputError(
                f"{name}: the extracted files do not have the expected layout: {failed[0].text}{more}; "
                f"nothing was installed; the downloads stay in {fetcher.downloads}"
            )
        for file, path in downloaded:
            if path is not None and file.name in fetcher.fetched:
                kept = keep_archives and file.archive
                fetcher.fetched[file.name]["path"] = (
                    str(path.relative_to(fetcher.root))
                    if kept
                    else None
                    if file.archive
                    else str((part.target / file.into / file.name).relative_to(fetcher.root))
                )
        fetcher.lock.files.update(fetcher.fetched)
        fetcher.lock.counts.update(measured)
        if part.category is not None and part.category not in fetcher.lock.categories:
            fetcher.lock.categories.append(part.category)
        fetcher.lock.save()
        source = stage / part.inner if part.inner else stage
        if not source.is_dir():
            raise InputError(f"{name}: the archives hold no {part.inner}/ folder; nothing was installed")
        os.rename(source, part.target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if keep_archives:
        return
    if part.category is None:  # the whole dataset is in place: every download of it is obsolete
        shutil.rmtree(fetcher.downloads, ignore_errors=True)
    else:
        for _, path in downloaded:
            if path is not None:
                path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        fetcher.downloads.parent.rmdir()  # only when empty
