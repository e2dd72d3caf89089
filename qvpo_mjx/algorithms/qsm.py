"""QSM, Q-score matching (Psenka et al., "Learning a Diffusion Model Policy from Rewards via
Q-Score Matching", ICML 2024), on this project's critics, noise network and loop.

The diffusion policy's noise prediction is matched to the action-gradient of Q, so the chain's
score climbs Q; no sample of the policy is scored or weighted.

- The chain is QSM's "sampler S" (:func:`diffusion.sample_simple`, noise scale 1) over
  ``diffusion_steps`` of ``beta_schedule`` (5 of vp, its paper's, unless a flag sets them).
- Critic step: y = r + gamma^h (1 - terminated) min(Q1', Q2')(s', a'), a' = clip(chain(s') +
  N(0, ``qsm_action_noise``^2), +-1) from the current actor (QSM has no target actor); then
  the critic target's Polyak step.
- Actor step, on the critic batch it follows (s, a): t ~ U{0..T-1}, a_t = sqrt(abar_t) a +
  sqrt(1 - abar_t) eps, g = (grad_a Q1 + grad_a Q2)(s, a_t) / 2 under the critic just updated,
  held fixed; loss mean over batch and action dims of (eps_theta(a_t, t, s) + M_q g)^2,
  M_q = ``qsm_q_scale``. (Their code also decays the actor's learning rate to 0 over 2M steps
  by a cosine; here it is the config's constant ``actor_lr``, as for every algorithm.)
- Acting: clip(chain(s) + N(0, qsm_action_noise^2), +-1); evaluation: the chain alone (still
  random, as theirs).

Pure functions of a :class:`baseline.BaselineState`; shapes as in ``baseline``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from qvpo_mjx import diffusion, parallel
from qvpo_mjx.agent.normalizer import normalize_obs
from qvpo_mjx.agent.state import Metrics, Params, Transition
from qvpo_mjx.algorithms import baseline
from qvpo_mjx.algorithms.baseline import BaselineState


def chain(state: BaselineState, actor_params: Params, obs: jax.Array, key: jax.Array
          ) -> jax.Array:
    """One action per state from the reverse chain S: obs (B, o) normalised -> (B, d)."""
    return baseline.diffusion_chain(state, actor_params, obs, key, diffusion.sample_simple)


def noisy_action(state: BaselineState, obs: jax.Array, key: jax.Array) -> jax.Array:
    """clip(chain(s) + N(0, qsm_action_noise^2), +-1): obs (B, o) normalised -> (B, d)."""
    k_chain, k_noise = jax.random.split(key)
    a = chain(state, state.actor_params, obs, k_chain)
    return jnp.clip(a + state.structure.qsm_action_noise * jax.random.normal(k_noise, a.shape),
                    -1.0, 1.0)


def score_target(grad_q1: jax.Array, grad_q2: jax.Array, q_scale: jax.Array | float
                 ) -> jax.Array:
    """What eps_theta is matched to: -M_q (grad_a Q1 + grad_a Q2) / 2. (B, d) each -> (B, d)."""
    return -q_scale * 0.5 * (grad_q1 + grad_q2)


def score_matching_loss(eps_pred: jax.Array, target: jax.Array) -> jax.Array:
    """mean over batch and action dims of (eps_pred - target)^2."""
    return jnp.mean(jnp.square(eps_pred - target))


def critic_step(state: BaselineState, batch: Transition, key: jax.Array,
                axis_name: str | None = None) -> tuple[BaselineState, Metrics]:
    """One TD step towards the noisy current policy's min(Q1', Q2'), then the critic target's
    Polyak step; counts one critic update."""
    def next_value(state, next_obs, key):
        action = noisy_action(state, next_obs, key)
        return jnp.min(baseline.both_q(state, state.critic_target_params, next_obs, action),
                       axis=0)

    return baseline.critic_step(state, batch, key, next_value, axis_name)


def actor_step(state: BaselineState, batch: Transition, key: jax.Array,
               axis_name: str | None = None) -> tuple[BaselineState, Metrics]:
    """The score-matching step on the batch's (s, a); counts one actor update."""
    obs = normalize_obs(state, batch.obs)
    schedule, T = state.schedule, state.schedule.num_steps
    k_t, k_eps = jax.random.split(key)
    t = jax.random.randint(k_t, batch.reward.shape, 0, T)
    eps = jax.random.normal(k_eps, batch.action.shape)
    noisy = diffusion.q_sample(schedule, batch.action, t, eps)  # (B, d)
    # Q_j(s_b, a_b) depends on a_b alone, so d(sum_b Q_j) / da is grad_a Q_j per state: one
    # reverse pass per critic, (2, B, d).
    g1, g2 = jax.jacrev(lambda a: jnp.sum(baseline.both_q(state, state.critic_params, obs, a),
                                          axis=-1))(noisy)
    target = jax.lax.stop_gradient(score_target(g1, g2, state.structure.qsm_q_scale))

    def loss_fn(params):
        return score_matching_loss(state.actor.apply(params, noisy, t, obs), target)

    loss, grads = jax.value_and_grad(loss_fn)(state.actor_params)
    grads = parallel.pmean(grads, axis_name)
    params, opt_state = baseline.adam_step(state.actor_params, state.actor_opt_state, grads,
                                           state.hparams["actor_lr"])
    metrics = {"actor/loss": loss, "actor/grad_norm": optax.tree.norm(grads),
               "actor/q_grad_norm": jnp.mean(jnp.linalg.norm(0.5 * (g1 + g2), axis=-1))}
    return state.replace(actor_params=params, actor_opt_state=opt_state,
                         actor_updates=state.actor_updates + 1), metrics


def act(state: BaselineState, obs: jax.Array, key: jax.Array, draws=None
        ) -> tuple[jax.Array, Metrics]:
    """The noisy chain per state: raw obs (B, o) -> (B, d), and ``behavior/at_bounds``.
    ``draws`` is QVPO's and unused."""
    action = noisy_action(state, normalize_obs(state, obs), key)
    return action, {"behavior/at_bounds": baseline.at_bounds(action)}


def eval_act(state: BaselineState, obs: jax.Array, key: jax.Array) -> jax.Array:
    """The chain alone: raw obs (B, o) -> (B, d)."""
    return chain(state, state.actor_params, normalize_obs(state, obs), key)
