"""A preallocated, device-resident ring buffer of transitions.

Inserts scatter N rows at the write position (wrapping), so an insert costs O(N) and, with the
training state donated, never copies the buffer. Samples are uniform with replacement over the
filled part.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from qvpo_mjx.agent import Transition


@struct.dataclass
class ReplayBuffer:
    data: Transition  # every field with leading axis `capacity`
    position: jax.Array  # () int32, next row to write
    size: jax.Array  # () int32, rows filled

    @property
    def capacity(self) -> int:
        return self.data.reward.shape[0]


def init(capacity: int, obs_size: int, action_size: int) -> ReplayBuffer:
    data = Transition(obs=jnp.zeros((capacity, obs_size), jnp.float32),
                      action=jnp.zeros((capacity, action_size), jnp.float32),
                      reward=jnp.zeros((capacity,), jnp.float32),
                      next_obs=jnp.zeros((capacity, obs_size), jnp.float32),
                      terminated=jnp.zeros((capacity,), jnp.float32))
    return ReplayBuffer(data=data, position=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def add(buffer: ReplayBuffer, items: Transition) -> ReplayBuffer:
    """Write n transitions (every field with leading axis n <= capacity), oldest overwritten."""
    n, capacity = items.reward.shape[0], buffer.capacity
    rows = (buffer.position + jnp.arange(n, dtype=jnp.int32)) % capacity
    data = jax.tree.map(lambda d, x: d.at[rows].set(x.astype(d.dtype)), buffer.data, items)
    return ReplayBuffer(data=data, position=(buffer.position + n) % capacity,
                        size=jnp.minimum(buffer.size + n, capacity))


def sample(buffer: ReplayBuffer, key: jax.Array, shape: tuple[int, ...]) -> Transition:
    """Uniform with replacement over the filled rows: every field gets leading shape ``shape``."""
    rows = jax.random.randint(key, shape, 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda d: d[rows], buffer.data)
