"""The one status line of a run: env steps, steps per second, last eval return, time left.

The compile is reported on its own line ("compiled in 68 s"); the rate and the time left are
measured from the end of the first chunk on, so neither the compile nor a first chunk of
warm-up (uniform actions, no updates: far faster than the rest) skews them.
"""

from __future__ import annotations

import math
import sys
import time


class Progress:
    """``total`` is the number of env steps the run will really take (whole chunks)."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.enabled = total, enabled
        self.stream = sys.stderr if stream is None else stream  # the stream of now, not import
        self.tty = enabled and self.stream.isatty()
        self.began = time.perf_counter()
        self._mark: tuple[int, float] | None = None  # (env steps, time) at the first chunk's end

    def compiled(self, seconds: float) -> None:
        if self.enabled:
            self.stream.write(f"compiled in {seconds:.0f} s\n")
            self.stream.flush()

    def update(self, env_steps: int, eval_return: float, now: float) -> None:
        """After a chunk: ``now`` a ``time.perf_counter()`` reading."""
        if self._mark is None:
            self._mark = (env_steps, now)
            sps = left = float("nan")
        else:
            steps, then = self._mark
            sps = (env_steps - steps) / max(now - then, 1e-9)
            left = (self.total - env_steps) / sps if sps > 0 else float("nan")
        if not self.enabled:
            return
        frac = min(1.0, env_steps / self.total)
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        rate = f"{sps:8.0f}" if math.isfinite(sps) else f"{'?':>8}"
        line = (f"[{bar}] {env_steps:>10,}/{self.total:,} steps | {rate} steps/s | "
                f"eval return {eval_return:9.2f} | {now - self.began:6.0f}s elapsed, "
                f"{format_seconds(left)} left")
        if self.tty:
            self.stream.write("\r" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")


def format_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    return f"{int(s // 60)}m{int(s % 60):02d}s"
