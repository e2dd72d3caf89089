"""Start-up noise of the physics packages, silenced narrowly where it is made.

Two messages are noise for this project, which only runs MJX's JAX implementation:

- ``mujoco.mjx`` probes its optional Warp backend at import and, where ``warp-lang`` is missing (a
  GPU node's offline wheel bundle has none), prints "Failed to import warp: ..." and "Failed to
  import mujoco_warp: ..." with ``print``, not a logger. :func:`import_mjx` imports it with stdout
  captured and passes every other line through.
- Brax's MJCF loader warns on each process's first task that "Brax System, piplines and
  environments are not actively being maintained" (a ``UserWarning``).
  :func:`brax_unmaintained_ignored` ignores that one message, and only while a task is built.

Every other print and warning stays visible.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import warnings
from typing import Iterator

_WARP_PROBE = re.compile(r"^Failed to import (mujoco_)?warp: ")
_BRAX_UNMAINTAINED = r"Brax System, piplines and environments are not actively being maintained"


def import_mjx() -> None:
    """Import ``mujoco.mjx`` (once per process), dropping only its Warp-probe lines from stdout."""
    if "mujoco.mjx" in sys.modules:
        return
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            import mujoco.mjx  # noqa: F401
    finally:
        for line in captured.getvalue().splitlines(keepends=True):
            if not _WARP_PROBE.match(line):
                sys.stdout.write(line)


@contextlib.contextmanager
def brax_unmaintained_ignored() -> Iterator[None]:
    """Within the block, ignore Brax's "not actively being maintained" UserWarning (that message
    and category only); the previous warning filters come back on exit."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_BRAX_UNMAINTAINED, category=UserWarning)
        yield
