"""Crash-safe file writing shared by every cache, checkpoint and run folder."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

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
