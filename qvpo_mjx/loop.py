"""The compiled training loop: N MJX environments, the replay buffer and QVPO updates in one scan.

``Trainer(config, env_name)`` holds only static settings. ``trainer.init(key)`` builds the whole
state; ``trainer.run_chunk(state)`` is one pure function (jit it with the state donated) that runs
``config.chunk_vector_steps`` vector steps and then an evaluation, and returns the state and a dict of scalars,
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

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import envs
from qvpo_mjx import agent, algorithms, behavior_noise, parallel, replay
from qvpo_mjx.config import QVPOConfig


@struct.dataclass
class TrainState:
    # The algorithm's state (agent.AgentState for qvpo; qvpo_mjx/algorithms/): holds the run's
    # counters of env steps, critic and actor updates.
    agent: Any
    replay: replay.ReplayBuffer
    env: envs.EnvState
    key: jax.Array
    chunks: jax.Array  # () int32, chunks completed
    fault: jax.Array  # () int32, 0 or 1 + index in FAULT_NAMES of the first non-finite value
    fault_step: jax.Array  # () int32, env_steps at which it appeared
    # The behaviour policy's correlated sampler noise, one stream per env and candidate (None:
    # white noise, drawn afresh each step from the act key, as the reference).
    noise: behavior_noise.NoiseState | None = None

    @property
    def env_steps(self) -> jax.Array:
        """() int32 environment transitions collected (the agent's counter: one copy)."""
        return self.agent.env_steps


# What the in-jit numerical guard watches, in the order of TrainState.fault.
FAULT_NAMES = ("critic/loss", "actor/loss", "critic/q_mean", "critic/q_target", "parameters")

DEVICE_AXIS = "devices"  # the mesh axis that splits envs, buffer rows and batches
SEED_AXIS = "seeds"  # the vmap axis of S seeds trained in one program


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
        # The one place a config meets the devices: "all" becomes a number, sizes that must
        # split are checked, and the rounded ones are noted (the run's first line shows them).
        self.config, self.fit_notes = config.fit_to_devices(D)
        config = self.config
        self.algorithm = algorithms.get(config.algo)
        self.num_devices = D
        self.devices = available[:D]
        self.mesh = Mesh(np.array(self.devices), (DEVICE_AXIS,))
        self.axis_name = DEVICE_AXIS if D > 1 else None
        self.env = envs.make(env_name, **self.env_options)
        # What one device runs: its share of the envs (all of them on one device).
        bound = config.divergence_bound
        self.vec = envs.VecEnv(self.env, config.num_envs // D, config.episode_length, bound)
        self.eval_vec = envs.VecEnv(self.env, config.num_eval_envs // D, config.episode_length,
                                    bound)
        self.all_envs = envs.VecEnv(self.env, config.num_envs, config.episode_length, bound)
        self._init_fns: dict[int, Any] = {}

    # state ------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> TrainState:
        k_agent, k_env, k_run = jax.random.split(key, 3)
        agent_state = self.algorithm.init(k_agent, self.vec.observation_size,
                                          self.vec.action_size, self.config)
        state = TrainState(
            agent=agent_state,
            replay=replay.init(self.config.replay_size, self.vec.observation_size,
                               self.vec.action_size, self.algorithm.improves_actions),
            env=self.all_envs.reset(k_env), key=k_run, chunks=jnp.zeros((), jnp.int32),
            fault=jnp.zeros((), jnp.int32), fault_step=jnp.zeros((), jnp.int32),
            noise=self._init_noise(jax.random.fold_in(key, 1)))
        # Brax states alias some arrays (one buffer under two leaves); a donated state must not.
        return jax.tree.map(jnp.copy, state)

    def _init_noise(self, key: jax.Array) -> behavior_noise.NoiseState | None:
        cfg = self.config
        if cfg.behavior_noise == "white":
            return None
        return behavior_noise.init(key, cfg.num_envs, cfg.behavior_samples, cfg.diffusion_steps,
                                   self.vec.action_size, self._noise_components)

    @property
    def _noise_components(self) -> int:
        return behavior_noise.num_components(self.config.behavior_noise,
                                             self.config.episode_length)

    # scale-out --------------------------------------------------------------------------
    def state_specs(self, state: TrainState, num_seeds: int = 1) -> TrainState:
        """Partition specs of ``state`` (a state or its shapes): env and buffer rows split over
        the devices along their leading (after the seed) axis, everything else replicated."""
        split = P(*((None,) if num_seeds > 1 else ()), DEVICE_AXIS)
        rep = P()
        everywhere = lambda tree, spec: jax.tree.map(lambda _: spec, tree)  # noqa: E731
        return TrainState(
            agent=everywhere(state.agent, rep),
            replay=state.replay.replace(data=everywhere(state.replay.data, split), ends=split,
                                        position=rep, size=rep,
                                        improved=None if state.replay.improved is None
                                        else split),
            env=state.env.replace(inner=everywhere(state.env.inner, split),
                                  episode_step=split, episode_return=split, key=rep),
            key=rep, chunks=rep, fault=rep, fault_step=rep,
            noise=None if state.noise is None else everywhere(state.noise, split))

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
        fn = (self.run_chunk if num_seeds == 1 else
              jax.vmap(functools.partial(self.run_chunk, seed_axis=SEED_AXIS),
                       axis_name=SEED_AXIS))
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

    @staticmethod
    def _shared(x: jax.Array, seed_axis: str | None) -> jax.Array:
        """A counter that every seed holds equal (all seeds step in lock-step) as one unbatched
        value, so a ``lax.cond`` on it stays a branch under the seed ``vmap`` instead of
        becoming a select that runs both sides."""
        return x if seed_axis is None else jax.lax.pmax(x, seed_axis)

    # the compiled pieces ----------------------------------------------------------------
    def vector_step(self, state: TrainState, seed_axis: str | None = None
                    ) -> tuple[TrainState, dict[str, jax.Array]]:
        """Act on all N envs, step the physics, store N transitions, then (after warm-up)
        ``updates_per_step`` critic updates, the actor taking every
        ``critic_updates_per_actor``-th (:func:`agent.scheduled_updates`). ``seed_axis``: the
        vmap axis when S seeds run as one program."""
        cfg, N = self.config, self.config.num_envs
        key, k_act, k_sample, k_update = jax.random.split(state.key, 4)
        k_act, k_sample, k_update = (self._device_key(k) for k in (k_act, k_sample, k_update))
        obs = state.env.obs  # (N / D, o) on each device
        env_steps = self._shared(state.env_steps, seed_axis)
        warming_up = env_steps < cfg.start_steps

        def uniform():
            action = jax.random.uniform(k_act, (self.vec.num_envs, self.vec.action_size),
                                        minval=-1.0, maxval=1.0)
            return action, behavior_zeros

        noise = state.noise
        if noise is not None:
            rho, weights = behavior_noise.coefficients(
                cfg.behavior_noise, state.agent.hparams["behavior_noise_tau"],
                self._noise_components)
            draws = behavior_noise.draws(noise, weights)
        else:
            draws = None

        def behave():
            return self.algorithm.act(state.agent, obs, k_act, draws)

        behavior_zeros = jax.tree.map(lambda v: jnp.zeros(v.shape, v.dtype),
                                      jax.eval_shape(behave)[1])
        action, act_metrics = jax.lax.cond(warming_up, uniform, behave)
        env_state = state.env
        if self.axis_name is not None:
            # The env key is replicated; each device resets its envs with a key of its own.
            env_key, k_env = jax.random.split(env_state.key)
            env_state = env_state.replace(key=self._device_key(k_env))
        env_state, result = self.vec.step(env_state, action, reset_axis=seed_axis)
        if self.axis_name is not None:
            env_state = env_state.replace(key=env_key)
        if noise is not None:  # one env step on; an env whose episode ended starts afresh
            noise = behavior_noise.advance(noise, jax.random.fold_in(k_act, 1), rho, result.done)
        buffer = replay.add(state.replay, agent.Transition(
            obs=obs, action=action, reward=result.reward, next_obs=result.next_obs,
            terminated=result.terminated), ends=result.done)
        agent_state = agent.update_obs_stats(
            state.agent.replace(env_steps=state.agent.env_steps + N), obs, self.axis_name)

        def do_updates(carry):
            agent_state, improved = carry
            return self._updates(agent_state, buffer.replace(improved=improved), k_sample,
                                 k_update, seed_axis)

        # Before warm-up ends: the same metrics structure, zeros (the chunk masks them out).
        shapes = jax.eval_shape(do_updates, (agent_state, buffer.improved))[1]
        zeros = jax.tree.map(lambda v: jnp.zeros(v.shape, v.dtype), shapes)
        updating = env_steps + N >= cfg.start_steps
        (agent_state, improved), metrics = jax.lax.cond(
            updating, do_updates, lambda c: (c, zeros), (agent_state, buffer.improved))
        buffer = buffer.replace(improved=improved)
        step_metrics = {**metrics, "updated": updating.astype(jnp.float32),
                        "acted": 1.0 - warming_up.astype(jnp.float32),
                        "behavior": parallel.pmean(act_metrics, self.axis_name),
                        **parallel.psum({"episodes": jnp.sum(result.done),
                                         "nonfinite_steps": jnp.sum(result.invalid),
                                         "episode_return_sum": jnp.sum(result.episode_return)},
                                        self.axis_name)}
        fault = self._first_fault({**metrics["critic"], **metrics["actor"]}, agent_state)
        keep = state.fault > 0
        new_state = state.replace(agent=agent_state, replay=buffer, env=env_state, key=key,
                                  noise=noise,
                                  fault=jnp.where(keep, state.fault, fault),
                                  fault_step=jnp.where(keep | (fault == 0), state.fault_step,
                                                       agent_state.env_steps))
        return new_state, step_metrics

    def _updates(self, agent_state: agent.AgentState, buffer: replay.ReplayBuffer,
                 k_sample: jax.Array, k_update: jax.Array, seed_axis: str | None):
        """The updates of one vector step. Returns (the agent, the buffer's improved-action
        column: DIPO's, None for the others) and {"critic": metrics averaged over this step's
        critic updates, "actor": over its actor updates (0 if none), "actor_updates": how
        many there were}: each update metric is named under its part."""
        cfg = self.config
        U, B = cfg.updates_per_step, cfg.batch_size // self.num_devices
        k_critic_rows, k_actor_rows = jax.random.split(k_sample)
        shared = functools.partial(self._shared, seed_axis=seed_axis)
        if cfg.reward_scale_auto:  # fixed once, from what the buffer holds at the first update
            def set_scale(agent_state):
                scale = 1.0 / jnp.maximum(1.0, replay.mean_abs_reward(buffer, self.axis_name))
                return agent_state.replace(hparams={**agent_state.hparams,
                                                    "reward_scale": scale})

            agent_state = jax.lax.cond(shared(agent_state.critic_updates) == 0, set_scale,
                                       lambda a: a, agent_state)
        # Indices up front, transitions gathered inside the update scan: one batch at a time
        # is held, not all U of a vector step (at N = 4096 those were gigabytes).
        critic_rows = replay.sample_rows(buffer, k_critic_rows, (U, B))
        # The actor's states are a batch of their own, as in the reference (it samples the
        # buffer again); only their obs rows are gathered.
        actor_batches = U // cfg.critic_updates_per_actor if U % cfg.critic_updates_per_actor \
            == 0 else U
        if self.algorithm.actor_own_batch:
            actor_rows = replay.sample_rows(buffer, k_actor_rows, (actor_batches, B))

            def actor_data(j):
                obs = buffer.data.obs[actor_rows[j]]
                # DIPO also needs the rows, to improve their actions in place.
                return (algorithms.ActorRows(rows=actor_rows[j], obs=obs)
                        if self.algorithm.improves_actions else obs)
        else:  # the critic batch just used (the last of each group, or each one), whole
            n = cfg.critic_updates_per_actor
            actor_rows = critic_rows[n - 1::n] if actor_batches < U else critic_rows

            def actor_data(j):
                return replay.gather(buffer, actor_rows[j])
        if cfg.n_step == 1:
            def critic_batch(i):
                return replay.gather(buffer, critic_rows[i])
        else:
            def critic_batch(i):
                return replay.n_step_rows(buffer, critic_rows[i], cfg.n_step,
                                          agent_state.hparams["gamma"], self.vec.num_envs)

        actor_step = (functools.partial(self.algorithm.actor_step, shared=shared)
                      if self.algorithm.actor_takes_shared else self.algorithm.actor_step)
        if buffer.improved is not None:  # the actor steps read and write it in the agent
            agent_state = agent_state.replace(improved=buffer.improved)
        agent_state, metrics, actor_updates = agent.scheduled_updates(
            agent_state, critic_batch, actor_data, U, k_update,
            cfg.critic_updates_per_actor, self.axis_name,
            shared=shared, critic_step_fn=self.algorithm.critic_step, actor_step_fn=actor_step)
        improved = None
        if buffer.improved is not None:
            improved, agent_state = agent_state.improved, agent_state.replace(improved=None)
        metrics = parallel.pmean(metrics, self.axis_name)
        if cfg.reward_scale_auto:
            metrics = {**metrics, "critic/reward_scale": agent_state.hparams["reward_scale"]}
        return (agent_state, improved), {"critic": _part(metrics, "critic"),
                                         "actor": _part(metrics, "actor"),
                                         "actor_updates": actor_updates}

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
            action = self.algorithm.eval_act(agent_state, env_state.obs, k)
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

    def run_chunk(self, state: TrainState, seed_axis: str | None = None
                  ) -> tuple[TrainState, dict[str, jax.Array]]:
        """``config.chunk_vector_steps`` vector steps, then one evaluation. Returns scalar
        metrics: ``env_steps``, ``eval_return_mean`` / ``_std``, ``train_return_mean`` (episodes
        finished in the chunk; NaN if none), ``critic_updates`` and ``actor_updates`` (so far),
        the update metrics averaged over the updates of the chunk (``critic/...`` over the
        vector steps that updated, ``actor/...`` over the actor updates; NaN where there were
        none), and the behaviour policy's (``behavior/...``) over the vector steps that acted
        with it; ``coverage``, how far the buffer's observations spread
        (:func:`replay.obs_spread`)."""
        state, per_step = jax.lax.scan(lambda s, _: self.vector_step(s, seed_axis), state, None,
                                       length=self.config.chunk_vector_steps)
        key, k_eval = jax.random.split(state.key)
        eval_mean, eval_std = self.evaluate(state.agent, k_eval)
        episodes = jnp.sum(per_step["episodes"])
        return_sum = jnp.sum(per_step["episode_return_sum"])

        def weighted_mean(values, weights):
            total = jnp.sum(weights)
            return jnp.where(total > 0, jnp.sum(values * weights) / jnp.maximum(total, 1e-9),
                             jnp.nan)

        updated, actor_weight = per_step["updated"], per_step["actor_updates"]
        metrics = {**{k: weighted_mean(v, updated) for k, v in per_step["critic"].items()},
                   **{k: weighted_mean(v, actor_weight) for k, v in per_step["actor"].items()},
                   **{k: weighted_mean(v, per_step["acted"])
                      for k, v in per_step["behavior"].items()}}
        metrics.update(
            env_steps=state.env_steps, eval_return_mean=eval_mean, eval_return_std=eval_std,
            train_return_mean=jnp.where(episodes > 0, return_sum / jnp.maximum(episodes, 1),
                                        jnp.nan),
            critic_updates=state.agent.critic_updates, actor_updates=state.agent.actor_updates,
            nonfinite_steps=jnp.sum(per_step["nonfinite_steps"]),
            coverage=replay.obs_spread(state.replay, self.axis_name),
            fault=state.fault, fault_step=state.fault_step)
        return state.replace(key=key, chunks=state.chunks + 1), metrics


def _part(metrics: dict[str, jax.Array], part: str) -> dict[str, jax.Array]:
    """The metrics named under ``part/``."""
    return {k: v for k, v in metrics.items() if k.startswith(part + "/")}
