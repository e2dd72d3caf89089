"""QVPO: the agent state and its pure ``init`` / ``act`` / ``update`` functions.

Shapes: ``B`` batch states, ``K`` candidates per state, ``c`` = ``chosen``, ``E`` =
``entropy_samples``, ``d`` action size, ``o`` observation size, ``H`` hidden size.

The static part of the config (sizes, sample counts, transform name) rides in the state's treedef,
so ``update(state, batch, key)`` needs nothing else and compiles once per structure; every float
hyper-parameter rides in ``state.hparams`` as a traced float32 array, so changing one never
recompiles and a sweep can vmap over it.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from qvpo_mjx import diffusion
from qvpo_mjx.config import QVPOConfig
from qvpo_mjx.networks import NoiseNet, TwinCritic

Params = dict
Metrics = dict[str, jax.Array]


@struct.dataclass
class Transition:
    """A batch of transitions; every field has leading shape (B,).

    ``terminated`` is 1.0 only for a true terminal state: time-limit truncation is not terminal,
    so the TD target bootstraps through it.
    """

    obs: jax.Array  # (B, o)
    action: jax.Array  # (B, d) in [-1, 1]
    reward: jax.Array  # (B,)
    next_obs: jax.Array  # (B, o)
    terminated: jax.Array  # (B,) float32 in {0, 1}
    # (B,) steps between obs and next_obs (n-step returns: reward is their discounted sum);
    # None means 1 everywhere, as stored.
    horizon: jax.Array | None = None


# A count of samples kept exactly as two int32 words, high * COUNT_BASE + low: float32 stops
# counting at 2^24 (a GPU run passes that in minutes) and int32 at 2^31.
COUNT_BASE = 2 ** 30


@struct.dataclass
class ObsStats:
    """Running mean and variance of the observations (``obs_normalization``)."""

    mean: jax.Array  # (o,)
    var: jax.Array  # (o,) population variance of everything seen (1 before any)
    seen: jax.Array  # (2,) int32: observations seen, exactly, as [high, low] (COUNT_BASE)

    @classmethod
    def init(cls, obs_size: int) -> "ObsStats":
        return cls(mean=jnp.zeros((obs_size,), jnp.float32),
                   var=jnp.ones((obs_size,), jnp.float32), seen=jnp.zeros((2,), jnp.int32))

    @property
    def count(self) -> jax.Array:
        """() float32 observations seen (rounded to float32; exact in ``seen``)."""
        return (self.seen[0].astype(jnp.float32) * COUNT_BASE
                + self.seen[1].astype(jnp.float32))


@struct.dataclass
class AgentState:
    actor_params: Params
    critic_params: Params
    actor_target_params: Params
    critic_target_params: Params
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    hparams: dict[str, jax.Array]  # the config's traced fields, float32 scalars
    q_mean: jax.Array  # () running mean of the train-candidate scores (qexpn)
    q_std: jax.Array  # () running std of the train-candidate scores (qexpn)
    log_entropy_weight: jax.Array  # () the adaptive entropy weight's log (entropy_target_spread)
    obs_stats: ObsStats  # running observation statistics (used with obs_normalization)
    step: jax.Array  # () int32, updates done
    env_steps: jax.Array  # () int32, environment transitions seen (entropy-weight schedule)
    config: QVPOConfig = struct.field(pytree_node=False)  # config.structure(): static fields only
    obs_size: int = struct.field(pytree_node=False)
    action_size: int = struct.field(pytree_node=False)

    @property
    def actor(self) -> NoiseNet:
        return NoiseNet(action_size=self.action_size, obs_size=self.obs_size,
                        hidden_size=self.config.hidden_size,
                        time_embed_size=self.config.time_embed_size)

    @property
    def critic(self) -> TwinCritic:
        return TwinCritic(hidden_size=self.config.critic_hidden_size or self.config.hidden_size,
                          layer_norm=self.config.critic_layer_norm)

    @property
    def schedule(self) -> diffusion.Schedule:
        return diffusion.make_schedule(self.config.beta_schedule, self.config.diffusion_steps)


def _optimizer(lr: jax.Array, eps: jax.Array, clip: jax.Array) -> optax.GradientTransformation:
    """Adam with global-norm clipping, built from (possibly traced) hyper-parameters.

    Its state's structure does not depend on the values, so the same state serves any of them.
    """
    return optax.chain(optax.clip_by_global_norm(clip), optax.scale_by_adam(eps=eps),
                       optax.scale(-lr))


def init(key: jax.Array, obs_size: int, action_size: int, config: QVPOConfig) -> AgentState:
    """Fresh agent: networks initialised from ``key``, targets equal to them, Adam states at 0."""
    hparams = {k: jnp.asarray(v, jnp.float32) for k, v in config.hyperparams().items()}
    shell = AgentState(
        actor_params=None, critic_params=None, actor_target_params=None,
        critic_target_params=None, actor_opt_state=None, critic_opt_state=None,
        hparams=hparams, q_mean=jnp.zeros((), jnp.float32), q_std=jnp.ones((), jnp.float32),
        log_entropy_weight=jnp.log(jnp.maximum(hparams["entropy_weight"], 1e-8)),
        obs_stats=ObsStats.init(obs_size),
        step=jnp.zeros((), jnp.int32), env_steps=jnp.zeros((), jnp.int32),
        config=config.structure(), obs_size=int(obs_size), action_size=int(action_size))
    k_actor, k_critic = jax.random.split(key)
    actor_params = shell.actor.init(k_actor, jnp.zeros((action_size,)), jnp.zeros(()),
                                    jnp.zeros((obs_size,)))
    critic_params = shell.critic.init(k_critic, jnp.zeros((obs_size,)), jnp.zeros((action_size,)))
    actor_tx = _optimizer(hparams["actor_lr"], hparams["adam_eps"], hparams["grad_clip"])
    critic_tx = _optimizer(hparams["critic_lr"], hparams["adam_eps"], hparams["grad_clip"])
    return shell.replace(
        actor_params=actor_params, critic_params=critic_params,
        # Targets are copies, not aliases: a donated state must not hold one buffer twice.
        actor_target_params=jax.tree.map(jnp.copy, actor_params),
        critic_target_params=jax.tree.map(jnp.copy, critic_params),
        actor_opt_state=actor_tx.init(actor_params), critic_opt_state=critic_tx.init(critic_params))


# --------------------------------------------------------------------------------------------
# Observation normalisation (an option)

OBS_CLIP = 10.0  # normalised observations beyond 10 standard deviations are clipped


def normalize_obs(state: AgentState, obs: jax.Array) -> jax.Array:
    """(obs - mean) / std, clipped to +-10, with ``obs_normalization``; obs itself without.
    Every entry point that reads observations (act, eval_act, the critic and actor updates)
    applies it, so stored raw observations are always read with the current statistics."""
    if not state.config.obs_normalization:
        return obs
    stats = state.obs_stats
    return jnp.clip((obs - stats.mean) / jnp.sqrt(stats.var + 1e-8), -OBS_CLIP, OBS_CLIP)


def update_obs_stats(state: AgentState, obs: jax.Array,
                     axis_name: str | None = None) -> AgentState:
    """Merge a batch of observations (n, o) into the running statistics (the exact pooled mean
    and variance of everything seen; with ``axis_name``, of every device's batch). A no-op
    without ``obs_normalization``.

    The batch's variance is taken about its own mean (E[x^2] - E[x]^2 loses every digit in
    float32 once |mean| / std is large), and the merge (Chan et al.) is written in the
    weights n / total and old / total, so nothing grows with the count."""
    if not state.config.obs_normalization:
        return state
    n = obs.shape[0]
    mean = _pmean(jnp.mean(obs, axis=0), axis_name)  # equal shares: the pooled mean
    var = _pmean(jnp.mean(jnp.square(obs - mean), axis=0), axis_name)
    if axis_name is not None:
        n = n * jax.lax.psum(1, axis_name)
    old = state.obs_stats
    low = old.seen[1] + n
    seen = jnp.stack([old.seen[0] + low // COUNT_BASE, low % COUNT_BASE]).astype(jnp.int32)
    w_new = jnp.float32(n) / ObsStats(old.mean, old.var, seen).count
    w_old = 1.0 - w_new  # 0 at the first batch: the prior var 1 drops out
    delta = mean - old.mean
    return state.replace(obs_stats=ObsStats(
        mean=old.mean + w_new * delta,
        var=w_old * old.var + w_new * var + w_old * w_new * jnp.square(delta), seen=seen))


# --------------------------------------------------------------------------------------------
# Sampling and action selection


def sample_candidates(state: AgentState, actor_params: Params, obs: jax.Array, key: jax.Array,
                      num_samples: int, noise_ratio: jax.Array | float) -> jax.Array:
    """K actions per state from the diffusion actor: obs (B, o) -> (B, K, d) in [-1, 1]."""
    B, T, d = obs.shape[0], state.schedule.num_steps, state.action_size
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


def min_q(state: AgentState, critic_params: Params, obs: jax.Array,
          actions: jax.Array) -> jax.Array:
    """min(Q1, Q2) of K actions per state: obs (B, o), actions (B, K, d) -> (B, K)."""
    obs_k = jnp.broadcast_to(obs[:, None, :], (*actions.shape[:-1], obs.shape[-1]))
    return jnp.min(state.critic.apply(critic_params, obs_k, actions), axis=0)


def select_action(state: AgentState, actor_params: Params, critic_params: Params,
                  obs: jax.Array, key: jax.Array, num_samples: int,
                  noise_ratio: jax.Array | float) -> tuple[jax.Array, jax.Array]:
    """Best of ``num_samples`` candidates under min(Q1, Q2).

    One function for the behaviour policy, the TD target and evaluation, each with its own K and
    networks. obs (B, o) -> (actions (B, d), their scores (B,)).
    """
    candidates = sample_candidates(state, actor_params, obs, key, num_samples, noise_ratio)
    return _best(candidates, min_q(state, critic_params, obs, candidates))


def _best(candidates: jax.Array, scores: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The top-scoring candidate per state (the first on ties) and its score:
    candidates (B, K, d), scores (B, K) -> ((B, d), (B,))."""
    best = jnp.argmax(scores, axis=-1)
    action = jnp.take_along_axis(candidates, best[:, None, None], axis=1)[:, 0]
    return action, jnp.max(scores, axis=-1)


def act(state: AgentState, obs: jax.Array, key: jax.Array) -> jax.Array:
    """Behaviour policy: best of ``behavior_samples`` under the current networks. (B, o) -> (B, d)."""
    return act_with_stats(state, obs, key)[0]


def candidate_spread(candidates: jax.Array) -> jax.Array:
    """How far apart a state's candidates are: the std over K, averaged over states and action
    dims. candidates (B, K, d) -> (). Near 0 means the policy has collapsed to one action."""
    return jnp.mean(jnp.std(candidates, axis=-2))


def act_with_stats(state: AgentState, obs: jax.Array, key: jax.Array
                   ) -> tuple[jax.Array, Metrics]:
    """:func:`act`, and what tells a user how the behaviour policy explores: the spread of its
    ``behavior_samples`` candidates and the fraction of action components at the bounds."""
    obs = normalize_obs(state, obs)
    k_candidates, k_plain = jax.random.split(key)
    candidates = sample_candidates(state, state.actor_params, obs, k_candidates,
                                   state.config.behavior_samples, state.hparams["noise_ratio"])
    action, _ = _best(candidates, min_q(state, state.critic_params, obs, candidates))
    # With probability behavior_epsilon a state acts with a plain sample: candidate 0 is one
    # independent draw of the policy, so nothing more is sampled.
    plain = jax.random.bernoulli(k_plain, state.hparams["behavior_epsilon"], action.shape[:1])
    action = jnp.where(plain[:, None], candidates[:, 0], action)
    return action, {"explore/behavior_spread": candidate_spread(candidates),
                    "explore/at_bounds": jnp.mean((jnp.abs(action) >= 1.0 - 1e-6)
                                                  .astype(jnp.float32))}


def eval_act(state: AgentState, obs: jax.Array, key: jax.Array) -> jax.Array:
    """Evaluation policy: best of ``eval_samples``; noise_ratio 0 if ``deterministic_eval``."""
    noise_ratio = 0.0 if state.config.deterministic_eval else state.hparams["noise_ratio"]
    action, _ = select_action(state, state.actor_params, state.critic_params,
                              normalize_obs(state, obs), key, state.config.eval_samples,
                              noise_ratio)
    return action


# --------------------------------------------------------------------------------------------
# Q-weight transforms: (q (B, c) chosen scores, v (B, 1) mean score, running mean, running std,
# hparams) -> non-negative weights (B, c)

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


def entropy_weight(hparams: dict[str, jax.Array], env_steps: jax.Array) -> jax.Array:
    """min(w0, max(w_final, w0 (1 - env_steps / horizon))), from traced values; the horizon is
    ``entropy_decay_steps``, or ``total_steps`` where that is 0 (the reference)."""
    w0 = hparams["entropy_weight"]
    horizon = jnp.where(hparams["entropy_decay_steps"] > 0, hparams["entropy_decay_steps"],
                        hparams["total_steps"])
    decayed = w0 * (1.0 - env_steps.astype(jnp.float32) / horizon)
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


# --------------------------------------------------------------------------------------------
# Losses


def td_target(state: AgentState, batch: Transition, next_q: jax.Array) -> jax.Array:
    """y = r + gamma^h (1 - terminated) next_q, all (B,), h = ``batch.horizon`` (1 unless
    n-step); no gradient flows through it."""
    gamma = state.hparams["gamma"]
    discount = gamma if batch.horizon is None else gamma ** batch.horizon
    return jax.lax.stop_gradient(batch.reward + discount * (1.0 - batch.terminated) * next_q)


def critic_loss(state: AgentState, critic_params: Params, batch: Transition,
                target: jax.Array) -> tuple[jax.Array, jax.Array]:
    """MSE(Q1, y) + MSE(Q2, y). target y: (B,). Returns (loss, q (2, B))."""
    q = state.critic.apply(critic_params, batch.obs, batch.action)
    return jnp.sum(jnp.mean(jnp.square(q - target), axis=-1)), q


def loss_samples(key: jax.Array, actions: jax.Array, weights: jax.Array, ent_weight: jax.Array,
                 entropy_samples: int, num_steps: int):
    """The samples of the Q-weighted loss with its entropy term.

    actions (B, c, d) chosen candidates, weights (B, c) their Q-weights. Each chosen sample brings
    ``entropy_samples`` = E actions uniform in [-1, 1]^d, weighted ent_weight x its own Q-weight.
    Returns x0 (B, c, 1 + E, d) (slot 0 the chosen action), w (B, c, 1 + E), steps t (B, c, 1 + E)
    uniform in 0..T-1 and noise eps (B, c, 1 + E, d).
    """
    B, c, d = actions.shape
    k_uniform, k_t, k_eps = jax.random.split(key, 3)
    uniform = jax.random.uniform(k_uniform, (B, c, entropy_samples, d), minval=-1.0, maxval=1.0)
    x0 = jnp.concatenate([actions[:, :, None, :], uniform], axis=2)
    scale = jnp.concatenate([jnp.ones((1,)), jnp.full((entropy_samples,), ent_weight)])
    w = weights[:, :, None] * scale
    t = jax.random.randint(k_t, w.shape, 0, num_steps)
    eps = jax.random.normal(k_eps, x0.shape)
    return x0, w, t, eps


def actor_loss(state: AgentState, actor_params: Params, obs: jax.Array, actions: jax.Array,
               weights: jax.Array, ent_weight: jax.Array, key: jax.Array) -> jax.Array:
    """The Q-weighted variational loss with the diffusion entropy term.

    obs (B, o); actions (B, c, d); weights (B, c). Draws the samples of :func:`loss_samples`
    from ``key`` and returns :func:`actor_loss_from_samples`.
    """
    samples = loss_samples(key, actions, weights, ent_weight, state.config.entropy_samples,
                           state.schedule.num_steps)
    return actor_loss_from_samples(state, actor_params, obs, *samples, ent_weight)


def actor_loss_from_samples(state: AgentState, actor_params: Params, obs: jax.Array,
                            x0: jax.Array, w: jax.Array, t: jax.Array, eps: jax.Array,
                            ent_weight: jax.Array) -> jax.Array:
    """sum of w (eps_theta(x_t, t, s) - eps)^2 over samples and the d action dims, divided by
    d x the number of samples: B c (1 + E) with the entropy term, B c without it.

    obs (B, o); x0, eps (B, c, 1 + E, d) (slot 0 the chosen action); w, t (B, c, 1 + E). At
    entropy weight 0 the reference leaves the E uniform samples out of the loss, so their
    (zero-weight) rows must not count in the mean either: the loss keeps the reference's scale.
    """
    net, schedule = state.actor, state.schedule
    x_t = diffusion.q_sample(schedule, x0, t, eps)
    # Every sample of a state shares its state part of the first layer, and every sample at step t
    # its time part: compute each once and gather (exact, and the gradient flows through both).
    time_part = net.apply(actor_params, jnp.arange(schedule.num_steps), method=NoiseNet.time_part)
    base = (net.apply(actor_params, obs, method=NoiseNet.state_part)[:, None, None, :]
            + time_part[t])
    pred = net.apply(actor_params, x_t, base, method=NoiseNet.trunk)
    B, c, n, d = x0.shape
    samples = jnp.where(ent_weight > 0, B * c * n, B * c)
    return diffusion.weighted_denoising_loss(pred.reshape(-1, d), eps.reshape(-1, d),
                                             w.reshape(-1), samples)


# --------------------------------------------------------------------------------------------
# The update


def _step(params, opt_state, grads, hp, lr_name):
    tx = _optimizer(hp[lr_name], hp["adam_eps"], hp["grad_clip"])
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def _polyak(target, online, tau):
    return jax.tree.map(lambda t, o: t + tau * (o - t), target, online)


def _pmean(tree, axis_name: str | None):
    """Mean over the devices of a data-parallel update (each holds an equal share of the batch,
    so the mean of their means is the mean over the whole batch); identity on one device."""
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def score_stats(scores: jax.Array, axis_name: str | None = None) -> tuple[jax.Array, jax.Array]:
    """Mean and (unbiased, n - 1: the reference's ``torch.std``) std of all scores (any shape);
    with ``axis_name``, of every device's scores together (equal shares, so pooled first and
    second moments are exact)."""
    if axis_name is None:
        return jnp.mean(scores), jnp.std(scores, ddof=1)
    mean, second = _pmean((jnp.mean(scores), jnp.mean(jnp.square(scores))), axis_name)
    n = scores.size * jax.lax.psum(1, axis_name)
    var = jnp.maximum(second - jnp.square(mean), 0.0) * n / (n - 1)
    return mean, jnp.sqrt(var)


def critic_update(state: AgentState, batch: Transition, key: jax.Array,
                  axis_name: str | None = None) -> tuple[AgentState, Metrics]:
    """One critic step towards y = r + gamma (1 - terminated) min(Q1', Q2')(s', a'), a' the best of
    ``target_samples`` candidates from the target actor under the target critic.

    With ``axis_name`` (inside ``shard_map``), batch is this device's share and the gradient is
    averaged over the devices of that axis; metrics stay per device."""
    hp = state.hparams
    batch = batch.replace(obs=normalize_obs(state, batch.obs),
                          next_obs=normalize_obs(state, batch.next_obs))
    _, next_q = select_action(state, state.actor_target_params, state.critic_target_params,
                              batch.next_obs, key, state.config.target_samples, hp["noise_ratio"])
    target = td_target(state, batch, next_q)
    (loss, q), grads = jax.value_and_grad(
        lambda p: critic_loss(state, p, batch, target), has_aux=True)(state.critic_params)
    grads = _pmean(grads, axis_name)
    params, opt_state = _step(state.critic_params, state.critic_opt_state, grads, hp, "critic_lr")
    metrics = {"loss/critic": loss, "q/mean": jnp.mean(q), "q/target": jnp.mean(target),
               "grad_norm/critic": optax.tree.norm(grads)}
    return state.replace(critic_params=params, critic_opt_state=opt_state), metrics


def actor_update(state: AgentState, obs: jax.Array, key: jax.Array,
                 axis_name: str | None = None) -> tuple[AgentState, Metrics]:
    """One actor step with the Q-weighted variational loss, scored by ``state.critic_params``.

    obs (B, o): draw ``train_samples`` candidates per state from the current actor, score them with
    min(Q1, Q2), weight the top ``chosen`` by ``q_transform`` against the mean score V(s), add the
    entropy term, take one Adam step. ``axis_name``: as in :func:`critic_update`; the running Q
    statistics pool every device's scores too.
    """
    cfg, hp = state.config, state.hparams
    obs = normalize_obs(state, obs)
    k_candidates, k_loss = jax.random.split(key)
    candidates = sample_candidates(state, state.actor_params, obs, k_candidates,
                                   cfg.train_samples, hp["noise_ratio"])
    scores = min_q(state, state.critic_params, obs, candidates)  # (B, Kt)
    value = jnp.mean(scores, axis=-1, keepdims=True)  # (B, 1)
    top_q, top_idx = jax.lax.top_k(scores, cfg.chosen)  # (B, c)
    top_actions = jnp.take_along_axis(candidates, top_idx[..., None], axis=1)  # (B, c, d)
    rate = hp["q_stats_rate"]
    batch_mean, batch_std = score_stats(scores, axis_name)
    q_mean = (1.0 - rate) * state.q_mean + rate * batch_mean
    q_std = (1.0 - rate) * state.q_std + rate * batch_std
    weights = Q_TRANSFORM_FNS[cfg.q_transform](top_q, value, q_mean, q_std, hp)
    weights = jax.lax.stop_gradient(weights)
    spread = _pmean(candidate_spread(candidates), axis_name)
    adaptive = hp["entropy_target_spread"] > 0
    ent_weight = jnp.where(adaptive, jnp.exp(state.log_entropy_weight),
                           entropy_weight(hp, state.env_steps))
    log_entropy_weight = jnp.where(
        adaptive, adapted_log_entropy_weight(state.log_entropy_weight, spread, hp),
        state.log_entropy_weight)
    loss, grads = jax.value_and_grad(
        lambda p: actor_loss(state, p, obs, top_actions, weights, ent_weight, k_loss)
    )(state.actor_params)
    grads = _pmean(grads, axis_name)
    params, opt_state = _step(state.actor_params, state.actor_opt_state, grads, hp, "actor_lr")
    metrics = {"loss/actor": loss, "q/candidates": jnp.mean(value),
               "weight/mean": jnp.mean(weights),
               "weight/positive_frac": jnp.mean((weights > 0).astype(jnp.float32)),
               "entropy_weight": ent_weight, "grad_norm/actor": optax.tree.norm(grads),
               "explore/train_spread": spread,
               # How well the critic tells a state's candidates apart (std over Kt).
               "explore/score_spread": jnp.mean(jnp.std(scores, axis=-1))}
    return state.replace(actor_params=params, actor_opt_state=opt_state, q_mean=q_mean,
                         q_std=q_std, log_entropy_weight=log_entropy_weight), metrics


def critic_step(state: AgentState, batch: Transition, key: jax.Array,
                axis_name: str | None = None) -> tuple[AgentState, Metrics]:
    """:func:`critic_update`, then the critic target's Polyak step; counts one update."""
    state, metrics = critic_update(state, batch, key, axis_name)
    return state.replace(
        critic_target_params=_polyak(state.critic_target_params, state.critic_params,
                                     state.hparams["tau"]),
        step=state.step + 1), metrics


def actor_step(state: AgentState, obs: jax.Array, key: jax.Array,
               axis_name: str | None = None) -> tuple[AgentState, Metrics]:
    """:func:`actor_update` on states obs (B, o), then the actor target's Polyak step."""
    state, metrics = actor_update(state, obs, key, axis_name)
    return state.replace(actor_target_params=_polyak(
        state.actor_target_params, state.actor_params, state.hparams["tau"])), metrics


def update(state: AgentState, batch: Transition, key: jax.Array,
           axis_name: str | None = None, actor_obs: jax.Array | None = None
           ) -> tuple[AgentState, Metrics]:
    """One QVPO update in the reference order: critic, then the actor scored by the updated
    critic, then both targets. batch: (B,) transitions. Returns (state, scalar metrics).

    ``actor_obs`` (B, o): the actor's states. The reference samples the replay buffer a second
    time for them (an independent batch), and the training loop does the same; None uses
    ``batch.obs``.

    The critic target moves before the actor update here; the actor update reads only the
    online critic, so this is the reference's order in every value.

    ``axis_name``: data-parallel over that ``shard_map`` axis; batch is this device's B / D
    transitions, gradients and Q statistics are averaged, so every device keeps the same
    parameters and the step equals one on the whole batch. Metrics stay per device."""
    k_critic, k_actor = jax.random.split(key)
    state, critic_metrics = critic_step(state, batch, k_critic, axis_name)
    state, actor_metrics = actor_step(
        state, batch.obs if actor_obs is None else actor_obs, k_actor, axis_name)
    return state, {**critic_metrics, **actor_metrics}


def delayed_update(state: AgentState, batches: Transition, key: jax.Array,
                   axis_name: str | None = None, actor_obs: jax.Array | None = None
                   ) -> tuple[AgentState, Metrics]:
    """``critic_updates_per_actor`` = n critic steps, then one actor step on ``actor_obs``
    (B, o) (None: the last batch's states). batches: (n, B) transitions. With n = 1 it equals
    :func:`update` (the keys split alike). Returns the state and scalar metrics (critic ones
    averaged over the n updates)."""
    n = batches.reward.shape[0]
    keys = jax.random.split(key, n + 1)  # critic keys first, as update splits them
    state, critic_metrics = jax.lax.scan(
        lambda s, xs: critic_step(s, *xs, axis_name), state, (batches, keys[:n]))
    state, actor_metrics = actor_step(
        state, batches.obs[-1] if actor_obs is None else actor_obs, keys[n], axis_name)
    return state, {**jax.tree.map(jnp.mean, critic_metrics), **actor_metrics}
