"""The authors' released weight files of the MARCO, DIY-SC and GECO presets: where they come from,
under which licence, and how semcorr finds them.

In order: ``weights=`` (``--weights FILE``); the file in semcorr's cache
(``CACHE/<preset>/<file name>``, :func:`~semcorr.download.cache_root`); a download from the
authors' address into the cache (resumable, checked against the file's SHA-256 where it is known),
when the preset allows it. GECO's authors state no licence for their weights, so semcorr never
ships them and fetches them only when asked (``download=True``, ``--download``), saying so.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from ..download import cache_root, download_file, unreachable_reason
from ..errors import CheckpointError, ChecksumError, DownloadError, InputError, WeightsUnavailableError
from .safe_pickle import read_state_dict


@dataclass(frozen=True)
class Release:
    """One released weight file.

    Attributes:
        preset: the preset name (cache folder, messages).
        url: the authors' address.
        filename: the name it is kept under in the cache.
        licence: the licence the authors state for it.
        sha256: its checksum where known (a download that differs is deleted and refused).
        ask_first: download only when the user asks (``download=True``).
    """

    preset: str
    url: str
    filename: str
    licence: str
    sha256: str | None = None
    ask_first: bool = False


RELEASES = {
    release.preset: release
    for release in (
        Release(
            "marco",
            "https://github.com/visinf/MARCO/releases/download/v1.0/marco_release.pth",
            "marco_release.pth",
            "Apache-2.0 (the repository's licence)",
        ),
        Release(
            "diy-sc",
            "https://github.com/odunkel/DIY-SC-torchhub/raw/main/ckpts/0300_dino_spair/best.pth",
            "0300_dino_spair.pth",
            "CC0-1.0",
            sha256="42e9c8a4d27041af7bb8dc5240ea3e83d47e013b72541dc8c5829368f247e705",
        ),
        Release(
            "geco",
            "https://github.com/reginehartwig/geco/raw/main/pretrained_weights/geco/last_lora_weights.pth",
            "last_lora_weights.pth",
            "none stated by the authors",
            sha256="63389bd38267b3e6ee324d8e8f6357ae982d74e68d530596cfdfae1943be1092",
            ask_first=True,
        ),
    )
}


def released_file(release: Release, weights: str | None, *, download: bool, progress: bool = True) -> Path:
    """The weight file of ``release``: ``weights`` if given, else the cached copy, else a download.

    Args:
        weights: a local file given by the user (``--weights``), or ``None``.
        download: a download is allowed (for ``ask_first`` releases: the user asked for it).
    Raises:
        InputError: ``weights`` does not exist.
        WeightsUnavailableError: not cached, and not allowed, offline or the download failed.
        CheckpointError: the download's checksum differs (the file is deleted).
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InputError(f"{release.preset}: --weights {weights} is not a file (the authors' {release.filename})")
        return path
    target = cache_root() / release.preset / release.filename
    if target.is_file():
        return target
    supply = (
        f"Pass --weights FILE with the authors' file ({release.url}), or use --random-weights for timing and tests."
    )
    if not download:
        reason = (
            f"their licence is {release.licence}, so semcorr downloads them only when asked: pass "
            "--download (download=True)"
            if release.ask_first
            else "downloads are switched off"
        )
        raise WeightsUnavailableError(f"{release.preset}: weights are not in the cache ({target}); {reason}. {supply}")
    unreachable = unreachable_reason(release.url)
    if unreachable:
        raise WeightsUnavailableError(
            f"{release.preset}: weights are not in the cache ({target}) and cannot be "
            f"downloaded from {release.url} ({unreachable}). {supply}"
        )
    print(f"{release.preset}: downloading {release.url} (licence: {release.licence}) into {target}", file=sys.stderr)
    try:
        download_file(
            release.url,
            target,
            progress=progress,
            description=f"{release.preset}: {release.filename}",
            sha256=release.sha256,
            sha256_source="the authors' release",
        )
    except ChecksumError as error:
        raise CheckpointError(f"{release.preset}: not the authors' release: {error}") from None
    except DownloadError as error:
        raise WeightsUnavailableError(f"{release.preset}: {error}. {supply}") from None
    return target


def read_release(release: Release, weights: str | None, *, download: bool, what: str) -> tuple[dict[str, Tensor], str]:
    """The state dict of the release's file (found by :func:`released_file`, read by
    :func:`~semcorr.weights.safe_pickle.read_state_dict`) and the file's path, for messages."""
    path = released_file(release, weights, download=download)
    return read_state_dict(path, what=what), str(path)


def check_state(state: dict[str, Tensor], expected: dict[str, tuple[int, ...]], source: str, what: str) -> None:
    """Every key of ``expected`` present with its shape, and no other key.

    Raises:
        CheckpointError: naming the missing and unknown keys, or the keys of the wrong shape.
    """
    missing = [key for key in expected if key not in state]
    unknown = [key for key in state if key not in expected]

    def listed(keys: list[str]) -> str:
        return ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "") if keys else "none"

    if missing or unknown:
        raise CheckpointError(f"{source}: not {what}; missing keys: {listed(missing)}; unknown keys: {listed(unknown)}")
    wrong = [
        f"{key} {tuple(value.shape)}, expected {expected[key]}"
        for key, value in state.items()
        if tuple(value.shape) != tuple(expected[key])
    ]
    if wrong:
        raise CheckpointError(f"{source}: tensor shapes do not fit {what}: {'; '.join(wrong[:4])}")
