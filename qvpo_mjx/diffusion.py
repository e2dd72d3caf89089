"""DDPM pieces of the diffusion actor: noise schedules, forward noising, reverse sampler, loss.

Shapes: ``T`` denoising steps, ``d`` action size, ``...`` any leading batch shape.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from qvpo_mjx.config import BETA_SCHEDULES

LOG_VARIANCE_FLOOR = 1e-20

@struct.dataclass
class Schedule:
    """Per-step constants of a DDPM, every array of shape (T,), index t = 0..T-1."""

    betas: jax.Array
    alphas: jax.Array
    alphas_cumprod: jax.Array
    alphas_cumprod_prev: jax.Array
    sqrt_alphas_cumprod: jax.Array
    sqrt_one_minus_alphas_cumprod: jax.Array
    sqrt_recip_alphas_cumprod: jax.Array
    sqrt_recipm1_alphas_cumprod: jax.Array
    posterior_variance: jax.Array
    posterior_log_variance_clipped: jax.Array
    posterior_mean_coef1: jax.Array
    posterior_mean_coef2: jax.Array

    @property
    def num_steps(self) -> int:
        return self.betas.shape[-1]

def betas_for(kind: str, num_steps: int) -> np.ndarray:
    """The (T,) float64 betas of a named schedule, exactly as ALGORITHM.md states them."""
    T = num_steps
    if kind == "cosine":
        s = 0.008
        u = np.arange(T + 1, dtype=np.float64) / T
        f = np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
        abar = f / f[0]
        return np.clip(1.0 - abar[1:] / abar[:-1], 0.0, 0.999)
    if kind == "linear":
        return np.linspace(1e-4, 2e-2, T, dtype=np.float64)
    if kind == "vp":
        b_min, b_max = 0.1, 10.0
        t = np.arange(1, T + 1, dtype=np.float64)
        alpha = np.exp(-b_min / T - 0.5 * (b_max - b_min) * (2 * t - 1) / T**2)
        return 1.0 - alpha
    raise ValueError(f"unknown beta schedule {kind!r}; known: {', '.join(BETA_SCHEDULES)}")

def make_schedule(kind: str, num_steps: int) -> Schedule:
    """All DDPM constants, computed in float64 and stored as float32."""
    if num_steps <= 0:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    betas = betas_for(kind, num_steps)
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    arrays = dict(
        betas=betas,
        alphas=alphas,
        alphas_cumprod=abar,
        alphas_cumprod_prev=abar_prev,
        sqrt_alphas_cumprod=np.sqrt(abar),
        sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - abar),
        sqrt_recip_alphas_cumprod=np.sqrt(1.0 / abar),
        sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / abar - 1.0),
        posterior_variance=post_var,
        posterior_log_variance_clipped=np.log(np.maximum(post_var, LOG_VARIANCE_FLOOR)),
        posterior_mean_coef1=betas * np.sqrt(abar_prev) / (1.0 - abar),
        posterior_mean_coef2=(1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar),
    )
    return Schedule(**{k: jnp.asarray(v, jnp.float32) for k, v in arrays.items()})

def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, eps: jax.Array) -> jax.Array:
    """Forward noising x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.

    x0, eps: (..., d); t: (...) int32 step indices.
    """
    a = schedule.sqrt_alphas_cumprod[t][..., None]
    b = schedule.sqrt_one_minus_alphas_cumprod[t][..., None]
    return a * x0 + b * eps

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]

def sample(eps_fn: EpsFn, schedule: Schedule, x_T: jax.Array, noise: jax.Array,
           noise_ratio: jax.Array | float = 1.0) -> jax.Array:
    """Reverse DDPM chain t = T-1 .. 0 as one ``lax.scan``.

    eps_fn(x, t): predicted noise for x (..., d) at the int32 scalar step t.
    x_T: (..., d) the chain's start, N(0, I). noise: (T, ..., d) N(0, I) draws, ``noise[i]`` used at
    scan iteration i (step t = T-1-i); the last iteration (t = 0) adds none. Returns (..., d) in
    [-1, 1].
    """
    def step(x, t, z):
        eps = eps_fn(x, t)
        x0 = (schedule.sqrt_recip_alphas_cumprod[t] * x
              - schedule.sqrt_recipm1_alphas_cumprod[t] * eps)
        x0 = jnp.clip(x0, -1.0, 1.0)
        mean = schedule.posterior_mean_coef1[t] * x0 + schedule.posterior_mean_coef2[t] * x
        std = jnp.where(t > 0, jnp.exp(0.5 * schedule.posterior_log_variance_clipped[t]), 0.0)
        return mean + (std * noise_ratio) * z

    return jnp.clip(_reverse(step, schedule.num_steps, x_T, noise), -1.0, 1.0)


def _reverse(step: Callable, T: int, x_T: jax.Array, noise: jax.Array) -> jax.Array:
    """x after step(x, t, noise[i]) for t = T-1-i, i = 0 .. T-1, as one ``lax.scan``."""
    if noise.shape != (T, *x_T.shape):
        raise ValueError(f"noise must have shape {(T, *x_T.shape)}, got {noise.shape}")
    steps = jnp.arange(T - 1, -1, -1, dtype=jnp.int32)
    x, _ = jax.lax.scan(lambda x, tz: (step(x, *tz), None), x_T, (steps, noise))
    return x


def sample_simple(eps_fn: EpsFn, schedule: Schedule, x_T: jax.Array, noise: jax.Array,
                  noise_scale: jax.Array | float = 1.0) -> jax.Array:
    """QSM's reverse chain (its "sampler S"): for t = T-1 .. 0,
    x <- clip((x - beta_t / sqrt(1 - abar_t) eps_fn(x, t)) / sqrt(alpha_t)
              + [t > 0] noise_scale sqrt(beta_t) z, -1, 1).

    Shapes as :func:`sample`'s. The step noise has variance beta_t (not the posterior's) and
    x itself is clipped every step (not a predicted x0)."""
    def step(x, t, z):
        eps = eps_fn(x, t)
        mean = (x - schedule.betas[t] / schedule.sqrt_one_minus_alphas_cumprod[t] * eps
                ) / jnp.sqrt(schedule.alphas[t])
        std = jnp.where(t > 0, jnp.sqrt(schedule.betas[t]), 0.0)
        return jnp.clip(mean + (std * noise_scale) * z, -1.0, 1.0)

    return _reverse(step, schedule.num_steps, x_T, noise)


def weighted_denoising_loss(eps_pred: jax.Array, eps: jax.Array, weights: jax.Array,
                            num_samples: jax.Array | int | None = None) -> jax.Array:
    """sum over samples and action dims of weight * (eps_pred - eps)^2, over num_samples x d.

    eps_pred, eps: (n, d); weights: (n,); num_samples: the samples the mean is over (default
    n; fewer where rows of weight 0 stand for samples the loss leaves out). Returns a scalar.
    """
    n, d = eps.shape
    total = jnp.sum(weights[:, None] * jnp.square(eps_pred - eps))
    return total / ((n if num_samples is None else num_samples) * d)
