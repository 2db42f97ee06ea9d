"""Errors that semcorr raises at its boundaries.

Every error a user can cause (a bad file, a point outside an image, missing weights, a setting out
of range) is a :class:`SemcorrError` whose message names the culprit and says what to do. The CLI
prints such errors as one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any


class SemcorrError(Exception):
    """Base class of the errors a user can cause and fix."""


class InputError(SemcorrError, ValueError):
    """An input (image, point, file, option) is missing, malformed or out of range."""


class SettingError(InputError):
    """A field of a settings or config dataclass was given a value it may not hold.

    Attributes:
        owner: the dataclass's name, e.g. ``MatchSettings``.
        field: the field, e.g. ``window``.
        option: the command-line option that sets it, e.g. ``--window``.
        value: the value given.
        requirement: what is allowed, e.g. ``must be an odd integer >= 1``.
    """

    def __init__(self, owner: str, field: str, option: str, value: Any, requirement: str) -> None:
        self.owner, self.field, self.option, self.value, self.requirement = owner, field, option, value, requirement
        super().__init__(f"{option} {value!r} ({owner}.{field}): {requirement}")


class WeightsUnavailableError(SemcorrError):
    """Model weights could not be found locally and could not be downloaded."""


class DownloadError(SemcorrError):
    """A file could not be downloaded, or what arrived is not the file asked for (its checksum differs)."""


class ChecksumError(DownloadError):
    """A downloaded file's checksum differs from the expected one (the file was deleted)."""


class CheckpointError(SemcorrError):
    """A checkpoint file does not fit the model it is loaded into."""


class TrainingError(SemcorrError):
    """A training run cannot go on: its loss or its weights are no longer finite numbers."""


class DecodingError(SemcorrError):
    """The processes that decode images stopped: one died, was killed, or could not hand its batch over."""


class ExportError(SemcorrError):
    """A model could not be exported, or the exported model does not reproduce PyTorch's output."""


class MissingExtraError(InputError):
    """An optional dependency is not installed; the message names the extra that brings it
    (``pip install 'semcorr[video]'``)."""
