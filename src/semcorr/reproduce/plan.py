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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import human_size, make_folder, read_json, write_json

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

    def states(self, context: Context) -> dict[str, bool]:
        """Whether each stage is done (its marker written and its outputs whole), by name."""
        return {stage.name: self.is_done(stage, context) for stage in self.stages}

    def describe(self, context: Context, states: Mapping[str, bool] | None = None) -> str:
        """The plan as a table: stage, state, outputs, disk and rough time; then the totals.

        Args:
            states: :meth:`states`, when the caller has them already.
        """
        states = self.states(context) if states is None else states
        rows = [("stage", "state", "disk", "time", "what")]
        disk = seconds = 0.0
        for stage in self.stages:
            done = states[stage.name]
            size, duration = stage.disk(context), stage.seconds(context)
            if not done:
                disk += size
                seconds += duration
            rows.append(
                (
                    stage.name,
                    "done" if done else "to run",
                    human_size(size),
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
            f"still to run: about {human_size(disk)} of disk and {_duration(seconds)} on {context.device} "
            "(rough figures: a GPU means one A100-class card, a CPU a few cores; each stage resumes where "
            "it stopped)"
        )
        return "\n".join(lines)

    def run(
        self, context: Context, *, only: str | None = None, states: Mapping[str, bool] | None = None
    ) -> dict[str, Any]:
        """Run every stage not done yet (or only ``only``); returns each stage's summary.

        Args:
            states: :meth:`states` taken just before (a stage's ``whole`` check can read every
                file it wrote): trusted until a stage runs, since a stage that runs may change what
                the later ones find.
        """
        known = dict(states or {})

        def done(stage: Stage) -> bool:
            return known[stage.name] if stage.name in known else self.is_done(stage, context)

        chosen = [self.stage(only)] if only is not None else list(self.stages)
        if only is not None:
            position = self.stages.index(chosen[0])
            missing = [s.name for s in self.stages[:position] if not done(s)]
            if missing:
                raise InputError(
                    f"--stage {only} needs the stages before it: run {', '.join(missing)} first (or the whole plan)"
                )
        summaries: dict[str, Any] = {}
        for stage in chosen:
            marker = context.root / MARKERS / f"{stage.name}.json"
            if done(stage):
                context.log(f"[{stage.name}] done before: skipped ({marker})")
                summaries[stage.name] = read_json(marker, expect=dict).get("summary")
                continue
            known.clear()
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


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
