"""Released methods, loaded exactly from their authors' files: DistillDIFT's students
(:mod:`.distilldift`, converted by :mod:`.distilldift_checkpoint`), MARCO (:mod:`.marco`), DIY-SC
(:mod:`.diysc`) and GECO (:mod:`.geco`), the last three on one adapted-DINOv2 base (:mod:`.adapted`).
Where their files come from: :mod:`semcorr.weights.releases`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._moved import renamed_names

if not TYPE_CHECKING:  # names that left this module keep working for a release (semcorr._moved)
    __getattr__ = renamed_names(__name__)
