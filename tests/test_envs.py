import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs

SIZES = {  # (observation, action) sizes
    "halfcheetah": (17, 6), "ant": (27, 8), "hopper": (11, 3), "walker2d": (17, 6),
    "humanoid": (244, 17), "inverted_pendulum": (4, 1), "inverted_double_pendulum": (8, 1),
    "reacher": (11, 2), "pendulum_swingup": (3, 1),
}


def test_registry_lists_every_task():
    assert envs.names() == sorted(SIZES)


def test_unknown_env_lists_known_names():
    with pytest.raises(ValueError, match="known envs: ant, halfcheetah, hopper"):
        envs.make("cartpole")


def test_solver_options_are_applied_and_checked():
    env = envs.make("halfcheetah", iterations=2, ls_iterations=3)
    assert (int(env.sys.opt.iterations), int(env.sys.opt.ls_iterations)) == (2, 3)
    assert envs.make("halfcheetah", iterations=2, ls_iterations=3) is env  # cached
    with pytest.raises(ValueError, match="ls_iterations must be a positive integer"):
        envs.make("halfcheetah", ls_iterations=0)


# The two costliest MJX compiles (about 50 s each on 2 cores) run with -m slow; every other task,
# halfcheetah, hopper and walker2d among them, runs in CI.
SLOW_TO_COMPILE = ("ant", "humanoid")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if n in SLOW_TO_COMPILE else n for n in sorted(SIZES)])
def test_env_jits_has_sizes_and_no_nans(name):
    vec = envs.VecEnv(envs.make(name), num_envs=2, episode_length=1000)
    assert (vec.observation_size, vec.action_size) == SIZES[name]

    @jax.jit
    def rollout(key):
        k_reset, k_act = jax.random.split(key)
        state = vec.reset(k_reset)

        def body(state, k):
            action = jax.random.uniform(k, (2, vec.action_size), minval=-1, maxval=1)
            # The reset path is the same code for every task and is tested below; skipping it
            # here halves these tests' compile time.
            state, result = vec.step(state, action, auto_reset=False)
            return state, (result.next_obs, result.reward, result.done)

        return jax.lax.scan(body, state, jax.random.split(k_act, 10))

    state, (obs, reward, done) = rollout(jax.random.PRNGKey(0))
    assert obs.shape == (10, 2, SIZES[name][0]) and reward.shape == (10, 2)
    assert obs.dtype == reward.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(obs))) and bool(jnp.all(jnp.isfinite(reward)))
    assert bool(jnp.all(jnp.isfinite(state.obs)))


def test_auto_reset_keeps_true_next_obs_and_separates_termination_from_truncation():
    # Inverted pendulum terminates once |pole angle| > 0.2: envs 4-7 push hard and fall, envs 0-3
    # do nothing and stay up long enough for the 15-step limit to truncate them.
    vec = envs.VecEnv(envs.make("inverted_pendulum"), num_envs=8, episode_length=15)
    step = jax.jit(vec.step)
    state = jax.jit(vec.reset)(jax.random.PRNGKey(0))
    saw_terminal = saw_truncation = False
    for i in range(40):
        action = jnp.full((8, 1), 1.0 if (i // 7) % 2 else -1.0).at[:4].set(0.0)
        prev_step = np.asarray(state.episode_step)
        state, r = step(state, action)
        term, trunc = np.asarray(r.terminated), np.asarray(r.truncated)
        assert not np.any((term > 0) & (trunc > 0))
        np.testing.assert_array_equal(trunc > 0, (prev_step + 1 >= 15) & (term == 0))
        for j in np.flatnonzero(term):
            saw_terminal = True
            assert abs(float(r.next_obs[j, 1])) > 0.2  # the terminal observation itself
            assert abs(float(state.obs[j, 1])) <= 0.011  # and a freshly reset one after it
            assert int(state.episode_step[j]) == 0
        for j in np.flatnonzero(trunc):
            saw_truncation = True
            assert float(r.episode_return[j]) == pytest.approx(15.0)  # reward 1 per step
            assert int(state.episode_step[j]) == 0
    assert saw_terminal and saw_truncation
    assert step._cache_size() == 1  # reset's and step's dtypes agree: no retrace


def test_pendulum_swingup_starts_down_and_rewards_upright():
    vec = envs.VecEnv(envs.make("pendulum_swingup"), num_envs=4, episode_length=1000)
    state = jax.jit(vec.reset)(jax.random.PRNGKey(0))
    cos_theta = np.asarray(state.obs[:, 0])
    assert np.all(cos_theta < -0.99)  # hanging
    state, r = jax.jit(lambda s, a: vec.step(s, a, auto_reset=False))(state, jnp.zeros((4, 1)))
    assert np.all(np.asarray(r.reward) < 0.01) and np.all(np.asarray(r.terminated) == 0)


class _DivergingEnv:
    """A stand-in env whose state blows up to NaN after 3 steps (as MJX can)."""

    observation_size = 2
    action_size = 1

    def reset(self, rng):
        from brax.envs.base import State
        zero = jnp.zeros(())
        return State(pipeline_state=jnp.zeros(()), obs=jnp.zeros(2), reward=zero, done=zero,
                     metrics={}, info={})

    def step(self, state, action):
        t = state.pipeline_state + 1.0
        obs = jnp.where(t >= 3, jnp.nan, t) * jnp.ones(2)
        return state.replace(pipeline_state=t, obs=obs, reward=jnp.where(t >= 3, jnp.nan, 1.0))


def test_non_finite_physics_ends_the_episode_without_nans():
    vec = envs.VecEnv(_DivergingEnv(), num_envs=2, episode_length=100)
    step = jax.jit(vec.step)
    state = vec.reset(jax.random.PRNGKey(0))
    for _ in range(2):
        state, r = step(state, jnp.zeros((2, 1)))
        assert not bool(jnp.any(r.invalid > 0))
    state, r = step(state, jnp.zeros((2, 1)))
    np.testing.assert_array_equal(r.invalid, [1, 1])
    np.testing.assert_array_equal(r.terminated, [1, 1])
    np.testing.assert_array_equal(r.next_obs, np.zeros((2, 2)))
    np.testing.assert_array_equal(r.episode_return, [2.0, 2.0])  # the two finite rewards
    assert bool(jnp.all(jnp.isfinite(state.obs))) and int(state.episode_step[0]) == 0
