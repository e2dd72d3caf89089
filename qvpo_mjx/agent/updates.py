"""The QVPO update: the critic's TD step, the actor's Q-weighted variational step, the target
networks' Polyak steps, and the schedule that interleaves them.

Each update function takes the state and its data and returns the new state and scalar metrics,
named under the part that made them (``critic/...``, ``actor/...``), so whoever averages them
knows whose they are. ``axis_name`` (inside ``shard_map``): the batch is this device's share,
gradients and statistics are averaged over the devices, parameters stay equal everywhere.

Shapes: ``B`` batch states, ``c`` = ``chosen``, ``E`` = ``entropy_samples``, ``d`` action size,
``o`` observation size, ``U`` critic updates of one call.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from qvpo_mjx import diffusion, parallel
from qvpo_mjx.agent import novelty as novelty_bonus
from qvpo_mjx.agent.entropy import adapted_log_entropy_weight, entropy_weight
from qvpo_mjx.agent.normalizer import normalize_obs
from qvpo_mjx.agent.selection import candidate_spread, min_q, sample_candidates, select_action
from qvpo_mjx.agent.state import AgentState, Metrics, Params, Transition, optimizer
from qvpo_mjx.agent.transforms import Q_TRANSFORM_FNS, score_stats
from qvpo_mjx.agent.values import critic_q, critic_regression_loss
from qvpo_mjx.networks import NoiseNet

# --------------------------------------------------------------------------------------------
# Losses


def td_target(state: AgentState, batch: Transition, next_q: jax.Array) -> jax.Array:
    """y = c r + gamma^h (1 - terminated) next_q, all (B,), c = ``reward_scale``, h =
    ``batch.reward_steps`` (1 unless n-step); no gradient flows through it."""
    gamma = state.hparams["gamma"]
    discount = gamma if batch.reward_steps is None else gamma ** batch.reward_steps
    return jax.lax.stop_gradient(state.hparams["reward_scale"] * batch.reward
                                 + discount * (1.0 - batch.terminated) * next_q)


def critic_loss(state: AgentState, critic_params: Params, batch: Transition,
                target: jax.Array) -> tuple[jax.Array, jax.Array]:
    """MSE(Q1, y) + MSE(Q2, y), or with ``critic_bins`` both critics' cross-entropy to y's
    HL-Gauss histogram (values.py). target y: (B,). Returns (loss, q (2, B))."""
    q, logits = critic_q(state, critic_params, batch.obs, batch.action)
    return critic_regression_loss(state, q, logits, target), q


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
    samples = loss_samples(key, actions, weights, ent_weight, state.structure.entropy_samples,
                           state.structure.diffusion_steps)
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
# One critic update, one actor update


def optimizer_step(params, opt_state, grads, hp, lr_name):
    """One Adam step (with global-norm clipping) of params with the learning rate hp[lr_name]."""
    tx = optimizer(hp[lr_name], hp["adam_eps"], hp["grad_clip"])
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def polyak(target, online, tau):
    """target + tau (online - target), leaf by leaf."""
    return jax.tree.map(lambda t, o: t + tau * (o - t), target, online)


def add_novelty(state, batch: Transition, target: jax.Array, axis_name: str | None = None):
    """The novelty bonus of s' added to the TD target ``target`` (B,), and the predictor's step,
    for any algorithm's state with the bonus's fields (``novelty``, ``critic_updates``,
    ``env_steps``, ``hparams``, ``structure.novelty`` and ``structure.critic``); without the
    bonus, all unchanged. batch: (B,) transitions, observations already normalised. Returns
    (state, target, metrics)."""
    if not state.structure.novelty:
        return state, target, {}
    hp = state.hparams
    # The bonus of s' comes from the predictor before its own step.
    bonus, novelty, raw = novelty_bonus.bonus_and_step(
        state.novelty, batch.next_obs, state.critic_updates == 0,
        novelty_bonus.scheduled_weight(hp["novelty_weight"], hp["novelty_decay_steps"],
                                       state.env_steps)
        * novelty_bonus.reward_gate(batch.reward, hp["novelty_reward_gate"], axis_name),
        state.structure.critic.hidden_size,
        optimizer(hp["critic_lr"], hp["adam_eps"], hp["grad_clip"]), axis_name)
    return (state.replace(novelty=novelty), target + bonus,
            {"critic/novelty_bonus": jnp.mean(bonus), "critic/novelty_raw": raw})


def critic_update(state: AgentState, batch: Transition, key: jax.Array,
                  axis_name: str | None = None) -> tuple[AgentState, Metrics]:
    """One critic step towards y = r + gamma (1 - terminated) min(Q1', Q2')(s', a'), a' the best of
    ``target_samples`` candidates from the target actor under the target critic, plus the
    novelty bonus of s' with ``novelty_weight`` (agent/novelty.py, whose predictor steps here
    too). batch: (B,) raw transitions (normalised here where that applies). Metrics stay per
    device."""
    hp = state.hparams
    batch = batch.replace(obs=normalize_obs(state, batch.obs),
                          next_obs=normalize_obs(state, batch.next_obs))
    _, next_q = select_action(state, state.actor_target_params, state.critic_target_params,
                              batch.next_obs, key, state.structure.target_samples,
                              hp["noise_ratio"])
    state, target, novelty_metrics = add_novelty(state, batch, td_target(state, batch, next_q),
                                                 axis_name)
    (loss, q), grads = jax.value_and_grad(
        lambda p: critic_loss(state, p, batch, target), has_aux=True)(state.critic_params)
    grads = parallel.pmean(grads, axis_name)
    params, opt_state = optimizer_step(state.critic_params, state.critic_opt_state, grads, hp,
                                       "critic_lr")
    metrics = {"critic/loss": loss, "critic/q_mean": jnp.mean(q),
               "critic/q_target": jnp.mean(target), "critic/grad_norm": optax.tree.norm(grads),
               **novelty_metrics}
    return state.replace(critic_params=params, critic_opt_state=opt_state), metrics


def actor_update(state: AgentState, obs: jax.Array, key: jax.Array,
                 axis_name: str | None = None) -> tuple[AgentState, Metrics]:
    """One actor step with the Q-weighted variational loss, scored by ``state.critic_params``.

    obs (B, o) raw: draw ``train_samples`` candidates per state from the current actor, score
    them with min(Q1, Q2), weight the top ``chosen`` by ``q_transform`` against the mean score
    V(s), add the entropy term, take one Adam step. ``axis_name``: the running Q statistics
    pool every device's scores too.
    """
    structure, hp = state.structure, state.hparams
    obs = normalize_obs(state, obs)
    k_candidates, k_loss = jax.random.split(key)
    candidates = sample_candidates(state, state.actor_params, obs, k_candidates,
                                   structure.train_samples, hp["noise_ratio"])
    scores = min_q(state, state.critic_params, obs, candidates)  # (B, Kt)
    value = jnp.mean(scores, axis=-1, keepdims=True)  # (B, 1)
    top_q, top_idx = jax.lax.top_k(scores, structure.chosen)  # (B, c)
    top_actions = jnp.take_along_axis(candidates, top_idx[..., None], axis=1)  # (B, c, d)
    rate = hp["q_stats_rate"]
    batch_mean, batch_std = score_stats(scores, axis_name)
    q_mean = (1.0 - rate) * state.q_mean + rate * batch_mean
    q_std = (1.0 - rate) * state.q_std + rate * batch_std
    weights = Q_TRANSFORM_FNS[structure.q_transform](top_q, value, q_mean, q_std, hp)
    weights = jax.lax.stop_gradient(weights)
    spread = parallel.pmean(candidate_spread(candidates), axis_name)
    adaptive = hp["entropy_target_spread"] > 0
    ent_weight = jnp.where(adaptive, jnp.exp(state.log_entropy_weight),
                           entropy_weight(hp, state.env_steps))
    log_entropy_weight = jnp.where(
        adaptive, adapted_log_entropy_weight(state.log_entropy_weight, spread, hp),
        state.log_entropy_weight)
    loss, grads = jax.value_and_grad(
        lambda p: actor_loss(state, p, obs, top_actions, weights, ent_weight, k_loss)
    )(state.actor_params)
    grads = parallel.pmean(grads, axis_name)
    params, opt_state = optimizer_step(state.actor_params, state.actor_opt_state, grads, hp,
                                       "actor_lr")
    metrics = {"actor/loss": loss, "actor/q_candidates": jnp.mean(value),
               "actor/weight_mean": jnp.mean(weights),
               "actor/weight_positive_frac": jnp.mean((weights > 0).astype(jnp.float32)),
               "actor/entropy_weight": ent_weight, "actor/grad_norm": optax.tree.norm(grads),
               "actor/train_spread": spread,
               # How well the critic tells a state's candidates apart (std over Kt).
               "actor/score_spread": jnp.mean(jnp.std(scores, axis=-1))}
    return state.replace(actor_params=params, actor_opt_state=opt_state, q_mean=q_mean,
                         q_std=q_std, log_entropy_weight=log_entropy_weight), metrics


def critic_step(state: AgentState, batch: Transition, key: jax.Array,
                axis_name: str | None = None) -> tuple[AgentState, Metrics]:
    """:func:`critic_update`, then the critic target's Polyak step; counts one critic update."""
    state, metrics = critic_update(state, batch, key, axis_name)
    return state.replace(
        critic_target_params=polyak(state.critic_target_params, state.critic_params,
                                     state.hparams["tau"]),
        critic_updates=state.critic_updates + 1), metrics


def actor_step(state: AgentState, obs: jax.Array, key: jax.Array,
               axis_name: str | None = None) -> tuple[AgentState, Metrics]:
    """:func:`actor_update` on states obs (B, o), then the actor target's Polyak step; counts
    one actor update."""
    state, metrics = actor_update(state, obs, key, axis_name)
    return state.replace(actor_target_params=polyak(
        state.actor_target_params, state.actor_params, state.hparams["tau"]),
        actor_updates=state.actor_updates + 1), metrics


# --------------------------------------------------------------------------------------------
# Updates in the reference order, and their schedule


def update(state: AgentState, batch: Transition, key: jax.Array,
           axis_name: str | None = None, actor_obs: jax.Array | None = None
           ) -> tuple[AgentState, Metrics]:
    """One QVPO update in the reference order: critic, then the actor scored by the updated
    critic, then both targets. batch: (B,) transitions. Returns (state, scalar metrics).

    ``actor_obs`` (B, o): the actor's states. The reference samples the replay buffer a second
    time for them (an independent batch), and the training loop does the same; None uses
    ``batch.obs``.

    The critic target moves before the actor update here; the actor update reads only the
    online critic, so this is the reference's order in every value."""
    k_critic, k_actor = jax.random.split(key)
    state, critic_metrics = critic_step(state, batch, k_critic, axis_name)
    state, actor_metrics = actor_step(
        state, batch.obs if actor_obs is None else actor_obs, k_actor, axis_name)
    return state, {**critic_metrics, **actor_metrics}


def delayed_update(state: AgentState, batches: Transition, key: jax.Array,
                   axis_name: str | None = None, actor_obs: jax.Array | None = None,
                   critic_step_fn: Callable = critic_step, actor_step_fn: Callable = actor_step
                   ) -> tuple[AgentState, Metrics]:
    """n critic steps, then one actor step on ``actor_obs`` (B, o) (None: the last batch's
    states). batches: (n, B) transitions. With n = 1 it is :func:`update` (the keys split
    alike). Returns the state and scalar metrics (the critic's averaged over the n updates).
    ``critic_step_fn`` / ``actor_step_fn``: another algorithm's steps, with the signatures of
    :func:`critic_step` and :func:`actor_step` (qvpo_mjx/algorithms/)."""
    n = batches.reward.shape[0]
    keys = jax.random.split(key, n + 1)  # critic keys first, as update splits them
    state, critic_metrics = jax.lax.scan(
        lambda s, xs: critic_step_fn(s, *xs, axis_name), state, (batches, keys[:n]))
    state, actor_metrics = actor_step_fn(
        state, batches.obs[-1] if actor_obs is None else actor_obs, keys[n], axis_name)
    return state, {**jax.tree.map(jnp.mean, critic_metrics), **actor_metrics}


def scheduled_updates(state: AgentState, critic_batch: Callable[[jax.Array], Transition],
                      actor_obs: Callable[[jax.Array], jax.Array], num_updates: int,
                      key: jax.Array, critic_updates_per_actor: int,
                      axis_name: str | None = None,
                      shared: Callable[[jax.Array], jax.Array] = lambda x: x,
                      critic_step_fn: Callable = critic_step, actor_step_fn: Callable = actor_step
                      ) -> tuple[AgentState, Metrics, jax.Array]:
    """``num_updates`` = U critic updates, with an actor update after every
    ``critic_updates_per_actor`` = n-th critic update of the run (``state.critic_updates``
    counts them), so the ratio holds whether or not U is a multiple of n.

    ``critic_batch(i)``: the transitions of critic updates ``i`` (int32 indices of any shape:
    leading shape i.shape + (B,)); ``actor_obs(j)``: the actor's states for its update j (the
    reference's second, independent batch). Batches are fetched inside the update scan, so no
    more than one group of them is ever held at once. ``shared``: makes the run's count one
    unbatched value under a seed ``vmap``, so the actor's turn stays a branch.
    ``critic_step_fn`` / ``actor_step_fn``: the algorithm's two steps (QVPO's by default; any
    algorithm of qvpo_mjx/algorithms/ is scheduled by this one function).

    Returns the state, the metrics (critic ones averaged over the U critic updates, actor ones
    over the actor updates made, 0 where none) and how many actor updates were made."""
    U, n = num_updates, critic_updates_per_actor
    if U % n == 0:
        # Whole groups every call (the run's count starts each one at a multiple of n): the
        # actor's turns are static, n critic updates and then one actor update, no branch.
        groups = U // n

        def group(s, xs):
            j, k = xs
            return delayed_update(s, critic_batch(j * n + jnp.arange(n)), k, axis_name,
                                  actor_obs(j), critic_step_fn, actor_step_fn)

        state, metrics = jax.lax.scan(
            group, state, (jnp.arange(groups), jax.random.split(key, groups)))
        return state, jax.tree.map(jnp.mean, metrics), jnp.float32(groups)

    no_actor = jax.tree.map(lambda v: jnp.zeros(v.shape, v.dtype), jax.eval_shape(
        lambda s, k: actor_step_fn(s, actor_obs(jnp.int32(0)), k, axis_name)[1], state, key))

    def body(s, xs):
        i, k = xs
        k_critic, k_actor = jax.random.split(k)
        s, critic_metrics = critic_step_fn(s, critic_batch(i), k_critic, axis_name)
        turn = shared(s.critic_updates) % n == 0
        s, actor_metrics = jax.lax.cond(
            turn, lambda s: actor_step_fn(s, actor_obs(i), k_actor, axis_name),
            lambda s: (s, no_actor), s)
        return s, (critic_metrics, actor_metrics, turn.astype(jnp.float32))

    state, (critic_m, actor_m, turns) = jax.lax.scan(
        body, state, (jnp.arange(U), jax.random.split(key, U)))
    actor_updates = jnp.sum(turns)
    metrics = {**jax.tree.map(jnp.mean, critic_m),
               **jax.tree.map(lambda v: jnp.sum(v * turns) / jnp.maximum(actor_updates, 1.0),
                              actor_m)}
    return state, metrics, actor_updates
