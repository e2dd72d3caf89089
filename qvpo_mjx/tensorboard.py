"""TensorBoard scalars of a run: every curve column, once per evaluation, under RUN/tensorboard/.

Optional: needs ``tensorboardX`` (``pip install 'qvpo-mjx[tensorboard]'``; Brax installs it too).
``curve.npz`` stays the source of truth; these files are a view of it for ``tensorboard --logdir``.
A run of S seeds writes one TensorBoard run per seed (``tensorboard/seed_<n>``), so TensorBoard
draws them as separate lines. The x axis is environment steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TENSORBOARD_DIR = "tensorboard"


class TensorBoardLog:
    def __init__(self, run_dir: Path, seeds: list[int], resume_from_step: int | None = None):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:
            raise ValueError("--tensorboard needs tensorboardX: pip install tensorboardX "
                             "(or pip install 'qvpo-mjx[tensorboard]')") from e
        root = Path(run_dir) / TENSORBOARD_DIR
        # On resume, events past the checkpoint are dropped: those chunks are rerun.
        purge = None if resume_from_step is None else int(resume_from_step) + 1
        self.writers = [SummaryWriter(str(root if len(seeds) == 1 else root / f"seed_{s}"),
                                      purge_step=purge) for s in seeds]

    def write(self, row: dict[str, Any]) -> None:
        step = int(row["env_steps"])
        for i, writer in enumerate(self.writers):
            for key, value in row.items():
                if key == "env_steps":
                    continue
                v = float(np.asarray(value).reshape(-1)[i if np.size(value) > 1 else 0])
                if np.isfinite(v):  # NaN marks "no value this interval" (e.g. before updates)
                    writer.add_scalar(key, v, step)
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
