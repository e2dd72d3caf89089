"""SAC (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications"), with the
automatic temperature, on this project's critics and loop.

- Policy: u = mean + std xi, a = tanh(u), log pi(a|s) = sum_j [log N(u_j; mean_j, std_j)
  - log(1 - a_j^2 + 1e-6)].
- Critic step: y = r + gamma^h (1 - terminated) (min(Q1', Q2')(s', a') - alpha log pi(a'|s')),
  a' ~ pi(s') from the current actor (SAC has no target actor); then the critic target's Polyak
  step (tau), every critic update.
- Actor step, on the states of the critic batch it follows: mean(alpha log pi(a~|s) - min(Q1, Q2)(s, a~)), a~
  reparameterised, scored by the critic just updated; then the temperature on a fresh sample of
  the updated actor: -alpha mean(log pi + target_entropy), the gradient taken in log alpha,
  target_entropy = ``sac_target_entropy`` x d (-d by default).
- Acting samples the policy; evaluation acts with tanh(mean).

Pure functions of a :class:`baseline.BaselineState`; shapes as in ``baseline``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from qvpo_mjx import parallel
from qvpo_mjx.agent.normalizer import normalize_obs
from qvpo_mjx.agent.state import Metrics, Params, Transition
from qvpo_mjx.algorithms import baseline
from qvpo_mjx.algorithms.baseline import BaselineState

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
TANH_GUARD = 1e-6  # inside log(1 - a^2 + 1e-6): keeps log pi finite at a = +-1


def squash(mean: jax.Array, std: jax.Array, xi: jax.Array) -> tuple[jax.Array, jax.Array]:
    """a = tanh(mean + std xi) and its log-density: (..., d) each -> ((..., d), (...,))."""
    u = mean + std * xi
    a = jnp.tanh(u)
    log_prob = jnp.sum(-0.5 * jnp.square(xi) - jnp.log(std) - LOG_SQRT_2PI
                       - jnp.log(1.0 - jnp.square(a) + TANH_GUARD), axis=-1)
    return a, log_prob


def sample(state: BaselineState, actor_params: Params, obs: jax.Array, key: jax.Array
           ) -> tuple[jax.Array, jax.Array]:
    """One reparameterised action per state and its log pi: obs (B, o) normalised ->
    ((B, d), (B,))."""
    mean, std = state.actor.apply(actor_params, obs)
    return squash(mean, std, jax.random.normal(key, mean.shape))


def soft_value(min_q: jax.Array, alpha: jax.Array, log_prob: jax.Array) -> jax.Array:
    """The soft state value the TD target bootstraps from: min(Q1', Q2') - alpha log pi."""
    return min_q - alpha * log_prob


def temperature_loss(log_alpha: jax.Array, log_prob: jax.Array,
                     target_entropy: jax.Array | float) -> jax.Array:
    """-exp(log alpha) mean(sg(log pi + target_entropy)); log_prob (B,)."""
    return -jnp.exp(log_alpha) * jnp.mean(jax.lax.stop_gradient(log_prob + target_entropy))


def target_entropy(state: BaselineState) -> float:
    return state.structure.sac_target_entropy * state.structure.action_size


def critic_step(state: BaselineState, batch: Transition, key: jax.Array,
                axis_name: str | None = None) -> tuple[BaselineState, Metrics]:
    """One soft TD step, then the critic target's Polyak step; counts one critic update."""
    def next_value(state, next_obs, key):
        action, log_prob = sample(state, state.actor_params, next_obs, key)
        q = jnp.min(baseline.both_q(state, state.critic_target_params, next_obs, action), axis=0)
        return soft_value(q, jnp.exp(state.log_alpha), log_prob)

    return baseline.critic_step(state, batch, key, next_value, axis_name)


def actor_step(state: BaselineState, batch: Transition, key: jax.Array,
               axis_name: str | None = None) -> tuple[BaselineState, Metrics]:
    """The policy step on the batch's raw states (B, o), then the temperature's; counts one
    actor update."""
    obs = normalize_obs(state, batch.obs)
    k_policy, k_alpha = jax.random.split(key)
    alpha = jnp.exp(state.log_alpha)

    def loss_fn(params):
        action, log_prob = sample(state, params, obs, k_policy)
        q = jnp.min(baseline.both_q(state, state.critic_params, obs, action), axis=0)
        return jnp.mean(alpha * log_prob - q), log_prob

    (loss, log_prob), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.actor_params)
    grads = parallel.pmean(grads, axis_name)
    params, opt_state = baseline.adam_step(state.actor_params, state.actor_opt_state, grads,
                                           state.hparams["actor_lr"])
    _, fresh = sample(state, params, obs, k_alpha)
    alpha_loss, alpha_grad = jax.value_and_grad(temperature_loss)(
        state.log_alpha, fresh, target_entropy(state))
    alpha_grad = parallel.pmean(alpha_grad, axis_name)
    log_alpha, alpha_opt_state = baseline.adam_step(
        state.log_alpha, state.alpha_opt_state, alpha_grad, state.structure.sac_alpha_lr)
    metrics = {"actor/loss": loss, "actor/grad_norm": optax.tree.norm(grads),
               "actor/alpha": alpha, "actor/alpha_loss": alpha_loss,
               "actor/entropy": -jnp.mean(log_prob)}
    return state.replace(actor_params=params, actor_opt_state=opt_state, log_alpha=log_alpha,
                         alpha_opt_state=alpha_opt_state,
                         actor_updates=state.actor_updates + 1), metrics


def act(state: BaselineState, obs: jax.Array, key: jax.Array, draws=None
        ) -> tuple[jax.Array, Metrics]:
    """A sample of the policy per state: raw obs (B, o) -> (B, d), and ``behavior/std`` (the
    pre-tanh std, averaged) and ``behavior/at_bounds``. ``draws`` is QVPO's and unused."""
    obs = normalize_obs(state, obs)
    mean, std = state.actor.apply(state.actor_params, obs)
    action, _ = squash(mean, std, jax.random.normal(key, mean.shape))
    return action, {"behavior/std": jnp.mean(std), "behavior/at_bounds": baseline.at_bounds(action)}


def eval_act(state: BaselineState, obs: jax.Array, key: jax.Array) -> jax.Array:
    """tanh(mean): raw obs (B, o) -> (B, d)."""
    mean, _ = state.actor.apply(state.actor_params, normalize_obs(state, obs))
    return jnp.tanh(mean)
