"""Resumable runs over a large folder: finished batches are kept in ``<out>.partial/`` until the end.

    <out>.partial/run.json           what the run is (examples, model, settings): a rerun must match it
    <out>.partial/part-000001.json   the records of one finished batch, written atomically
    <out>.partial/lock               held while a run writes (a second run on the same output is refused)

A run killed at any moment leaves whole part files (and perhaps a dead writer's temporary, removed
on resume); rerunning the same command skips the images already in a part and labels the rest, in
the same batches an uninterrupted run would have used. When every image is done the output is
written atomically and the folder removed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import file_lock, make_folder, read_json, remove_stale_temporaries, write_json

FORMAT, VERSION = "semcorr-transfer-partial", 1


class PartialRun:
    """The finished batches of a run writing ``out`` (use as a context manager: it holds the lock).

    Args:
        out: the final output file.
        identity: what must be equal for a run to continue this one (JSON-serialisable).
    """

    def __init__(self, out: Path, identity: dict[str, Any]) -> None:
        self.out = Path(out)
        self.folder = self.out.with_name(self.out.name + ".partial")
        self.identity = json.loads(json.dumps({"format": FORMAT, "version": VERSION, **identity}))  # as read back
        self.records: dict[str, dict[str, Any]] = {}
        self._next = 1
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> PartialRun:
        make_folder(self.folder)
        self._stack.enter_context(
            file_lock(
                self.folder / "lock",
                wait=False,
                busy=f"{self.out}: another semcorr transfer is writing it (lock {self.folder / 'lock'})",
            )
        )
        try:
            self._load()
        except BaseException:
            self._stack.close()
            raise
        return self

    def _load(self) -> None:
        remove_stale_temporaries(self.folder.iterdir())
        run = self.folder / "run.json"
        if run.is_file():
            if read_json(run, expect=dict) != self.identity:
                raise InputError(
                    f"{self.folder}: holds a run with other examples, model or settings; rerun with "
                    "those, or delete the folder to start over"
                )
        else:
            write_json(run, self.identity)
        for part in sorted(self.folder.glob("part-*.json")):
            for record in read_json(part, expect=dict).get("records", []):
                self.records[record["file_name"]] = record
            self._next = max(self._next, int(part.stem.rpartition("-")[2]) + 1)

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def add(self, records: list[dict[str, Any]]) -> None:
        """Keep one finished batch (written atomically)."""
        write_json(self.folder / f"part-{self._next:06d}.json", {"records": records}, indent=None)
        self._next += 1
        for record in records:
            self.records[record["file_name"]] = record

    def finish(self) -> None:
        """Remove the folder (after the output was written); the lock is released first."""
        self._stack.close()
        shutil.rmtree(self.folder, ignore_errors=True)
