"""Every setting of a training run: the settings all runs share, and each kind of run's own.

Configs are frozen dataclasses that check themselves when built (:mod:`semcorr.settings`). A run
folder records its config in ``RUN/config.json`` (``{"format", "version", "config": {...}}``); a
rerun with other settings is refused, operational ones (:data:`OPERATIONAL`) aside. Files written
by the first version (one ``pairs`` field for a pair list, a SPair-71k root, a pair file or a
benchmark name) still load: :meth:`TrainConfig.from_record` maps ``pairs`` onto the fields that
each mean one thing now.

No model code is imported here, so the command line builds its options from these fields at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..data.benchmarks import get_benchmark
from ..errors import InputError
from ..features.config import PATCH_SIZE, StudentConfig, check_input_size, check_lora
from ..settings import ON_ERROR, OnError, check_bool, check_choice, check_int, check_number, check_text, fail

OPERATIONAL = frozenset({"device", "checkpoint_every", "log_every", "progress"})  # may change on resume
TRAIN_PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
CONFIG_VERSION = 2  # version 1: one `pairs` field
DEFAULT_TEMPERATURE = 0.01  # of the distillation loss
DEFAULT_BETA = 1000.0  # of the refinement loss's soft-argmax


def record_digest(record: dict[str, Any]) -> str:
    """Hash of a config record's settings that change the result (operational ones excluded)."""
    settings = {k: v for k, v in record.items() if k not in OPERATIONAL}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainConfig:
    """The settings every training run shares (``distill``, ``finetune-3d``).

    Attributes:
        benchmark: take the pairs from this benchmark's ``split`` (``spair``, ``pf-pascal``, ...;
            ``semcorr eval`` names) in the folder ``data_root``.
        data_root: the benchmark's folder, in its official layout.
        split: the benchmark split (``trn`` for SPair-71k).
        weights: the student backbone's weights (HF id, folder or .pth; default the official one).
        random_weights: untrained student backbone (timing, tests).
        input_size: student input side in pixels (434 -> 31x31 patches).
        epochs: passes over the pairs.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        lr_decay_epoch: multiply the lr by ``lr_decay`` from this epoch on (0-based).
        lr_decay: the factor (1: a constant lr).
        lora_rank, lora_alpha, lora_dropout: a new adapter.
        pairs_per_step: pairs per optimiser step per process.
        seed: fixes the LoRA init, the pairs of every epoch, the points drawn, the noise, the dropout.
        precision: ``auto`` (bf16 autocast on GPU, fp32 on CPU), ``fp32`` or ``bf16``.
        device: ``auto``, ``cpu``, ``cuda`` (each process takes ``cuda:LOCAL_RANK``).
        checkpoint_every: steps between checkpoints (also at every epoch's end).
        log_every: steps between metrics lines.
        progress: show a progress bar (rank 0).
    """

    COMMAND: ClassVar[str] = "train"
    RUN_FORMAT: ClassVar[str] = "semcorr-train-run"

    benchmark: str | None = None
    data_root: str | None = None
    split: str = "trn"
    weights: str | None = None
    random_weights: bool = False
    input_size: int = 434
    epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 0.05
    lr_decay_epoch: int = 5
    lr_decay: float = 0.1
    lora_rank: int = 8
    lora_alpha: float = 8.0
    lora_dropout: float = 0.05
    pairs_per_step: int = 1
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: str = "auto"
    checkpoint_every: int = 200
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        check_text(self, "weights")
        check_bool(self, "random_weights")
        check_input_size(self, "input_size", minimum=PATCH_SIZE)
        if self.input_size % PATCH_SIZE:
            raise fail(self, "input_size", f"must be a multiple of {PATCH_SIZE} (the patch size), e.g. 434")
        check_int(self, "epochs", minimum=1)
        check_number(self, "lr", above=0)
        check_number(self, "weight_decay", minimum=0)
        check_int(self, "lr_decay_epoch", minimum=0)
        check_number(self, "lr_decay", above=0)
        check_lora(self)
        check_int(self, "pairs_per_step", minimum=1)
        check_int(self, "seed")
        check_choice(self, "precision", TRAIN_PRECISIONS)
        check_text(self, "device", optional=False)
        check_int(self, "checkpoint_every", minimum=1)
        check_int(self, "log_every", minimum=1)
        check_bool(self, "progress")
        check_text(self, "split", optional=False)
        check_text(self, "data_root")
        if self.benchmark is not None:
            try:
                get_benchmark(self.benchmark)
            except InputError as error:
                raise fail(self, "benchmark", str(error).split("; ", 1)[-1]) from None
            if self.data_root is None:
                raise fail(self, "data_root", "must be given with --benchmark: the benchmark's folder", value=None)

    def digest(self) -> str:
        """Hash of the settings that change the result (operational ones excluded)."""
        return record_digest(self.record())

    def record(self) -> dict[str, Any]:
        """The settings as plain JSON values (what ``RUN/config.json`` holds)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def student_config(self, *, adapter: str | None = None, merge: bool = False) -> StudentConfig:
        """The student this run trains: DINOv2-B-reg with ``weights``, a LoRA adapter of this
        config's rank, alpha and dropout (or ``adapter``'s), not merged (training needs the LoRA)."""
        return StudentConfig(
            input_size=self.input_size,
            weights=self.weights,
            adapter=adapter,
            merge=merge,
            lora_rank=self.lora_rank,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
        )

    @classmethod
    def from_record(cls, record: dict[str, Any], version: int, where: str | Path) -> TrainConfig:
        """The config of a ``RUN/config.json`` record of ``version`` 1 or 2 (version 1 mapped, see
        the module). Unknown settings or values out of range are an :class:`InputError` naming ``where``."""
        if not isinstance(record, dict):
            raise InputError(f"{where}: the config is not a JSON object")
        record = cls.upgrade(dict(record)) if version == 1 else dict(record)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(record) - names)
        if unknown:
            raise InputError(
                f"{where}: settings {unknown} are not {cls.COMMAND} settings (written by another "
                "semcorr?); use another --out folder"
            )
        try:
            return cls(**record)
        except InputError as error:
            raise InputError(f"{where}: {error}") from None

    @classmethod
    def upgrade(cls, record: dict[str, Any]) -> dict[str, Any]:
        """A version-1 record in version-2 fields (each kind of run maps its own ``pairs``)."""
        return record


@dataclass(frozen=True)
class DistillConfig(TrainConfig):
    """Every setting of a distillation run: :class:`TrainConfig`'s and these.

    Attributes:
        images: folder of training images (recursive) or a text file listing them; with
            ``benchmark``, default the folder that holds all of its pairs' images.
        pair_list: a text file of ``source target`` image keys per line: these pairs instead of
            retrieval pairing. With ``benchmark``: its pairs (images only, no keypoints: the weakly
            supervised setting). Neither: each image with one of its ``neighbours`` nearest
            neighbours (DINOv2 class token), drawn anew every epoch.
        teacher_cache: folder filled by ``semcorr cache-teacher`` over the same images.
        on_missing: images the teacher cache does not hold (e.g. unreadable ones it skipped) stop
            the run before it starts (``stop``), or are left out, each named (``skip``).
        teacher: instead of a cache, a teacher preset run live (e.g. ``teacher``).
        teacher_weights: weights of the live teacher preset.
        temperature: softmax temperature of the loss.
        neighbours: k of the retrieval pairing.
    """

    COMMAND: ClassVar[str] = "distill"
    RUN_FORMAT: ClassVar[str] = "semcorr-distill-run"

    images: str | None = None
    pair_list: str | None = None
    teacher_cache: str | None = None
    on_missing: OnError = "stop"
    teacher: str | None = None
    teacher_weights: str | None = None
    temperature: float = DEFAULT_TEMPERATURE
    neighbours: int = 10

    def __post_init__(self) -> None:
        for name in ("images", "pair_list", "teacher_cache", "teacher", "teacher_weights"):
            check_text(self, name)
        check_choice(self, "on_missing", ON_ERROR)
        check_number(self, "temperature", above=0)
        check_int(self, "neighbours", minimum=1)
        super().__post_init__()
        if self.teacher_cache and self.teacher:
            raise fail(self, "teacher", "give --teacher-cache or --teacher, not both")
        if self.pair_list and self.benchmark:
            raise fail(self, "pair_list", "give --pair-list or --benchmark, not both")
        if not self.images and not self.benchmark:
            raise fail(
                self,
                "images",
                "distill needs --images (a folder or list file), or --benchmark with --data-root",
                value=None,
            )

    @classmethod
    def upgrade(cls, record: dict[str, Any]) -> dict[str, Any]:
        """Version 1's ``pairs``: ``None`` (retrieval), a SPair-71k root (its ``trn`` pairs) or a pair list."""
        pairs = record.pop("pairs", None)
        if pairs is not None and Path(pairs).is_dir():
            record.update(benchmark="spair", data_root=pairs, split="trn")
        elif pairs is not None:
            record["pair_list"] = pairs
        return record


@dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """Every setting of a refinement run (``semcorr finetune-3d``): :class:`TrainConfig`'s and these.

    The pairs come from ``pair_file`` (the 3D augmentation) or from ``benchmark`` (its labelled
    keypoint pairs: the supervised setting); one of the two.

    Attributes:
        pair_file: a pair file of ``semcorr make-3d-pairs``.
        adapter: the adapter to start from (e.g. ``RUN/adapter`` of ``semcorr distill``); ``None``:
            a new adapter (B = 0), i.e. the plain backbone. A given adapter brings its own LoRA
            rank, alpha and dropout (``lora_*`` then apply to nothing).
        beta: inverse temperature of the soft-argmax over the cosine similarity map.
        points_per_pair: use at most this many correspondences of a pair per step, drawn at random.
        jitter: std of Gaussian noise on the target points, as a fraction of the target image's
            longer side (0.03: about one cell of the 31x31 grid, like the official code's one-cell
            noise); 0 for exact targets.

    Defaults that differ from distillation's: no weight decay and a constant lr (``lr_decay`` 1),
    the official code's settings for soft-argmax training of the LoRA.
    """

    COMMAND: ClassVar[str] = "finetune-3d"
    RUN_FORMAT: ClassVar[str] = "semcorr-finetune-run"

    weight_decay: float = 0.0
    lr_decay: float = 1.0
    pair_file: str | None = None
    adapter: str | None = None
    beta: float = DEFAULT_BETA
    points_per_pair: int = 512
    jitter: float = 0.03

    def __post_init__(self) -> None:
        check_text(self, "pair_file")
        check_text(self, "adapter")
        check_number(self, "beta", above=0)
        check_int(self, "points_per_pair", minimum=1)
        check_number(self, "jitter", minimum=0)
        super().__post_init__()
        if (self.pair_file is None) == (self.benchmark is None):
            raise fail(
                self,
                "pair_file",
                "give the pairs: a pair file of `semcorr make-3d-pairs` (--pair-file), or "
                "a benchmark's labelled keypoints (--benchmark spair with --data-root); one of them",
                value=self.pair_file,
            )

    def student_config(self, *, adapter: str | None = None, merge: bool = False) -> StudentConfig:
        """The student the run starts from: ``adapter`` (default this config's) loaded, not merged."""
        return super().student_config(adapter=adapter or self.adapter, merge=merge)

    @classmethod
    def upgrade(cls, record: dict[str, Any]) -> dict[str, Any]:
        """Version 1's ``pairs``: a benchmark name, else a pair file."""
        pairs = record.pop("pairs", None)
        if pairs is not None:
            try:
                get_benchmark(pairs)
                record["benchmark"] = pairs
            except InputError:
                record["pair_file"] = pairs
        return record
