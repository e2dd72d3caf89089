"""Checkpoints of the whole training state, with Orbax.

Every leaf is saved under its name in the state's tree (``agent/actor_params/params/...``,
``replay/data/obs``, ...), so a checkpoint is matched to a run by name, shape and dtype, never by
position. Saving is asynchronous: :meth:`Checkpointer.save` returns once the arrays are copied
off the (donated) device buffers, and the files are written while training goes on. Each process
writes the shards it holds (replicated arrays once), so nothing is gathered to one host. A
checkpoint becomes visible only when complete (Orbax writes to a temporary directory and renames
it), so a crash at any moment leaves the previous checkpoint readable; the last ``keep`` are
kept.

Layout: ``RUN/checkpoints/<chunks>/`` (the number of chunks the state has completed).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

CHECKPOINT_DIR = "checkpoints"


def _ocp():
    # Imported on first use: the plot command and the CLI's error paths never pay for it.
    import orbax.checkpoint as ocp
    return ocp


@contextlib.contextmanager
def _quiet_absl():
    """Orbax reports each save and restore through absl's logger at INFO/WARNING; a run's own
    line says what matters. Errors still come through."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def leaf_name(path: tuple) -> str:
    """'agent/actor_params/params/out/kernel' from a pytree key path (attributes, dict keys
    and sequence indices alike), so a dataclass in memory and its dict on disk name alike."""
    parts = []
    for key in path:
        for attr in ("name", "key", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def named_leaves(tree: Any) -> dict[str, Any]:
    return {leaf_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _nested(flat: dict[str, Any]) -> dict:
    """{"a/b": x} -> {"a": {"b": x}}: what is written is a plain tree of names."""
    root: dict = {}
    for name, x in flat.items():
        *parents, last = name.split("/")
        node = root
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = x
    return root


def _stored(state: Any) -> dict[str, Any]:
    """The leaves a checkpoint holds: every leaf by name but the empty ones (MJX keeps some
    zero-size arrays, which hold nothing and which Orbax cannot write)."""
    return {k: x for k, x in named_leaves(state).items() if np.size(x) > 0}


class Checkpointer:
    """The checkpoints of one run directory.

    ``every_minutes``: wall-clock between checkpoints (0: after every chunk); the loop asks
    :meth:`due` after each chunk and always saves the last one. A crash loses at most the
    interval since the last checkpoint, plus the chunk in flight.
    """

    def __init__(self, run_dir: str | Path, every_minutes: float = 0.0, keep: int = 2):
        if every_minutes < 0:
            raise ValueError(f"checkpoint interval must be >= 0 minutes, got {every_minutes}")
        ocp = _ocp()
        self.directory = (Path(run_dir) / CHECKPOINT_DIR).absolute()
        self.every_s = 60.0 * every_minutes
        with _quiet_absl():
            self.manager = ocp.CheckpointManager(
                self.directory, item_handlers=ocp.StandardCheckpointHandler(),
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=keep, enable_async_checkpointing=True, create=True,
                    cleanup_tmp_directories=True))  # a save cut short by a crash is removed
        self._last_save = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._last_save >= self.every_s

    def save(self, state: Any, chunks: int) -> None:
        """Start saving ``state`` (the state after ``chunks`` chunks); returns before the files
        are written. Every process must call it."""
        ocp = _ocp()
        with _quiet_absl():
            self.manager.save(int(chunks), args=ocp.args.StandardSave(_nested(_stored(state))),
                              force=True)
        self._last_save = time.monotonic()

    def latest_chunks(self) -> int | None:
        """Chunks completed by the newest complete checkpoint; None if there is none."""
        with _quiet_absl():
            self.manager.reload()
            return self.manager.latest_step()

    def restore(self, template: Any, chunks: int | None = None,
                optional: tuple[str, ...] = ()) -> Any:
        """The checkpoint (newest by default) as ``template``'s tree, each leaf placed with the
        template leaf's sharding. ``ValueError`` naming the first leaf that does not fit.

        ``optional``: leaf-name prefixes (``"agent/hparams/"``) whose leaves may be missing from
        the checkpoint (the template's value stands) or only in it (read and dropped): what the
        caller replaces after restoring anyway, such as hyper-parameters a newer config added."""
        ocp = _ocp()
        chunks = self.latest_chunks() if chunks is None else chunks
        if chunks is None:
            raise ValueError(f"{self.directory} holds no complete checkpoint")
        with _quiet_absl():
            stored = named_leaves(self.manager.item_metadata(chunks))
        wanted = _stored(template)
        where = f"{self.directory / str(chunks)} does not match this run's state"
        for name in sorted(set(stored) ^ set(wanted)):
            if name.startswith(optional):
                continue
            side = "only in the checkpoint" if name in stored else "missing from the checkpoint"
            raise ValueError(f"{where} (different env or config): {name} is {side}")
        wanted = {k: x for k, x in wanted.items() if k in stored}
        for name, leaf in wanted.items():
            meta = stored[name]
            if tuple(meta.shape) != tuple(leaf.shape) or np.dtype(meta.dtype) != leaf.dtype:
                raise ValueError(f"{where} (different env or config): {name} is "
                                 f"{meta.dtype}{list(meta.shape)} there, {leaf.dtype}"
                                 f"{list(leaf.shape)} here")
        abstract = {k: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
                    for k, x in wanted.items()}
        # Orbax restores whole trees only: a leaf this state no longer has is read, then dropped.
        dropped = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract.update({k: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=dropped)
                         for k, m in stored.items() if k not in wanted})
        with _quiet_absl():
            restored = named_leaves(self.manager.restore(
                chunks, args=ocp.args.StandardRestore(_nested(abstract))))
        paths, treedef = jax.tree_util.tree_flatten_with_path(template)
        return jax.tree.unflatten(treedef, [restored.get(leaf_name(p), x) for p, x in paths])

    def wait(self) -> None:
        """Block until every save started so far is on disk."""
        with _quiet_absl():
            self.manager.wait_until_finished()

    def close(self) -> None:
        with _quiet_absl():
            self.manager.close()


def read(run_dir: str | Path, chunks: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of a run's checkpoint (newest by default) by name, as numpy, without
    knowing the run's config: for tests, tools and inspection."""
    if not (Path(run_dir) / CHECKPOINT_DIR).is_dir():
        raise ValueError(f"{Path(run_dir) / CHECKPOINT_DIR} does not exist")
    ckpt = Checkpointer(run_dir)
    try:
        chunks = ckpt.latest_chunks() if chunks is None else chunks
        if chunks is None:
            raise ValueError(f"{ckpt.directory} holds no complete checkpoint")
        ocp = _ocp()
        with _quiet_absl():
            stored = named_leaves(ckpt.manager.item_metadata(chunks))
            # Onto this process's first device, whatever devices wrote it (several hosts).
            here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            abstract = {k: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=here)
                        for k, m in stored.items()}
            tree = ckpt.manager.restore(chunks, args=ocp.args.StandardRestore(_nested(abstract)))
        return {k: np.asarray(v) for k, v in named_leaves(tree).items()}
    finally:
        ckpt.close()
