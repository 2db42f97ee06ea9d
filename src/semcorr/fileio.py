"""Files, read and written safely: the one atomic writer, the one JSON reader, the one lock.

* :func:`write_atomically` (and :func:`write_json`) put bytes at a path so that a crash at any
  moment leaves the old file or the new one, never a part: the bytes go to a hidden temporary
  sibling that is fsynced and renamed into place. Every file semcorr writes goes through it.
* :func:`read_json` reads a JSON file (``.json``, or gzipped ``.jgz`` / ``.json.gz``); a missing,
  unreadable or malformed file is an :class:`~semcorr.errors.InputError` naming it.
* :func:`check_output_file` and :func:`check_output_folder` refuse, before any work, an output
  that cannot be written (a folder where a file is asked for, a missing or read-only folder, an
  extension the writer does not make); :func:`make_folder` creates one. A write that fails anyway
  (permission, a full disk) is an :class:`~semcorr.errors.InputError` naming the path.
* :func:`file_lock` holds an exclusive advisory lock on a lock file (POSIX ``flock``).
* :func:`remove_stale_temporaries` deletes the temporary files of killed writers of this machine.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import shutil
import socket
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import CheckpointError, InputError

HOST = socket.gethostname().replace(".", "_") or "host"
# What a write into a place that cannot take it fails with: these become one-line InputErrors.
WRITE_ERRORS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EFBIG,
        errno.EDQUOT,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENAMETOOLONG,
    }
)


def cannot_write(path: str | os.PathLike, error: OSError) -> InputError:
    """The one-line error of a failed write of ``path``."""
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EFBIG: "the file is too large for this file system or limit",
    }
    reason = reasons.get(error.errno) if error.errno is not None else None
    return InputError(f"{path}: cannot write it ({reason or error.strerror or error})")


def check_output_file(path: str | os.PathLike, *, suffixes: Sequence[str] | None = None, what: str = "output") -> Path:
    """``path`` if a file can be written there; else an :class:`InputError` saying why, before any work.

    Refused: a folder; an extension not among ``suffixes`` (e.g. ``(".json",)``; case-insensitive);
    a folder that does not exist or cannot be written.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name for the {what}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(f"{path}: the {what} must be a {' or '.join(suffixes)} file")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"{path}: the folder {folder} does not exist; give a file name in an existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: the folder {folder} is not writable")
    return path


def check_output_folder(path: str | os.PathLike, *, what: str = "output folder") -> Path:
    """``path`` if it is, or can be made, a writable folder; else an :class:`InputError`, before any work."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: is a file; give a folder for the {what}")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{path}: {existing} is a file, so the {what} cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{path}: {'it' if existing == path else existing} is not writable")
    return path


def make_folder(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` (and its parents) if needed; a failure is one :class:`InputError`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{path}: is a file, not a folder") from None
    except OSError as error:
        raise cannot_write(path, error) from None
    return path


def temporary_path(path: Path) -> Path:
    """The hidden temporary sibling ``.NAME.HOST.PID.tmp`` a writer fills before renaming it to ``path``.

    Host and process id in the name let a later run tell a dead writer's leftovers from a live one's
    (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{HOST}.{os.getpid()}.tmp")


def write_atomically(path: str | os.PathLike, data: bytes | str) -> int:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` so that a crash at any moment leaves the
    old file or the new one, never a part. Returns the number of bytes written."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_file(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(payload)
    return len(payload)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """For writers that need a file name (HDF5, ONNX): yields the :func:`temporary_path` of ``path``
    to write; when the block ends without an error the file is fsynced and renamed to ``path``
    (the folder's entry fsynced too), else removed."""
    path = Path(path)
    temporary = temporary_path(path)
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, path)
        _fsync(path.parent)
    except OSError as error:
        if error.errno in WRITE_ERRORS:
            raise cannot_write(path, error) from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk; best effort where the system refuses (folders on
    some file systems)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(descriptor)


def write_json(path: str | os.PathLike, value: Any, *, indent: int | None = 2) -> int:
    """Write ``value`` as JSON (strict: NaN and infinity are refused) atomically, with a final newline."""
    return write_atomically(path, json.dumps(value, indent=indent, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike, *, expect: type | None = None) -> Any:
    """Parse a JSON file (gzipped when its name ends in ``.jgz`` or ``.gz``).

    Args:
        expect: ``dict`` or ``list``: the top-level value must be one.
    Raises:
        InputError: the file is missing, unreadable, not JSON, or not of the ``expect``-ed kind.
    """
    path = Path(path)
    try:
        if path.suffix in (".jgz", ".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                text = handle.read()
        else:
            text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a JSON file") from None
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot be read ({' '.join(str(error).split())})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None
    if expect is not None and not isinstance(value, expect):
        raise InputError(
            f"{path}: expected a JSON {'object' if expect is dict else 'list'}, got {type(value).__name__}"
        )
    return value


def read_versioned_json(path: Path, format_name: str, version: int | Iterable[int], what: str) -> dict[str, Any]:
    """A JSON object that semcorr wrote with ``"format"`` and ``"version"`` keys (``version``: one
    number or the accepted ones); a damaged or foreign file is a :class:`CheckpointError` naming it
    (``what`` says what it should have been)."""
    try:
        content = read_json(path, expect=dict)
    except InputError as error:
        raise CheckpointError(str(error)) from None
    versions = {version} if isinstance(version, int) else set(version)
    if content.get("format") != format_name or content.get("version") not in versions:
        wanted = " or ".join(map(str, sorted(versions)))
        raise CheckpointError(f"{path}: not a {format_name} version {wanted} {what}")
    return content


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, wait: bool = True, busy: str | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock on the file ``path`` (created; removed on release).

    Args:
        wait: wait for another holder; ``False``: raise :class:`InputError` (``busy``) at once.
    Without ``fcntl`` (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    while True:
        handle = open(path, "a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            raise InputError(busy or f"{path}: held by another process") from None
        try:  # the previous holder may have removed the file while we waited: lock the new one
            if os.path.samestat(os.fstat(handle.fileno()), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: a waiter on this file sees it gone and retries
        handle.close()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(candidates: Iterable[Path]) -> int:
    """Delete the :func:`temporary_path` files and folders among ``candidates`` whose writer, a
    process of this machine, is dead. Returns how many were removed."""
    removed = 0
    for temporary in candidates:
        parts = temporary.name.rsplit(".", 3)
        if len(parts) != 4 or parts[3] != "tmp" or not temporary.name.startswith("."):
            continue
        host, pid = parts[1], parts[2]
        if host == HOST and pid.isdigit() and not pid_alive(int(pid)):
            if temporary.is_dir():
                shutil.rmtree(temporary, ignore_errors=True)
            else:
                temporary.unlink(missing_ok=True)
            removed += 1
    return removed


def human_size(size: float) -> str:
    """``size`` bytes in decimal units for people: ``512 B``, ``13.0 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
