"""Errors that semcorr raises at its boundaries.

Every error a user can cause (a bad file, a point outside an image, missing weights) is a
:class:`SemcorrError` whose message names the culprit and says what to do. The CLI prints such
errors as one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SemcorrError(Exception):
    """Base class of the errors a user can cause and fix."""


class InputError(SemcorrError, ValueError):
    """An input (image, point, file, option) is missing, malformed or out of range."""


class WeightsUnavailableError(SemcorrError):
    """Model weights could not be found locally and could not be downloaded."""


class CheckpointError(SemcorrError):
    """A checkpoint file does not fit the model it is loaded into."""


class ExportError(SemcorrError):
    """A model could not be exported, or the exported model does not reproduce PyTorch's output."""
