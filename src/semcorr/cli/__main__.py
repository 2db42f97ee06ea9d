"""``python -m semcorr.cli``: the ``semcorr`` command (also what ``torchrun -m semcorr.cli`` runs)."""

from .main import main

raise SystemExit(main())
