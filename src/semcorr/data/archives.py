"""Extracting zip and tar archives safely: nothing lands outside the target folder.

Every member is checked before anything is written; an archive is refused, with one line naming
it and the member, when a member's path is absolute or climbs out with ``..``, when a symbolic or
hard link points outside the folder, or when a member is a device, a pipe or another special file.
Publishers' junk is skipped (``__MACOSX/`` folders and ``.DS_Store`` files). A damaged archive
(bad CRC, truncated stream, not an archive at all) and a disk that refuses the bytes are one-line
errors too; the caller extracts into a temporary folder and throws it away on any error, so a
half-extracted dataset is never used.
"""

from __future__ import annotations

import errno
import os
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal, TypeVar

from tqdm import tqdm

from ..errors import InputError
from ..fileio import WRITE_ERRORS, cannot_write

MemberKind = Literal["file", "folder", "symlink", "hardlink", "special"]
_JUNK_FOLDERS = ("__MACOSX",)
_JUNK_FILES = (".DS_Store",)
_DAMAGED = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError)


class ArchiveError(InputError):
    """An archive that cannot be used: damaged, not an archive at all, or with an unsafe member."""


@dataclass(frozen=True)
class Member:
    """One entry of an archive: its path inside it, its kind, its size and, for a link, its target."""

    name: str
    kind: MemberKind
    size: int
    link: str = ""


def archive_kind(path: Path) -> Literal["zip", "tar"]:
    """``zip`` or ``tar`` (any compression), from the file's bytes, not its name."""
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError, zlib.error):
        pass
    page = " (the server sent a web page instead: a login, quota or warning page?)" if is_web_page(path) else ""
    raise ArchiveError(f"{path}: not a zip or tar archive{page}")


def is_web_page(path: Path) -> bool:
    """Whether the file is an HTML page (what a server sends instead of a file it will not give)."""
    with open(path, "rb") as handle:
        start = handle.read(512).lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html"))


def list_members(path: Path) -> list[Member]:
    """The archive's members, in its order."""
    try:
        if archive_kind(path) == "zip":
            with zipfile.ZipFile(path) as archive:
                return [_zip_member(archive, info) for info in archive.infolist()]
        with tarfile.open(path) as archive:
            return [_tar_member(info) for info in archive.getmembers()]
    except InputError:
        raise
    except _DAMAGED as error:
        raise _damaged(path, error) from None


def _zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Member:
    mode = info.external_attr >> 16
    if (mode & 0o170000) == 0o120000:
        return Member(info.filename, "symlink", 0, archive.read(info).decode("utf-8", "replace"))
    return Member(info.filename, "folder" if info.is_dir() else "file", info.file_size)


def _tar_member(info: tarfile.TarInfo) -> Member:
    if info.issym():
        return Member(info.name, "symlink", 0, info.linkname)
    if info.islnk():
        return Member(info.name, "hardlink", 0, info.linkname)
    if info.isdir():
        return Member(info.name, "folder", 0)
    if info.isfile():
        return Member(info.name, "file", info.size)
    return Member(info.name, "special", 0)  # refused by check_member


def is_junk(name: str) -> bool:
    """``__MACOSX/...`` and ``.DS_Store``: the archiver's leftovers, never data."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and (parts[0] in _JUNK_FOLDERS or parts[-1] in _JUNK_FILES)


def check_member(archive: Path, member: Member) -> None:
    """Refuse a member that would land outside the folder it is extracted into."""
    name = member.name.replace("\\", "/")
    where = f"{archive}: member {member.name!r}"
    if member.kind not in ("file", "folder", "symlink", "hardlink"):
        raise ArchiveError(f"{where} is a device, pipe or other special file; refused")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"{where} has an absolute path; refused (it would be written outside the dataset folder)")
    if ".." in PurePosixPath(name).parts:
        raise ArchiveError(f"{where} climbs out with '..'; refused (it would be written outside the dataset folder)")
    if member.kind in ("symlink", "hardlink"):
        link = member.link.replace("\\", "/")
        base = PurePosixPath(name).parent if member.kind == "symlink" else PurePosixPath()
        if link.startswith("/") or _climbs_out(base / link):
            raise ArchiveError(f"{where} is a link to {member.link!r}, outside the dataset folder; refused")


def _climbs_out(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return True
    return False


def extract_archive(path: Path, folder: Path, *, only: Collection[str] = (), progress: bool = False) -> int:
    """Extract ``path`` into ``folder`` (which must exist) after checking every member.

    The archive is opened once: its members are listed and checked, then extracted from the same
    handle (a compressed tar is read twice, the least that checking everything first allows).

    Args:
        only: extract just these members (paths inside the archive); all when empty. A listed
            member missing from the archive is an error.
        progress: a progress bar (bytes written) on stderr.
    Returns:
        the number of files written.
    Raises:
        InputError: an unsafe member, a damaged archive, too little free space, or a refused write.
    """
    try:
        if archive_kind(path) == "zip":
            with zipfile.ZipFile(path) as zip_archive:
                zipped = [(info, _zip_member(zip_archive, info)) for info in zip_archive.infolist()]
                chosen = _chosen(path, folder, zipped, only)
                with _progress_bar(path, chosen, progress) as bar:
                    return _extract_zip(zip_archive, folder, chosen, bar)
        with tarfile.open(path) as tar_archive:
            tarred = [(info, _tar_member(info)) for info in tar_archive.getmembers()]
            chosen_tar = _chosen(path, folder, tarred, only)
            with _progress_bar(path, chosen_tar, progress) as bar:
                return _extract_tar(tar_archive, folder, chosen_tar, bar)
    except InputError:
        raise
    except OSError as error:
        if error.errno in WRITE_ERRORS:
            raise cannot_write(error.filename or folder, error) from None
        raise _damaged(path, error) from None
    except _DAMAGED as error:
        raise _damaged(path, error) from None


_Info = TypeVar("_Info", zipfile.ZipInfo, tarfile.TarInfo)


def _chosen(
    path: Path, folder: Path, entries: list[tuple[_Info, Member]], only: Collection[str]
) -> list[tuple[_Info, Member]]:
    """The entries to extract (junk left out, ``only`` applied), after every one of them is checked
    and the free space in ``folder`` is found enough."""
    entries = [(info, member) for info, member in entries if not is_junk(member.name)]
    for _, member in entries:
        check_member(path, member)
    if only:
        missing = sorted(set(only) - {member.name for _, member in entries})
        if missing:
            raise ArchiveError(f"{path}: has no member {missing[0]!r}; is it the right archive?")
        entries = [(info, member) for info, member in entries if member.name in set(only)]
    needed = sum(member.size for _, member in entries)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise InputError(
            f"{folder}: cannot extract {path.name} here: it needs {needed / 1e9:.2f} GB, {free / 1e9:.2f} GB are free"
        )
    return entries


def _progress_bar(path: Path, entries: list[tuple[Any, Member]], progress: bool) -> tqdm:
    return tqdm(
        total=sum(member.size for _, member in entries),
        desc=f"extracting {path.name}",
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress,
        leave=False,
    )


def _extract_zip(
    archive: zipfile.ZipFile, folder: Path, entries: list[tuple[zipfile.ZipInfo, Member]], bar: tqdm
) -> int:
    written = 0
    for info, member in entries:
        target = folder / member.name
        if member.kind == "folder":
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if member.kind == "symlink":
            os.symlink(member.link, target)
            continue
        with archive.open(info) as source, _open_for_writing(target) as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        written += 1
        bar.update(info.file_size)
    return written


def _extract_tar(
    archive: tarfile.TarFile, folder: Path, entries: list[tuple[tarfile.TarInfo, Member]], bar: tqdm
) -> int:
    for info, _ in entries:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12: tarfile's own checks, on top of ours
            archive.extract(info, folder, filter="data")
        else:  # pragma: no cover - older Pythons
            archive.extract(info, folder)
        bar.update(info.size if info.isfile() else 0)
    return sum(1 for info, _ in entries if info.isfile())


def _open_for_writing(target: Path) -> BinaryIO:
    try:
        return open(target, "wb")
    except OSError as error:
        if error.errno in WRITE_ERRORS:
            raise cannot_write(target, error) from None
        raise


def _damaged(path: Path, error: BaseException) -> InputError:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return cannot_write(error.filename or path, error)
    reason = " ".join(str(error).split()) or type(error).__name__
    return ArchiveError(f"{path}: the archive is damaged ({reason})")
