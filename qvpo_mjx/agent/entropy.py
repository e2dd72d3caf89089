"""The weight of the diffusion entropy term: the reference's linear decay, or (the
``entropy_target_spread`` option) a controller that holds the train candidates' spread at a
target, as SAC's temperature holds an entropy. Pure functions of traced values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def entropy_weight(hparams: dict[str, jax.Array], env_steps: jax.Array) -> jax.Array:
    """min(w0, max(w_final, w0 (1 - env_steps / decay_steps))), from traced values; the decay
    runs over ``entropy_decay_steps`` env steps, or ``total_steps`` where that is 0 (the
    reference)."""
    w0 = hparams["entropy_weight"]
    decay_steps = jnp.where(hparams["entropy_decay_steps"] > 0, hparams["entropy_decay_steps"],
                            hparams["total_steps"])
    decayed = w0 * (1.0 - env_steps.astype(jnp.float32) / decay_steps)
    return jnp.minimum(w0, jnp.maximum(hparams["entropy_weight_final"], decayed))


# Bounds of the adaptive entropy weight: it may fall to nothing or rise to 10x the Q-weighted
# term's own weight, never past.
LOG_ENTROPY_WEIGHT_RANGE = (float(np.log(1e-4)), float(np.log(10.0)))


def adapted_log_entropy_weight(log_weight: jax.Array, spread: jax.Array,
                               hparams: dict[str, jax.Array]) -> jax.Array:
    """One step of the adaptive entropy weight, in log space (a multiplicative controller, as
    SAC's temperature): up when the train candidates' spread is below its target, down when
    above, by ``entropy_adapt_rate`` per unit of relative error."""
    target = hparams["entropy_target_spread"]
    error = (target - spread) / jnp.maximum(target, 1e-8)
    return jnp.clip(log_weight + hparams["entropy_adapt_rate"] * error,
                    *LOG_ENTROPY_WEIGHT_RANGE)
