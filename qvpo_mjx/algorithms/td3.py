"""TD3 (Fujimoto et al. 2018, "Addressing Function Approximation Error in Actor-Critic
Methods") on this project's critics and loop.

- Critic step: y = r + gamma^h (1 - terminated) min(Q1', Q2')(s', a~'), a~' = clip(mu'(s') +
  clip(eps, +-c), +-1), eps ~ N(0, ``td3_target_noise``^2), c = ``td3_target_noise_clip``
  (target policy smoothing). No target moves here.
- Actor step (the policy delay is ``critic_updates_per_actor``, 2 for TD3: presets set it), on
  the critic batch's states: -mean Q1(s, mu(s)) under the critic just updated; then the Polyak
  steps of both critic targets and the actor target, only on these steps.
- Acting: clip(mu(s) + N(0, ``td3_action_noise``^2), +-1); evaluation: mu(s).

Pure functions of a :class:`baseline.BaselineState`; shapes as in ``baseline``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from qvpo_mjx import parallel
from qvpo_mjx.agent.normalizer import normalize_obs
from qvpo_mjx.agent.state import Metrics, Transition
from qvpo_mjx.agent.updates import polyak
from qvpo_mjx.algorithms import baseline
from qvpo_mjx.algorithms.baseline import BaselineState


def smoothed_action(mu: jax.Array, noise: jax.Array, noise_clip: jax.Array | float) -> jax.Array:
    """clip(mu + clip(noise, +-noise_clip), +-1); noise already scaled by its std. (B, d)."""
    return jnp.clip(mu + jnp.clip(noise, -noise_clip, noise_clip), -1.0, 1.0)


def critic_step(state: BaselineState, batch: Transition, key: jax.Array,
                axis_name: str | None = None) -> tuple[BaselineState, Metrics]:
    """One TD step towards the smoothed target; counts one critic update."""
    structure = state.structure

    def next_value(state, next_obs, key):
        mu = state.actor.apply(state.actor_target_params, next_obs)
        noise = structure.td3_target_noise * jax.random.normal(key, mu.shape)
        action = smoothed_action(mu, noise, structure.td3_target_noise_clip)
        return jnp.min(baseline.both_q(state, state.critic_target_params, next_obs, action),
                       axis=0)

    return baseline.critic_step(state, batch, key, next_value, axis_name, move_target=False)


def actor_step(state: BaselineState, batch: Transition, key: jax.Array,
               axis_name: str | None = None) -> tuple[BaselineState, Metrics]:
    """The deterministic policy gradient step on the batch's raw states (B, o), then every
    target's Polyak step; counts one actor update. ``key`` is unused (the step is
    deterministic)."""
    obs = normalize_obs(state, batch.obs)

    def loss_fn(params):
        q = baseline.both_q(state, state.critic_params, obs, state.actor.apply(params, obs))
        return -jnp.mean(q[0])

    loss, grads = jax.value_and_grad(loss_fn)(state.actor_params)
    grads = parallel.pmean(grads, axis_name)
    params, opt_state = baseline.adam_step(state.actor_params, state.actor_opt_state, grads,
                                           state.hparams["actor_lr"])
    tau = state.hparams["tau"]
    metrics = {"actor/loss": loss, "actor/grad_norm": optax.tree.norm(grads)}
    return state.replace(
        actor_params=params, actor_opt_state=opt_state,
        actor_target_params=polyak(state.actor_target_params, params, tau),
        critic_target_params=polyak(state.critic_target_params, state.critic_params, tau),
        actor_updates=state.actor_updates + 1), metrics


def act(state: BaselineState, obs: jax.Array, key: jax.Array, draws=None
        ) -> tuple[jax.Array, Metrics]:
    """clip(mu(s) + N(0, td3_action_noise^2), +-1): raw obs (B, o) -> (B, d), and
    ``behavior/at_bounds``. ``draws`` is QVPO's and unused."""
    mu = state.actor.apply(state.actor_params, normalize_obs(state, obs))
    noise = state.structure.td3_action_noise * jax.random.normal(key, mu.shape)
    action = jnp.clip(mu + noise, -1.0, 1.0)
    return action, {"behavior/at_bounds": baseline.at_bounds(action)}


def eval_act(state: BaselineState, obs: jax.Array, key: jax.Array) -> jax.Array:
    """mu(s): raw obs (B, o) -> (B, d)."""
    return state.actor.apply(state.actor_params, normalize_obs(state, obs))
