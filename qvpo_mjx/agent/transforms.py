"""Q-weight transforms (``q_transform``) and the running score statistics ``qexpn`` uses.

A transform maps the chosen candidates' scores q (B, c), the states' mean score v (B, 1), the
running mean and std of all scores and the traced hyper-parameters to non-negative weights
(B, c) of the Q-weighted variational loss. Pure functions of their arguments.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from qvpo_mjx import parallel

QTransform = Callable[[jax.Array, jax.Array, jax.Array, jax.Array, dict], jax.Array]


def _qadv(q, v, mean, std, hp):
    return jnp.maximum(q - v, 0.0)


def _qcut(q, v, mean, std, hp):
    return jnp.where(q >= hp["q_cut"], q, hp["q_cut"])


def _qrelu(q, v, mean, std, hp):
    return jnp.maximum(q, -hp["q_neg"]) + hp["q_neg"]


def _qexpn(q, v, mean, std, hp):
    return jnp.exp(hp["q_beta"] * jnp.clip((q - mean) / std, -8.0, 8.0))


Q_TRANSFORM_FNS: dict[str, QTransform] = {
    "qadv": _qadv, "qcut": _qcut, "qrelu": _qrelu, "qexpn": _qexpn}


def score_stats(scores: jax.Array, axis_name: str | None = None) -> tuple[jax.Array, jax.Array]:
    """Mean and (unbiased, n - 1: the reference's ``torch.std``) std of all scores (any shape);
    with ``axis_name``, of every device's scores together (equal shares, so pooled first and
    second moments are exact)."""
    if axis_name is None:
        return jnp.mean(scores), jnp.std(scores, ddof=1)
    mean, second = parallel.pmean((jnp.mean(scores), jnp.mean(jnp.square(scores))), axis_name)
    n = scores.size * parallel.size(axis_name)
    var = jnp.maximum(second - jnp.square(mean), 0.0) * n / (n - 1)
    return mean, jnp.sqrt(var)
