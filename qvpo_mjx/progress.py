"""The one status line of a run: env steps, steps per second, last eval return, time left."""

from __future__ import annotations

import math
import sys


class Progress:
    """``total`` is the number of env steps the run will really take (whole chunks)."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.enabled = total, enabled
        self.stream = sys.stderr if stream is None else stream  # the stream of now, not import
        self.tty = enabled and self.stream.isatty()

    def update(self, env_steps: int, sps: float, eval_return: float, elapsed: float) -> None:
        if not self.enabled:
            return
        frac = min(1.0, env_steps / self.total)
        left = (self.total - env_steps) / sps if sps > 0 else float("nan")
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        line = (f"[{bar}] {env_steps:>10,}/{self.total:,} steps | {sps:8.0f} steps/s | "
                f"eval return {eval_return:9.2f} | {elapsed:6.0f}s elapsed, "
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
