"""What an extraction run did, and the file of the images it could not read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..fileio import write_atomically


@dataclass
class ExtractReport:
    """One run (one rank, or the whole Ray job).

    Attributes:
        engine: ``local``, ``rank R/N`` or ``ray``.
        written: entries written by this run; ``already_done``: whole entries found and skipped;
        redone: entries found damaged (truncated, foreign) and written again; ``other_ranks``:
        images left to other processes; ``failed``: ``(key, path, message)`` per unreadable image.
        seconds: from the start of the run (model built) to its last write.
    """

    engine: str
    written: int = 0
    already_done: int = 0
    redone: int = 0
    other_ranks: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    bytes_written: int = 0
    seconds: float = 0.0

    @property
    def bytes_per_image(self) -> float:
        return self.bytes_written / self.written if self.written else 0.0

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        speed = (
            f" ({self.images_per_second:.2f} images/s, {self.bytes_per_image / 1e6:.3f} MB per image)"
            if self.written
            else ""
        )
        others = f", {self.other_ranks} left to other ranks" if self.other_ranks else ""
        redone = f" ({self.redone} damaged entries written again)" if self.redone else ""
        return (
            f"{self.engine}: extracted {self.written} images in {self.seconds:.1f} s{speed}{redone}; "
            f"{self.already_done} already done, {len(self.failed)} failed{others}"
        )

    def write_failures(self, root: Path, name: str) -> Path:
        """``root/errors-<name>.jsonl``: this run's unreadable images, one JSON line each (removed
        when there were none: a rerun tries every image the store lacks again)."""
        path = root / f"errors-{name}.jsonl"
        if self.failed:
            lines = [json.dumps({"key": key, "path": where, "error": message}) for key, where, message in self.failed]
            write_atomically(path, "".join(line + "\n" for line in lines))
        else:
            path.unlink(missing_ok=True)
        return path
