"""Crash-safe file writing shared by every cache, checkpoint and run folder, and the reader of the
versioned JSON documents they hold."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any

from .errors import CheckpointError

HOST = socket.gethostname().replace(".", "_") or "host"


def temporary_path(path: Path) -> Path:
    """The hidden temporary sibling ``.NAME.HOST.PID.tmp`` a writer fills before renaming it to ``path``.

    Host and process id in the name let a later run tell a dead writer's leftovers from a live one's.
    """
    return path.with_name(f".{path.name}.{HOST}.{os.getpid()}.tmp")


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash at any moment leaves the old file or the new one, never a part."""
    temporary = temporary_path(path)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def read_versioned_json(path: Path, format_name: str, version: int, what: str) -> dict[str, Any]:
    """A JSON object that semcorr wrote with ``"format"`` and ``"version"`` keys; a damaged or foreign
    file is a :class:`CheckpointError` naming it (``what`` says what it should have been)."""
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(content, dict) or content.get("format") != format_name or content.get("version") != version:
        raise CheckpointError(f"{path}: not a {format_name} version {version} {what}")
    return content
