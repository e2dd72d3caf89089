import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qvpo_mjx import agent, replay
from qvpo_mjx.config import QVPOConfig
from qvpo_mjx.loop import Trainer

TINY = QVPOConfig(
    hidden_size=16, time_embed_size=8, diffusion_steps=3, batch_size=8, train_samples=4,
    behavior_samples=2, target_samples=2, eval_samples=2, entropy_samples=2, num_envs=4,
    updates_per_step=2, start_steps=16, eval_interval=16, num_eval_envs=2, episode_length=10,
    total_steps=48, replay_size=64)


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
    assert int(m0["updates"]) == 2 and int(m2["updates"]) == 2 + 2 * 4 * 2
    assert np.isfinite(m2["loss/critic"]) and np.isfinite(m2["eval_return_mean"])
    assert int(state.replay.size) == 48
    # Episodes of 10 steps ended (time limits) but pendulum_swingup never terminates: the
    # buffer must hold terminated = 0 everywhere, not done, or the TD target would not bootstrap.
    assert np.isfinite(m2["train_return_mean"])  # some episodes finished in the chunk
    np.testing.assert_array_equal(state.replay.data.terminated, np.zeros(64))


def test_warm_up_uses_uniform_actions_and_no_updates(trainer):
    cfg = TINY.replace(start_steps=32, batch_size=8)
    tr = Trainer(cfg, "pendulum_swingup")
    state = jax.jit(tr.init)(jax.random.PRNGKey(0))
    state, metrics = jax.jit(tr.run_chunk)(state)
    assert int(metrics["updates"]) == 0 and np.isnan(float(metrics["loss/critic"]))
    actions = np.asarray(state.replay.data.action[:16, 0])
    assert actions.min() < -0.5 and actions.max() > 0.5  # spread over [-1, 1]


def test_critic_updates_per_actor_runs_d_critic_steps_per_actor_step():
    tr = Trainer(TINY.replace(updates_per_step=4, critic_updates_per_actor=2), "pendulum_swingup")
    state = jax.jit(tr.init)(jax.random.PRNGKey(0))
    state, metrics = jax.jit(tr.run_chunk)(state)
    # One updating vector step (the 4th): 4 critic updates in 2 groups, each ending in an actor one.
    assert int(metrics["updates"]) == 4 == int(state.agent.step)
    assert int(state.agent.critic_opt_state[1].count) == 4
    assert int(state.agent.actor_opt_state[1].count) == 2
    assert np.isfinite(float(metrics["loss/actor"])) and np.isfinite(float(metrics["loss/critic"]))


def test_batch_larger_than_first_update_buffer_is_rejected():
    with pytest.raises(ValueError, match="batch_size \\(64\\) exceeds the 16 transitions"):
        Trainer(TINY.replace(batch_size=64), "pendulum_swingup")


def test_unknown_env_is_rejected_before_building():
    with pytest.raises(ValueError, match="known envs: .*pendulum_swingup"):
        Trainer(TINY, "pendulum-v1")


def test_actor_takes_every_second_critic_update_when_n_is_odd():
    # N = 3 envs with one critic update per env step and one actor update per two critic ones:
    # 3 critic updates per vector step cannot split into whole groups, so the actor's turns
    # are counted over the run: after 15 critic updates, 7 actor updates.
    cfg = TINY.replace(num_envs=3, updates_per_step=3, critic_updates_per_actor=2,
                       start_steps=12, eval_interval=12, total_steps=24)
    tr = Trainer(cfg, "pendulum_swingup")
    state = jax.jit(tr.init)(jax.random.PRNGKey(0))
    run = jax.jit(tr.run_chunk)
    state, m1 = run(state)  # 4 vector steps, the 4th updates: 3 critic, 1 actor
    assert int(state.agent.critic_opt_state[1].count) == 3
    assert int(state.agent.actor_opt_state[1].count) == 1
    state, m2 = run(state)  # 4 more: 15 critic, 7 actor
    assert int(state.agent.step) == int(m2["updates"]) == 15
    assert int(state.agent.critic_opt_state[1].count) == 15
    assert int(state.agent.actor_opt_state[1].count) == 7
    assert np.isfinite(float(m2["loss/actor"])) and np.isfinite(float(m2["loss/critic"]))


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


def test_seeds_under_vmap_keep_warm_up_update_and_reset_branches(trainer):
    """Under the seed vmap a batched predicate turns lax.cond into a select that runs both
    sides: every vector step of warm-up would run all updates and a full reset. The chunk for
    two seeds must keep as many real branches as the chunk for one."""
    import functools

    from qvpo_mjx.loop import SEED_AXIS
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
    tr = Trainer(cfg, "pendulum_swingup")
    state = jax.jit(tr.init)(jax.random.PRNGKey(0))
    run = jax.jit(tr.run_chunk)
    for _ in range(2):
        state, metrics = run(state)
    assert float(state.agent.obs_stats.count) == 32  # every observation acted on
    obs = np.asarray(state.replay.data.obs[:32])  # raw in the buffer
    np.testing.assert_allclose(state.agent.obs_stats.mean, obs.mean(0), rtol=1e-4, atol=1e-5)
    assert all(np.isfinite(float(metrics[k])) for k in ("loss/critic", "loss/actor", "q/target"))
