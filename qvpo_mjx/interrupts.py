"""Ctrl-C during training: stop at the end of the chunk in flight, never in the middle of a save."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading


class ChunkInterrupts:
    """The first Ctrl-C stops the run at the end of the chunk in flight, once it is saved
    (nothing is lost); a second aborts at once, unless curve and checkpoint are being written,
    which finish first. The handler only sets a flag, so no library code between the signal and
    the chunk's end can swallow the stop."""

    def __init__(self) -> None:
        self.requested = 0
        self._saving = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        self.requested += 1
        if self.requested == 1:
            print("\nstopping after this chunk (Ctrl-C again to abort now)", file=sys.stderr)
        elif not self._saving:
            raise KeyboardInterrupt

    def __enter__(self) -> "ChunkInterrupts":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    @contextlib.contextmanager
    def saving(self):
        """What is written inside is written whole, even through a second Ctrl-C."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False
        if self.requested > 1:
            raise KeyboardInterrupt
