"""The compiled training loop: N MJX environments, the replay buffer and QVPO updates in one scan.

``Trainer(config, env_name)`` holds only static settings. ``trainer.init(key)`` builds the whole
state; ``trainer.run_chunk(state)`` is one pure function (jit it with the state donated) that runs
``chunk_steps`` vector steps and then an evaluation, and returns the state and a dict of scalars,
the only thing the host sees per chunk.

Scale-out is JAX's own: ``trainer.init_seeds(seeds)`` and ``trainer.compile_chunk(num_seeds)``
give the program that runs S seeds (``vmap`` over a leading seed axis of the whole state) on D
devices (``shard_map`` over a one-axis mesh, data parallel). On D devices each holds N / D envs,
its own replay_size / D rows of the buffer (the shard its envs fill) and samples B / D of every
batch; parameters, optimiser states and counters are replicated and kept equal by averaging
gradients (``agent.update(..., axis_name)``). The state's layout does not change with D: env and
buffer rows are split along their leading axis, so a checkpoint reads the same everywhere.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

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

DEVICE_AXIS = "devices"  # the mesh axis that splits envs, buffer rows and batches


class Trainer:
    """Static settings of a run and the pure functions that advance it."""

    def __init__(self, config: QVPOConfig, env_name: str, env_options: dict[str, Any] | None = None,
                 devices: Sequence[jax.Device] | None = None):
        self.config = config
        self.env_name = env_name
        self.env_options = dict(env_options or {})
        envs.spec(env_name)  # unknown names fail here, listing the known ones
        available = list(jax.devices() if devices is None else devices)
        D = config.num_devices or len(available)
        if D > len(available):
            raise ValueError(
                f"num_devices ({D}) exceeds the {len(available)} {available[0].platform} "
                f"device(s) JAX sees; on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count"
                f"={D} makes {D}")
        config.check_divisible(D)
        self.num_devices = D
        self.devices = available[:D]
        self.mesh = Mesh(np.array(self.devices), (DEVICE_AXIS,))
        self.axis_name = DEVICE_AXIS if D > 1 else None
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
        # What one device runs: its share of the envs (all of them on one device).
        self.vec = envs.VecEnv(self.env, config.num_envs // D, config.episode_length)
        self.eval_vec = envs.VecEnv(self.env, config.num_eval_envs // D, config.episode_length)
        self.all_envs = envs.VecEnv(self.env, config.num_envs, config.episode_length)
        self._init_fns: dict[int, Any] = {}

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
            env=self.all_envs.reset(k_env), key=k_run,
            env_steps=jnp.zeros((), jnp.int32), chunks=jnp.zeros((), jnp.int32),
            fault=jnp.zeros((), jnp.int32), fault_step=jnp.zeros((), jnp.int32))
        # Brax states alias some arrays (one buffer under two leaves); a donated state must not.
        return jax.tree.map(jnp.copy, state)

    # scale-out --------------------------------------------------------------------------
    def state_specs(self, state: TrainState, num_seeds: int = 1) -> TrainState:
        """Partition specs of ``state`` (a state or its shapes): env and buffer rows split over
        the devices along their leading (after the seed) axis, everything else replicated."""
        split = P(*((None,) if num_seeds > 1 else ()), DEVICE_AXIS)
        rep = P()
        everywhere = lambda tree, spec: jax.tree.map(lambda _: spec, tree)  # noqa: E731
        return TrainState(
            agent=everywhere(state.agent, rep),
            replay=state.replay.replace(data=everywhere(state.replay.data, split),
                                        position=rep, size=rep),
            env=state.env.replace(inner=everywhere(state.env.inner, split),
                                  episode_step=split, episode_return=split, key=rep),
            key=rep, env_steps=rep, chunks=rep, fault=rep, fault_step=rep)

    def shardings(self, state: TrainState, num_seeds: int = 1) -> TrainState:
        specs = self.state_specs(state, num_seeds)
        return jax.tree.map(lambda spec: NamedSharding(self.mesh, spec), specs,
                            is_leaf=lambda x: isinstance(x, P))

    def init_seeds(self, seeds: Sequence[int]) -> TrainState:
        """The state of ``len(seeds)`` independent runs, placed on the devices. One seed: the
        state of ``init`` itself; S seeds: every leaf with a leading axis S (seed i's slice is
        exactly ``init(PRNGKey(seeds[i]))``)."""
        S = len(seeds)
        keys = (jax.random.PRNGKey(seeds[0]) if S == 1
                else jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
        if S not in self._init_fns:  # one compile per seed count, however many runs start
            fn = self.init if S == 1 else jax.vmap(self.init)
            shapes = jax.eval_shape(fn, keys)
            # Jitted, so the leaves have exactly the types the chunk returns (no second compile).
            self._init_fns[S] = jax.jit(fn, out_shardings=self.shardings(shapes, S))
        return self._init_fns[S](keys)

    def compile_chunk(self, state: TrainState, num_seeds: int = 1):
        """``run_chunk`` for ``state`` (from ``init_seeds``), vmapped over seeds and sharded
        over the devices, jitted with the state donated. Metrics: as ``run_chunk``'s, with a
        leading seed axis when ``num_seeds > 1``, and equal on every device."""
        fn = self.run_chunk if num_seeds == 1 else jax.vmap(self.run_chunk)
        if self.num_devices == 1:
            return jax.jit(fn, donate_argnums=0)
        specs = self.state_specs(state, num_seeds)
        # check_vma off: Brax's step returns some leaves that are the same on every device
        # (model constants), which the varying-axis check rejects as carry types. What must be
        # replicated is so by construction (averaged gradients, pmean'd metrics; a test
        # compares the devices' copies).
        fn = jax.shard_map(fn, mesh=self.mesh, in_specs=(specs,), out_specs=(specs, P()),
                           check_vma=False)
        # The state comes back placed as it went in, so the next call hits the same compilation.
        return jax.jit(fn, donate_argnums=0,
                       out_shardings=(self.shardings(state, num_seeds),
                                      NamedSharding(self.mesh, P())))

    def _device_key(self, key: jax.Array) -> jax.Array:
        """A key of this device's own (its envs and its share of the batch draw their own
        randomness); the key itself on one device."""
        if self.axis_name is None:
            return key
        return jax.random.fold_in(key, jax.lax.axis_index(self.axis_name))

    def _pmean(self, tree):
        return tree if self.axis_name is None else jax.lax.pmean(tree, self.axis_name)

    def _psum(self, tree):
        return tree if self.axis_name is None else jax.lax.psum(tree, self.axis_name)

    # the compiled pieces ----------------------------------------------------------------
    def vector_step(self, state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        """Act on all N envs, step the physics, store N transitions, then (after warm-up)
        ``updates_per_step`` QVPO updates on batches sampled once for all of them (critic
        updates; the actor takes one per ``critic_updates_per_actor`` of them)."""
        cfg, N = self.config, self.config.num_envs
        key, k_act, k_sample, k_update = jax.random.split(state.key, 4)
        k_act, k_sample, k_update = (self._device_key(k) for k in (k_act, k_sample, k_update))
        obs = state.env.obs  # (N / D, o) on each device
        action = jax.lax.cond(
            state.env_steps < cfg.start_steps,
            lambda: jax.random.uniform(k_act, (self.vec.num_envs, self.vec.action_size),
                                       minval=-1.0, maxval=1.0),
            lambda: agent.act(state.agent, obs, k_act))
        env_state = state.env
        if self.axis_name is not None:
            # The env key is replicated; each device resets its envs with a key of its own.
            env_key, k_env = jax.random.split(env_state.key)
            env_state = env_state.replace(key=self._device_key(k_env))
        env_state, result = self.vec.step(env_state, action)
        if self.axis_name is not None:
            env_state = env_state.replace(key=env_key)
        buffer = replay.add(state.replay, agent.Transition(
            obs=obs, action=action, reward=result.reward, next_obs=result.next_obs,
            terminated=result.terminated))
        env_steps = state.env_steps + N
        agent_state = state.agent.replace(env_steps=env_steps)

        def do_updates(agent_state):
            batches = replay.sample(buffer, k_sample,
                                    (cfg.updates_per_step, cfg.batch_size // self.num_devices))
            d = cfg.critic_updates_per_actor
            if d == 1:  # the reference: critic and actor every update
                fn = agent.update
            else:  # groups of d critic updates, then one actor update
                fn = agent.delayed_update
                batches = jax.tree.map(
                    lambda x: x.reshape(cfg.updates_per_step // d, d, *x.shape[1:]), batches)
            keys = jax.random.split(k_update, cfg.updates_per_step // d)
            agent_state, metrics = jax.lax.scan(
                lambda a, xs: fn(a, *xs, axis_name=self.axis_name), agent_state,
                (batches, keys))
            return agent_state, self._pmean(jax.tree.map(jnp.mean, metrics))

        # Before warm-up ends: the same metrics structure, zeros (the chunk masks them out).
        shapes = jax.eval_shape(do_updates, agent_state)[1]
        zeros = {k: jnp.zeros(v.shape, v.dtype) for k, v in shapes.items()}
        updating = env_steps >= cfg.start_steps
        agent_state, metrics = jax.lax.cond(
            updating, do_updates, lambda a: (a, zeros), agent_state)
        step_metrics = {**metrics, "updated": updating.astype(jnp.float32),
                        **self._psum({"episodes": jnp.sum(result.done),
                                      "nonfinite_steps": jnp.sum(result.invalid),
                                      "episode_return_sum": jnp.sum(result.episode_return)})}
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
        """``num_eval_envs`` full episodes with the evaluation policy: (mean, std) of returns.
        On D devices each runs num_eval_envs / D of them."""
        k_reset, k_steps = jax.random.split(self._device_key(key))
        env_state = self.eval_vec.reset(k_reset)
        n = self.eval_vec.num_envs

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
        if self.axis_name is not None:
            returns = jax.lax.all_gather(returns, self.axis_name, tiled=True)
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
