"""DIPO, diffusion policy optimisation (Yang et al., "Policy Representation via Diffusion
Probability Model for Reinforcement Learning", 2023), on this project's critics, noise network
and loop.

The policy is never scored by Q directly: the actions stored in the replay buffer are improved
by gradient ascent on Q, and the diffusion policy is trained to reproduce them by plain
behaviour cloning. Improvement accumulates, since an improved action is written back and the
next visit to its row starts from it.

- The buffer keeps a column of improved actions (``replay.ReplayBuffer.improved``), each row
  starting at the action taken; the loop lends it to the state while updates run.
- The chain is the DDPM sampler P (:func:`diffusion.sample`) over ``diffusion_steps`` of
  ``beta_schedule`` (100 of cosine, its code's, unless a flag sets them). Acting: the chain
  with noise ratio 1; evaluation: noise ratio 0 (a random start, no step noise).
- Critic step: y = r + gamma^h (1 - terminated) min(Q1', Q2')(s', a'), a' the target actor's
  chain at s' (noise ratio 1); then the critic target's Polyak step (every critic update).
- Actor step, on a batch of rows of its own: A = the rows' improved actions; ``dipo_action_steps``
  = K Adam steps (a fresh Adam, lr ``dipo_action_lr`` = eta, epsilon 1e-5) on L = sum_b
  -min(Q1, Q2)(s_b, A_b) under the critic just updated, each step's gradient (the whole
  (B, d) tensor) clipped to ``dipo_action_clip`` d in global norm, A clamped to [-1, 1] after
  each; A written back to the rows; then the behaviour-cloning loss on (s, A): t ~ U{0..T-1},
  mean over batch and action dims of (eps_theta(a_t, t, s) - eps)^2; then the actor target's
  Polyak step.
- Both networks: Adam with epsilon 1e-5 and the gradient clipped to norm 2 (its code's).

On D devices each improves its own rows, so the clip applies to its B / D rows' gradient.

Pure functions of a :class:`baseline.BaselineState`; shapes as in ``baseline``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from qvpo_mjx import diffusion, parallel
from qvpo_mjx.agent.normalizer import normalize_obs
from qvpo_mjx.agent.state import Metrics, Params, Transition
from qvpo_mjx.agent.updates import polyak
from qvpo_mjx.algorithms import baseline
from qvpo_mjx.algorithms.baseline import ActorRows, BaselineState

ADAM_EPS = 1e-5  # its code's, for the networks and the action ascent
GRAD_CLIP = 2.0  # its code's global-norm clip of both networks' gradients


def chain(state: BaselineState, actor_params: Params, obs: jax.Array, key: jax.Array,
          noise_ratio: float = 1.0) -> jax.Array:
    """One action per state from the reverse chain P: obs (B, o) normalised -> (B, d)."""
    def sampler(eps_fn, schedule, x_T, noise):
        return diffusion.sample(eps_fn, schedule, x_T, noise, noise_ratio)

    return baseline.diffusion_chain(state, actor_params, obs, key, sampler)


def improve_actions(state: BaselineState, obs: jax.Array, actions: jax.Array) -> jax.Array:
    """K Adam steps of gradient ascent on min(Q1, Q2) in the actions: obs (B, o) normalised,
    actions (B, d) -> (B, d) in [-1, 1]."""
    structure = state.structure
    opt = baseline.adam(structure.dipo_action_lr, ADAM_EPS)
    clip = optax.clip_by_global_norm(structure.dipo_action_clip * structure.action_size)

    def loss(a):
        return -jnp.sum(jnp.min(baseline.both_q(state, state.critic_params, obs, a), axis=0))

    def step(carry, _):
        a, opt_state = carry
        grad, _ = clip.update(jax.grad(loss)(a), optax.EmptyState())
        updates, opt_state = opt.update(grad, opt_state, a)
        return (jnp.clip(a + updates, -1.0, 1.0), opt_state), None

    (actions, _), _ = jax.lax.scan(step, (actions, opt.init(actions)), None,
                                   length=structure.dipo_action_steps)
    return actions


def critic_step(state: BaselineState, batch: Transition, key: jax.Array,
                axis_name: str | None = None) -> tuple[BaselineState, Metrics]:
    """One TD step towards min(Q1', Q2') of the target actor's chain, then the critic target's
    Polyak step; counts one critic update."""
    def next_value(state, next_obs, key):
        action = chain(state, state.actor_target_params, next_obs, key)
        return jnp.min(baseline.both_q(state, state.critic_target_params, next_obs, action),
                       axis=0)

    return baseline.critic_step(state, batch, key, next_value, axis_name, eps=ADAM_EPS,
                                clip=GRAD_CLIP)


def actor_step(state: BaselineState, data: ActorRows, key: jax.Array,
               axis_name: str | None = None) -> tuple[BaselineState, Metrics]:
    """Improve the rows' stored actions, write them back, clone them; then the actor target's
    Polyak step; counts one actor update."""
    obs = normalize_obs(state, data.obs)
    start = state.improved[data.rows]
    actions = improve_actions(state, obs, start)
    improved = state.improved.at[data.rows].set(actions)
    T = state.schedule.num_steps
    k_t, k_eps = jax.random.split(key)
    t = jax.random.randint(k_t, (obs.shape[0],), 0, T)
    eps = jax.random.normal(k_eps, actions.shape)
    noisy = diffusion.q_sample(state.schedule, actions, t, eps)

    def loss_fn(params):
        return jnp.mean(jnp.square(state.actor.apply(params, noisy, t, obs) - eps))

    loss, grads = jax.value_and_grad(loss_fn)(state.actor_params)
    grads = parallel.pmean(grads, axis_name)
    params, opt_state = baseline.adam_step(state.actor_params, state.actor_opt_state, grads,
                                           state.hparams["actor_lr"], ADAM_EPS, GRAD_CLIP)
    metrics = {"actor/loss": loss, "actor/grad_norm": optax.tree.norm(grads),
               "actor/action_shift": jnp.mean(jnp.linalg.norm(actions - start, axis=-1))}
    return state.replace(
        actor_params=params, actor_opt_state=opt_state, improved=improved,
        actor_target_params=polyak(state.actor_target_params, params, state.hparams["tau"]),
        actor_updates=state.actor_updates + 1), metrics


def act(state: BaselineState, obs: jax.Array, key: jax.Array, draws=None
        ) -> tuple[jax.Array, Metrics]:
    """The chain per state (noise ratio 1): raw obs (B, o) -> (B, d), and
    ``behavior/at_bounds``. ``draws`` is QVPO's and unused."""
    action = chain(state, state.actor_params, normalize_obs(state, obs), key)
    return action, {"behavior/at_bounds": baseline.at_bounds(action)}


def eval_act(state: BaselineState, obs: jax.Array, key: jax.Array) -> jax.Array:
    """The chain with noise ratio 0 (a random start, no step noise): raw obs (B, o) -> (B, d)."""
    return chain(state, state.actor_params, normalize_obs(state, obs), key, noise_ratio=0.0)
