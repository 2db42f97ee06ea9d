"""The settings of an extraction run (``semcorr extract``, ``semcorr cache-teacher``): what to build,
how to batch and decode, and the Ray engine's resources. Torch-free, so the command line reads
them at once; each checks itself when built (:mod:`semcorr.settings`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .._moved import renamed_names
from ..settings import ON_ERROR, OnError, check_bool, check_choice, check_int, check_number, check_text

if TYPE_CHECKING:
    from ..features.base import Extractor

EngineName = Literal["local", "ray"]
ENGINES: tuple[str, ...] = ("local", "ray")


def default_workers() -> int:
    """Decoding processes per extracting process: the CPUs this process may have (its share of the
    machine under torchrun, ``LOCAL_WORLD_SIZE``), less one for the process itself, at most 8."""
    try:
        local_world = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    except ValueError:
        local_world = 1
    return max(1, min(8, (os.cpu_count() or 2) // local_world - 1))


@dataclass(frozen=True)
class ExtractSettings:
    """How images are fed to the model and written.

    Attributes:
        batch_size: images per forward pass.
        workers: processes decoding and resizing images in parallel (a torch DataLoader); 0:
            decode in the extracting process; ``None``: :func:`default_workers`.
        on_error: an unreadable image is reported by path and skipped (``skip``), or stops the run
            (``stop``; what was extracted stays).
        embeddings: also store each image's global embedding (class token, or mean of the cells).
    """

    batch_size: int = 8
    workers: int | None = None
    on_error: OnError = "skip"
    embeddings: bool = True

    def __post_init__(self) -> None:
        check_int(self, "batch_size", minimum=1)
        check_int(self, "workers", minimum=0, optional=True, none_means="(one per CPU, at most 8)")
        check_choice(self, "on_error", ON_ERROR)
        check_bool(self, "embeddings")

    @property
    def decoding_workers(self) -> int:
        return default_workers() if self.workers is None else self.workers


@dataclass(frozen=True)
class RaySettings:
    """The Ray engine's cluster and resources.

    Attributes:
        address: the cluster to join (``auto``, ``HOST:PORT``, ``ray://HOST:10001``); ``None``: the
            one in ``RAY_ADDRESS``, else a local Ray started for this run.
        num_gpus: GPUs per extracting actor (fractions share a GPU between actors).
        concurrency: extracting actors (each loads the model once).
        cpus_per_actor: CPUs per extracting actor (its torch threads on a CPU-only actor).
    """

    OPTIONS: ClassVar[dict[str, str]] = {"address": "--ray-address"}

    address: str | None = None
    num_gpus: float = 0.0
    concurrency: int = 1
    cpus_per_actor: float = 1.0

    def __post_init__(self) -> None:
        check_text(self, "address")
        check_number(self, "num_gpus", minimum=0)
        check_int(self, "concurrency", minimum=1)
        check_number(self, "cpus_per_actor", above=0)


@dataclass(frozen=True)
class ModelSpec:
    """A preset and its arguments, as :func:`~semcorr.features.registry.build_extractor` takes them:
    what each Ray actor builds for itself (a small picklable value, not the model)."""

    name: str
    weights: str | None = None
    random_weights: bool = False
    device: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Extractor:
        from ..features.registry import build_extractor

        return build_extractor(
            self.name, weights=self.weights, random_weights=self.random_weights, device=self.device, **self.overrides
        )


if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
