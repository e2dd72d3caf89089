"""Temporally correlated latent noise for the behaviour policy (``behavior_noise``).

The diffusion policy's action is a deterministic function of the state and of its sampler's
draws: x_T and one z per reverse step, (T + 1, d) standard normals per candidate. White noise
(the reference) draws them afresh every env step. Here each env keeps them as a process in env
time that is N(0, I) at every step but correlated from one step to the next, so consecutive
actions are correlated while each action is still an exact sample of the policy (the critic's
data and the Q-weighted loss do not change). Every one of the ``behavior_samples`` candidates
has a stream of its own, so best-of-Kb still chooses among Kb exact samples, and the plain
sample that ``behavior_epsilon`` acts with (candidate 0) follows stream 0.

The process is a weighted sum of J independent AR(1) components, each N(0, 1) and
c' = rho_j c + sqrt(1 - rho_j^2) xi with xi ~ N(0, 1), weights w_j with sum_j w_j^2 = 1, so the
sum is N(0, 1) at every step with lag-1 correlation sum_j w_j^2 rho_j:

- ``ar1``: J = 1, rho = exp(-1 / ``behavior_noise_tau``) (tau: the correlation time in env steps);
- ``pink``: J = ceil(log2(episode_length)) components with time constants 1, 2, 4, ... steps and
  equal weights 1 / sqrt(J): equal variance per octave, so the spectrum falls as 1 / f between
  1 / episode_length and the step rate (Eberhard et al., ICLR 2023, use pink noise for MPO and
  SAC; this is its AR(1)-superposition form, which needs no look-ahead buffer per episode).

An env whose episode ended starts its streams afresh (independent of the episode before).
Shapes: ``N`` envs, ``K`` candidates, ``T`` denoising steps, ``d`` action size, ``J`` components.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

KINDS = ("white", "ar1", "pink")


@struct.dataclass
class NoiseState:
    components: jax.Array  # (N, K, T + 1, d, J) float32, each N(0, 1)


def num_components(kind: str, episode_length: int) -> int:
    """J: 1 for ar1; pink: one per octave of time constants up to the episode's length."""
    return max(1, math.ceil(math.log2(episode_length))) if kind == "pink" else 1


def coefficients(kind: str, tau: jax.Array | float, J: int) -> tuple[jax.Array, jax.Array]:
    """(rho (J,), weights (J,)) of the components."""
    if kind == "ar1":
        return jnp.exp(-1.0 / jnp.reshape(jnp.asarray(tau, jnp.float32), (1,))), jnp.ones((1,))
    if kind == "pink":
        taus = 2.0 ** jnp.arange(J, dtype=jnp.float32)
        return jnp.exp(-1.0 / taus), jnp.full((J,), 1.0 / math.sqrt(J))
    raise ValueError(f"behavior_noise {kind!r} keeps no state; one of {KINDS[1:]}")


def init(key: jax.Array, num_envs: int, num_samples: int, diffusion_steps: int,
         action_size: int, J: int) -> NoiseState:
    """Every component of every stream drawn from N(0, 1): the process starts stationary."""
    return NoiseState(jax.random.normal(
        key, (num_envs, num_samples, diffusion_steps + 1, action_size, J)))


def draws(noise: NoiseState, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """This step's sampler draws: (x_T (N, K, d), z (T, N, K, d)), z[i] at reverse step
    t = T - 1 - i, as :func:`qvpo_mjx.agent.denoise` takes them."""
    total = noise.components @ weights  # (N, K, T + 1, d)
    return total[:, :, 0], jnp.moveaxis(total[:, :, 1:], 2, 0)


def advance(noise: NoiseState, key: jax.Array, rho: jax.Array, restart: jax.Array
            ) -> NoiseState:
    """One env step on: c' = r c + sqrt(1 - r^2) xi per component, with r = rho, or r = 0 (a
    fresh draw) for the envs whose episode just ended. restart: (N,) bool or 0/1."""
    c = noise.components
    r = jnp.where(restart.astype(bool)[:, None, None, None, None], 0.0, rho)
    xi = jax.random.normal(key, c.shape, c.dtype)
    return NoiseState(r * c + jnp.sqrt(1.0 - r * r) * xi)
