"""Training time lost to checkpointing: the time a save blocks the training loop, before and after.

    python benchmarks/checkpoint_cost.py                  # cpu preset state, replay 100k and 1M
    python benchmarks/checkpoint_cost.py --quick          # fewer repeats

The whole training state of the `cpu` preset on inverted_pendulum (or ``--env``), with a replay
buffer of ``--replay-sizes`` transitions, saved ``--repeats`` times each way, interleaved:

- **before** (the format until this change): every leaf copied to the host, one ``.npz``
  written and fsynced, synchronously: the loop waits for all of it;
- **after** (``qvpo_mjx.checkpoint``): Orbax's asynchronous save: the loop waits only until the
  arrays are off the (donated) device buffers; the files are written in the background. Its
  ``written_s`` is how long until the checkpoint is complete on disk (the loop does not wait).

``blocking_s`` is the training time lost per checkpoint. Medians. Writes
``benchmarks/results/checkpoint_cost.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, write_result  # noqa: E402

from qvpo_mjx.checkpoint import Checkpointer  # noqa: E402
from qvpo_mjx.loop import Trainer  # noqa: E402
from qvpo_mjx.presets import preset_config  # noqa: E402


def npz_save(path: Path, state) -> None:
    """The previous format: all leaves to the host, one .npz, fsynced, in the loop's thread."""
    leaves = jax.device_get(jax.tree.leaves(state))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **{f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--env", default="inverted_pendulum")
    parser.add_argument("--replay-sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/results/checkpoint_cost.json")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    rows = []
    for replay in args.replay_sizes:
        trainer = Trainer(preset_config("cpu", {"replay_size": replay, "num_devices": 1}),
                          args.env)
        state = jax.block_until_ready(trainer.init_seeds([0]))
        # Fill the buffer with non-zero data, as a long run's would be.
        state = state.replace(replay=state.replay.replace(data=jax.tree.map(
            lambda x: x + jax.random.normal(jax.random.PRNGKey(1), x.shape, x.dtype),
            state.replay.data)))
        state = jax.block_until_ready(state)
        tmp = Path(tempfile.mkdtemp(prefix="ckpt-cost-"))
        before, after, written = [], [], []
        try:
            ckpt = Checkpointer(tmp / "run", every_minutes=0.0, keep=2)
            for i in range(repeats):
                t0 = time.perf_counter()
                npz_save(tmp / "checkpoint.npz", state)
                before.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                ckpt.save(state, i + 1)
                after.append(time.perf_counter() - t0)
                ckpt.wait()
                written.append(time.perf_counter() - t0)
            ckpt.close()
            sizes = {"npz_bytes": (tmp / "checkpoint.npz").stat().st_size,
                     "orbax_bytes": du(tmp / "run" / "checkpoints" / str(repeats))}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        row = {"replay_size": replay, "repeats": repeats,
               "before_blocking_s": round(statistics.median(before), 4),
               "after_blocking_s": round(statistics.median(after), 4),
               "after_written_s": round(statistics.median(written), 4),
               "before_all_s": [round(x, 4) for x in before],
               "after_all_s": [round(x, 4) for x in after], **sizes}
        row["blocking_ratio_after_over_before"] = round(row["after_blocking_s"]
                                                        / row["before_blocking_s"], 3)
        print(row, flush=True)
        rows.append(row)
    result = {"machine": machine_info(), "env": args.env, "preset": "cpu", "rows": rows,
              "note": "seconds the training loop waits per checkpoint of the whole state; "
                      "before = synchronous .npz (the previous format), after = Orbax async"}
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
