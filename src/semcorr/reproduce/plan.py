"""A resumable plan: named stages, each skipped when its outputs exist and are whole.

    plan = Plan("distilldift", stages=[...])
    print(plan.describe(context))          # stages, outputs, disk and rough time, before anything runs
    plan.run(context)                      # every stage not done yet, in order
    plan.run(context, only="distill")      # one stage (the stages before it must be done)

A stage is done when its marker (``ROOT/.stages/NAME.json``, written atomically after the stage
finished) exists and its ``whole`` check passes on its outputs: a stage killed half-way has no
marker and runs again (each stage's own work resumes: feature stores, training runs and pair
files pick up where they stopped); an output deleted or damaged after the marker makes the stage
run again too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import make_folder, read_json, write_json

MARKERS = ".stages"


@dataclass
class Context:
    """What every stage of a run sees.

    Attributes:
        root: the run's folder (data, caches, runs and results below it).
        tiny: the whole plan on small data in minutes on a CPU (random-weights or baseline models).
        device: where models run (``cpu``, ``cuda``, ...).
        settings: the plan's sizes and paths for this run (counts, epochs, data folders).
        log: where progress lines go.
    """

    root: Path
    tiny: bool
    device: str
    settings: dict[str, Any]
    log: Callable[[str], None] = print
    values: dict[str, Any] = field(default_factory=dict)  # what stages hand to later ones within one run


@dataclass(frozen=True)
class Stage:
    """One step of a plan.

    Attributes:
        name: the ``--stage`` name.
        description: what it does, in a line.
        outputs: what it writes, relative to the root (for the plan's printout).
        run: does the work (resumable where it is long).
        whole: True when its outputs are complete and readable.
        disk: the bytes it writes, estimated from the context.
        seconds: its rough duration on the context's device.
    """

    name: str
    description: str
    outputs: tuple[str, ...]
    run: Callable[[Context], dict[str, Any] | None]
    whole: Callable[[Context], bool]
    disk: Callable[[Context], float]
    seconds: Callable[[Context], float]


@dataclass(frozen=True)
class Plan:
    """Stages in order (each may use what the ones before it wrote)."""

    name: str
    stages: tuple[Stage, ...]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise InputError(
            f"--stage {name}: not a stage of the {self.name} plan; stages: {', '.join(s.name for s in self.stages)}"
        )

    def is_done(self, stage: Stage, context: Context) -> bool:
        marker = context.root / MARKERS / f"{stage.name}.json"
        return marker.is_file() and stage.whole(context)

    def describe(self, context: Context) -> str:
        """The plan as a table: stage, state, outputs, disk and rough time; then the totals."""
        rows = [("stage", "state", "disk", "time", "what")]
        disk = seconds = 0.0
        for stage in self.stages:
            done = self.is_done(stage, context)
            size, duration = stage.disk(context), stage.seconds(context)
            if not done:
                disk += size
                seconds += duration
            rows.append(
                (
                    stage.name,
                    "done" if done else "to run",
                    _bytes(size),
                    _duration(duration),
                    f"{stage.description} -> {', '.join(stage.outputs)}",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            f"semcorr reproduce {self.name}{' --tiny' if context.tiny else ''} in {context.root} on {context.device}"
        ]
        lines += ["  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4] for row in rows]
        lines.append(
            f"still to run: about {_bytes(disk)} of disk and {_duration(seconds)} on {context.device} "
            "(rough figures: a GPU means one A100-class card, a CPU a few cores; each stage resumes where "
            "it stopped)"
        )
        return "\n".join(lines)

    def run(self, context: Context, *, only: str | None = None) -> dict[str, Any]:
        """Run every stage not done yet (or only ``only``); returns each stage's summary."""
        chosen = [self.stage(only)] if only is not None else list(self.stages)
        if only is not None:
            position = self.stages.index(chosen[0])
            missing = [s.name for s in self.stages[:position] if not self.is_done(s, context)]
            if missing:
                raise InputError(
                    f"--stage {only} needs the stages before it: run {', '.join(missing)} first (or the whole plan)"
                )
        summaries: dict[str, Any] = {}
        for stage in chosen:
            marker = context.root / MARKERS / f"{stage.name}.json"
            if self.is_done(stage, context):
                context.log(f"[{stage.name}] done before: skipped ({marker})")
                summaries[stage.name] = read_json(marker, expect=dict).get("summary")
                continue
            context.log(f"[{stage.name}] {stage.description}")
            start = time.perf_counter()
            summary = stage.run(context) or {}
            if not stage.whole(context):
                raise InputError(
                    f"[{stage.name}] finished but its outputs are not whole: "
                    f"{', '.join(stage.outputs)}; rerun to resume it"
                )
            seconds = round(time.perf_counter() - start, 1)
            make_folder(marker.parent)
            write_json(marker, {"stage": stage.name, "seconds": seconds, "summary": summary})
            context.log(f"[{stage.name}] done in {_duration(seconds)}")
            summaries[stage.name] = summary
        return summaries


def _bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
