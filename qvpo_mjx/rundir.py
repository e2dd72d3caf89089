"""A run's directory: ``config.json`` and ``curve.npz``, written atomically (a crash mid-write
leaves the previous good file), and the checks made before a run writes anything.

The training state itself is checkpointed by :mod:`qvpo_mjx.checkpoint` under ``checkpoints/``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

CURVE_KEYS = ("env_steps", "wall_time_s", "eval_return_mean", "eval_return_std")
CONFIG_FILE, CURVE_FILE = "config.json", "curve.npz"
# What a resumed run must share with the run it continues (the rest of config.json is record).
RUN_IDENTITY = ("env", "env_options", "seed", "config")


def package_versions() -> dict[str, str | None]:
    out = {}
    for pkg in ("qvpo-mjx", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "brax",
                "mujoco", "mujoco-mjx", "playground"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_json(path: Path, obj: dict) -> None:
    atomic_write_bytes(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    atomic_write_bytes(path, lambda f: np.savez(f, **arrays))


def curve_key(metric: str) -> str:
    return metric.replace("/", "_")


def save_curve(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = list(rows[0]) if rows else list(CURVE_KEYS)
    save_npz(path, {k: np.asarray([r[k] for r in rows], np.float64) for k in keys})


def load_curve(path: Path) -> list[dict[str, Any]]:
    """Rows as ``train`` returns them: floats, or (S,) arrays for per-seed columns."""
    with np.load(path) as data:
        columns = {k: data[k] for k in data.files}
    n = len(columns["env_steps"])
    cell = lambda x: float(x) if np.ndim(x) == 0 else np.asarray(x)  # noqa: E731
    return [{k: cell(columns[k][i]) for k in columns} for i in range(n)]


def read_meta(out: Path) -> dict[str, Any]:
    path = out / CONFIG_FILE
    if not path.exists():
        raise ValueError(f"--resume: {path} does not exist")
    return json.loads(path.read_text())


EXTENSIBLE = ("total_steps", "entropy_decay_steps")


def _extension(saved: dict, new: dict) -> dict | None:
    """{} if the configs are equal; {"total_steps": [old, new]} if ``new`` only extends
    ``saved`` (a larger total, and the entropy horizon that goes with it); None otherwise."""
    if saved == new:
        return {}
    differ = {k for k in set(saved) | set(new) if saved.get(k) != new.get(k)}
    if differ <= set(EXTENSIBLE) and new["total_steps"] > saved["total_steps"]:
        return {"total_steps": [saved["total_steps"], new["total_steps"]]}
    return None


def prepare_out_dir(out: Path, meta: dict, *, resume: bool, overwrite: bool) -> None:
    """Check that ``out`` can take this run (or, with ``resume``, that it holds this run), and
    write ``config.json``. Raises ``ValueError`` with the reason before anything is written."""
    if resume:
        saved = read_meta(out)
        for key in RUN_IDENTITY:
            if key == "config":
                extension = _extension(saved[key], meta[key])
                if extension is not None:
                    continue
            if saved.get(key) != meta[key]:
                raise ValueError(f"--resume: {out} was run with a different {key} "
                                 f"({saved.get(key)!r} vs {meta[key]!r})")
        if extension:  # record the new length, and what it was before
            history = saved.get("extended", []) + [extension]
            save_json(out / CONFIG_FILE, {**saved, "config": meta["config"],
                                          "extended": history})
        return
    if out.exists() and not out.is_dir():
        raise ValueError(f"output path {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"output directory {out} exists and is not empty; pass --resume to "
                         f"continue it or --overwrite to replace it")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"output directory {out} is not writable ({e.strerror})") from e
    from qvpo_mjx.checkpoint import CHECKPOINT_DIR
    (out / CURVE_FILE).unlink(missing_ok=True)
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    save_json(out / CONFIG_FILE, meta)
