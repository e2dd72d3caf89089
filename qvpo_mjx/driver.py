"""The driver of a run: :func:`train` builds the compiled chunk (:mod:`qvpo_mjx.loop`), runs it
chunk after chunk, writes the curve after every chunk and checkpoints at the run's interval.

The command line is :mod:`qvpo_mjx.cli` (``python -m qvpo_mjx.train``, ``qvpo-train``); a run's
files are :mod:`qvpo_mjx.rundir` and :mod:`qvpo_mjx.checkpoint`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from qvpo_mjx import rundir
from qvpo_mjx.config import QVPOConfig
from qvpo_mjx.interrupts import ChunkInterrupts
from qvpo_mjx.progress import Progress


def first(x) -> int:
    """The value of a counter that every seed shares (() or (S,) array) as an int."""
    return int(np.asarray(x).reshape(-1)[0])


def to_host(tree):
    """Small device arrays (a chunk's metrics) as host numpy. Across several processes every
    process must call it (it gathers the shards the others hold) and gets the whole value."""
    import jax
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)


class NonFiniteError(RuntimeError):
    """A loss, Q value or parameter went non-finite; the last good checkpoint is kept."""


def train(config: QVPOConfig, env_name: str, seed: int = 0, out_dir: str | Path | None = None,
          *, env_options: dict[str, Any] | None = None, resume: bool = False,
          overwrite: bool = False, progress: bool = True, checkpoint_minutes: float = 0.0,
          tensorboard: bool = False,
          progress_fn: Callable[[int, dict[str, float]], None] | None = None,
          on_start: Callable[[Any], None] | None = None,
          extra_meta: dict[str, Any] | None = None) -> list[dict[str, float]]:
    """Train and return the curve (one dict of floats per chunk).

    With ``out_dir``: config.json, then curve.npz after every chunk and a checkpoint every
    ``checkpoint_minutes`` of wall-clock (0: after every chunk) and after the last chunk.
    ``resume=True`` continues the run saved in ``out_dir`` from its newest checkpoint (rows of
    the curve past it are dropped and rerun, bit for bit on the CPU). ``progress_fn(env_steps,
    row)`` is called after each chunk. ``tensorboard``: also write every curve column as
    TensorBoard scalars under ``out_dir/tensorboard`` (needs tensorboardX). ``on_start(trainer)``
    is called once the run's settings are resolved (the :class:`~qvpo_mjx.loop.Trainer`: its
    ``config`` has the devices' numbers and ``fit_notes`` what they rounded), before anything
    is written or compiled.
    """
    import jax

    from qvpo_mjx.checkpoint import Checkpointer
    from qvpo_mjx.loop import FAULT_NAMES, Trainer

    trainer = Trainer(config, env_name, env_options)
    config = trainer.config  # "all devices" as a number, rounded sizes: what config.json records
    if on_start is not None:
        on_start(trainer)
    S = config.num_seeds
    seeds = [seed + i for i in range(S)]
    out = Path(out_dir) if out_dir is not None else None
    meta = {"env": env_name, "env_options": dict(env_options or {}), "seed": seed,
            "seeds": seeds, "config": config.to_dict(), "versions": rundir.package_versions(),
            "backend": jax.default_backend(),
            "devices": [str(d) for d in trainer.devices], **(extra_meta or {})}
    writer = jax.process_index() == 0  # on several hosts, one writes the curve; all checkpoint
    if out is not None and writer:
        rundir.prepare_out_dir(out, meta, resume=resume, overwrite=overwrite)

    state = trainer.init_seeds(seeds)
    checkpoints = Checkpointer(out, checkpoint_minutes) if out is not None else None
    rows: list[dict[str, Any]] = []
    wall_offset = 0.0
    board = None
    try:
        if resume and checkpoints is not None and checkpoints.latest_chunks() is not None:
            # Hyper-parameters come from the config, which resume checked against the run's
            # (an extension changes total_steps, and keeps the entropy horizon explicitly); so a
            # checkpoint written before a hyper-parameter was added still resumes.
            hparams = state.agent.hparams
            state = checkpoints.restore(state, optional=("agent/hparams/",))
            state = state.replace(agent=state.agent.replace(hparams=hparams))
            rows = rundir.load_curve(out / rundir.CURVE_FILE)
            done_chunks = first(state.chunks)
            if len(rows) < done_chunks:
                raise ValueError(f"--resume: {out / rundir.CURVE_FILE} has {len(rows)} rows but "
                                 f"the checkpoint is at chunk {done_chunks}; the curve was damaged")
            rows = rows[:done_chunks]  # rows after the checkpoint are rerun
            wall_offset = rows[-1]["wall_time_s"] if rows else 0.0
        if tensorboard and out is not None and writer:
            from qvpo_mjx.tensorboard import TensorBoardLog
            board = TensorBoardLog(out, seeds, rows[-1]["env_steps"] if rows else
                                   (0 if resume else None))
        rows = _run(trainer, state, rows, wall_offset, seeds, out, writer, checkpoints,
                    progress, progress_fn, FAULT_NAMES, board)
    finally:
        if board is not None:
            board.close()
        if checkpoints is not None:
            checkpoints.close()  # waits for a save in flight: the last checkpoint lands whole
    return rows


def _run(trainer, state, rows, wall_offset, seeds, out, writer, checkpoints, progress,
         progress_fn, fault_names, board):
    """The chunk loop of :func:`train`."""
    S = len(seeds)
    bar = Progress(trainer.config.run_env_steps, enabled=progress)
    start = time.perf_counter()
    # Compiled ahead of the first chunk, so no rate includes it (a cached program loads).
    run_chunk = trainer.compile_chunk(state, S).lower(state).compile()
    bar.compiled(time.perf_counter() - start)  # wall_time_s keeps it: a user waits for it
    # One value per seed: a float for one seed, an (S,) array for several.
    per_seed = (lambda v: float(v)) if S == 1 else (lambda v: np.asarray(v, np.float64))
    with ChunkInterrupts() as interrupts:
        for chunk in range(first(state.chunks), trainer.config.num_chunks):
            state, metrics = run_chunk(state)
            metrics = {k: np.asarray(v) for k, v in to_host(metrics).items()}
            fault = metrics.pop("fault").reshape(-1)
            fault_step = metrics.pop("fault_step").reshape(-1)
            if fault.any():
                bar.close()
                i = int(np.argmax(fault > 0))
                if checkpoints is not None:
                    checkpoints.wait()  # a save in flight is the last good one: let it land
                saved = checkpoints.latest_chunks() if checkpoints is not None else None
                raise NonFiniteError(
                    f"non-finite {fault_names[int(fault[i]) - 1]} at env step "
                    f"{int(fault_step[i]):,}" + (f" in seed {seeds[i]}" if S > 1 else "") + "; "
                    + (f"the last good checkpoint (chunk {saved}) is kept in {out}"
                       if saved is not None else "no checkpoint was saved"))
            now = time.perf_counter()
            row = {"env_steps": float(metrics.pop("env_steps").reshape(-1)[0]),
                   "wall_time_s": wall_offset + now - start,
                   "eval_return_mean": per_seed(metrics.pop("eval_return_mean")),
                   "eval_return_std": per_seed(metrics.pop("eval_return_std"))}
            row.update({rundir.curve_key(k): per_seed(v) for k, v in sorted(metrics.items())})
            rows.append(row)
            last = chunk + 1 == trainer.config.num_chunks
            if out is not None:
                # Curve first, then the checkpoint (when due): resume trims the curve back to
                # the checkpoint, so the rows between are rerun, never lost or doubled.
                with interrupts.saving():
                    if writer:
                        rundir.save_curve(out / rundir.CURVE_FILE, rows)
                        if board is not None:
                            board.write(row)
                    if last or interrupts.requested or checkpoints.due():
                        checkpoints.save(state, chunk + 1)
            bar.update(int(row["env_steps"]), float(np.mean(row["eval_return_mean"])),
                       time.perf_counter())
            if progress_fn is not None:
                progress_fn(int(row["env_steps"]), row)
            if interrupts.requested:
                bar.close()
                raise KeyboardInterrupt  # after the chunk and its files: nothing in flight is lost
    bar.close()
    return rows
