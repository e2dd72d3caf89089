"""A preallocated, device-resident ring buffer of transitions.

Inserts scatter N rows at the write position (wrapping), so an insert costs O(N) and, with the
training state donated, never copies the buffer. Samples are uniform with replacement over the
filled part.

A vector step writes its N envs' transitions as consecutive rows, so env i's next transition
lies N rows further on (modulo the capacity): n-step returns (:func:`n_step_rows`) walk that
stride, using ``ends`` (episode ended there: terminated or truncated) to stop at episode
boundaries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from qvpo_mjx import parallel
from qvpo_mjx.agent import Transition


@struct.dataclass
class ReplayBuffer:
    data: Transition  # every field with leading axis `capacity`
    ends: jax.Array  # (capacity,) float32: 1 where the transition ended its episode
    position: jax.Array  # () int32, next row to write
    size: jax.Array  # () int32, rows filled
    # (capacity, d) float32 or None: DIPO's improved actions, one per row, written with the
    # row's action when the row is written and improved in place by its actor step.
    improved: jax.Array | None = None

    @property
    def capacity(self) -> int:
        return self.data.reward.shape[0]


def init(capacity: int, obs_size: int, action_size: int, improved: bool = False
         ) -> ReplayBuffer:
    """An empty buffer; ``improved``: with DIPO's column of improved actions."""
    data = Transition(obs=jnp.zeros((capacity, obs_size), jnp.float32),
                      action=jnp.zeros((capacity, action_size), jnp.float32),
                      reward=jnp.zeros((capacity,), jnp.float32),
                      next_obs=jnp.zeros((capacity, obs_size), jnp.float32),
                      terminated=jnp.zeros((capacity,), jnp.float32))
    return ReplayBuffer(data=data, ends=jnp.zeros((capacity,), jnp.float32),
                        position=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32),
                        improved=(jnp.zeros((capacity, action_size), jnp.float32) if improved
                                  else None))


def add(buffer: ReplayBuffer, items: Transition, ends: jax.Array | None = None) -> ReplayBuffer:
    """Write n transitions (every field with leading axis n <= capacity), oldest overwritten
    (and the improved column, if any, starts each row at its action). ``ends`` (n,): where each
    ended its episode (terminated or truncated); default ``terminated``."""
    n, capacity = items.reward.shape[0], buffer.capacity
    rows = (buffer.position + jnp.arange(n, dtype=jnp.int32)) % capacity
    data = jax.tree.map(lambda d, x: d.at[rows].set(x.astype(d.dtype)), buffer.data, items)
    ends = items.terminated if ends is None else ends
    improved = (None if buffer.improved is None
                else buffer.improved.at[rows].set(items.action.astype(jnp.float32)))
    return ReplayBuffer(data=data, ends=buffer.ends.at[rows].set(ends.astype(jnp.float32)),
                        position=(buffer.position + n) % capacity,
                        size=jnp.minimum(buffer.size + n, capacity), improved=improved)


# Rows read by obs_spread: every row of a buffer up to this size, evenly spaced filled rows of a
# larger one, so the metric never holds a copy of a big buffer's observations (a 1M-row humanoid
# buffer: 0.98 GB of temporaries) and costs the same whatever replay_size is.
COVERAGE_ROWS = 16_384


def obs_spread(buffer: ReplayBuffer, axis_name: str | None = None) -> jax.Array:
    """How much of the state space the run has visited: the standard deviation of the filled
    rows' observations, per observation dimension, averaged over dimensions (0 for an empty
    buffer). Exact up to :data:`COVERAGE_ROWS` rows; above, over that many evenly spaced filled
    rows. ``axis_name``: the device axis whose buffer shards are pooled. Returns ()."""
    M = min(buffer.capacity, COVERAGE_ROWS)
    if M == buffer.capacity:
        rows = jnp.arange(M)
        weight = (rows < buffer.size).astype(jnp.float32)[:, None]
    else:
        step = buffer.size.astype(jnp.float32) / M
        rows = jnp.minimum(jnp.floor(jnp.arange(M) * step).astype(jnp.int32), buffer.size - 1)
        weight = jnp.full((M, 1), (buffer.size > 0).astype(jnp.float32))
    obs = buffer.data.obs[jnp.maximum(rows, 0)]  # (M, o)
    count = parallel.psum(jnp.sum(weight), axis_name)
    mean = parallel.psum(jnp.sum(obs * weight, axis=0), axis_name) / jnp.maximum(count, 1.0)
    # About the pooled mean (not E[x^2] - E[x]^2, which loses float32's digits at large |mean|).
    var = parallel.psum(jnp.sum(jnp.square(obs - mean) * weight, axis=0), axis_name)
    return jnp.mean(jnp.sqrt(var / jnp.maximum(count, 1.0)))


def mean_abs_reward(buffer: ReplayBuffer, axis_name: str | None = None) -> jax.Array:
    """The mean |r| of the filled rows (0 for an empty buffer), every device's shard pooled
    with ``axis_name``. Reads the whole reward column: for a rare call (``reward_scale_auto``
    runs it once). Returns ()."""
    filled = (jnp.arange(buffer.capacity) < buffer.size).astype(jnp.float32)
    total = parallel.psum(jnp.sum(jnp.abs(buffer.data.reward) * filled), axis_name)
    count = parallel.psum(jnp.sum(filled), axis_name)
    return total / jnp.maximum(count, 1.0)


def sample_rows(buffer: ReplayBuffer, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Row indices uniform with replacement over the filled rows: int32 of ``shape``. Drawing
    indices apart from gathering them lets a loop of updates gather each batch when it runs,
    instead of holding all of them at once."""
    return jax.random.randint(key, shape, 0, jnp.maximum(buffer.size, 1))


def gather(buffer: ReplayBuffer, rows: jax.Array) -> Transition:
    """The stored transitions at ``rows`` (any shape): every field gets leading shape
    ``rows.shape``."""
    return jax.tree.map(lambda d: d[rows], buffer.data)


def sample(buffer: ReplayBuffer, key: jax.Array, shape: tuple[int, ...]) -> Transition:
    """Uniform with replacement over the filled rows: every field gets leading shape ``shape``."""
    return gather(buffer, sample_rows(buffer, key, shape))


def n_step_rows(buffer: ReplayBuffer, rows: jax.Array, n: int, gamma: jax.Array,
                stride: int) -> Transition:
    """The n-step transitions starting at ``rows`` (any shape): from the row's obs and action,
    reward = sum_k gamma^k r_k over the window, next_obs / terminated those of its last step,
    reward_steps = its length.

    The window follows the same env (``stride`` = envs per vector step on this device: its next
    transition is ``stride`` rows on) for up to n steps, and ends early after a step that ended
    the episode (terminated: no bootstrap; truncated: bootstrap from the true next observation
    stored there) or at the newest transition written (the ring buffer's wrap: rows past the
    write position hold older data, never the continuation).
    """
    capacity = buffer.capacity
    # Steps available after `rows`, newest row included: the distance to the newest row.
    newest = (buffer.position - 1) % capacity
    ahead = ((newest - rows) % capacity) // stride  # whole later steps of the same env

    def body(carry, k):
        reward, last, alive = carry  # alive: the window still runs at step k
        row = (rows + k * stride) % capacity
        take = alive & (k <= ahead)
        reward = reward + jnp.where(take, gamma ** k * buffer.data.reward[row], 0.0)
        last = jnp.where(take, row, last)
        alive = take & (buffer.ends[row] == 0)
        return (reward, last, alive), take.astype(jnp.float32)

    init = (jnp.zeros(rows.shape, jnp.float32), rows, jnp.ones(rows.shape, bool))
    (reward, last, _), taken = jax.lax.scan(body, init, jnp.arange(n))
    return Transition(obs=buffer.data.obs[rows], action=buffer.data.action[rows], reward=reward,
                      next_obs=buffer.data.next_obs[last],
                      terminated=buffer.data.terminated[last],
                      reward_steps=jnp.sum(taken, axis=0))
