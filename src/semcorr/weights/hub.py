"""Finding model weights: a local folder or file, the Hugging Face cache, or a download.

Offline, a missing model is reported at once with what to do, not after a minute of retries.
"""

from __future__ import annotations

from pathlib import Path

from ..download import unreachable_reason
from ..errors import InputError, WeightsUnavailableError

_PATH_PREFIXES = ("/", "./", "../", "~", ".\\")


def looks_like_path(source: str) -> bool:
    """True for strings meant as local paths rather than hub ids like ``owner/name``."""
    return source.startswith(_PATH_PREFIXES) or source.count("/") > 1 or Path(source).suffix != ""


def resolve_pretrained(source: str, *, model: str, allow_patterns: list[str], how_to_supply: str) -> Path:
    """A local folder holding ``source``'s files: the folder itself, the hub cache, or a download.

    Args:
        source: a local folder, or a Hugging Face model id such as ``facebook/dinov2-base``.
        model: the preset name, for messages.
        allow_patterns: the files to fetch from the hub (e.g. ``["*.json", "*.safetensors"]``).
        how_to_supply: a sentence telling the user how else to supply weights.
    Raises:
        InputError: ``source`` looks like a local path that does not exist.
        WeightsUnavailableError: not cached and the hub cannot be reached.
    """
    path = Path(source).expanduser()
    if path.is_file():
        raise InputError(
            f"{model}: weights {source} is a file, not a model folder nor a checkpoint this model reads. "
            f"{how_to_supply}"
        )
    if path.exists():
        return path
    if looks_like_path(source):
        raise InputError(f"{model}: weights path {source} does not exist")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(source, local_files_only=True, allow_patterns=allow_patterns))
    except LocalEntryNotFoundError:
        pass
    reason = unreachable_reason(constants.ENDPOINT)
    if reason is None:
        try:
            return Path(snapshot_download(source, allow_patterns=allow_patterns))
        except Exception as error:  # network, auth, missing repo: all end the same way for the user
            reason = f"download failed: {type(error).__name__}: {str(error).splitlines()[0]}"
    raise WeightsUnavailableError(
        f"{model}: weights '{source}' are not in the Hugging Face cache and cannot be downloaded "
        f"({reason}). {how_to_supply} Or run once where the hub is reachable "
        f"(`hf download {source}`), or use --random-weights for timing and tests."
    )
