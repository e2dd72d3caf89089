"""The compiled training loop: N MJX environments, the replay buffer and QVPO updates in one scan.

``Trainer(config, env_name)`` holds only static settings. ``trainer.init(key)`` builds the whole
state; ``trainer.run_chunk(state)`` is one pure function (jit it with the state donated) that runs
``chunk_steps`` vector steps and then an evaluation, and returns the state and a dict of scalars,
the only thing the host sees per chunk.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

import envs
from qvpo_mjx import agent, replay
from qvpo_mjx.config import QVPOConfig


@struct.dataclass
class TrainState:
    agent: agent.AgentState
    replay: replay.ReplayBuffer
    env: envs.EnvState
    key: jax.Array
    env_steps: jax.Array  # () int32, environment transitions collected
    chunks: jax.Array  # () int32, chunks completed
    fault: jax.Array  # () int32, 0 or 1 + index in FAULT_NAMES of the first non-finite value
    fault_step: jax.Array  # () int32, env_steps at which it appeared


# What the in-jit numerical guard watches, in the order of TrainState.fault.
FAULT_NAMES = ("loss/critic", "loss/actor", "q/mean", "q/target", "parameters")


class Trainer:
    """Static settings of a run and the pure functions that advance it."""

    def __init__(self, config: QVPOConfig, env_name: str, env_options: dict[str, Any] | None = None):
        self.config = config
        self.env_name = env_name
        self.env_options = dict(env_options or {})
        envs.spec(env_name)  # unknown names fail here, listing the known ones
        first_update_rows = min(config.replay_size,
                                max(1, math.ceil(config.start_steps / config.num_envs))
                                * config.num_envs)
        if config.batch_size > first_update_rows:
            raise ValueError(
                f"batch_size ({config.batch_size}) exceeds the {first_update_rows} transitions the "
                f"replay buffer holds at the first update (start_steps {config.start_steps}, "
                f"num_envs {config.num_envs}, replay_size {config.replay_size}); raise "
                f"start_steps or lower batch_size")
        self.env = envs.make(env_name, **self.env_options)
        self.vec = envs.VecEnv(self.env, config.num_envs, config.episode_length)
        self.eval_vec = envs.VecEnv(self.env, config.num_eval_envs, config.episode_length)

    # sizes ------------------------------------------------------------------------------
    @property
    def chunk_steps(self) -> int:
        """Vector steps per chunk: one evaluation interval, rounded up to whole vector steps."""
        return max(1, math.ceil(self.config.eval_interval / self.config.num_envs))

    @property
    def chunk_env_steps(self) -> int:
        return self.chunk_steps * self.config.num_envs

    @property
    def num_chunks(self) -> int:
        return max(1, math.ceil(self.config.total_steps / self.chunk_env_steps))

    # state ------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> TrainState:
        k_agent, k_env, k_run = jax.random.split(key, 3)
        agent_state = agent.init(k_agent, self.vec.observation_size, self.vec.action_size,
                                 self.config)
        state = TrainState(
            agent=agent_state,
            replay=replay.init(self.config.replay_size, self.vec.observation_size,
                               self.vec.action_size),
            env=self.vec.reset(k_env), key=k_run,
            env_steps=jnp.zeros((), jnp.int32), chunks=jnp.zeros((), jnp.int32),
            fault=jnp.zeros((), jnp.int32), fault_step=jnp.zeros((), jnp.int32))
        # Brax states alias some arrays (one buffer under two leaves); a donated state must not.
        return jax.tree.map(jnp.copy, state)

    # the compiled pieces ----------------------------------------------------------------
    def vector_step(self, state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        """Act on all N envs, step the physics, store N transitions, then (after warm-up)
        ``updates_per_step`` QVPO updates on batches sampled once for all of them."""
        cfg, N = self.config, self.config.num_envs
        key, k_act, k_sample, k_update = jax.random.split(state.key, 4)
        obs = state.env.obs
        action = jax.lax.cond(
            state.env_steps < cfg.start_steps,
            lambda: jax.random.uniform(k_act, (N, self.vec.action_size), minval=-1.0, maxval=1.0),
            lambda: agent.act(state.agent, obs, k_act))
        env_state, result = self.vec.step(state.env, action)
        buffer = replay.add(state.replay, agent.Transition(
            obs=obs, action=action, reward=result.reward, next_obs=result.next_obs,
            terminated=result.terminated))
        env_steps = state.env_steps + N
        agent_state = state.agent.replace(env_steps=env_steps)

        def do_updates(agent_state):
            batches = replay.sample(buffer, k_sample, (cfg.updates_per_step, cfg.batch_size))
            keys = jax.random.split(k_update, cfg.updates_per_step)
            agent_state, metrics = jax.lax.scan(
                lambda a, xs: agent.update(a, *xs), agent_state, (batches, keys))
            return agent_state, jax.tree.map(jnp.mean, metrics)

        # Before warm-up ends: the same metrics structure, zeros (the chunk masks them out).
        shapes = jax.eval_shape(do_updates, agent_state)[1]
        zeros = {k: jnp.zeros(v.shape, v.dtype) for k, v in shapes.items()}
        updating = env_steps >= cfg.start_steps
        agent_state, metrics = jax.lax.cond(
            updating, do_updates, lambda a: (a, zeros), agent_state)
        step_metrics = {**metrics, "updated": updating.astype(jnp.float32),
                        "episodes": jnp.sum(result.done),
                        "nonfinite_steps": jnp.sum(result.invalid),
                        "episode_return_sum": jnp.sum(result.episode_return)}
        fault = self._first_fault(metrics, agent_state)
        keep = state.fault > 0
        new_state = state.replace(agent=agent_state, replay=buffer, env=env_state, key=key,
                                  env_steps=env_steps,
                                  fault=jnp.where(keep, state.fault, fault),
                                  fault_step=jnp.where(keep | (fault == 0), state.fault_step,
                                                       env_steps))
        return new_state, step_metrics

    @staticmethod
    def _first_fault(metrics: dict[str, jax.Array], agent_state: agent.AgentState) -> jax.Array:
        """0 if every watched value is finite, else 1 + the index of the first that is not."""
        params = (agent_state.actor_params, agent_state.critic_params)
        bad = [~jnp.isfinite(metrics[k]) for k in FAULT_NAMES[:-1]]
        bad.append(~jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)])))
        bad = jnp.stack(bad)
        return jnp.where(jnp.any(bad), jnp.argmax(bad) + 1, 0).astype(jnp.int32)

    def evaluate(self, agent_state: agent.AgentState, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``num_eval_envs`` full episodes with the evaluation policy: (mean, std) of returns."""
        k_reset, k_steps = jax.random.split(key)
        env_state = self.eval_vec.reset(k_reset)
        n = self.config.num_eval_envs

        def body(carry, k):
            env_state, returns, alive = carry
            action = agent.eval_act(agent_state, env_state.obs, k)
            env_state, result = self.eval_vec.step(env_state, action, auto_reset=False)
            returns = returns + alive * result.reward
            alive = alive * (1.0 - result.done)
            return (env_state, returns, alive), None

        init = (env_state, jnp.zeros((n,), jnp.float32), jnp.ones((n,), jnp.float32))
        (_, returns, _), _ = jax.lax.scan(
            body, init, jax.random.split(k_steps, self.config.episode_length))
        return jnp.mean(returns), jnp.std(returns)

    def run_chunk(self, state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        """``chunk_steps`` vector steps, then one evaluation. Returns scalar metrics:
        ``env_steps``, ``eval_return_mean`` / ``_std``, ``train_return_mean`` (episodes finished
        in the chunk; NaN if none), ``updates`` and the update metrics averaged over the vector
        steps that updated (NaN before warm-up ends)."""
        state, per_step = jax.lax.scan(lambda s, _: self.vector_step(s), state, None,
                                       length=self.chunk_steps)
        key, k_eval = jax.random.split(state.key)
        eval_mean, eval_std = self.evaluate(state.agent, k_eval)
        updated = per_step.pop("updated")
        episodes = jnp.sum(per_step.pop("episodes"))
        return_sum = jnp.sum(per_step.pop("episode_return_sum"))
        nonfinite = jnp.sum(per_step.pop("nonfinite_steps"))
        n_updated = jnp.sum(updated)
        metrics = {k: jnp.where(n_updated > 0, jnp.sum(v * updated) / jnp.maximum(n_updated, 1),
                                jnp.nan)
                   for k, v in per_step.items()}
        metrics.update(
            env_steps=state.env_steps, eval_return_mean=eval_mean, eval_return_std=eval_std,
            train_return_mean=jnp.where(episodes > 0, return_sum / jnp.maximum(episodes, 1),
                                        jnp.nan),
            updates=state.agent.step, nonfinite_steps=nonfinite, fault=state.fault,
            fault_step=state.fault_step)
        return state.replace(key=key, chunks=state.chunks + 1), metrics
