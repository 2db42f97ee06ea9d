"""Steps after extraction that turn a download into the layout semcorr's loaders read.

* ``ap10k``: GeoAware-SC's preparation of AP-10K (their ``prepare_ap10k`` notebook), written anew:
  the first annotation of each image (split-1 files merged train, test, val) becomes
  ``ImageAnnotation/<family>/<species>/<image id>.json`` (annotation and image entries merged,
  as theirs, so its ``id`` is the image id), its image moves to
  ``JPEGImages/<family>/<species>/<image id>.jpg``, and the pair sets are drawn by
  :func:`semcorr.data.ap10k_pairs.sample_pairs` and written as
  ``PairAnnotation/<split>[_cross_species|_cross_family]/<src>-<trg>:<category>.json``.
  GeoAware-SC's exact pairs cannot be reproduced (their split follows the file system's listing
  order and one random generator runs through several sets); ours are deterministic (seed 42, one
  generator per set, animals in image-id order) and documented in :mod:`semcorr.data.ap10k_pairs`.
* ``coco-subset``: DistillDIFT's 12,000 training images: the train2017 images with at least one
  non-crowd annotation, in the annotation file's order, shuffled by ``torch.randperm`` after
  ``torch.manual_seed(42)``, the first 12,000. Only those images are downloaded (COCO serves each
  image at its own address), into ``train2017/<category>/<file>`` (the category of the image's first
  non-crowd annotation, DistillDIFT's prompt); ``subset.txt`` lists them in that order.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..errors import InputError
from ..fileio import read_json
from .ap10k import Instance, parse_instance
from .ap10k_pairs import read_crowd_file, sample_pairs
from .catalog import COCO_IMAGES, COCO_SUBSET_SIZE, DataFile
from .fetch import Fetcher, place, say

AP10K_FILES = ("ap10k-train-split1.json", "ap10k-test-split1.json", "ap10k-val-split1.json")
AP10K_SETS = (
    ("intra-species", "trn", "trn"),
    ("intra-species", "val", "val"),
    ("intra-species", "test", "test"),
    ("cross-species", "val", "val_cross_species"),
    ("cross-species", "test", "test_cross_species"),
    ("cross-family", "val", "val_cross_family"),
    ("cross-family", "test", "test_cross_family"),
)
SEED = 42
DOWNLOAD_THREADS = 8


def first_annotations(paths: list[Path]) -> tuple[dict[int, dict], dict[int, dict], dict[int, dict]]:
    """The merged COCO files: ``(images, categories, first annotation of each image)`` by id."""
    images: dict[int, dict] = {}
    categories: dict[int, dict] = {}
    firsts: dict[int, dict] = {}
    for path in paths:
        data = read_json(path, expect=dict)
        try:
            for entry in data["images"]:
                images.setdefault(int(entry["id"]), entry)
            for entry in data["categories"]:
                categories.setdefault(int(entry["id"]), entry)
            for annotation in data["annotations"]:
                firsts.setdefault(int(annotation["image_id"]), annotation)
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"{path}: not a COCO annotation file (missing or bad field {error})") from None
    return images, categories, firsts


def prepare_ap10k(stage: Path, fetcher: Fetcher) -> None:
    """GeoAware-SC's AP-10K layout with our pair sets, in ``stage/ap-10k`` (see the module docstring)."""
    folder = stage / "ap-10k"
    paths = [folder / "annotations" / name for name in AP10K_FILES]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: not in the archive; is it AP-10K's ap-10k.zip?")
    say("ap-10k: writing GeoAware-SC's layout (ImageAnnotation/, JPEGImages/) and drawing the pair sets")
    images, categories, firsts = first_annotations(paths)
    instances: list[Instance] = []
    for image_id, annotation in firsts.items():
        image, category = images.get(image_id), categories.get(int(annotation.get("category_id", -1)))
        if image is None or category is None:
            raise InputError(f"{paths[0].parent}: annotation {annotation.get('id')} names an unknown image or category")
        relative = Path(str(category["supercategory"]), str(category["name"]), f"{image_id:012d}")
        record = {**annotation, **image, "name": category["name"], "supercategory": category["supercategory"]}
        json_path = folder / "ImageAnnotation" / relative.with_suffix(".json")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(_json(record))
        source = folder / "data" / str(image["file_name"])
        if not source.is_file():
            raise InputError(f"{source}: the image of annotation {annotation.get('id')} is not in the archive")
        target = folder / "JPEGImages" / relative.with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        instances.append(parse_instance(record, record, category, json_path, target))  # as the loader reads it
    shutil.rmtree(folder / "data")  # what is left: images without an annotation
    crowd = read_crowd_file(folder / "ap-10k_is_crowd.txt")
    groups = [[instance] for instance in sorted(instances, key=lambda a: a.id)]
    for subset, split, name in AP10K_SETS:
        pairs = sample_pairs(groups, split, subset, crowd=crowd, seed=SEED)
        _write_pairs(folder, folder / "PairAnnotation" / name, pairs)


def _write_pairs(folder: Path, target: Path, pairs: list[tuple[Instance, Instance, str]]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for source, destination, category in pairs:
        paths = [str(animal.source.relative_to(folder)) for animal in (source, destination)]
        name = f"{source.source.stem}-{destination.source.stem}:{category}.json"
        (target / name).write_text(_json({"src_json_path": paths[0], "trg_json_path": paths[1]}))


def _json(value: Any) -> str:
    import json

    return json.dumps(value, allow_nan=False) + "\n"


def choose_coco_subset(
    data: dict[str, Any], count: int = COCO_SUBSET_SIZE, seed: int = SEED
) -> list[tuple[dict[str, Any], str]]:
    """DistillDIFT's training images from a COCO instances file: ``(image entry, category name)``.

    Images with at least one ``iscrowd == 0`` annotation, in the file's image order; category = the
    name of the first such annotation; shuffled with ``torch.randperm`` under seed ``seed``
    (identical to ``torch.manual_seed(seed); torch.randperm(n)``); the first ``count``.
    """
    import torch

    try:
        names = {int(entry["id"]): str(entry["name"]) for entry in data["categories"]}
        first: dict[int, str] = {}
        for annotation in data["annotations"]:
            if annotation.get("iscrowd", 0) == 0 and int(annotation["image_id"]) not in first:
                first[int(annotation["image_id"])] = names[int(annotation["category_id"])]
        kept = [(image, first[int(image["id"])]) for image in data["images"] if int(image["id"]) in first]
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"not a COCO instances file (missing or bad field {error})") from None
    order = torch.randperm(len(kept), generator=torch.Generator().manual_seed(seed))[:count]
    return [kept[i] for i in order.tolist()]


def prepare_coco_subset(stage: Path, fetcher: Fetcher) -> None:
    """Choose DistillDIFT's images and download them into ``stage/train2017/<category>/``."""
    annotations = stage / "annotations" / "instances_train2017.json"
    say(f"{fetcher.dataset.name}: choosing the images (reading {annotations.name})")
    chosen = choose_coco_subset(read_json(annotations, expect=dict), COCO_SUBSET_SIZE)
    files = [
        DataFile(f"train2017/{image['file_name']}", f"{COCO_IMAGES}/{image['file_name']}", archive=False)
        for image, _ in chosen
    ]
    say(f"{fetcher.dataset.name}: downloading {len(files):,} images")

    def fetch(file: DataFile) -> Path | None:
        return fetcher.fetch(file, progress=False)

    pool = ThreadPoolExecutor(DOWNLOAD_THREADS)
    try:
        with tqdm(
            total=len(files),
            unit="image",
            desc=f"{fetcher.dataset.name}: images",
            disable=not fetcher.progress,
            leave=False,
        ) as bar:
            for _ in pool.map(fetch, files):  # the first failure stops the run; what arrived is kept
                bar.update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    listing = []
    for file, (image, category) in zip(files, chosen, strict=True):
        relative = Path("train2017", category, str(image["file_name"]))
        place(fetcher.downloads / file.name, stage / relative)
        fetcher.fetched[file.name]["path"] = str(Path(fetcher.dataset.name) / relative)
        listing.append(relative.as_posix())
    (stage / "subset.txt").write_text("".join(line + "\n" for line in listing))


PREPARATIONS: dict[str, Callable[[Path, Fetcher], None]] = {"ap10k": prepare_ap10k, "coco-subset": prepare_coco_subset}
