import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

import envs
from envs.playground import PLAYGROUND_TASKS

ROOT = Path(__file__).resolve().parents[1]

SIZES = {  # (observation, action) sizes
    # Brax (and ours)
    "halfcheetah": (17, 6), "ant": (27, 8), "hopper": (11, 3), "walker2d": (17, 6),
    "humanoid": (244, 17), "inverted_pendulum": (4, 1), "inverted_double_pendulum": (8, 1),
    "reacher": (11, 2), "pendulum_swingup": (3, 1), "double_integrator": (2, 1),
    # MuJoCo Playground's DM Control Suite
    "AcrobotSwingup": (6, 1), "AcrobotSwingupSparse": (6, 1), "BallInCup": (8, 2),
    "CartpoleBalance": (5, 1), "CartpoleBalanceSparse": (5, 1), "CartpoleSwingup": (5, 1),
    "CartpoleSwingupSparse": (5, 1), "CheetahRun": (17, 6), "FingerSpin": (9, 2),
    "FingerTurnEasy": (12, 2), "FingerTurnHard": (12, 2), "FishSwim": (24, 5),
    "HopperHop": (15, 4), "HopperStand": (15, 4), "HumanoidRun": (67, 21),
    "HumanoidStand": (67, 21), "HumanoidWalk": (67, 21), "PendulumSwingup": (3, 1),
    "PointMass": (4, 2), "ReacherEasy": (6, 2), "ReacherHard": (6, 2), "SwimmerSwimmer6": (25, 5),
    "WalkerRun": (24, 6), "WalkerStand": (24, 6), "WalkerWalk": (24, 6),
}
BRAX = {"halfcheetah", "ant", "hopper", "walker2d", "humanoid", "inverted_pendulum",
        "inverted_double_pendulum", "reacher", "pendulum_swingup", "double_integrator"}


def builtin_names():
    """Every task the package registers (other test modules register "user" tasks of theirs)."""
    return [n for n in envs.names() if envs.spec(n).family != "user"]


def test_registry_lists_every_task_by_family():
    assert builtin_names() == sorted(SIZES)
    assert envs.names("brax") == sorted(BRAX)
    assert envs.names("playground") == sorted(set(SIZES) - BRAX) == sorted(PLAYGROUND_TASKS)
    assert all(envs.spec(n).description for n in envs.names())
    with pytest.raises(ValueError, match="unknown family 'mjx'"):
        envs.names("mjx")


def test_playground_names_match_playground_registry():
    dm_control_suite = pytest.importorskip("mujoco_playground").dm_control_suite
    assert sorted(dm_control_suite.ALL_ENVS) == envs.names("playground")


def test_unknown_env_lists_known_names():
    with pytest.raises(ValueError, match=r"did you mean CartpoleSwingup.*known envs: Acrobot.*, "
                                         r"WalkerWalk, ant, double_integrator, halfcheetah"):
        envs.make("cartpole")


def test_solver_options_are_applied_and_checked():
    env = envs.make("halfcheetah", iterations=2, ls_iterations=3)
    assert (int(env.sys.opt.iterations), int(env.sys.opt.ls_iterations)) == (2, 3)
    assert envs.make("halfcheetah", iterations=2, ls_iterations=3) is env  # cached
    with pytest.raises(ValueError, match="ls_iterations must be a positive integer"):
        envs.make("halfcheetah", ls_iterations=0)
    with pytest.raises(ValueError, match="'CheetahRun' .playground.: iterations / ls_iterations "
                                         "apply to Brax envs only"):
        envs.make("CheetahRun", iterations=2)


def test_start_up_is_quiet_and_brax_tasks_need_no_playground():
    # A machine without warp-lang and without playground (None in sys.modules = not installed).
    code = (
        "import sys, warnings\n"
        "sys.modules['warp'] = sys.modules['mujoco_playground'] = None\n"
        "import envs\n"
        "env = envs.make('pendulum_swingup')\n"
        "envs.make('halfcheetah')\n"  # Brax's cheetah XML: MuJoCo 4's settotalmass deprecation
        "print('playground imported:', 'mujoco_playground' in sys.modules and "
        "sys.modules['mujoco_playground'] is not None)\n"
        "warnings.warn('a real warning', UserWarning)\n"
        "try:\n"
        "    envs.make('CartpoleSwingup')\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "Failed to import" not in text and "not actively being maintained" not in text, text
    assert "settotalmass" not in text, text
    assert "a real warning" in text  # other warnings still show
    assert "playground imported: False" in out.stdout
    assert "ImportError: env 'CartpoleSwingup' needs MuJoCo Playground (pip install playground)" \
        in out.stdout


def test_only_the_shipped_models_deprecation_is_dropped(capfd):
    import mujoco

    from envs import _quiet
    xml = ('<mujoco><compiler settotalmass="2"/><worldbody><body><joint type="hinge"/>'
           '<geom size=".1"/></body></worldbody></mujoco>')
    with _quiet.shipped_model_deprecation_ignored():
        mujoco.MjModel.from_xml_string(xml)
        mujoco.get_mju_user_warning()("another MuJoCo warning")
    err = capfd.readouterr().err
    assert "settotalmass" not in err and "WARNING: another MuJoCo warning" in err
    assert mujoco.get_mju_user_warning() is None  # MuJoCo's own handler is back
    mujoco.MjModel.from_xml_string(xml)  # a user's model outside the block still says it
    assert "settotalmass' is deprecated" in capfd.readouterr().err


# ----------------------------------------------------------------------------------------------
# register


@pytest.fixture
def registry_copy(monkeypatch):
    """Registrations made in the test go to a copy of the registry, dropped afterwards."""
    monkeypatch.setattr(envs.registry, "_REGISTRY", dict(envs.registry._REGISTRY))


@struct.dataclass
class _PGState:
    """The fields of mujoco_playground.State."""

    data: Any
    obs: Any
    reward: jax.Array
    done: jax.Array
    metrics: dict
    info: dict


class _FakePlaygroundEnv:
    """A Playground-style env: a dict observation {"a": step count (), "b": last action (2,)}."""

    action_size = 2
    mjx_model = None

    def __init__(self, image: bool = False):
        self.image = image

    def reset(self, rng):
        zero = jnp.zeros(())
        obs = ({"pixels/view_0": jnp.zeros((4, 4, 3))} if self.image
               else {"b": jnp.zeros(2), "a": zero})
        return _PGState(data=jnp.zeros(2), obs=obs, reward=zero, done=zero, metrics={},
                        info={"t": zero})

    def step(self, state, action):
        assert sorted(state.obs) == ["a", "b"] and state.obs["b"].shape == (2,)  # as it returned
        t = state.info["t"] + 1
        return state.replace(data=action, obs={"a": t, "b": action}, reward=jnp.sum(action),
                             info={"t": t})


def test_register_adds_a_task_and_refuses_a_taken_name(registry_copy):
    from envs.registry import PendulumSwingup
    spec = envs.register("slow_pendulum", PendulumSwingup, description="dt 0.04 s", n_frames=4,
                         ls_iterations=3)
    assert spec.family == "user" and "slow_pendulum" in envs.names("user")
    assert builtin_names() == sorted(SIZES) and "slow_pendulum" in envs.names()
    env = envs.make("slow_pendulum")
    assert env.dt == pytest.approx(0.04) and int(env.sys.opt.ls_iterations) == 3
    assert envs.make("slow_pendulum", n_frames=2).dt == pytest.approx(0.02)  # make's options win
    with pytest.raises(ValueError, match="'slow_pendulum' is already registered .user: dt 0.04"):
        envs.register("slow_pendulum", PendulumSwingup)
    with pytest.raises(ValueError, match="'halfcheetah' is already registered .brax"):
        envs.register("halfcheetah", PendulumSwingup)
    with pytest.raises(ValueError, match="options must be hashable"):
        envs.register("listy", PendulumSwingup, sizes=[1, 2])
    envs.register("not_an_env", lambda: object())
    with pytest.raises(TypeError, match="'not_an_env'.*neither a Brax Env nor a Playground"):
        envs.make("not_an_env")

    # A Playground-style env comes wrapped; solver options are refused for it.
    envs.register("fake_playground", _FakePlaygroundEnv)
    assert isinstance(envs.make("fake_playground"), envs.PlaygroundAdapter)
    with pytest.raises(ValueError, match="'fake_playground' .user.: iterations"):
        envs.make("fake_playground", iterations=1)


def test_adapter_flattens_dict_observations_and_rescales_actions():
    env = envs.PlaygroundAdapter(_FakePlaygroundEnv(), "fake",
                                 action_bounds=([0.0, -2.0], [1.0, 2.0]))
    assert (env.observation_size, env.action_size) == (3, 2)
    vec = envs.VecEnv(env, num_envs=2, episode_length=5)
    step = jax.jit(vec.step)
    state = jax.jit(vec.reset)(jax.random.PRNGKey(0))
    action = jnp.array([[-1.0, 1.0], [1.0, 0.0]])
    for i in range(1, 7):
        state, r = step(state, action)
        # sorted keys: a (the step count, before any reset), then b (the rescaled action)
        np.testing.assert_allclose(r.next_obs, [[(i - 1) % 5 + 1, 0.0, 2.0],
                                                [(i - 1) % 5 + 1, 1.0, 0.0]])
        assert r.next_obs.dtype == jnp.float32
        np.testing.assert_array_equal(r.truncated, [float(i == 5)] * 2)
    assert step._cache_size() == 1

    with pytest.raises(ValueError, match=r"'fake_vision': observation 'pixels/view_0' has shape "
                                         r"\(4, 4, 3\)"):
        envs.PlaygroundAdapter(_FakePlaygroundEnv(image=True), "fake_vision")
    with pytest.raises(ValueError, match="action_bounds must be two"):
        envs.PlaygroundAdapter(_FakePlaygroundEnv(), "fake", action_bounds=([0.0], [1.0]))


def test_ctrl_bounds_are_none_for_unit_ranges_and_checked():
    from types import SimpleNamespace

    from envs.playground import ctrl_bounds
    unit = SimpleNamespace(actuator_ctrllimited=[1, 1], actuator_ctrlrange=[[-1, 1], [-1, 1]])
    assert ctrl_bounds(unit) is None
    low, high = ctrl_bounds(SimpleNamespace(actuator_ctrllimited=[1, 1],
                                            actuator_ctrlrange=[[-1, 1], [0, 2]]))
    np.testing.assert_array_equal(low, [-1, 0])
    np.testing.assert_array_equal(high, [1, 2])
    with pytest.raises(ValueError, match=r"actuators \[1\] have no control range"):
        ctrl_bounds(SimpleNamespace(actuator_ctrllimited=[1, 0],
                                    actuator_ctrlrange=[[-1, 1], [0, 0]]))


def test_vec_env_refuses_a_dict_observation_size():
    class DictObs(_FakePlaygroundEnv):
        observation_size = {"a": (), "b": (2,)}
    with pytest.raises(TypeError, match="positive int observation_size.*PlaygroundAdapter"):
        _ = envs.VecEnv(DictObs(), num_envs=2, episode_length=5).observation_size


# ----------------------------------------------------------------------------------------------
# every task: jit, sizes, no NaNs


# CI runs the cheap compiles, at most one task per Playground model (its variants, a sparse reward
# or another target size or speed, compile the same physics); the rest run with -m slow. Measured on
# 2 shared cores, compile included (tests/durations.json): the CI ones 5-60 s each;
# slow: halfcheetah 155 s and 30-95 s (on a faster day) for humanoids, ant, hopper, walker2d,
# inverted_double_pendulum, reacher, CheetahRun, Hopper*, Walker*, Finger*, FishSwim, BallInCup,
# SwimmerSwimmer6, and 9-14 s for the variants of the CI ones.
# The cheap compiles, one per kind of task: our MJCF (pendulum_swingup), plain JAX
# (double_integrator), a Playground task (CartpoleSwingup, PointMass). inverted_pendulum, the
# cpu default, is compiled and stepped by the learning test; the rest run with -m slow.
CI = ("pendulum_swingup", "double_integrator", "CartpoleSwingup", "PointMass")


@pytest.mark.parametrize("name", [n if n in CI else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(SIZES)])
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
    if envs.spec(name).family == "playground":
        assert not bool(jnp.any(done > 0))  # DM Control tasks never terminate
    floats = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert all(x.dtype == jnp.float32 for x in floats)


# ----------------------------------------------------------------------------------------------
# the VecEnv contract


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


def test_playground_task_keeps_the_vec_env_contract():
    env = envs.make("CartpoleSwingup")
    assert isinstance(env, envs.PlaygroundAdapter) and env.action_bounds is None  # ctrl in [-1, 1]
    assert type(env.unwrapped).__module__.startswith("mujoco_playground._src.dm_control_suite")
    assert str(env.mjx_model.impl.value) == "jax"
    assert envs.solver_settings(env) == {"iterations": 1, "ls_iterations": 4,
                                         "solver": "mjSOL_NEWTON"}  # as cartpole.xml ships
    pg = env.unwrapped
    assert pg.n_substeps == 1  # one semi-implicit Euler step of sim_dt per env step
    vec = envs.VecEnv(env, num_envs=2, episode_length=3)
    step = jax.jit(vec.step)
    state = jax.jit(vec.reset)(jax.random.PRNGKey(0))
    action = jnp.array([[1.0], [-1.0]])
    for i in range(1, 5):
        prev_obs = state.obs
        state, r = step(state, action)
        # obs = [cart x, cos, sin, cart x', pole angle']: x' = x + sim_dt * x'_new holds exactly
        # for the episode's own next observation, so it is not a reset one.
        np.testing.assert_allclose(r.next_obs[:, 0], prev_obs[:, 0] + pg.sim_dt * r.next_obs[:, 3],
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(r.terminated, [0.0, 0.0])  # DM Control never terminates
        np.testing.assert_array_equal(r.truncated, [float(i == 3)] * 2)  # VecEnv's time limit
        if i == 3:  # a fresh episode follows the true next observation
            np.testing.assert_array_equal(state.episode_step, [0, 0])
            assert np.all(np.asarray(state.obs[:, 1]) < -0.99)  # cos(pole angle): hanging again
            assert np.all(np.abs(np.asarray(state.obs[:, 0] - r.next_obs[:, 0])) > 1e-3)
    floats = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert all(x.dtype == jnp.float32 for x in floats)
    assert step._cache_size() == 1  # no retrace


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


# ---------------------------------------------------------------- physics that runs away (MJX)

# A hinge with a huge gear, no damping, no gravity, no joint limit: full torque (1.5e5 N m on an
# inertia of 0.005 kg m^2) adds 3e5 rad/s to its speed every 0.01 s step, so |qdot| passes the
# default divergence_bound (1e6) at the 4th step (9e5, then 1.2e6) and stays finite for many more (Euler
# integration: the speed grows linearly, the angle quadratically): the
# huge-but-finite divergence that the divergence bound exists for, produced by MJX itself.
RUNAWAY_HINGE_XML = """
<mujoco model="runaway_hinge">
  <option timestep="0.01" gravity="0 0 0"><flag contact="disable"/></option>
  <worldbody>
    <body name="rotor">
      <joint name="spin" type="hinge" axis="0 0 1" damping="0"/>
      <geom type="cylinder" size="0.1 0.05" mass="1"/>
    </body>
  </worldbody>
  <actuator><motor joint="spin" gear="150000" ctrllimited="true" ctrlrange="-1 1"/></actuator>
</mujoco>
"""


class RunawayHinge(envs.registry.PipelineEnv):
    """Observation [theta, theta_dot], reward theta_dot; never terminates."""

    def __init__(self, backend: str = "mjx", **kwargs: Any):
        from brax.io import mjcf
        super().__init__(sys=mjcf.loads(RUNAWAY_HINGE_XML), backend=backend, **kwargs)

    def reset(self, rng):
        ps = self.pipeline_init(jnp.zeros(1), jnp.zeros(1))
        zero = jnp.zeros((), jnp.float32)
        return envs.registry.State(ps, self._obs(ps), zero, zero, {}, {})

    def step(self, state, action):
        ps = self.pipeline_step(state.pipeline_state, action)
        return state.replace(pipeline_state=ps, obs=self._obs(ps), reward=ps.qd[0])

    @staticmethod
    def _obs(ps):
        return jnp.concatenate([ps.q, ps.qd])


if "runaway_hinge" not in envs.names():
    envs.register("runaway_hinge", RunawayHinge, description="tests: an MJX model that runs away")


def test_mjx_physics_that_runs_away_is_caught_by_the_divergence_bound():
    """Full torque on the runaway hinge: with the default divergence_bound (1e6) the step that first passes it
    is invalid (terminal, reward 0, zero next observation) and the env restarts, so nothing past
    the bound comes out; with the bound at inf (finiteness only) the same physics goes far past
    it and stays finite, so the bound, not a NaN, is what catches it. The loop's handling of an
    invalid step (nonfinite_steps, the buffer) is tested in test_loop on plain-JAX dynamics."""
    from qvpo_mjx.config import QVPOConfig
    bound, steps = QVPOConfig().divergence_bound, 30

    def rollout(vec):
        def body(state, _):
            state, r = vec.step(state, jnp.ones((2, 1)))
            return state, (r.next_obs, r.reward, r.terminated, r.invalid, state.obs)
        return jax.jit(lambda k: jax.lax.scan(body, vec.reset(k), None, steps)[1])(
            jax.random.PRNGKey(0))

    obs, reward, terminated, invalid, after = (np.asarray(x) for x in rollout(envs.VecEnv(
        envs.make("runaway_hinge"), 2, episode_length=1000, divergence_bound=bound)))
    assert np.abs(obs).max() <= bound and np.abs(reward).max() <= bound
    hit = invalid == 1
    assert hit.sum() == 2 * 7  # each env ran away every 4th step: 7 times in 30, restarting between
    assert np.all(terminated[hit] == 1) and np.all(reward[hit] == 0) and np.all(obs[hit] == 0)
    np.testing.assert_array_equal(after[hit], 0.0)  # restarted from rest
    loose_obs = rollout(envs.VecEnv(envs.make("runaway_hinge"), 2, episode_length=1000))[0]
    peak = float(np.abs(np.asarray(loose_obs)).max())
    assert peak > 5 * bound and np.isfinite(peak)
