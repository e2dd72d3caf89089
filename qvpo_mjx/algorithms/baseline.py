"""What every baseline shares: its state, the Gaussian actors of SAC and TD3, one critic step.

The critics are QVPO's own (``networks.TwinCritic``, with every critic option: width, LayerNorm,
``critic_bins``), read through ``agent.critic_q`` and trained by ``agent.critic_loss``, and
observations are normalised by ``agent.normalize_obs``: those functions read only the fields this
state shares with ``agent.AgentState`` (``critic``, ``structure``, ``hparams``, ``obs_stats``), so
a comparison between algorithms differs in the actor and its losses, nothing else.

SAC's and TD3's actors follow their public code: two hidden layers of ``hidden_size`` ReLU units
(Glorot-uniform weights, zero biases). QSM's, DACER's and DIPO's are QVPO's noise network
(``networks.NoiseNet``, with ``hidden_size``, ``time_embed_size``, ``diffusion_steps`` and
``beta_schedule``), so the diffusion policies differ in how they are trained, not in their
network. Every baseline but DIPO runs plain Adam (no gradient clipping, epsilon 1e-8) at the
config's ``actor_lr`` and ``critic_lr``, as their code does; DIPO's code clips the gradient's
global norm to 2 and uses epsilon 1e-5.

Shapes: ``B`` states, ``o`` observation size, ``d`` action size.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from qvpo_mjx import diffusion, parallel
from qvpo_mjx.agent.normalizer import ObsStats, normalize_obs
from qvpo_mjx.agent.novelty import NoveltyState
from qvpo_mjx.agent.state import (Metrics, Params, StructureViews, Transition, init_novelty,
                                  structure_of)
from qvpo_mjx.agent.updates import add_novelty, critic_loss, polyak, td_target
from qvpo_mjx.agent.values import critic_q
from qvpo_mjx.config import QVPOConfig
from qvpo_mjx.networks import NoiseNet, TwinCritic

DIFFUSION_ALGOS = ("qsm", "dacer", "dipo")  # the baselines whose actor is QVPO's noise network
ACTOR_HIDDEN_LAYERS = 2  # SAC's (softlearning) and TD3's (author's code) actors
STD_MIN = 1e-5  # sigma = softplus(raw) + 1e-5, softlearning's


def _dense(features: int) -> nn.Dense:
    return nn.Dense(features, kernel_init=nn.initializers.glorot_uniform(),
                    bias_init=nn.initializers.zeros)


class TanhGaussianActor(nn.Module):
    """SAC's policy head: s (..., o) -> (mean (..., d), std (..., d)) of the pre-tanh normal."""

    action_size: int
    hidden_size: int

    @nn.compact
    def __call__(self, s: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = s
        for _ in range(ACTOR_HIDDEN_LAYERS):
            h = nn.relu(_dense(self.hidden_size)(h))
        return _dense(self.action_size)(h), jax.nn.softplus(_dense(self.action_size)(h)) + STD_MIN


class DeterministicActor(nn.Module):
    """TD3's policy: s (..., o) -> mu(s) = tanh(MLP(s)) (..., d)."""

    action_size: int
    hidden_size: int

    @nn.compact
    def __call__(self, s: jax.Array) -> jax.Array:
        h = s
        for _ in range(ACTOR_HIDDEN_LAYERS):
            h = nn.relu(_dense(self.hidden_size)(h))
        return jnp.tanh(_dense(self.action_size)(h))


@dataclasses.dataclass(frozen=True)
class BaselineStructure:
    """The static part of a baseline's state: sizes, code paths and the algorithm's own fields
    (plain floats: they are fixed for a run, unlike the traced ``hparams``)."""

    algo: str
    obs_size: int
    action_size: int
    hidden_size: int
    critic_hidden_size: int
    critic_layer_norm: bool
    critic_bins: int
    obs_normalization: bool
    novelty: bool  # the loop's novelty bonus is on (novelty_weight > 0; off unless a flag sets it)
    diffusion_steps: int
    beta_schedule: str
    time_embed_size: int
    sac_alpha_lr: float
    sac_target_entropy: float
    td3_action_noise: float
    td3_target_noise: float
    td3_target_noise_clip: float
    qsm_q_scale: float
    qsm_action_noise: float
    dacer_alpha_lr: float
    dacer_noise_scale: float
    dacer_target_entropy: float
    dacer_alpha_every: int
    dacer_entropy_samples: int
    dipo_action_lr: float
    dipo_action_steps: int
    dipo_action_clip: float

    @classmethod
    def of(cls, config: QVPOConfig, obs_size: int, action_size: int) -> "BaselineStructure":
        return structure_of(cls, config, obs_size, action_size)

    @property
    def actor(self) -> nn.Module:
        if self.algo in DIFFUSION_ALGOS:
            return NoiseNet(action_size=self.action_size, obs_size=self.obs_size,
                            hidden_size=self.hidden_size, time_embed_size=self.time_embed_size)
        cls = DeterministicActor if self.algo == "td3" else TanhGaussianActor
        return cls(action_size=self.action_size, hidden_size=self.hidden_size)

    @property
    def schedule(self) -> diffusion.Schedule:
        return diffusion.make_schedule(self.beta_schedule, self.diffusion_steps)

    @property
    def critic(self) -> TwinCritic:
        return TwinCritic(hidden_size=self.critic_hidden_size or self.hidden_size,
                          layer_norm=self.critic_layer_norm, bins=self.critic_bins)


@struct.dataclass
class BaselineState(StructureViews):
    """A baseline's state. ``actor_target_params`` is TD3's and DIPO's target policy ({} for
    the others, which have none); ``log_alpha`` and ``alpha_opt_state`` are SAC's temperature
    or DACER's noise scale, and its Adam state (held, unused, by the others so all share one
    layout)."""

    actor_params: Params
    critic_params: Params
    actor_target_params: Params
    critic_target_params: Params
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    log_alpha: jax.Array  # () float32
    alpha_opt_state: optax.OptState
    hparams: dict[str, jax.Array]  # the config's traced fields, float32 scalars
    obs_stats: ObsStats
    critic_updates: jax.Array  # () int32
    actor_updates: jax.Array  # () int32
    env_steps: jax.Array  # () int32
    structure: BaselineStructure = struct.field(pytree_node=False)
    # DIPO's improved actions, (capacity, d): the replay buffer's column, lent to the state
    # while a vector step's updates run (the loop puts it back); None at rest.
    improved: jax.Array | None = None
    # The novelty bonus's networks and normaliser (agent/novelty.py), the loop's exploration
    # option, as QVPO's; None without it.
    novelty: NoveltyState | None = None


@struct.dataclass
class ActorRows:
    """What DIPO's actor step gets: buffer rows (B,) int32 and their raw states (B, o)."""

    rows: jax.Array
    obs: jax.Array


def adam(lr: jax.Array | float, eps: float = 1e-8) -> optax.GradientTransformation:
    """Adam (PyTorch's and TF's defaults unless ``eps`` is given, as SAC's and TD3's code run
    it); its state does not depend on ``eps``."""
    return optax.chain(optax.scale_by_adam(eps=eps), optax.scale(-lr))


def adam_step(params, opt_state, grads, lr, eps: float = 1e-8, clip: float | None = None):
    """One Adam step; ``clip``: the gradient's global norm is clipped to it first (DIPO's)."""
    if clip is not None:
        grads, _ = optax.clip_by_global_norm(clip).update(grads, optax.EmptyState())
    updates, opt_state = adam(lr, eps).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def init(key: jax.Array, obs_size: int, action_size: int, config: QVPOConfig) -> BaselineState:
    """Fresh networks from ``key``; the critic target a copy of the critic, TD3's and DIPO's
    actor target a copy of the actor; log alpha = log(sac_initial_alpha), DACER's
    log(dacer_initial_alpha)."""
    structure = BaselineStructure.of(config, obs_size, action_size)
    hparams = {k: jnp.asarray(v, jnp.float32) for k, v in config.hyperparams().items()}
    k_actor, k_critic = jax.random.split(key)
    if config.algo in DIFFUSION_ALGOS:  # eps_theta(x, t, s)
        actor_params = structure.actor.init(k_actor, jnp.zeros((action_size,)), jnp.zeros(()),
                                            jnp.zeros((obs_size,)))
    else:
        actor_params = structure.actor.init(k_actor, jnp.zeros((obs_size,)))
    critic_params = structure.critic.init(k_critic, jnp.zeros((obs_size,)),
                                          jnp.zeros((action_size,)))
    log_alpha = jnp.log(jnp.asarray(config.dacer_initial_alpha if config.algo == "dacer"
                                    else config.sac_initial_alpha, jnp.float32))
    zero = jnp.zeros((), jnp.int32)
    return BaselineState(
        actor_params=actor_params, critic_params=critic_params,
        # Copies, not aliases: a donated state must not hold one buffer twice.
        actor_target_params=(jax.tree.map(jnp.copy, actor_params)
                             if config.algo in ("td3", "dipo") else {}),
        critic_target_params=jax.tree.map(jnp.copy, critic_params),
        actor_opt_state=adam(0.0).init(actor_params),
        critic_opt_state=adam(0.0).init(critic_params),
        log_alpha=log_alpha, alpha_opt_state=adam(0.0).init(log_alpha), hparams=hparams,
        obs_stats=ObsStats.init(obs_size), critic_updates=zero, actor_updates=zero,
        env_steps=zero, structure=structure,
        novelty=init_novelty(key, obs_size, structure, hparams))


def both_q(state: BaselineState, critic_params: Params, obs: jax.Array,
           actions: jax.Array) -> jax.Array:
    """Both critics' Q of one action per state: obs (B, o), actions (B, d) -> (2, B)
    (``agent.twin_q`` scores K candidates per state)."""
    return critic_q(state, critic_params, obs, actions)[0]


def critic_update(state: BaselineState, batch: Transition, key: jax.Array,
                  next_value: Callable[[BaselineState, jax.Array, jax.Array], jax.Array],
                  axis_name: str | None = None, eps: float = 1e-8, clip: float | None = None
                  ) -> tuple[BaselineState, Metrics]:
    """One critic step towards y = r + gamma^h (1 - terminated) next_value(state, s', key),
    plus the novelty bonus of s' where that option is on (``agent.add_novelty``, QVPO's own
    code: its predictor steps here too), both critics by MSE (or HL-Gauss with
    ``critic_bins``), Adam at ``critic_lr``. batch: (B,) raw transitions; ``next_value`` returns
    (B,) from normalised next states. Targets do not move here (each algorithm moves them on
    its own schedule)."""
    batch = batch.replace(obs=normalize_obs(state, batch.obs),
                          next_obs=normalize_obs(state, batch.next_obs))
    state, target, novelty_metrics = add_novelty(
        state, batch, td_target(state, batch, next_value(state, batch.next_obs, key)), axis_name)
    (loss, q), grads = jax.value_and_grad(
        lambda p: critic_loss(state, p, batch, target), has_aux=True)(state.critic_params)
    grads = parallel.pmean(grads, axis_name)
    params, opt_state = adam_step(state.critic_params, state.critic_opt_state, grads,
                                  state.hparams["critic_lr"], eps, clip)
    metrics = {"critic/loss": loss, "critic/q_mean": jnp.mean(q),
               "critic/q_target": jnp.mean(target), "critic/grad_norm": optax.tree.norm(grads),
               **novelty_metrics}
    return state.replace(critic_params=params, critic_opt_state=opt_state), metrics


def critic_step(state: BaselineState, batch: Transition, key: jax.Array,
                next_value: Callable[[BaselineState, jax.Array, jax.Array], jax.Array],
                axis_name: str | None = None, move_target: bool = True, eps: float = 1e-8,
                clip: float | None = None) -> tuple[BaselineState, Metrics]:
    """:func:`critic_update`, then (``move_target``) the critic target's Polyak step; counts
    one critic update."""
    state, metrics = critic_update(state, batch, key, next_value, axis_name, eps, clip)
    if move_target:
        state = state.replace(critic_target_params=polyak(
            state.critic_target_params, state.critic_params, state.hparams["tau"]))
    return state.replace(critic_updates=state.critic_updates + 1), metrics


def at_bounds(action: jax.Array) -> jax.Array:
    """The share of action components at +-1: () float32."""
    return jnp.mean((jnp.abs(action) >= 1.0 - 1e-6).astype(jnp.float32))


def diffusion_chain(state: BaselineState, actor_params: Params, obs: jax.Array, key: jax.Array,
                    sampler: Callable[..., jax.Array]) -> jax.Array:
    """One action per state from a diffusion baseline's reverse chain: obs (B, o) normalised ->
    (B, d). ``sampler``: :func:`diffusion.sample` (DIPO's and DACER's "P") or
    :func:`diffusion.sample_simple` (QSM's "S"), called as sampler(eps_fn, schedule, x_T,
    noise) with every draw made up front, so the chain is differentiable in ``actor_params``."""
    schedule = state.schedule
    T, (B, d) = schedule.num_steps, (obs.shape[0], state.structure.action_size)
    k_start, k_noise = jax.random.split(key)
    x_T = jax.random.normal(k_start, (B, d))
    noise = jax.random.normal(k_noise, (T, B, d))
    net = state.actor
    # The state's and the step's parts of the trunk's input are computed once per chain.
    state_part = net.apply(actor_params, obs, method=NoiseNet.state_part)
    time_part = net.apply(actor_params, jnp.arange(T), method=NoiseNet.time_part)

    def eps_fn(x, t):
        return net.apply(actor_params, x, state_part + time_part[t], method=NoiseNet.trunk)

    return sampler(eps_fn, schedule, x_T, noise)
