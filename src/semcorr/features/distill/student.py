"""The DistillDIFT student: frozen DINOv2 ViT-B/14 with registers, LoRA on the query and value
projections of every block (peft), last-layer normalised patch tokens: (B, 768, 31, 31) at 434².

Only the LoRA weights train: rank 8 on ``q_proj`` and ``v_proj`` of 12 blocks of width 768 gives
12 x 2 x (768 x 8 + 8 x 768) = 294,912 parameters. ``lora_B`` starts at zero, so an untrained
student is exactly its backbone. The adapter is saved alone (a few MB)::

    ADAPTER/adapter_model.safetensors   tensors "<module>.lora_A.weight" (r, in), "<module>.lora_B.weight" (out, r)
    ADAPTER/adapter_config.json         {"format": "semcorr-student-adapter", "rank", "alpha", "dropout",
                                         "target_modules", "backbone": {...}, "trainable_parameters"}

For inference the adapter is merged into the backbone's weights (``W + alpha/r * B A``), which
removes the LoRA layers and their cost.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from ...errors import CheckpointError, InputError
from ...fileio import read_versioned_json, write_atomically, write_json
from ..backbones.dinov2 import DinoV2Extractor
from ..base import require_finite
from ..config import StudentConfig

if TYPE_CHECKING:
    from ..backbones.dinov2 import DinoBackbone

ADAPTER_FORMAT = "semcorr-student-adapter"
ADAPTER_VERSION = 1
WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
TARGET_MODULES = ("q_proj", "v_proj")
_ADAPTER_NAME = "default"


class NoAdapterWarning(UserWarning):
    """The ``student`` preset was built without an adapter: it is the plain DINOv2 backbone."""


def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The LoRA parameters of ``model`` under their saved names (adapter name dropped), e.g.
    ``encoder.layer.0.attention.q_proj.lora_A.weight``."""
    marker = f".{_ADAPTER_NAME}."
    return {
        name.replace(marker, "."): p for name, p in model.named_parameters() if ".lora_A." in name or ".lora_B." in name
    }


def add_lora(model: nn.Module, rank: int, alpha: float, dropout: float) -> nn.Module:
    """Freeze ``model`` (a transformers DINOv2) and inject LoRA into every ``q_proj`` / ``v_proj``
    in place; only the LoRA weights require grad. Returns ``model``."""
    from peft import LoraConfig, inject_adapter_in_model

    model.requires_grad_(False)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,  # type: ignore[arg-type]  # peft types it int; it scales by alpha / r
        lora_dropout=dropout,
        target_modules=list(TARGET_MODULES),
        bias="none",
        init_lora_weights=True,
    )
    inject_adapter_in_model(config, model, adapter_name=_ADAPTER_NAME)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(".lora_A." in name or ".lora_B." in name)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA layer into its base linear layer and remove it (in place). Returns ``model``."""
    from peft.tuners.lora import LoraLayer

    wrapped = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    for name, module in wrapped:
        module.merge(adapter_names=[_ADAPTER_NAME])
        parent_name, _, child = name.rpartition(".")
        base = module.get_base_layer()
        setattr(model.get_submodule(parent_name) if parent_name else model, child, base)
    return model


def _adapter_files(path: str | os.PathLike) -> tuple[Path, Path]:
    path = Path(path).expanduser()
    folder = path.parent if path.name == WEIGHTS_FILE else path
    weights, config = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    if not weights.is_file() or not config.is_file():
        raise InputError(
            f"{path}: not a student adapter (needs {WEIGHTS_FILE} and {CONFIG_FILE}); "
            "`semcorr distill` writes one to RUN/adapter"
        )
    return weights, config


def read_adapter_config(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON config of an adapter folder (checked to be a semcorr student adapter whose LoRA
    rank, alpha and dropout a student can take)."""
    _, config_file = _adapter_files(path)
    content = read_versioned_json(config_file, ADAPTER_FORMAT, ADAPTER_VERSION, "config")
    try:
        lora: dict[str, Any] = dict(
            lora_rank=content.get("rank"), lora_alpha=content.get("alpha"), lora_dropout=content.get("dropout")
        )  # checked by StudentConfig
        StudentConfig(**lora)
    except InputError as error:
        raise CheckpointError(f"{config_file}: {error}") from None
    return content


class StudentExtractor(DinoV2Extractor):
    """DINOv2 with a LoRA adapter: (B, 3, S, S) in [0, 1] -> (B, C, S/14, S/14) patch tokens.

    >>> student = StudentExtractor(StudentConfig(adapter="run/adapter"))   # doctest: +SKIP
    >>> student.extract(["a.jpg", "b.jpg"]).features.shape                  # doctest: +SKIP
    torch.Size([2, 768, 31, 31])
    """

    config: StudentConfig

    def __init__(
        self,
        config: StudentConfig = StudentConfig(),
        *,
        random_weights: bool = False,
        name: str | None = None,
        backbone: DinoBackbone | None = None,
    ) -> None:
        """Build the backbone (as :class:`DinoV2Extractor`; ``backbone`` replaces it, e.g. a tiny
        one in tests), add LoRA, load ``config.adapter`` if given and merge it if ``config.merge``."""
        if config.adapter:  # a loaded adapter brings its own LoRA settings
            adapter = read_adapter_config(config.adapter)
            config = dataclasses.replace(
                config, lora_rank=adapter["rank"], lora_alpha=adapter["alpha"], lora_dropout=adapter["dropout"]
            )
        super().__init__(config, random_weights=random_weights, name=name or "student", backbone=backbone)
        add_lora(self.model, config.lora_rank, config.lora_alpha, config.lora_dropout)
        self.eval()  # peft's new layers start in training mode (dropout on); training calls .train()
        self.lora = {"rank": config.lora_rank, "alpha": config.lora_alpha, "dropout": config.lora_dropout}
        self.merged = False
        if config.adapter:
            self.load_adapter(config.adapter)
            if config.merge:
                self.merge()

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, C, S/14, S/14) patch tokens (not yet L2-normalised)."""
        return super().forward(pixels)

    def lora_state(self) -> dict[str, Tensor]:
        """The LoRA weights under their saved names (detached, on the model's device)."""
        if self.merged:
            raise InputError(f"{self.name}: the adapter is merged into the backbone; save it before merging")
        return {name: p.detach() for name, p in lora_parameters(self.model).items()}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def load_lora_state(self, state: dict[str, Tensor], source: str = "state") -> None:
        """Copy LoRA weights in; the names and shapes must match exactly (nothing missing or extra)."""
        if self.merged:
            raise InputError(f"{self.name}: the adapter is already merged; build a new student to load another")
        own = lora_parameters(self.model)
        require_finite(state, source)
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise CheckpointError(
                f"{source}: adapter does not fit this student (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        for name, parameter in own.items():
            if tuple(state[name].shape) != tuple(parameter.shape):
                raise CheckpointError(
                    f"{source}: {name} has shape {tuple(state[name].shape)}, the student needs {tuple(parameter.shape)}"
                )
        with torch.no_grad():
            for name, parameter in own.items():
                parameter.copy_(state[name].to(parameter.dtype))

    def adapter_config(self) -> dict[str, Any]:
        model_config = self.model.config
        return {
            "format": ADAPTER_FORMAT,
            "version": ADAPTER_VERSION,
            **self.lora,
            "target_modules": list(TARGET_MODULES),
            "backbone": {
                "size": self.config.size,
                "registers": self.config.registers,
                "hidden_size": model_config.hidden_size,
                "layers": model_config.num_hidden_layers,
                "weights": self.config.weights_source,
            },
            "trainable_parameters": sum(p.numel() for p in lora_parameters(self.model).values()),
        }

    def save_adapter(self, folder: str | os.PathLike) -> Path:
        """Write the adapter (weights as safetensors, config as JSON; each file atomically) into
        ``folder``; returns it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {name: t.to("cpu", torch.float32).contiguous() for name, t in self.lora_state().items()}
        write_atomically(folder / WEIGHTS_FILE, safetensors_bytes(state, metadata={"format": ADAPTER_FORMAT}))
        write_json(folder / CONFIG_FILE, self.adapter_config())
        return folder

    def load_adapter(self, path: str | os.PathLike) -> None:
        """Load an adapter saved by :meth:`save_adapter` (its rank must equal this student's)."""
        weights, _ = _adapter_files(path)
        config = read_adapter_config(path)
        if config["rank"] != self.lora["rank"] or config["alpha"] != self.lora["alpha"]:
            raise CheckpointError(
                f"{path}: adapter has rank {config['rank']}, alpha {config['alpha']}; "
                f"this student {self.lora['rank']}, {self.lora['alpha']}"
            )
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{weights}: unreadable adapter ({error})") from None
        self.load_lora_state(state, source=str(weights))

    def merge(self) -> StudentExtractor:
        """Fold the adapter into the backbone (inference only; irreversible). Returns ``self``."""
        if not self.merged:
            merge_lora(self.model)
            self.merged = True
        return self


def build_student(config: StudentConfig, *, random_weights: bool = False, name: str = "student") -> StudentExtractor:
    """The ``student`` preset's constructor: warns when no adapter is given (the plain backbone);
    with ``config.merge`` the LoRA layers are folded away even then, so inference costs what the
    backbone costs."""
    if not config.adapter:
        warnings.warn(
            "student: no --adapter given; this is the plain DINOv2 backbone (untrained LoRA). "
            "Pass --adapter RUN/adapter from `semcorr distill`",
            NoAdapterWarning,
            stacklevel=3,
        )
    student = StudentExtractor(config, random_weights=random_weights, name=name)
    return student.merge() if config.merge else student
