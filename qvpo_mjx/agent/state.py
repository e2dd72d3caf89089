"""The agent's state: networks, targets, optimiser states, running statistics and counters.

``AgentState`` is one pytree. Its static part, :class:`AgentStructure`, holds only what shapes
the compiled program (sizes, sample counts, names of code paths); every float hyper-parameter
travels in ``state.hparams`` as a traced float32 array, so changing one never recompiles, and
reading one from the structure by mistake is an ``AttributeError``, not the default value.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from qvpo_mjx import diffusion
from qvpo_mjx.agent import novelty as novelty_bonus
from qvpo_mjx.agent.normalizer import ObsStats
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
    reward: jax.Array  # (B,) the reward, or with n-step returns the discounted sum of rewards
    next_obs: jax.Array  # (B, o) where the rewards end: the bootstrap state
    terminated: jax.Array  # (B,) float32 in {0, 1}
    # (B,) env steps the reward sums (n-step returns: the bootstrap is discounted by
    # gamma ** reward_steps); None means 1 everywhere, as stored.
    reward_steps: jax.Array | None = None


def structure_of(cls, config: QVPOConfig, obs_size: int, action_size: int):
    """An instance of the frozen dataclass ``cls`` whose fields are the env's sizes and the
    config's fields of the same names (an algorithm's static part)."""
    sizes = {"obs_size": int(obs_size), "action_size": int(action_size)}
    return cls(**sizes, **{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)
                           if f.name not in sizes})


@dataclasses.dataclass(frozen=True)
class AgentStructure:
    """What shapes the agent's compiled functions: the structural fields of a
    :class:`QVPOConfig` that the agent reads (each documented there) and the env's sizes.
    Hashable, so it rides in the state's treedef; no traced hyper-parameter is in it."""

    obs_size: int
    action_size: int
    diffusion_steps: int
    beta_schedule: str
    hidden_size: int
    time_embed_size: int
    deterministic_eval: bool
    behavior_samples: int
    target_samples: int
    eval_samples: int
    train_samples: int
    chosen: int
    q_transform: str
    entropy_samples: int
    critic_hidden_size: int
    critic_layer_norm: bool
    critic_bins: int
    obs_normalization: bool
    novelty: bool  # the novelty bonus is on (novelty_weight > 0)

    @classmethod
    def of(cls, config: QVPOConfig, obs_size: int, action_size: int) -> "AgentStructure":
        return structure_of(cls, config, obs_size, action_size)

    def replace(self, **changes) -> "AgentStructure":
        return dataclasses.replace(self, **changes)

    @property
    def actor(self) -> NoiseNet:
        return NoiseNet(action_size=self.action_size, obs_size=self.obs_size,
                        hidden_size=self.hidden_size, time_embed_size=self.time_embed_size)

    @property
    def critic(self) -> TwinCritic:
        return TwinCritic(hidden_size=self.critic_hidden_size or self.hidden_size,
                          layer_norm=self.critic_layer_norm, bins=self.critic_bins)

    @property
    def schedule(self) -> diffusion.Schedule:
        return diffusion.make_schedule(self.beta_schedule, self.diffusion_steps)


class StructureViews:
    """The networks and schedule of a state's static ``structure``, as attributes of the state
    (every algorithm's state: QVPO's and the baselines')."""

    @property
    def actor(self):
        return self.structure.actor

    @property
    def critic(self) -> TwinCritic:
        return self.structure.critic

    @property
    def schedule(self) -> diffusion.Schedule:
        return self.structure.schedule


@struct.dataclass
class AgentState(StructureViews):
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
    critic_updates: jax.Array  # () int32, critic updates done
    actor_updates: jax.Array  # () int32, actor updates done
    env_steps: jax.Array  # () int32, environment transitions seen (entropy-weight schedule)
    # The novelty bonus's networks and normaliser (agent/novelty.py); None without the option.
    novelty: novelty_bonus.NoveltyState | None
    structure: AgentStructure = struct.field(pytree_node=False)


def optimizer(lr: jax.Array, eps: jax.Array, clip: jax.Array) -> optax.GradientTransformation:
    """Adam with global-norm clipping, built from (possibly traced) hyper-parameters.

    Its state's structure does not depend on the values, so the same state serves any of them.
    """
    return optax.chain(optax.clip_by_global_norm(clip), optax.scale_by_adam(eps=eps),
                       optax.scale(-lr))


def init_novelty(key: jax.Array, obs_size: int, structure, hparams: dict[str, jax.Array]
                 ) -> novelty_bonus.NoveltyState | None:
    """The novelty bonus's state of a fresh agent of any algorithm (``structure.novelty`` and
    ``structure.critic`` say whether and how wide; the predictor steps with the critic's
    optimiser settings), or None without the bonus. ``key``: the agent's own init key; the
    bonus draws from a key folded out of it, so the networks' draws are those of a run
    without it."""
    if not structure.novelty:
        return None
    critic_tx = optimizer(hparams["critic_lr"], hparams["adam_eps"], hparams["grad_clip"])
    return novelty_bonus.init(jax.random.fold_in(key, 0x4E0F), obs_size,
                              structure.critic.hidden_size, critic_tx)


def init(key: jax.Array, obs_size: int, action_size: int, config: QVPOConfig) -> AgentState:
    """Fresh agent: networks initialised from ``key``, targets equal to them, Adam states at 0."""
    hparams = {k: jnp.asarray(v, jnp.float32) for k, v in config.hyperparams().items()}
    structure = AgentStructure.of(config, obs_size, action_size)
    zero = jnp.zeros((), jnp.int32)
    k_actor, k_critic = jax.random.split(key)
    actor_params = structure.actor.init(k_actor, jnp.zeros((action_size,)), jnp.zeros(()),
                                        jnp.zeros((obs_size,)))
    critic_params = structure.critic.init(k_critic, jnp.zeros((obs_size,)),
                                          jnp.zeros((action_size,)))
    actor_tx = optimizer(hparams["actor_lr"], hparams["adam_eps"], hparams["grad_clip"])
    critic_tx = optimizer(hparams["critic_lr"], hparams["adam_eps"], hparams["grad_clip"])
    novelty = init_novelty(key, obs_size, structure, hparams)
    return AgentState(
        actor_params=actor_params, critic_params=critic_params,
        # Targets are copies, not aliases: a donated state must not hold one buffer twice.
        actor_target_params=jax.tree.map(jnp.copy, actor_params),
        critic_target_params=jax.tree.map(jnp.copy, critic_params),
        actor_opt_state=actor_tx.init(actor_params), critic_opt_state=critic_tx.init(critic_params),
        hparams=hparams, q_mean=jnp.zeros((), jnp.float32), q_std=jnp.ones((), jnp.float32),
        log_entropy_weight=jnp.log(jnp.maximum(hparams["entropy_weight"], 1e-8)),
        obs_stats=ObsStats.init(obs_size), critic_updates=zero, actor_updates=zero,
        env_steps=zero, novelty=novelty, structure=structure)
