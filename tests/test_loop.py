import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import Env, State

import envs
from qvpo_mjx import agent, algorithms, replay
from qvpo_mjx.config import QVPOConfig
from qvpo_mjx.loop import Trainer

TINY = QVPOConfig(
    hidden_size=16, time_embed_size=8, diffusion_steps=3, batch_size=8, train_samples=4,
    behavior_samples=2, target_samples=2, eval_samples=2, entropy_samples=2, num_envs=4,
    updates_per_step=2, start_steps=16, eval_interval=16, num_eval_envs=2, episode_length=10,
    total_steps=48, replay_size=64)
# The loop's mechanics do not need MJX physics: a plain-JAX task compiles in a second, where an
# MJX model adds tens of seconds to every compiled chunk. The `trainer` fixture keeps an MJX
# task, so the compiled loop is still checked with MJX inside.
TINY_ENV = "double_integrator"


class PlainTask(Env):
    """The sizes of the plain-JAX test tasks below: a 2-vector observation, one action."""

    @property
    def observation_size(self):
        return 2

    @property
    def action_size(self):
        return 1

    @property
    def backend(self):
        return "jax"


class TaggedCounter(PlainTask):
    """A test task whose observation says where it comes from: [tag, t], a tag drawn at
    reset and the episode's step count; reward 1, never terminates. An n-step window of the
    same env keeps its tag and advances t by exactly its length."""

    def reset(self, rng):
        zero = jnp.zeros((), jnp.float32)
        obs = jnp.stack([jax.random.uniform(rng, (), minval=1.0, maxval=2.0), zero])
        return State(pipeline_state=obs, obs=obs, reward=zero, done=zero, metrics={}, info={})

    def step(self, state, action):
        obs = state.obs + jnp.asarray([0.0, 1.0])
        return state.replace(pipeline_state=obs, obs=obs, reward=jnp.ones((), jnp.float32))


if "tagged_counter" not in envs.names():
    envs.register("tagged_counter", TaggedCounter, description="tests: obs [tag, step]")


class Runaway(PlainTask):
    """Dynamics that run away, in plain JAX, for the loop's side of the guard (an MJX model that
    does the same, ``runaway_hinge`` in test_envs, is checked against VecEnv alone: a training
    chunk around it compiles for minutes on a slow CPU): obs [x, v], the velocity grows
    tenfold every step whatever the action, so it passes 1e3 in 4 steps and stays finite for
    30; reward v. The huge-but-finite divergence the divergence bound must catch."""

    def reset(self, rng):
        q = jnp.array([0.0, 1.0])
        zero = jnp.zeros((), jnp.float32)
        return State(pipeline_state=q, obs=q, reward=zero, done=zero, metrics={}, info={})

    def step(self, state, action):
        x, v = state.pipeline_state
        v = 10.0 * v + 0.0 * action[0]
        q = jnp.stack([x + 0.01 * v, v])
        return state.replace(pipeline_state=q, obs=q, reward=v)


if "runaway" not in envs.names():
    envs.register("runaway", Runaway, description="tests: physics that runs away")


def spy_on_batches(monkeypatch):
    """Make every critic and actor update report what it was given, as metrics: the mean of
    its observations (``critic/obs_mean``, ``actor/obs_mean``), the mean length of its n-step
    windows (``critic/reward_steps``) and the share of its windows that stay in one env's
    episode with t advancing by their length (``critic/window_ok``; tagged_counter only)."""
    critic_step, actor_step = agent.critic_step, agent.actor_step

    def critic_spy(state, batch, key, axis_name=None):
        state, metrics = critic_step(state, batch, key, axis_name)
        steps = (jnp.ones_like(batch.reward) if batch.reward_steps is None
                 else batch.reward_steps)
        ok = ((batch.next_obs[:, 0] == batch.obs[:, 0])
              & (batch.next_obs[:, 1] - batch.obs[:, 1] == steps))
        return state, {**metrics, "critic/obs_mean": jnp.mean(batch.obs),
                       "critic/reward_steps": jnp.mean(steps),
                       "critic/window_ok": jnp.mean(ok.astype(jnp.float32))}

    def actor_spy(state, obs, key, axis_name=None):
        state, metrics = actor_step(state, obs, key, axis_name)
        return state, {**metrics, "actor/obs_mean": jnp.mean(obs)}

    # The loop calls the steps the algorithm registry holds (Trainer reads it when built).
    qvpo = algorithms.ALGORITHMS["qvpo"]
    monkeypatch.setitem(algorithms.ALGORITHMS, "qvpo", dataclasses.replace(
        qvpo, critic_step=critic_spy, actor_step=actor_spy))


def transitions(start, n, obs=3, act=1):
    v = jnp.arange(start, start + n, dtype=jnp.float32)
    return agent.Transition(obs=jnp.tile(v[:, None], (1, obs)), action=jnp.tile(v[:, None], (1, act)),
                            reward=v, next_obs=jnp.tile(v[:, None], (1, obs)) + 0.5,
                            terminated=jnp.zeros(n))


def test_replay_ring_wraps_and_samples_only_filled_rows():
    buf = replay.init(10, 3, 1)
    buf = replay.add(buf, transitions(0, 4))
    assert (int(buf.position), int(buf.size)) == (4, 4)
    rows = replay.sample(buf, jax.random.PRNGKey(0), (500,))
    assert set(np.unique(rows.reward).tolist()) == {0.0, 1.0, 2.0, 3.0}
    np.testing.assert_array_equal(rows.next_obs[:, 0], rows.reward + 0.5)  # rows stay whole
    for start in (4, 8, 12):
        buf = replay.add(buf, transitions(start, 4))
    # 16 written into 10 rows: the newest 10 (6..15) remain, written position 16 % 10 = 6.
    assert (int(buf.position), int(buf.size)) == (6, 10)
    assert sorted(np.asarray(buf.data.reward).tolist()) == list(range(6, 16))
    assert replay.sample(buf, jax.random.PRNGKey(1), (2, 3)).obs.shape == (2, 3, 3)


@pytest.fixture(scope="module")
def trainer():
    return Trainer(TINY, "pendulum_swingup")


def test_chunk_compiles_once_and_makes_no_host_transfers(trainer):
    traces = []

    def counted(state):
        traces.append(1)
        return trainer.run_chunk(state)

    run_chunk = jax.jit(counted, donate_argnums=0)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    state, m0 = run_chunk(state)
    with jax.transfer_guard("disallow"):
        state, m1 = run_chunk(state)
        state, m2 = run_chunk(state)
    assert len(traces) == 1
    m0, m2 = jax.device_get(m0), jax.device_get(m2)  # explicit transfers are the allowed ones
    assert int(m0["env_steps"]) == 16 and int(m2["env_steps"]) == 48
    # 16 env steps = 4 vector steps; the first update comes at the 4th (env_steps 16 >= 16).
    assert int(m0["critic_updates"]) == 2 and int(m2["critic_updates"]) == 2 + 2 * 4 * 2
    assert np.isfinite(m2["critic/loss"]) and np.isfinite(m2["eval_return_mean"])
    assert int(state.replay.size) == 48
    # Episodes of 10 steps ended (time limits) but pendulum_swingup never terminates: the
    # buffer must hold terminated = 0 everywhere, not done, or the TD target would not bootstrap.
    assert np.isfinite(m2["train_return_mean"])  # some episodes finished in the chunk
    np.testing.assert_array_equal(state.replay.data.terminated, np.zeros(64))


def test_warm_up_uses_uniform_actions_and_no_updates():
    cfg = TINY.replace(start_steps=32, batch_size=8)
    tr = Trainer(cfg, TINY_ENV)
    state = jax.jit(tr.init)(jax.random.PRNGKey(0))
    state, metrics = jax.jit(tr.run_chunk)(state)
    assert int(metrics["critic_updates"]) == 0 and np.isnan(float(metrics["critic/loss"]))
    actions = np.asarray(state.replay.data.action[:16, 0])
    assert actions.min() < -0.5 and actions.max() > 0.5  # spread over [-1, 1]


def test_critic_updates_per_actor_runs_d_critic_steps_per_actor_step():
    tr = Trainer(TINY.replace(updates_per_step=4, critic_updates_per_actor=2), TINY_ENV)
    state = jax.jit(tr.init)(jax.random.PRNGKey(0))
    state, metrics = jax.jit(tr.run_chunk)(state)
    # One updating vector step (the 4th): 4 critic updates in 2 groups, each ending in an actor one.
    assert int(metrics["critic_updates"]) == 4 == int(state.agent.critic_updates)
    assert int(state.agent.critic_opt_state[1].count) == 4
    assert int(state.agent.actor_opt_state[1].count) == 2
    assert np.isfinite(float(metrics["actor/loss"])) and np.isfinite(float(metrics["critic/loss"]))


def test_batch_larger_than_first_update_buffer_is_rejected():
    with pytest.raises(ValueError, match="batch_size \\(64\\) exceeds the 16 transitions"):
        Trainer(TINY.replace(batch_size=64), TINY_ENV)


def test_unknown_env_is_rejected_before_building():
    with pytest.raises(ValueError, match="known envs: .*pendulum_swingup"):
        Trainer(TINY, "pendulum-v1")


def test_actor_takes_every_second_critic_update_when_n_is_odd():
    # N = 3 envs with one critic update per env step and one actor update per two critic ones:
    # 3 critic updates per vector step cannot split into whole groups, so the actor's turns
    # are counted over the run: after 15 critic updates, 7 actor updates.
    cfg = TINY.replace(num_envs=3, updates_per_step=3, critic_updates_per_actor=2,
                       start_steps=12, eval_interval=12, total_steps=24)
    tr = Trainer(cfg, TINY_ENV)
    state = jax.jit(tr.init)(jax.random.PRNGKey(0))
    run = jax.jit(tr.run_chunk)
    state, m1 = run(state)  # 4 vector steps, the 4th updates: 3 critic, 1 actor
    assert int(state.agent.critic_opt_state[1].count) == 3
    assert int(state.agent.actor_opt_state[1].count) == 1
    state, m2 = run(state)  # 4 more: 15 critic, 7 actor
    assert int(state.agent.critic_updates) == int(m2["critic_updates"]) == 15
    assert int(state.agent.critic_opt_state[1].count) == 15
    assert int(state.agent.actor_opt_state[1].count) == 7
    assert np.isfinite(float(m2["actor/loss"])) and np.isfinite(float(m2["critic/loss"]))


def _count_primitive(jaxpr, name: str) -> int:
    """How often a primitive appears in a jaxpr, sub-jaxprs (scan, cond, jit bodies) included."""
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == name
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    count += _count_primitive(inner, name)
    return count


def test_seeds_under_vmap_keep_warm_up_update_and_reset_branches():
    """Under the seed vmap a batched predicate turns lax.cond into a select that runs both
    sides: every vector step of warm-up would run all updates and a full reset. The chunk for
    two seeds must keep as many real branches as the chunk for one."""
    import functools

    from qvpo_mjx.loop import SEED_AXIS
    trainer = Trainer(TINY, TINY_ENV)
    one = trainer.init_seeds([0])
    two = trainer.init_seeds([0, 1])
    single = jax.make_jaxpr(trainer.run_chunk)(one).jaxpr
    batched = jax.make_jaxpr(jax.vmap(functools.partial(trainer.run_chunk, seed_axis=SEED_AXIS),
                                      axis_name=SEED_AXIS))(two).jaxpr
    conds = _count_primitive(single, "cond")
    assert conds >= 3  # acting in warm-up, the updates, the reset
    assert _count_primitive(batched, "cond") == conds


def test_wide_regime_options_run_in_the_loop():
    # n-step returns, observation normalisation and a LayerNorm critic together, in the loop.
    cfg = TINY.replace(n_step=3, obs_normalization=True, critic_layer_norm=True,
                       critic_hidden_size=24)
    tr = Trainer(cfg, TINY_ENV)
    state = jax.jit(tr.init)(jax.random.PRNGKey(0))
    run = jax.jit(tr.run_chunk)
    for _ in range(2):
        state, metrics = run(state)
    assert float(state.agent.obs_stats.count) == 32  # every observation acted on
    obs = np.asarray(state.replay.data.obs[:32])  # raw in the buffer
    np.testing.assert_allclose(state.agent.obs_stats.mean, obs.mean(0), rtol=1e-4, atol=1e-5)
    assert all(np.isfinite(float(metrics[k])) for k in ("critic/loss", "actor/loss", "critic/q_target"))


def test_the_loop_uses_n_step_windows_of_one_env(monkeypatch):
    """n_step reaches the critic's batches through the loop: its windows span up to n steps of
    one env (the stride of N envs per vector step), ending at time limits. A loop that ignored
    n_step would give windows of 1 step; a wrong stride would mix envs or skip steps."""
    spy_on_batches(monkeypatch)
    cfg = TINY.replace(n_step=3, gamma=0.5)
    for n_step, expected in ((3, (2.0, 3.0)), (1, (1.0, 1.0))):
        tr = Trainer(cfg.replace(n_step=n_step), "tagged_counter")
        state = jax.jit(tr.init)(jax.random.PRNGKey(0))
        run = jax.jit(tr.run_chunk)
        for _ in range(2):
            state, m = run(state)
        assert float(m["critic/window_ok"]) == 1.0
        # Episodes of 10 steps and the newest data cut some windows short, not most.
        assert expected[0] <= float(m["critic/reward_steps"]) <= expected[1], n_step


def test_the_actor_updates_on_a_batch_of_its_own(monkeypatch):
    """The reference samples the buffer again for the actor's states: the loop's actor batch
    is not the critic's (equal only by chance), both drawn from the filled rows."""
    spy_on_batches(monkeypatch)
    for delay, U in ((1, 2), (2, 3)):  # whole groups, and the actor's turn counted per update
        tr = Trainer(TINY.replace(updates_per_step=U, critic_updates_per_actor=delay),
                     "tagged_counter")
        state = jax.jit(tr.init)(jax.random.PRNGKey(0))
        run = jax.jit(tr.run_chunk)
        for _ in range(2):
            state, m = run(state)
        critic, actor = float(m["critic/obs_mean"]), float(m["actor/obs_mean"])
        assert abs(critic - actor) > 1e-3, (critic, actor)
        # Observations [tag in [1, 2], t in 0..9]: the means of real rows, not of empty ones.
        assert 0.5 < actor < 6.0 and 0.5 < critic < 6.0


def test_physics_that_runs_away_is_caught_before_it_reaches_the_buffer():
    """Past divergence_bound a state counts as diverged physics, as a non-finite one does: its
    step is terminal with reward 0 and a zero next observation, counted in nonfinite_steps,
    and the env restarts, so the buffer never holds a value past the bound. Without the bound
    (inf) the same physics reaches velocities far past it within the chunk's steps: the test
    can tell."""
    bound = 1e3
    cfg = TINY.replace(divergence_bound=bound, episode_length=100)
    tr = Trainer(cfg, "runaway")
    state = jax.jit(tr.init)(jax.random.PRNGKey(0))
    state, m = jax.jit(tr.run_chunk)(state)
    data = state.replay.data
    biggest = max(float(jnp.abs(data.obs).max()), float(jnp.abs(data.next_obs).max()),
                  float(jnp.abs(data.reward).max()))
    assert biggest <= bound and int(m["nonfinite_steps"]) > 0
    filled = np.arange(data.reward.shape[0]) < int(state.replay.size)
    hit = np.asarray(jnp.all(data.next_obs == 0, axis=-1)) & filled
    assert hit.any() and np.all(np.asarray(data.terminated)[hit] == 1)
    assert np.all(np.asarray(data.reward)[hit] == 0)

    # The same envs with no bound (finiteness only) over as many steps: far past it, finite.
    loose = envs.VecEnv(envs.make("runaway"), cfg.num_envs, cfg.episode_length)

    def step(env_state, _):
        env_state, r = loose.step(env_state, jnp.zeros((cfg.num_envs, 1)))
        return env_state, (jnp.abs(r.next_obs).max(), r.invalid.sum())

    steps = int(m["env_steps"]) // cfg.num_envs
    _, (peak, invalid) = jax.jit(lambda k: jax.lax.scan(step, loose.reset(k), None, steps))(
        jax.random.PRNGKey(0))
    assert float(peak.max()) > 2 * bound and np.isfinite(float(peak.max()))
    assert int(invalid.sum()) == 0


