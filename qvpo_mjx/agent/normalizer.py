"""Observation normalisation (the ``obs_normalization`` option): running statistics of every
observation acted on, and the normalised view every reader of observations uses.

The replay buffer keeps raw observations, so each use (act, eval_act, the critic's and the
actor's updates) normalises with the current statistics. Touches only ``state.obs_stats``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from qvpo_mjx import parallel

# The functions below take an ``AgentState`` (qvpo_mjx.agent.state, which holds an ObsStats and
# so imports this module: the annotation stays a name, not an import, to keep the two acyclic).

OBS_CLIP = 10.0  # normalised observations beyond 10 standard deviations are clipped
# A count of samples kept exactly as two int32 words, high * COUNT_BASE + low: float32 stops
# counting at 2^24 (a GPU run passes that in minutes) and int32 at 2^31.
COUNT_BASE = 2 ** 30


@struct.dataclass
class ObsStats:
    """Running mean and variance of the observations."""

    mean: jax.Array  # (o,)
    var: jax.Array  # (o,) population variance of everything seen (1 before any)
    seen: jax.Array  # (2,) int32: observations seen, exactly, as [high, low] (COUNT_BASE)

    @classmethod
    def init(cls, obs_size: int) -> "ObsStats":
        return cls(mean=jnp.zeros((obs_size,), jnp.float32),
                   var=jnp.ones((obs_size,), jnp.float32), seen=jnp.zeros((2,), jnp.int32))

    @property
    def count(self) -> jax.Array:
        """() float32 observations seen (rounded to float32; exact in ``seen``)."""
        return (self.seen[0].astype(jnp.float32) * COUNT_BASE
                + self.seen[1].astype(jnp.float32))

    def merged(self, obs: jax.Array, axis_name: str | None = None) -> "ObsStats":
        """These statistics with a batch (n, o) merged in (with ``axis_name``, every device's
        batch): the exact pooled mean and variance of everything seen.

        The batch's variance is taken about its own mean (E[x^2] - E[x]^2 loses its digits
        in float32 once |mean| / std is large), and the merge (Chan et al.) is written in the
        weights n / total and old / total, so nothing in it grows with the count."""
        n = obs.shape[0] * parallel.size(axis_name)
        mean = parallel.pmean(jnp.mean(obs, axis=0), axis_name)  # equal shares: pooled
        var = parallel.pmean(jnp.mean(jnp.square(obs - mean), axis=0), axis_name)
        low = self.seen[1] + n
        seen = jnp.stack([self.seen[0] + low // COUNT_BASE, low % COUNT_BASE]).astype(jnp.int32)
        w_new = jnp.float32(n) / self.replace(seen=seen).count
        w_old = 1.0 - w_new  # 0 at the first batch: the prior var 1 drops out
        delta = mean - self.mean
        return ObsStats(mean=self.mean + w_new * delta,
                        var=w_old * self.var + w_new * var + w_old * w_new * jnp.square(delta),
                        seen=seen)


def normalize_obs(state: "AgentState", obs: jax.Array) -> jax.Array:
    """(obs - mean) / std, clipped to +-10, with ``obs_normalization``; obs itself without.
    obs (..., o) -> (..., o)."""
    if not state.structure.obs_normalization:
        return obs
    stats = state.obs_stats
    return jnp.clip((obs - stats.mean) / jnp.sqrt(stats.var + 1e-8), -OBS_CLIP, OBS_CLIP)


def update_obs_stats(state: "AgentState", obs: jax.Array,
                     axis_name: str | None = None) -> "AgentState":
    """The state with a batch of observations (n, o) merged into its statistics
    (:meth:`ObsStats.merged`). A no-op without ``obs_normalization``."""
    if not state.structure.obs_normalization:
        return state
    return state.replace(obs_stats=state.obs_stats.merged(obs, axis_name))
