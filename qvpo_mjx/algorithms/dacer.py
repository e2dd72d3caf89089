"""DACER, diffusion actor-critic with entropy regulator (Wang et al., "Diffusion Actor-Critic
with Entropy Regulator", NeurIPS 2024), on this project's critics, noise network and loop.

The reverse chain is the policy, trained end to end: its action's Q is maximised by
backpropagating through every denoising step. Exploration is Gaussian noise added to the chain's
action, scaled by alpha, and alpha is tuned so that an estimate of the policy's entropy (a
Gaussian mixture fitted to samples of it) holds a target.

- The chain is the DDPM sampler P (:func:`diffusion.sample`, noise ratio 1) over
  ``diffusion_steps`` of ``beta_schedule`` (20 of vp, its code's, unless a flag sets them);
  every draw is made up front, so the chain is a differentiable function of the actor's
  parameters. The behaviour action is clip(chain(s) + alpha ``dacer_noise_scale`` xi, +-1),
  xi ~ N(0, I).
- Critic step: y = ``reward_scale`` r + gamma^h (1 - terminated) min(Q1', Q2')(s', a'),
  a' the behaviour action of the current actor at s' (DACER has no target actor). Its code's
  critic is distributional (DSAC-T: a mean and a std per critic, a variance-scaled loss); this
  runs the plain double-Q critic every baseline here shares (BASELINES.md names it as the
  simplification), so the comparison differs in the actor alone. No target moves here.
- Actor step (every 2nd critic update: presets floor ``critic_updates_per_actor`` at 2), on the
  critic batch's states: loss -mean min(Q1, Q2)(s, a_theta), a_theta the behaviour action under
  the critic just updated (its code scores with the critics of before that update); no entropy
  term. Then the critic target's Polyak step (its code moves the targets with the actor). Every
  ``dacer_alpha_every``-th actor update (the first included), with the alpha and the policy of
  before the update: the
  entropy estimate H (:func:`mixture_entropy` of ``dacer_entropy_samples`` behaviour actions
  per batch state, averaged over the states) and one Adam step of log alpha on
  log alpha (H - H_target), H_target = ``dacer_target_entropy`` d, at ``dacer_alpha_lr``.
- Evaluation: the chain alone (still random, as its code's), no added noise.

The mixture is fitted by k-means and then EM in JAX (its code calls scikit-learn's
``GaussianMixture`` through a host callback, which a compiled loop cannot): 3 full-covariance
components, 1e-6 added to each covariance's diagonal (scikit-learn's ``reg_covar``), a fixed
number of iterations instead of a tolerance.

Pure functions of a :class:`baseline.BaselineState`; shapes as in ``baseline``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from qvpo_mjx import diffusion, parallel
from qvpo_mjx.agent.normalizer import normalize_obs
from qvpo_mjx.agent.state import Metrics, Params, Transition
from qvpo_mjx.agent.updates import polyak
from qvpo_mjx.algorithms import baseline
from qvpo_mjx.algorithms.baseline import BaselineState
from qvpo_mjx.config import DACER_COMPONENTS

KMEANS_ITERS = 10  # Lloyd steps that place the mixture's first means
EM_ITERS = 50  # EM steps after them (scikit-learn: up to 100, stopping at tolerance 1e-3)
REG_COVAR = 1e-6  # added to each covariance's diagonal (scikit-learn's default)


def behavior_action(state: BaselineState, actor_params: Params, obs: jax.Array, key: jax.Array
                    ) -> jax.Array:
    """clip(chain(s) + alpha dacer_noise_scale xi, +-1): obs (B, o) normalised -> (B, d),
    differentiable in ``actor_params`` (alpha is held fixed)."""
    k_chain, k_noise = jax.random.split(key)
    a = baseline.diffusion_chain(state, actor_params, obs, k_chain, diffusion.sample)
    scale = jax.lax.stop_gradient(jnp.exp(state.log_alpha)) * state.structure.dacer_noise_scale
    return jnp.clip(a + scale * jax.random.normal(k_noise, a.shape), -1.0, 1.0)


# --- the entropy estimate ------------------------------------------------------------------
def mixture_entropy(weights: jax.Array, covariances: jax.Array) -> jax.Array:
    """DACER's entropy of a Gaussian mixture: sum_c w_c [d/2 (1 + ln 2 pi) + 1/2 ln det S_c]
    - sum_c w_c ln w_c (each component's entropy, plus the entropy of picking one; an upper
    bound of the mixture's own). weights (K,), covariances (K, d, d) -> ()."""
    d = covariances.shape[-1]
    _, logdet = jnp.linalg.slogdet(covariances)
    component = 0.5 * d * (1.0 + jnp.log(2.0 * jnp.pi)) + 0.5 * logdet
    return jnp.sum(weights * component) - jnp.sum(weights * jnp.log(weights))


def _m_step(x: jax.Array, resp: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Weights (K,), means (K, d) and covariances (K, d, d) from responsibilities (n, K)."""
    n, d = x.shape
    nk = jnp.sum(resp, axis=0) + 10 * jnp.finfo(x.dtype).eps  # an empty component stays finite
    means = resp.T @ x / nk[:, None]
    diff = x[None] - means[:, None]  # (K, n, d)
    cov = jnp.einsum("nk,kni,knj->kij", resp, diff, diff) / nk[:, None, None]
    return nk / n, means, cov + REG_COVAR * jnp.eye(d)


def _log_resp(x: jax.Array, weights: jax.Array, means: jax.Array, cov: jax.Array) -> jax.Array:
    """log responsibilities (n, K) of each component for each sample."""
    d = x.shape[-1]
    chol = jnp.linalg.cholesky(cov)  # (K, d, d)
    diff = x[None] - means[:, None]  # (K, n, d)
    sol = jax.vmap(lambda L, r: jax.scipy.linalg.solve_triangular(L, r.T, lower=True))(chol, diff)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)  # (K,)
    log_p = (-0.5 * jnp.sum(jnp.square(sol), axis=1) - 0.5 * logdet[:, None]
             - 0.5 * d * jnp.log(2.0 * jnp.pi) + jnp.log(weights)[:, None])  # (K, n)
    return (log_p - jax.scipy.special.logsumexp(log_p, axis=0, keepdims=True)).T


def fit_mixture(x: jax.Array, components: int = DACER_COMPONENTS
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A full-covariance Gaussian mixture fitted to samples x (n, d): k-means from ``components``
    samples spread over x (x's order is random), then EM. Returns weights (K,), means (K, d),
    covariances (K, d, d)."""
    n = x.shape[0]
    means = x[jnp.arange(components) * (n // components)]

    def lloyd(means, _):
        dist = jnp.sum(jnp.square(x[:, None] - means[None]), axis=-1)  # (n, K)
        resp = jax.nn.one_hot(jnp.argmin(dist, axis=-1), components)
        count = jnp.sum(resp, axis=0)
        new = resp.T @ x / jnp.maximum(count, 1.0)[:, None]
        return jnp.where(count[:, None] > 0, new, means), None

    means, _ = jax.lax.scan(lloyd, means, None, length=KMEANS_ITERS)
    dist = jnp.sum(jnp.square(x[:, None] - means[None]), axis=-1)
    params = _m_step(x, jax.nn.one_hot(jnp.argmin(dist, axis=-1), components))

    def em(params, _):
        return _m_step(x, jnp.exp(_log_resp(x, *params))), None

    params, _ = jax.lax.scan(em, params, None, length=EM_ITERS)
    return params


def entropy_estimate(state: BaselineState, obs: jax.Array, key: jax.Array) -> jax.Array:
    """The mean over states of :func:`mixture_entropy` of a mixture fitted to
    ``dacer_entropy_samples`` behaviour actions per state: obs (B, o) normalised -> ()."""
    M = state.structure.dacer_entropy_samples
    keys = jax.random.split(key, M)
    actions = jax.vmap(lambda k: behavior_action(state, state.actor_params, obs, k))(keys)

    def one_state(samples):  # (M, d) -> ()
        weights, _, covariances = fit_mixture(samples)
        return mixture_entropy(weights, covariances)

    return jnp.mean(jax.vmap(one_state)(jnp.swapaxes(actions, 0, 1)))  # over (B, M, d)


def alpha_loss(log_alpha: jax.Array, entropy: jax.Array, target: jax.Array | float
               ) -> jax.Array:
    """log alpha (H - H_target): its gradient lowers alpha while H is above the target."""
    return log_alpha * (jax.lax.stop_gradient(entropy) - target)


# --- the steps ----------------------------------------------------------------------------
def critic_step(state: BaselineState, batch: Transition, key: jax.Array,
                axis_name: str | None = None) -> tuple[BaselineState, Metrics]:
    """One TD step (rewards scaled by ``reward_scale``, 0.2 under the presets: its code's)
    towards min(Q1', Q2') of the current noisy policy;
    counts one critic update. No target moves here."""
    def next_value(state, next_obs, key):
        action = behavior_action(state, state.actor_params, next_obs, key)
        return jnp.min(baseline.both_q(state, state.critic_target_params, next_obs, action),
                       axis=0)

    return baseline.critic_step(state, batch, key, next_value, axis_name, move_target=False)


def actor_step(state: BaselineState, batch: Transition, key: jax.Array,
               axis_name: str | None = None,
               shared: Callable[[jax.Array], jax.Array] = lambda x: x
               ) -> tuple[BaselineState, Metrics]:
    """The policy step through the chain, every ``dacer_alpha_every``-th actor update the
    entropy estimate and alpha's step, and the critic target's Polyak step; counts one actor
    update. ``shared``: makes the actor's count one unbatched value under a seed ``vmap``, so
    the estimate (hundreds of chains per state) stays a branch taken only on its turn."""
    structure = state.structure
    obs = normalize_obs(state, batch.obs)
    k_actor, k_entropy = jax.random.split(key)
    target = structure.dacer_target_entropy * structure.action_size

    def alpha_update(state):
        entropy = parallel.pmean(entropy_estimate(state, obs, k_entropy), axis_name)
        grad = jax.grad(alpha_loss)(state.log_alpha, entropy, target)
        log_alpha, opt_state = baseline.adam_step(state.log_alpha, state.alpha_opt_state, grad,
                                                  structure.dacer_alpha_lr)
        return state.replace(log_alpha=log_alpha, alpha_opt_state=opt_state)

    def loss_fn(params):
        action = behavior_action(state, params, obs, k_actor)
        return -jnp.mean(jnp.min(baseline.both_q(state, state.critic_params, obs, action),
                                 axis=0))

    loss, grads = jax.value_and_grad(loss_fn)(state.actor_params)
    grads = parallel.pmean(grads, axis_name)
    metrics = {"actor/loss": loss, "actor/grad_norm": optax.tree.norm(grads),
               "actor/alpha": jnp.exp(state.log_alpha)}
    # alpha's step after the policy's gradient, as its code orders them: that gradient and
    # the entropy estimate both see the alpha and the policy of before this update.
    turn = shared(state.actor_updates) % structure.dacer_alpha_every == 0
    state = jax.lax.cond(turn, alpha_update, lambda s: s, state)
    params, opt_state = baseline.adam_step(state.actor_params, state.actor_opt_state, grads,
                                           state.hparams["actor_lr"])
    return state.replace(
        actor_params=params, actor_opt_state=opt_state,
        critic_target_params=polyak(state.critic_target_params, state.critic_params,
                                    state.hparams["tau"]),
        actor_updates=state.actor_updates + 1), metrics


def act(state: BaselineState, obs: jax.Array, key: jax.Array, draws=None
        ) -> tuple[jax.Array, Metrics]:
    """The noisy chain per state: raw obs (B, o) -> (B, d), and ``behavior/at_bounds``.
    ``draws`` is QVPO's and unused."""
    action = behavior_action(state, state.actor_params, normalize_obs(state, obs), key)
    return action, {"behavior/at_bounds": baseline.at_bounds(action)}


def eval_act(state: BaselineState, obs: jax.Array, key: jax.Array) -> jax.Array:
    """The chain alone: raw obs (B, o) -> (B, d)."""
    return baseline.diffusion_chain(state, state.actor_params, normalize_obs(state, obs), key,
                                    diffusion.sample)
