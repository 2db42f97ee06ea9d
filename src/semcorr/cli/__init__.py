"""The ``semcorr`` command: a thin layer over the Python API.

:mod:`.main` builds the parser and runs a command; :mod:`.parser` is the parser class (no abbreviated
options, negative numbers as values, image paths after ``--points``, old spellings of renamed options);
:mod:`.options` holds the options several commands share and the table of renamed options; every
other module registers one group of commands, each of which parses its arguments and calls one API
function. Nothing outside this package imports it.

Startup stays fast: the command modules import only light, torch-free modules at the top (the
settings and configs the options are built from); each command imports the API it calls when it
runs, so ``semcorr --help`` and argument errors never import torch.
"""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]
