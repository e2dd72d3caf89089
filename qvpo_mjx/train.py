"""``python -m qvpo_mjx.train``: the command line (:mod:`qvpo_mjx.cli`).

Nothing is defined here, so running this module as ``__main__`` executes no code twice:
:func:`train` and :class:`NonFiniteError` live in :mod:`qvpo_mjx.driver` and are re-exported for
``from qvpo_mjx.train import train``.
"""

import sys

from qvpo_mjx.driver import NonFiniteError, train

__all__ = ["train", "NonFiniteError"]

if __name__ == "__main__":
    from qvpo_mjx.cli import main
    sys.exit(main())
