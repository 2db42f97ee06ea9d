"""The checks of an extracted dataset: the counts its layout must show, and what semcorr's loaders
read from it.

A :class:`~semcorr.data.catalog.Count` is compared with the publisher's figure when the catalog
has one, else with the figure recorded in the lock file at the first download (and recorded, when
there is none yet). A :class:`~semcorr.data.catalog.Load` loads a benchmark split with semcorr's
own loader and compares the number of pairs.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from ..errors import SemcorrError
from ..fileio import read_json
from .catalog import Count, Load


@dataclass(frozen=True)
class CheckResult:
    """One check: whether it passed, and a line saying what was found."""

    ok: bool
    text: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.text}"


def count_in_folder(folder: Path, count: Count) -> int | None:
    """What ``count`` measures under ``folder``; None when a file it reads is missing."""
    if count.kind in ("lines", "rows"):
        path = folder / count.pattern
        if not path.is_file():
            return None
        with open(path, "rb") as handle:
            lines = sum(1 for line in handle if line.strip())
        return max(lines - 1, 0) if count.kind == "rows" else lines
    matches = glob.iglob(glob.escape(str(folder)) + "/" + count.pattern)
    wanted = Path.is_dir if count.kind == "folders" else Path.is_file
    return sum(1 for match in matches if wanted(Path(match)))


def _unit(count: Count, value: int) -> str:
    return f"{value:,} {count.kind if value != 1 else count.kind[:-1]}"


def check_counts(
    folder: Path, counts: tuple[Count, ...] | list[Count], recorded: dict[str, int]
) -> tuple[list[CheckResult], dict[str, int]]:
    """Every count under ``folder`` against the catalog's figure, else ``recorded`` (the lock's).

    Returns:
        the results, and every measured value (to record for counts the catalog gives no figure for).
    """
    results, measured = [], {}
    for count in counts:
        value = count_in_folder(folder, count)
        if value is None:
            results.append(CheckResult(False, f"{count.pattern}: missing"))
            continue
        measured[count.pattern] = value
        if count.expected is not None:
            expected, source = count.expected, "the catalog's figure"
        elif count.pattern in recorded:
            expected, source = recorded[count.pattern], "recorded at the first download"
        else:
            expected, source = None, "recorded now"
        if expected is None or value == expected:
            results.append(CheckResult(True, f"{count.pattern}: {_unit(count, value)} ({source})"))
        else:
            results.append(
                CheckResult(False, f"{count.pattern}: {_unit(count, value)}, expected {expected:,} ({source})")
            )
    return results, measured


def check_load(load: Load, loader_root: Path, counts: dict[str, int]) -> CheckResult:
    """Load ``load.benchmark``'s split from ``loader_root`` with semcorr's loader; compare the pairs."""
    from .benchmarks import get_benchmark, load_benchmark

    what = f"{load.benchmark} {load.split}"
    expected = load.expected if isinstance(load.expected, int) else counts.get(load.expected)
    try:
        _, pairs = load_benchmark(get_benchmark(load.benchmark), loader_root, load.split)
    except SemcorrError as error:
        return CheckResult(False, f"{what}: semcorr's loader fails: {' '.join(str(error).split())}")
    if expected is not None and len(pairs) != expected:
        return CheckResult(False, f"{what}: the loader reads {len(pairs):,} pairs, expected {expected:,}")
    return CheckResult(True, f"{what}: the loader reads {len(pairs):,} pairs")


def co3d_counts(category: str) -> tuple[Count, ...]:
    """The counts of one extracted CO3D category (figures recorded at its first download)."""
    return (
        Count(f"{category}/frame_annotations.jgz", 1),
        Count(f"{category}/sequence_annotations.jgz", 1),
        Count(f"{category}/set_lists/*.json", None),
        Count(f"{category}/*/images", None, "folders"),
        Count(f"{category}/*/images/*.jpg", None),
    )


def check_co3d_frames(folder: Path, category: str) -> CheckResult:
    """Every frame of ``category``'s ``frame_annotations.jgz`` has its image (paths relative to ``folder``)."""
    try:
        frames = read_json(folder / category / "frame_annotations.jgz", expect=list)
    except SemcorrError as error:
        return CheckResult(False, f"{category}: {' '.join(str(error).split())}")
    paths = [frame.get("image", {}).get("path") if isinstance(frame, dict) else None for frame in frames]
    missing = [path for path in paths if not (isinstance(path, str) and (folder / path).is_file())]
    if missing:
        return CheckResult(
            False, f"{category}: {len(missing):,} of {len(frames):,} annotated frames have no image, e.g. {missing[0]}"
        )
    return CheckResult(True, f"{category}: all {len(frames):,} annotated frames have their image")
