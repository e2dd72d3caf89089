"""Start-up noise of the physics packages, silenced narrowly where it is made.

Two messages are noise for this project, which only runs MJX's JAX implementation:

- ``mujoco.mjx`` probes its optional Warp backend at import and, where ``warp-lang`` is missing (a
  GPU node's offline wheel bundle has none), prints "Failed to import warp: ..." and "Failed to
  import mujoco_warp: ..." with ``print``, not a logger. :func:`import_mjx` imports it with stdout
  captured and passes every other line through.
- Brax's MJCF loader warns on each process's first task that "Brax System, piplines and
  environments are not actively being maintained" (a ``UserWarning``).
  :func:`brax_unmaintained_ignored` ignores that one message, and only while a task is built.
- MuJoCo 4's compiler warns that the attribute ``settotalmass`` "is deprecated", through its C
  warning handler (to stderr), for the cheetah models that Brax and Playground ship: a note to
  those packages' model authors. :func:`shipped_model_deprecation_ignored` drops that one message
  while a packaged (Brax or Playground) task is built; a user's own model still shows it.

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
_SETTOTALMASS = re.compile(r"^compiler attribute 'settotalmass' is deprecated")


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


@contextlib.contextmanager
def shipped_model_deprecation_ignored() -> Iterator[None]:
    """Within the block, MuJoCo's C warnings go through a handler that drops the ``settotalmass``
    deprecation and writes every other one to stderr as MuJoCo itself would ("WARNING: ...");
    the previous handler comes back on exit."""
    import mujoco

    def handler(message: str) -> None:
        if not _SETTOTALMASS.match(message):
            sys.stderr.write(f"WARNING: {message}\n")

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)
