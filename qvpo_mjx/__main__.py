"""``python -m qvpo_mjx``: the same command as ``python -m qvpo_mjx.train`` and ``qvpo-train``."""

import sys

from qvpo_mjx.cli import main

sys.exit(main())
