"""The collectives of a data-parallel step, in one place.

Inside ``shard_map`` over a device axis each device holds an equal share of the envs, the buffer
rows and every batch, so the mean of the devices' means is the mean over the whole batch.
``axis_name=None`` (one device) makes each an identity, so code written with them runs
unchanged on one device.
"""

from __future__ import annotations

import jax


def pmean(tree, axis_name: str | None):
    """The mean over the devices of ``axis_name`` of every leaf; identity on one device."""
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def psum(tree, axis_name: str | None):
    """The sum over the devices of ``axis_name`` of every leaf; identity on one device."""
    return tree if axis_name is None else jax.lax.psum(tree, axis_name)


def size(axis_name: str | None) -> int | jax.Array:
    """How many devices share the step (1 on one device)."""
    return 1 if axis_name is None else jax.lax.psum(1, axis_name)
