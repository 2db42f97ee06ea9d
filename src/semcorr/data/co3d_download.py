"""CO3D v2, a category at a time, as its own download script fetches it.

The links and the SHA-256 of every zip come from CO3D's repository (``co3d/links.json`` and
``co3d/co3d_sha256.json``, read at a pinned commit whose files' SHA-256 the catalog holds).
``links.json`` lists, per category, the zips of the full dataset (``full``, about 20 GB each) or of
the single-sequence subset (``singlesequence``), and ``METADATA`` files; checksums are keyed by
the zip's local name (``_singlesequence`` removed). Each category's zips unpack into
``<category>/``: they are extracted into a temporary folder, checked and renamed to
``ROOT/<dataset>/<category>`` together, so a category is there whole or not at all; categories
can be added by later runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import InputError
from ..fileio import atomic_file, make_folder, read_json, remove_stale_temporaries
from .catalog import DataFile
from .checks import co3d_counts
from .fetch import Fetcher, Part, build_part, place, say


def _table(path: Path | None, subset: str) -> dict[str, Any]:
    content = read_json(path, expect=dict) if path is not None else {}
    table = content.get(subset)
    if not isinstance(table, dict):
        raise InputError(f"{path}: has no '{subset}' table; is it CO3D's file?")
    return table


def _zip_file(url: str, sums: dict[str, Any]) -> DataFile:
    name = Path(urlparse(url).path).name
    sha256 = sums.get(name.replace("_singlesequence", ""))
    if not isinstance(sha256, str):
        return DataFile(name, url)
    return DataFile(name, url, checksum=f"sha256:{sha256.lower()}", trusted=True)


def choose_categories(links: dict[str, Any], categories: list[str], dataset: str) -> list[str]:
    """The categories asked for (``["all"]``: every one), each checked against CO3D's list."""
    available = sorted(name for name in links if name.upper() != "METADATA")
    if [c.strip().lower() for c in categories] == ["all"]:
        return available
    chosen = [c.strip() for c in categories if c.strip()]
    unknown = [c for c in chosen if c not in available]
    if unknown or not chosen:
        raise InputError(
            f"--categories: {dataset} has no category {unknown[0] if unknown else ''!r}; "
            f"choose among: {', '.join(available)} (or all)"
        )
    return list(dict.fromkeys(chosen))


def download_categories(fetcher: Fetcher, categories: list[str], *, keep_archives: bool, dry_run: bool) -> None:
    """Download and extract the chosen categories of CO3D (full or single-sequence) not yet there."""
    dataset = fetcher.dataset
    subset = "singlesequence" if dataset.name.endswith("single-sequence") else "full"
    links_file, sums_file = dataset.files[:2]  # the catalog's CO3D_LINKS and CO3D_SHA256S
    links = _table(fetcher.fetch(links_file, progress=False), subset)
    sums = _table(fetcher.fetch(sums_file, progress=False), subset)
    chosen = choose_categories(links, categories, dataset.name)
    folder = make_folder(fetcher.root / dataset.name)
    remove_stale_temporaries(folder.glob(".*.tmp"))
    foreign = [c for c in chosen if (folder / c).exists() and c not in fetcher.lock.categories]
    if foreign:
        raise InputError(
            f"{folder / foreign[0]}: already exists, but semcorr has no record of downloading it; "
            "move it away to download it afresh"
        )
    todo = [c for c in chosen if c not in fetcher.lock.categories or not (folder / c).is_dir()]
    metadata = [_zip_file(url, sums) for url in links.get("METADATA", [])]
    metadata = [replace(f, archive=False) for f in metadata if not (folder / f.name).is_file()]
    zips = {category: tuple(_zip_file(url, sums) for url in links[category]) for category in todo}
    files = [*metadata, *(f for category in todo for f in zips[category])]
    already = f"; {len(chosen) - len(todo)} already there" if len(todo) < len(chosen) else ""
    fetcher.show_plan(files, folder, f" ({len(todo)} categor{'y' if len(todo) == 1 else 'ies'} to download{already})")
    if dry_run:
        return
    for file in metadata:
        path = fetcher.fetch(file)
        if path is None:
            continue
        target = folder / file.name
        with atomic_file(target) as temporary:
            place(path, temporary)
        fetcher.fetched[file.name]["path"] = str(target.relative_to(fetcher.root))
        fetcher.lock.files[file.name] = fetcher.fetched[file.name]
        fetcher.lock.save()
        if not keep_archives:
            path.unlink()
    for category in todo:
        say(f"{dataset.name}: {category} ({len(zips[category])} zip(s))")
        build_part(
            fetcher,
            Part(zips[category], folder / category, co3d_counts(category), inner=category, category=category),
            keep_archives=keep_archives,
        )
    say(f"{dataset.name}: {', '.join(chosen)} ready in {folder}")
