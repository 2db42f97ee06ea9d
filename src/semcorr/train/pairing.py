"""Which image is paired with which, epoch by epoch.

* Retrieval pairing (unlabeled images): each image is embedded by DINOv2's class token; its k
  nearest neighbours (cosine, itself excluded) are found in chunks, so memory stays
  O(chunk x (chunk + k)) and never N x N; every epoch each image is paired with one of its
  neighbours at random.
* Listed pairs (the weakly supervised setting): pairs from a text file (``a.jpg b.jpg`` per line,
  keys relative to the image folder) or a benchmark's pairs (SPair-71k's ``trn``; their images only).

Every epoch's pairs (and their order) are a function of (seed, epoch) alone, so a resumed run
sees exactly the pairs the interrupted one would have.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from .._moved import renamed_names
from ..data.benchmarks import get_benchmark, load_benchmark
from ..errors import InputError
from ..fileio import write_atomically
from ..images import ImageItem

if TYPE_CHECKING:
    from ..features.backbones.dinov2 import DinoV2Extractor

T = TypeVar("T")


def nearest_neighbours(embeddings: Tensor, k: int, *, chunk: int = 1024) -> Tensor:
    """Each row's k most similar other rows by cosine similarity, best first.

    Args:
        embeddings: (N, C) vectors (normalised here).
        k: neighbours per row (at most N - 1).
        chunk: rows per block; peak memory is about chunk x (chunk + k) similarities.
    Returns:
        (N, k) int64 indices.
    """
    count = embeddings.shape[0]
    if not 1 <= k < count:
        raise InputError(f"need 1 <= neighbours < number of images; got {k} neighbours for {count} images")
    vectors = torch.nn.functional.normalize(embeddings.float(), dim=1)
    result = torch.empty(count, k, dtype=torch.long)
    for start in range(0, count, chunk):
        queries = vectors[start : start + chunk]
        rows = torch.arange(start, start + len(queries))
        best_values = torch.full((len(queries), 0), float("-inf"))
        best_indices = torch.empty((len(queries), 0), dtype=torch.long)
        for begin in range(0, count, chunk):
            block = queries @ vectors[begin : begin + chunk].T  # (q, c)
            columns = torch.arange(begin, begin + block.shape[1])
            block[rows[:, None] == columns[None, :]] = float("-inf")  # not itself
            values = torch.cat([best_values, block], dim=1)
            indices = torch.cat([best_indices, columns.expand(len(queries), -1)], dim=1)
            best_values, order = values.topk(min(k, values.shape[1]), dim=1)
            best_indices = indices.gather(1, order)
        result[start : start + len(queries)] = best_indices
    return result


def epoch_generator(seed: int, epoch: int, purpose: str) -> torch.Generator:
    """A torch generator seeded by (seed, epoch, purpose) only."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{purpose}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


@dataclass(frozen=True)
class RetrievalPairs:
    """Every image paired each epoch with one of its k nearest neighbours, drawn at random.

    Attributes:
        neighbours: (N, k) int64 indices of each image's neighbours.
        seed: with the epoch, fixes the draws and the order.
    """

    neighbours: Tensor
    seed: int = 0

    def __len__(self) -> int:
        return self.neighbours.shape[0]

    def epoch(self, epoch: int) -> list[tuple[int, int]]:
        """(source, target) image indices of ``epoch``, in training order."""
        generator = epoch_generator(self.seed, epoch, "retrieval")
        order = torch.randperm(len(self), generator=generator)
        choice = torch.randint(0, self.neighbours.shape[1], (len(self),), generator=generator)
        return [(int(i), int(self.neighbours[i, choice[i]])) for i in order]


@dataclass(frozen=True)
class ListedPairs:
    """Fixed (source, target) pairs, shuffled each epoch."""

    pairs: tuple[tuple[int, int], ...]
    seed: int = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def epoch(self, epoch: int) -> list[tuple[int, int]]:
        order = torch.randperm(len(self.pairs), generator=epoch_generator(self.seed, epoch, "listed"))
        return [self.pairs[int(i)] for i in order]


def rank_share(pairs: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This rank's pairs (or any items): every ``world_size``-th from ``rank``, cut so all ranks
    take as many steps."""
    usable = len(pairs) // world_size * world_size
    if usable == 0:
        raise InputError(f"{len(pairs)} pairs cannot be shared among {world_size} processes")
    return list(pairs[rank:usable:world_size])


def read_pair_list(
    path: str | os.PathLike, keys: Collection[str] | None = None, where: str = "the image folder"
) -> list[tuple[str, str]]:
    """Pairs of image keys from a text file: ``source target`` per line (``#`` comments). With
    ``keys`` (the images at hand, listed in ``where``), a key that is not among them is refused,
    naming its line, before any training."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the pair list ({error})") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2:
            raise InputError(f"{path}:{number}: expected 'source target', got {line.strip()!r}")
        absent = [key for key in fields if keys is not None and key not in keys]
        if absent:
            raise InputError(f"{path}:{number}: image {absent[0]!r} is not among the images of {where}")
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise InputError(f"{path}: lists no pairs")
    return pairs


def benchmark_pairs(
    benchmark: str, data_root: str | os.PathLike, split: str = "trn", *, images: str | os.PathLike | None = None
) -> tuple[Path, list[tuple[str, str]]]:
    """A benchmark's pairs of ``split`` as image keys (images only, no keypoints), and the folder
    the keys are relative to: ``images`` when given, else the folder holding all of the pairs'
    images (``JPEGImages`` of SPair-71k)."""
    _, pairs = load_benchmark(get_benchmark(benchmark), Path(data_root), split)
    if not pairs:
        raise InputError(f"{data_root}: {benchmark} split {split!r} has no pairs")
    files = [path for pair in pairs for path in (pair.source_image, pair.target_image)]
    folder = Path(images) if images is not None else Path(os.path.commonpath([p.parent for p in files]))
    try:
        keys = [
            (p.source_image.relative_to(folder).as_posix(), p.target_image.relative_to(folder).as_posix())
            for p in pairs
        ]
    except ValueError:
        raise InputError(f"--images {folder}: does not hold the {benchmark} images (e.g. {files[0]})") from None
    return folder, keys


def index_pairs(
    items: Sequence[ImageItem], pairs: Sequence[tuple[str, str]], source: str
) -> tuple[list[ImageItem], tuple[tuple[int, int], ...]]:
    """Keep the images the pairs use (in listing order) and turn key pairs into index pairs."""
    by_key = {item.key: item for item in items}
    missing = sorted({key for pair in pairs for key in pair if key not in by_key})
    if missing:
        raise InputError(f"{source}: {len(missing)} paired images are not in the image folder, e.g. {missing[0]!r}")
    used = sorted({key for pair in pairs for key in pair})
    kept = [by_key[key] for key in used]
    position = {item.key: i for i, item in enumerate(kept)}
    return kept, tuple((position[a], position[b]) for a, b in pairs)


def keys_digest(items: Sequence[ImageItem]) -> str:
    return hashlib.sha256(json.dumps([item.key for item in items]).encode()).hexdigest()[:16]


def class_embeddings(
    extractor: DinoV2Extractor, items: Sequence[ImageItem], *, batch_size: int = 16, rank: int = 0, world_size: int = 1
) -> Tensor:
    """DINOv2 class tokens of this rank's share of ``items`` (every ``world_size``-th from ``rank``).

    Args:
        extractor: a :class:`~semcorr.features.DinoV2Extractor` (e.g. the student; LoRA B = 0 or not).
    Returns:
        (ceil((N - rank) / world_size), C) float32 on the CPU, L2-normalised.
    """
    share = list(items)[rank::world_size]
    rows = []
    for start in range(0, len(share), batch_size):
        pixels, _ = extractor.preprocess([item.path for item in share[start : start + batch_size]])
        assert isinstance(pixels, Tensor)  # DINOv2's canvases: one batch, not the teacher's dict
        with torch.inference_mode():
            tokens = extractor.model(pixel_values=(pixels - extractor.mean) / extractor.std).last_hidden_state
        rows.append(torch.nn.functional.normalize(tokens[:, 0].float(), dim=1).cpu())
    width = extractor.model.config.hidden_size
    return torch.cat(rows) if rows else torch.empty(0, width)


def load_embeddings(path: Path, digest: str) -> Tensor | None:
    """Cached embeddings if ``path`` holds those of this image list and model (else ``None``)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as handle:
            if (handle.metadata() or {}).get("digest") != digest:
                return None
            return handle.get_tensor("embeddings")
    except (SafetensorError, OSError):
        return None


def save_embeddings(path: Path, embeddings: Tensor, digest: str) -> None:
    """Write (N, C) embeddings with the digest of their image list and model, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, safetensors_bytes({"embeddings": embeddings.contiguous()}, metadata={"digest": digest}))


if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
