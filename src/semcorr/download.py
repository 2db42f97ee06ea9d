"""Downloading one large file over HTTP(S): resumable, verified, and never half-present.

    download_file("https://ommer-lab.com/files/distilldift/distilldift_us.ckpt", Path("~/.cache/x.ckpt"))

The bytes go to ``NAME.part`` next to the target. After a cut connection the next attempt (in
this call, or in a later run) asks for the rest with an HTTP ``Range`` request; a server that
answers ``206 Partial Content`` from the right offset is appended to, any other answer restarts
the file from byte 0. The length is checked against ``Content-Length`` / ``Content-Range`` and
only a complete file is renamed (``os.replace``) to the target, so the target path is either
absent or whole. A server that sends no length cannot be checked: its file is taken as complete
when the stream ends cleanly. Two processes fetching the same file take turns through an
advisory lock on ``NAME.lock``, removed once the file is complete (POSIX only; elsewhere they
are not coordinated).

Given the expected SHA-256, the complete file is checked before it is renamed (and a file already
at the target is checked before it is used): a mismatch deletes it, since no resume can mend a
whole file with the wrong bytes. A write that the disk refuses (full, read-only, over a size
limit) stops at once with one line naming the file; the bytes already fetched stay in ``.part``
for a later resume.

Offline switch: ``SEMCORR_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``, which semcorr takes to mean
offline for every download) stops :func:`unreachable_reason` from trying the network at all.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

from tqdm import tqdm

from .errors import ChecksumError, DownloadError, InputError
from .fileio import WRITE_ERRORS, cannot_write, file_lock

CHUNK = 1 << 20
CACHE_VARIABLE = "SEMCORR_CACHE"
_TRUE = ("1", "true", "yes", "on")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def cache_root() -> Path:
    """semcorr's cache folder: ``$SEMCORR_CACHE``, else ``$XDG_CACHE_HOME/semcorr``, else ``~/.cache/semcorr``."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "semcorr"


class _Cut(Exception):
    """The connection ended before the announced length: resume."""


class _WriteFailed(Exception):
    """The disk refused the bytes (full, read-only, over a size limit): retrying will not help."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def file_digests(path: Path, algorithms: Iterable[str] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file, every algorithm (``sha256``, ``md5``, ...) in one pass over its bytes."""
    digests = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            for digest in digests.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def remote_size(url: str, *, timeout: float = 10.0) -> int | None:
    """The length in bytes the server announces for ``url`` (a ``HEAD`` request), or None when it
    does not say or cannot be asked (offline: not asked)."""
    if offline_reason() is not None:
        return None
    request = urllib.request.Request(
        url, method="HEAD", headers={"User-Agent": "semcorr", "Accept-Encoding": "identity"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
        return None
    return int(length) if length and length.isdigit() else None


def offline_reason() -> str | None:
    """``"SEMCORR_OFFLINE is set"`` (or ``HF_HUB_OFFLINE``) when the network must not be tried, else None."""
    for variable in ("SEMCORR_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(variable, "").lower() in _TRUE:
            return f"{variable} is set"
    return None


def unreachable_reason(url: str, *, probe_seconds: float = 3.0) -> str | None:
    """Why ``url`` cannot be fetched right now, or None if its host accepts a TCP connection.

    Checks ``SEMCORR_OFFLINE`` and ``HF_HUB_OFFLINE`` first (no network then), else a quick probe.
    """
    offline = offline_reason()
    if offline is not None:
        return offline
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return f"{url!r} is not an http(s) address"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=probe_seconds).close()
    except OSError as error:
        return f"{parsed.hostname} is unreachable: {error.strerror or error}"
    return None


def _total_length(response: http.client.HTTPResponse, offset: int) -> int | None:
    """The full file's length from a 200 or 206 answer, or None if the server does not say."""
    content_range = response.headers.get("Content-Range")
    if response.status == 206 and content_range:
        match = _CONTENT_RANGE.fullmatch(content_range.strip())
        if match and match.group(3) != "*":
            return int(match.group(3))
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _range_start(response: http.client.HTTPResponse) -> int | None:
    match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
    return int(match.group(1)) if match else None


def _fetch_once(url: str, part: Path, timeout: float, bar: tqdm) -> None:
    """One request: append to ``part`` from its current size (or restart it); raises :class:`_Cut`
    when the stream ends early, with what arrived kept for the next attempt."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "semcorr", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # asked beyond the end: the part is stale or oversized
            part.unlink()
            raise _Cut("range not satisfiable; restarting") from None
        raise
    with response:
        if offset and (response.status != 206 or _range_start(response) != offset):
            offset = 0  # the server sends the whole file: start again
        total = _total_length(response, offset)
        mode = "ab" if offset else "wb"
        bar.reset(total=total)
        bar.update(offset)
        received = offset
        try:
            with open(part, mode) as handle:
                received = _copy(response, handle, received, bar)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            if error.errno in WRITE_ERRORS:
                raise _WriteFailed(error) from None
            raise
    if total is not None and received < total:
        raise _Cut(f"connection closed after {received} of {total} bytes")
    if total is not None and received > total:
        part.unlink()
        raise _Cut(f"received {received} bytes, more than the announced {total}; restarting")


def _copy(response: http.client.HTTPResponse, handle: IO[bytes], received: int, bar: tqdm) -> int:
    while True:
        try:
            chunk = response.read(CHUNK)
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as error:
            partial = getattr(error, "partial", b"")
            if partial:
                handle.write(partial)
                received += len(partial)
            raise _Cut(f"connection cut after {received} bytes ({type(error).__name__})") from None
        if not chunk:
            return received
        try:
            handle.write(chunk)
        except OSError as error:
            if error.errno in WRITE_ERRORS:
                raise _WriteFailed(error) from None
            raise
        received += len(chunk)
        bar.update(len(chunk))


def download_file(
    url: str,
    target: Path,
    *,
    attempts: int = 5,
    timeout: float = 60.0,
    progress: bool = True,
    description: str | None = None,
    retry_wait: float = 1.0,
    sha256: str | None = None,
    sha256_source: str = "the expected one",
) -> Path:
    """Fetch ``url`` into ``target`` (a file path), resuming after cut connections.

    Args:
        url: an http(s) address.
        target: where the complete file goes; its folder is created.
        attempts: requests in a row that may fail without bringing new bytes before giving up (a
            request that brings bytes starts the count again, so a slow, flaky link still finishes).
        timeout: seconds without data before a request counts as cut.
        progress: show a tqdm progress bar (bytes) on stderr.
        description: the bar's label (default: the file name).
        retry_wait: seconds to wait after the first fruitless request (doubling after each).
        sha256: the file's expected SHA-256 (hex): checked before the file is renamed into place,
            and checked on a file already at ``target`` (one that differs is deleted and fetched again).
        sha256_source: where ``sha256`` comes from, for the message (``"the publisher's"``).
    Returns:
        ``target``, complete (and with the expected SHA-256, when given).
    Raises:
        DownloadError: it gave up (the ``.part`` file is kept for a later resume).
        ChecksumError: the complete file's SHA-256 differs from ``sha256`` (the file is deleted).
        InputError: the disk refused the bytes (full, read-only, a size limit); what arrived is kept.
    """
    target = Path(target).expanduser()
    if target.is_file() and sha256 is None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    lock = target.with_name(target.name + ".lock")
    requests, fruitless, last_error = 0, 0, "no request made"
    with file_lock(lock):
        if target.is_file():  # found, or another process finished it while we waited for the lock
            if sha256 is None or file_digests(target)["sha256"] == sha256.lower():
                return target
            warnings.warn(
                f"{target}: its SHA-256 differs from {sha256_source}; deleted, downloading it again", stacklevel=2
            )
            target.unlink()
        with tqdm(
            desc=description or target.name,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not progress,
            leave=False,
        ) as bar:
            while fruitless < attempts:
                if fruitless:
                    time.sleep(retry_wait * 2 ** (fruitless - 1))
                before = part.stat().st_size if part.exists() else 0
                requests += 1
                try:
                    _fetch_once(url, part, timeout, bar)
                except _Cut as error:
                    last_error = str(error)
                except _WriteFailed as failure:
                    raise _refused_write(part, failure.error) from None
                except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
                    if isinstance(error, urllib.error.HTTPError):
                        last_error = f"HTTP {error.code} {error.reason}"
                        if error.code < 500 and error.code != 408:
                            break  # 404, 403, ...: asking again will not help
                    else:
                        last_error = f"{type(error).__name__}: {getattr(error, 'reason', None) or error}"
                else:
                    if sha256 is not None:
                        _check_sha256(part, sha256, sha256_source, url)
                    os.replace(part, target)
                    return target
                after = part.stat().st_size if part.exists() else 0
                fruitless = 0 if after > before else fruitless + 1
    kept = f"; {part.stat().st_size} bytes kept in {part} to resume" if part.exists() else ""
    raise DownloadError(f"download of {url} failed after {requests} request(s): {last_error}{kept}")


def _check_sha256(part: Path, expected: str, source: str, url: str) -> None:
    """Delete ``part`` and raise :class:`ChecksumError` unless its SHA-256 is ``expected``."""
    actual = file_digests(part)["sha256"]
    if actual != expected.lower():
        part.unlink()
        raise ChecksumError(
            f"{url}: the downloaded file's SHA-256 {actual} differs from {source} "
            f"({expected.lower()}); it was deleted (a damaged transfer, or a server or proxy that "
            "changed the file)"
        )


def _refused_write(part: Path, error: OSError) -> InputError:
    """The one-line error of a disk that refused the download's bytes; what arrived is kept to resume."""
    size = part.stat().st_size if part.exists() else 0
    kept = f"; the {size} bytes that arrived are kept there: rerun to resume once there is room" if size else ""
    return InputError(f"{cannot_write(part, error)}{kept}")
