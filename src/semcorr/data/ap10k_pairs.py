"""GeoAware-SC's AP-10K pair sets: **intra-species** (both animals of one species; a category per
species), **cross-species** (two species of one family; a category per family) and
**cross-family** (two families; one category, ``all``), read from GeoAware-SC's prepared folder
(``PairAnnotation/<split>[_cross_species|_cross_family]/<src>-<trg>:<category>.json``: the paper's
sets, used as they are) or rebuilt from COCO keypoint annotations (:mod:`semcorr.data.ap10k`).

The definition (GeoAware-SC's ``prepare_ap10k`` notebook), step by step, with where we differ:

1. Merge the annotation files (train, test, val split 1) and keep the **first annotation of each
   image**. Leave out crowd images: GeoAware-SC uses its released ``ap-10k_is_crowd.txt``
   (``crowd_file``: image ids, the names of its per-image files); without that list we leave out
   every image with more than one annotated animal (our approximation of it).
2. Keep animals with at least 3 annotated keypoints (``v > 0``).
3. Per species (folders ``<family>/<species>``), split the animals: the **last 30 are test**, the
   20 before them validation, the rest training. GeoAware-SC takes them in file-system order
   (not reproducible across machines); we take them in ascending image id (the names of
   GeoAware-SC's per-image files), so the sets are the same whether rebuilt from the COCO json or
   read from a folder prepared by ``semcorr data download ap-10k``.
4. A pair qualifies when ``sum((v_src / 2) * (v_trg / 2)) >= 3`` over the keypoints (COCO
   ``v = 2`` for visible, so: at least 3 keypoints visible in both).
5. **intra-species**: per species, shuffle the split's animals, take every unordered pair
   (``itertools.combinations``, the earlier one is the source), keep the qualifying ones, all of
   them for val/test (``50 x`` the species' animals at most for trn), in random order.
   Category: the species.
6. **cross-species**: per family with at least two species, for each pair of its species (in
   sorted order) every (animal of the first, animal of the second) pair; of the qualifying ones
   sample 900 per family for test (400 for val). Category: the family.
7. **cross-family**: for each pair of families (sorted), every (animal of the first, animal of
   the second) pair; sample 30 qualifying pairs per family pair for test (20 for val).
   Category: ``all``.

Randomness: one ``random.Random(seed)`` (seed 42) per set, families and species in sorted order,
so a set does not depend on which other sets were built (GeoAware-SC seeds once per notebook
cell). Animals with different keypoint lists are never paired.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..fileio import read_json
from .ap10k import Instance, coco_files, make_pair, prepared_instance, read_coco
from .pairs import Pair, dataset_root, require

SUBSETS = ("intra-species", "cross-species", "cross-family")
_FOLDER_SUFFIX = {"intra-species": "", "cross-species": "_cross_species", "cross-family": "_cross_family"}

TEST_PER_SPECIES, VAL_PER_SPECIES = 30, 20
MIN_KEYPOINTS, MIN_SHARED = 3, 3.0
CROSS_SPECIES_PAIRS = {"test": 900, "val": 400}
CROSS_FAMILY_PAIRS = {"test": 30, "val": 20}
TRAIN_PAIRS_PER_ANIMAL = 50


def eligible(groups: Sequence[Sequence[Instance]], crowd: set[int] | None) -> list[Instance]:
    """Steps 1-2: the first animal of each image, crowd images (by image id) left out, >= 3 keypoints."""
    kept = []
    for group in groups:
        first = group[0]
        image_id = first.id if first.image_id is None else first.image_id
        if (crowd is not None and image_id in crowd) or (crowd is None and len(group) > 1):
            continue
        if int((first.keypoints[:, 2] > 0).sum()) >= MIN_KEYPOINTS:
            kept.append(first)
    return kept


def _image_order(animal: Instance) -> tuple[int, int]:
    return (animal.id if animal.image_id is None else animal.image_id, animal.id)


def split_species(animals: Sequence[Instance], split: str) -> dict[tuple[str, str], list[Instance]]:
    """Step 3: ``{(family, species): the split's animals in ascending image id}``, sorted by family, species."""
    species: dict[tuple[str, str], list[Instance]] = {}
    for animal in animals:
        species.setdefault((animal.family, animal.species), []).append(animal)
    result = {}
    for key in sorted(species):
        members = sorted(species[key], key=_image_order)
        test = min(TEST_PER_SPECIES, len(members))
        val = min(VAL_PER_SPECIES, len(members) - test)
        train = len(members) - test - val
        chosen = {"trn": members[:train], "val": members[train : train + val], "test": members[len(members) - test :]}
        result[key] = chosen[split]
    return result


def _shared(sources: Sequence[Instance], targets: Sequence[Instance]) -> np.ndarray:
    """Step 4: (S, T) ``sum((v_s / 2) * (v_t / 2))``; -1 where the keypoint lists differ in length."""
    shared = np.full((len(sources), len(targets)), -1.0)
    by_length: dict[int, list[int]] = {}
    for j, target in enumerate(targets):
        by_length.setdefault(len(target.keypoints), []).append(j)
    for length, columns in by_length.items():
        rows = [i for i, source in enumerate(sources) if len(source.keypoints) == length]
        if rows:
            vs = np.stack([sources[i].keypoints[:, 2] / 2 for i in rows])
            vt = np.stack([targets[j].keypoints[:, 2] / 2 for j in columns])
            shared[np.ix_(rows, columns)] = vs @ vt.T
    return shared


def _qualifying(candidates: list[tuple[Instance, Instance]], shared: np.ndarray) -> list[tuple[Instance, Instance]]:
    return [pair for pair, value in zip(candidates, shared) if value >= MIN_SHARED]


def intra_species(species: dict[tuple[str, str], list[Instance]], split: str, rng: random.Random) -> list[tuple]:
    """Step 5: (source, target, category) triples."""
    triples = []
    for (_, name), members in species.items():
        members = list(members)
        rng.shuffle(members)
        candidates = list(itertools.combinations(members, 2))
        if not candidates:
            continue
        shared = _shared(members, members)
        index = {id(m): i for i, m in enumerate(members)}
        values = np.array([shared[index[id(s)], index[id(t)]] for s, t in candidates])
        possible = _qualifying(candidates, values)
        wanted = TRAIN_PAIRS_PER_ANIMAL * len(members) if split == "trn" else len(candidates)
        triples += [(s, t, name) for s, t in rng.sample(possible, min(wanted, len(possible)))]
    return triples


def _product(first: list[Instance], second: list[Instance]) -> tuple[list[tuple[Instance, Instance]], np.ndarray]:
    candidates = list(itertools.product(first, second))
    return candidates, _shared(first, second).reshape(-1) if candidates else np.zeros(0)


def cross_species(species: dict[tuple[str, str], list[Instance]], split: str, rng: random.Random) -> list[tuple]:
    """Step 6: (source, target, family) triples."""
    families: dict[str, list[list[Instance]]] = {}
    for (family, _), members in species.items():
        families.setdefault(family, []).append(members)
    triples = []
    for family in sorted(families):
        if len(families[family]) < 2:
            continue
        possible = []
        for first, second in itertools.combinations(families[family], 2):
            candidates, shared = _product(first, second)
            possible += _qualifying(candidates, shared)
        count = min(CROSS_SPECIES_PAIRS[split], len(possible))
        triples += [(s, t, family) for s, t in rng.sample(possible, count)]
    return triples


def cross_family(species: dict[tuple[str, str], list[Instance]], split: str, rng: random.Random) -> list[tuple]:
    """Step 7: (source, target, ``all``) triples."""
    families: dict[str, list[Instance]] = {}
    for (family, _), members in species.items():
        families.setdefault(family, []).extend(members)
    triples = []
    for first, second in itertools.combinations(sorted(families), 2):
        candidates, shared = _product(families[first], families[second])
        possible = _qualifying(candidates, shared)
        count = min(CROSS_FAMILY_PAIRS[split], len(possible))
        triples += [(s, t, "all") for s, t in rng.sample(possible, count)]
    return triples


_BUILDERS = {"intra-species": intra_species, "cross-species": cross_species, "cross-family": cross_family}


def sample_pairs(
    groups: Sequence[Sequence[Instance]], split: str, subset: str, *, crowd: set[int] | None = None, seed: int = 42
) -> list[tuple[Instance, Instance, str]]:
    """One of GeoAware-SC's AP-10K sets as (source, target, category) triples, in sampling order.

    Args:
        groups: the animals of each image, in annotation order (:func:`~semcorr.data.ap10k.read_coco`).
        split: ``trn``, ``val`` or ``test`` (``trn`` only for intra-species).
        subset: ``intra-species``, ``cross-species`` or ``cross-family``.
        crowd: image ids of crowd images (GeoAware-SC's list); ``None``: multi-animal images.
        seed: seed of this set's ``random.Random``.
    """
    if subset not in _BUILDERS:
        raise InputError(f"AP-10K subset must be one of {', '.join(_BUILDERS)}, got {subset!r}")
    species = split_species(eligible(groups, crowd), split)
    return _BUILDERS[subset](species, split, random.Random(seed))


def build_pairs(
    groups: Sequence[Sequence[Instance]], split: str, subset: str, *, crowd: set[int] | None = None, seed: int = 42
) -> list[Pair]:
    """One of GeoAware-SC's AP-10K sets from per-image groups of annotated animals (see :func:`sample_pairs`)."""
    return [
        make_pair(source, target, category, subset)
        for source, target, category in sample_pairs(groups, split, subset, crowd=crowd, seed=seed)
    ]


def _annotation_path(value: Any, root: Path, pair_file: Path, name: str) -> Path:
    """A pair file's ``src_json_path`` / ``trg_json_path``, re-rooted at ``root/ImageAnnotation``."""
    if not isinstance(value, str) or not value:
        raise InputError(f"{pair_file}: field '{name}' must be a path")
    parts = Path(value).parts
    if "ImageAnnotation" in parts:
        return root.joinpath("ImageAnnotation", *parts[parts.index("ImageAnnotation") + 1 :])
    return root / value


def load_prepared(root: Path, split: str, subset: str) -> list[Pair]:
    """The pairs GeoAware-SC's ``PairAnnotation/<split><suffix>/`` lists, in sorted file order."""
    folder = root / "PairAnnotation" / f"{split}{_FOLDER_SUFFIX[subset]}"
    if not folder.is_dir():
        raise InputError(
            f"{folder}: not found (GeoAware-SC's AP-10K layout has PairAnnotation/<split>"
            "[_cross_species|_cross_family])"
        )
    cache: dict[Path, Instance] = {}
    pairs = []
    for pair_file in sorted(folder.glob("*.json")):
        data = read_json(pair_file)
        source, target = (
            prepared_instance(_annotation_path(require(data, name, pair_file), root, pair_file, name), root, cache)
            for name in ("src_json_path", "trg_json_path")
        )
        category = pair_file.stem.rsplit(":", 1)[-1]
        pairs.append(make_pair(source, target, category, subset, pair_id=pair_file.stem))
    return pairs


def load_ap10k(
    root: str | Path,
    split: str = "test",
    *,
    subset: str = "intra-species",
    crowd_file: str | Path | None = None,
    seed: int = 42,
) -> list[Pair]:
    """AP-10K pairs of one of GeoAware-SC's sets.

    Args:
        root: GeoAware-SC's prepared ``ap-10k`` folder, the official AP-10K folder, a folder with
            a COCO keypoint json, or such a json file.
        split: ``test``, ``val`` or ``trn`` (``trn`` only for intra-species).
        subset: ``intra-species``, ``cross-species`` or ``cross-family``.
        crowd_file: GeoAware-SC's ``ap-10k_is_crowd.txt`` (image ids to leave out) when building
            the sets from COCO json; without it, images with more than one animal are left out.
        seed: seed of the pair sampling when building the sets from COCO json.
    """
    if subset not in SUBSETS:
        raise InputError(f"AP-10K subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    split = {"train": "trn"}.get(split, split)
    if split not in ("trn", "val", "test") or (split == "trn" and subset != "intra-species"):
        raise InputError(
            f"AP-10K {subset} has splits {'trn, ' if subset == 'intra-species' else ''}val and test, got {split!r}"
        )
    root = dataset_root(root, "an AP-10K folder or COCO keypoint .json file", file_suffix=".json")
    if (root / "PairAnnotation").is_dir():
        return load_prepared(root, split, subset)
    paths, image_root = coco_files(root)
    crowd = read_crowd_file(Path(crowd_file)) if crowd_file is not None else None
    return build_pairs(read_coco(paths, image_root), split, subset, crowd=crowd, seed=seed)


def read_crowd_file(path: Path) -> set[int]:
    """Image ids, one a line (zero-padded as in GeoAware-SC's list)."""
    if not path.is_file():
        raise InputError(f"{path}: not found")
    ids = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip().removesuffix(".json")
        if text:
            try:
                ids.add(int(text))
            except ValueError:
                raise InputError(f"{path}: line {number}: {text!r} is not an image id") from None
    return ids
