"""Sampling the diffusion actor and choosing among its samples by the critic.

One best-of-K selection (:func:`select_action`) serves the three places QVPO picks an action,
each with its own sample count and networks: the behaviour policy (:func:`act`,
``behavior_samples``, current networks), the TD target (``target_samples``, target networks;
see ``updates.py``) and evaluation (:func:`eval_act`, ``eval_samples``). Reads the state, never
changes it.

Shapes: ``B`` states, ``K`` candidates per state, ``T`` denoising steps, ``d`` action size,
``o`` observation size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from qvpo_mjx import diffusion
from qvpo_mjx.agent.normalizer import normalize_obs
from qvpo_mjx.agent.state import AgentState, Metrics, Params
from qvpo_mjx.agent.values import critic_q
from qvpo_mjx.networks import NoiseNet


def sample_candidates(state: AgentState, actor_params: Params, obs: jax.Array, key: jax.Array,
                      num_samples: int, noise_ratio: jax.Array | float) -> jax.Array:
    """K actions per state from the diffusion actor: obs (B, o) -> (B, K, d) in [-1, 1]."""
    B, T, d = obs.shape[0], state.structure.diffusion_steps, state.structure.action_size
    k_start, k_noise = jax.random.split(key)
    x_T = jax.random.normal(k_start, (B, num_samples, d))
    noise = jax.random.normal(k_noise, (T, B, num_samples, d))
    return denoise(state, actor_params, obs, x_T, noise, noise_ratio)


def denoise(state: AgentState, actor_params: Params, obs: jax.Array, x_T: jax.Array,
            noise: jax.Array, noise_ratio: jax.Array | float) -> jax.Array:
    """The reverse chain from given draws: obs (B, o), x_T (B, K, d), noise (T, B, K, d)
    (``noise[i]`` at step t = T-1-i) -> candidates (B, K, d) in [-1, 1].

    The first layer's state and time parts are computed once per state and once per step (see
    :class:`NoiseNet`), so each candidate-step pays only for its own action's share of it.
    """
    net, schedule = state.actor, state.schedule
    T = schedule.num_steps
    state_part = net.apply(actor_params, obs, method=NoiseNet.state_part)[:, None, :]  # (B, 1, H)
    time_part = net.apply(actor_params, jnp.arange(T), method=NoiseNet.time_part)  # (T, H)

    def eps_fn(x, t):
        return net.apply(actor_params, x, state_part + time_part[t], method=NoiseNet.trunk)

    return diffusion.sample(eps_fn, schedule, x_T, noise, noise_ratio)


def twin_q(state: AgentState, critic_params: Params, obs: jax.Array,
           actions: jax.Array) -> jax.Array:
    """Both critics' Q of K actions per state: obs (B, o), actions (B, K, d) -> (2, B, K)."""
    obs_k = jnp.broadcast_to(obs[:, None, :], (*actions.shape[:-1], obs.shape[-1]))
    return critic_q(state, critic_params, obs_k, actions)[0]


def min_q(state: AgentState, critic_params: Params, obs: jax.Array,
          actions: jax.Array) -> jax.Array:
    """min(Q1, Q2) of K actions per state: obs (B, o), actions (B, K, d) -> (B, K)."""
    return jnp.min(twin_q(state, critic_params, obs, actions), axis=0)


def best_candidate(candidates: jax.Array, scores: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The top-scoring candidate per state (the first on ties) and its score:
    candidates (B, K, d), scores (B, K) -> ((B, d), (B,))."""
    best = jnp.argmax(scores, axis=-1)
    action = jnp.take_along_axis(candidates, best[:, None, None], axis=1)[:, 0]
    return action, jnp.max(scores, axis=-1)


def select_action(state: AgentState, actor_params: Params, critic_params: Params,
                  obs: jax.Array, key: jax.Array, num_samples: int,
                  noise_ratio: jax.Array | float) -> tuple[jax.Array, jax.Array]:
    """Best of ``num_samples`` candidates under min(Q1, Q2), on observations as given (already
    normalised where that applies). obs (B, o) -> (actions (B, d), their scores (B,))."""
    candidates = sample_candidates(state, actor_params, obs, key, num_samples, noise_ratio)
    return best_candidate(candidates, min_q(state, critic_params, obs, candidates))


def behavior_scores(state: AgentState, obs: jax.Array, actions: jax.Array) -> jax.Array:
    """The behaviour policy's score of K actions per state under the current critic:
    min(Q1, Q2) + kappa |Q1 - Q2| / 2, kappa = ``behavior_optimism`` (0: min(Q1, Q2), the
    reference). obs (B, o) normalised, actions (B, K, d) -> (B, K)."""
    q = twin_q(state, state.critic_params, obs, actions)
    return jnp.min(q, axis=0) + state.hparams["behavior_optimism"] * 0.5 * jnp.abs(q[0] - q[1])


def candidate_spread(candidates: jax.Array) -> jax.Array:
    """How far apart a state's candidates are: the std over K, averaged over states and action
    dims. candidates (B, K, d) -> (). Near 0 means the policy has collapsed to one action."""
    return jnp.mean(jnp.std(candidates, axis=-2))


def act(state: AgentState, obs: jax.Array, key: jax.Array) -> jax.Array:
    """Behaviour policy: best of ``behavior_samples`` under the current networks (a plain
    sample with probability ``behavior_epsilon``). Raw obs (B, o) -> (B, d)."""
    return act_with_stats(state, obs, key)[0]


def act_with_stats(state: AgentState, obs: jax.Array, key: jax.Array,
                   draws: tuple[jax.Array, jax.Array] | None = None
                   ) -> tuple[jax.Array, Metrics]:
    """:func:`act`, and what tells a user how the behaviour policy explores: ``behavior/spread``
    (of its candidates) and ``behavior/at_bounds`` (the share of action components at +-1).
    ``draws``: the sampler's (x_T (B, K, d), z (T, B, K, d)) for correlated behaviour noise
    (qvpo_mjx/behavior_noise.py); None draws them afresh (white noise, the reference). The
    candidate is chosen by :func:`behavior_scores`."""
    obs = normalize_obs(state, obs)
    k_candidates, k_plain = jax.random.split(key)
    if draws is None:
        candidates = sample_candidates(state, state.actor_params, obs, k_candidates,
                                       state.structure.behavior_samples,
                                       state.hparams["noise_ratio"])
    else:
        candidates = denoise(state, state.actor_params, obs, *draws,
                             state.hparams["noise_ratio"])
    action, _ = best_candidate(candidates, behavior_scores(state, obs, candidates))
    # With probability behavior_epsilon a state acts with a plain sample: candidate 0 is one
    # independent draw of the policy, so nothing more is sampled.
    plain = jax.random.bernoulli(k_plain, state.hparams["behavior_epsilon"], action.shape[:1])
    action = jnp.where(plain[:, None], candidates[:, 0], action)
    return action, {"behavior/spread": candidate_spread(candidates),
                    "behavior/at_bounds": jnp.mean((jnp.abs(action) >= 1.0 - 1e-6)
                                                   .astype(jnp.float32))}


def eval_act(state: AgentState, obs: jax.Array, key: jax.Array) -> jax.Array:
    """Evaluation policy: best of ``eval_samples``; noise_ratio 0 if ``deterministic_eval``.
    Raw obs (B, o) -> (B, d)."""
    noise_ratio = 0.0 if state.structure.deterministic_eval else state.hparams["noise_ratio"]
    action, _ = select_action(state, state.actor_params, state.critic_params,
                              normalize_obs(state, obs), key, state.structure.eval_samples,
                              noise_ratio)
    return action
