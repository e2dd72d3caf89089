"""Training time lost to checkpointing: the same run with and without its checkpoints.

    python benchmarks/checkpoint_cost.py             # cpu preset; replay 100k and 1M transitions
    python benchmarks/checkpoint_cost.py --quick     # fewer chunks

The `cpu` preset on inverted_pendulum (or ``--env``), once with no output directory (nothing
saved) and once checkpointing after every chunk (the most often a run can), interleaved
``--repeats`` times; the lost time is the difference of the training clocks past the first chunk
(which holds the compile), per checkpoint. With ``--replay-sizes 100000 1000000`` the second
buffer is the reference's 1M transitions (the whole buffer is in every checkpoint). Uses only
``qvpo_mjx.train.train``, so it runs unchanged against an older tree (``PYTHONPATH=OLD``) for a
before/after. Writes ``benchmarks/results/checkpoint_cost.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, write_result  # noqa: E402

from qvpo_mjx.config import QVPOConfig  # noqa: E402
from qvpo_mjx.train import train  # noqa: E402

try:
    from qvpo_mjx.presets import PRESETS  # noqa: E402
except ImportError:  # before the presets had a module of their own
    from qvpo_mjx.train import PRESETS  # noqa: E402


def steady_seconds(rows) -> float:
    """Training clock from the end of the first chunk (compile) to the end of the last."""
    return rows[-1]["wall_time_s"] - rows[0]["wall_time_s"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--env", default="inverted_pendulum")
    parser.add_argument("--replay-sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/checkpoint_cost.json")
    args = parser.parse_args(argv)
    chunks = args.chunks or (4 if args.quick else 8)
    base = PRESETS["cpu"]["config"]
    rows = []
    for replay in args.replay_sizes:
        cfg = QVPOConfig(**{**base, "replay_size": replay, "num_devices": 1,
                            "total_steps": chunks * base["eval_interval"]})
        none, saved = [], []
        for _ in range(args.repeats):
            none.append(steady_seconds(train(cfg, args.env, seed=0, progress=False)))
            tmp = Path(tempfile.mkdtemp(prefix="ckpt-cost-"))
            try:
                saved.append(steady_seconds(train(cfg, args.env, seed=0, out_dir=tmp / "run",
                                                  progress=False)))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        t_none, t_saved = statistics.median(none), statistics.median(saved)
        row = {"replay_size": replay, "chunks": chunks, "checkpoints_timed": chunks - 1,
               "steady_s_without": round(t_none, 3), "steady_s_with": round(t_saved, 3),
               "runs_without": [round(x, 3) for x in none],
               "runs_with": [round(x, 3) for x in saved],
               "lost_s_per_checkpoint": round((t_saved - t_none) / (chunks - 1), 3),
               "lost_fraction": round((t_saved - t_none) / t_none, 3)}
        print(row, flush=True)
        rows.append(row)
    result = {"machine": machine_info(), "env": args.env, "preset": "cpu",
              "chunk_env_steps": base["eval_interval"], "rows": rows,
              "note": "checkpoint after every chunk vs none; medians over repeats, interleaved; "
                      "steady = training clock after the first (compiling) chunk"}
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
