"""MuJoCo Playground tasks, seen through the Brax ``Env`` interface that ``VecEnv`` drives.

``PlaygroundAdapter`` is the one place where a Playground-style env (``reset(rng) -> State``,
``step(state, action) -> State`` with ``State(data, obs, reward, done, metrics, info)``, as
``mujoco_playground.MjxEnv``) becomes a Brax ``Env``: its ``State`` becomes Brax's
``State(pipeline_state=data, obs, reward, done, metrics, info)`` with a flat float32 observation
vector, and ``observation_size`` is an int.

``PLAYGROUND_TASKS`` names the DM Control Suite tasks of MuJoCo Playground (all of them run on MJX);
the registry lists them without importing ``mujoco_playground``, which :func:`load` imports only
when one is built. ``tests/test_envs.py`` checks the list against Playground's own registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env, State

# name -> short description; the names are Playground's own (mujoco_playground.dm_control_suite).
PLAYGROUND_TASKS: dict[str, str] = {
    "AcrobotSwingup": "DM Control acrobot: swing a two-link pole up by its elbow motor, dense",
    "AcrobotSwingupSparse": "DM Control acrobot swing-up, sparse reward",
    "BallInCup": "DM Control ball-in-cup: swing a ball on a string into the cup (sparse)",
    "CartpoleBalance": "DM Control cart-pole: keep the pole upright",
    "CartpoleBalanceSparse": "DM Control cart-pole balance, sparse reward",
    "CartpoleSwingup": "DM Control cart-pole: swing the pole up from hanging and balance it",
    "CartpoleSwingupSparse": "DM Control cart-pole swing-up, sparse reward",
    "CheetahRun": "DM Control planar cheetah: run forward",
    "FingerSpin": "DM Control finger: spin a hinged body",
    "FingerTurnEasy": "DM Control finger: turn a hinged body's tip to a large target",
    "FingerTurnHard": "DM Control finger: turn a hinged body's tip to a small target",
    "FishSwim": "DM Control fish: swim to a target",
    "HopperHop": "DM Control planar hopper: hop forward",
    "HopperStand": "DM Control planar hopper: stand up",
    "HumanoidRun": "DM Control humanoid: run",
    "HumanoidStand": "DM Control humanoid: stand up",
    "HumanoidWalk": "DM Control humanoid: walk",
    "PendulumSwingup": "DM Control pendulum: swing up and hold upright (sparse)",
    "PointMass": "DM Control point mass: move to the target",
    "ReacherEasy": "DM Control two-link reacher: reach a large target",
    "ReacherHard": "DM Control two-link reacher: reach a small target",
    "SwimmerSwimmer6": "DM Control six-link swimmer: swim to a target",
    "WalkerRun": "DM Control planar walker: run",
    "WalkerStand": "DM Control planar walker: stand up",
    "WalkerWalk": "DM Control planar walker: walk",
}

_STATE_FIELDS = {"data", "obs", "reward", "done", "metrics", "info"}


def _obs_layout(obs: Any, name: str) -> tuple[tuple[str, tuple[int, ...], Any], ...] | None:
    """How to flatten an abstract observation: None for one vector (o,); for a dict, its
    (key, shape, dtype) entries in sorted key order, each a scalar or a vector. Anything else
    (images, nested dicts, a matrix) raises ValueError naming the task."""
    if isinstance(obs, Mapping):
        layout = []
        for key in sorted(obs):
            leaf = obs[key]
            if not hasattr(leaf, "shape") or len(leaf.shape) > 1:
                what = (f"shape {tuple(leaf.shape)}" if hasattr(leaf, "shape")
                        else type(leaf).__name__)
                raise ValueError(
                    f"env {name!r}: observation {key!r} has {what}; only vectors and scalars can "
                    f"be flattened into the agent's observation vector (pixel observations are "
                    f"not supported)")
            layout.append((str(key), tuple(leaf.shape), leaf.dtype))
        if not layout:
            raise ValueError(f"env {name!r}: its observation is an empty dict")
        return tuple(layout)
    if not hasattr(obs, "shape") or len(obs.shape) != 1:
        what = f"shape {tuple(obs.shape)}" if hasattr(obs, "shape") else type(obs).__name__
        raise ValueError(f"env {name!r}: observation has {what}; expected a vector (o,) or a dict "
                         f"of vectors")
    return None


class PlaygroundAdapter(Env):
    """A Playground-style env as a Brax ``Env`` on MJX, for ``VecEnv``.

    - state: Brax ``State(pipeline_state=data, obs (o,) float32, reward (), done (), metrics,
      info)``; Playground's ``metrics`` and ``info`` pass through untouched.
    - observation: a vector (o,) passes through; a dict of vectors and scalars is concatenated in
      sorted key order (and split again before the inner ``step``, which sees what it returned);
      images or other shapes are refused with a ValueError naming the task.
    - action (d,) in [-1, 1]: passed as is, or, given ``action_bounds = (low, high)`` ((d,) each),
      mapped affinely onto [low, high].
    - no reset of its own: the wrapped env must be the bare one (no Playground auto-reset or
      episode wrapper), so ``step`` returns the true next state; ``VecEnv`` keeps the time limit.

    ``done`` is the env's own: Playground's DM Control tasks set it only when qpos or qvel went NaN
    (they never terminate), which ``VecEnv`` counts as a terminal, invalid step anyway.
    """

    def __init__(self, env: Any, name: str = "",
                 action_bounds: tuple[Any, Any] | None = None):
        self._env = env
        self.name = name or type(env).__name__
        abstract = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
        fields = ({f.name for f in dataclasses.fields(abstract)}
                  if dataclasses.is_dataclass(abstract) else set())
        if fields != _STATE_FIELDS:
            raise TypeError(
                f"env {self.name!r}: reset returned {type(abstract).__name__}, not a Playground "
                f"State with fields {sorted(_STATE_FIELDS)}")
        self._state_cls = type(abstract)
        self._layout = _obs_layout(abstract.obs, self.name)
        self._obs_dtype = None if self._layout is not None else abstract.obs.dtype
        if self._layout is None:
            self._observation_size = int(abstract.obs.shape[0])
        else:
            self._observation_size = sum(int(np.prod(shape)) for _, shape, _ in self._layout)
        self._action_size = int(env.action_size)
        if action_bounds is None:
            self._low = self._high = None
        else:
            low, high = (np.asarray(b, np.float32) for b in action_bounds)
            if low.shape != (self._action_size,) or high.shape != (self._action_size,):
                raise ValueError(f"env {self.name!r}: action_bounds must be two "
                                 f"({self._action_size},) arrays, got shapes {low.shape} and "
                                 f"{high.shape}")
            if not np.all(np.isfinite(low) & np.isfinite(high) & (low < high)):
                raise ValueError(f"env {self.name!r}: action_bounds need finite low < high")
            self._low, self._high = low, high

    # Brax Env interface -----------------------------------------------------------------------
    @property
    def observation_size(self) -> int:
        return self._observation_size

    @property
    def action_size(self) -> int:
        return self._action_size

    @property
    def backend(self) -> str:
        return "mjx"

    @property
    def unwrapped(self) -> Any:
        """The Playground env itself."""
        return self._env

    @property
    def mjx_model(self) -> Any:
        """The wrapped env's MJX model (read only: the env closes over it)."""
        return self._env.mjx_model

    @property
    def action_bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self._low is None else (self._low, self._high)

    def reset(self, rng: jax.Array) -> State:
        """rng: a PRNG key -> the state of a fresh episode (obs (o,) float32)."""
        return self._to_brax(self._env.reset(rng))

    def step(self, state: State, action: jax.Array) -> State:
        """(state, action (d,) in [-1, 1]) -> the next state, never reset."""
        inner = self._state_cls(data=state.pipeline_state, obs=self._unflatten(state.obs),
                                reward=state.reward, done=state.done,
                                # copies: Playground's tasks write into these dicts in place
                                metrics=dict(state.metrics), info=dict(state.info))
        return self._to_brax(self._env.step(inner, self._scale(action)))

    # conversions ------------------------------------------------------------------------------
    def _to_brax(self, s: Any) -> State:
        return State(pipeline_state=s.data, obs=self._flatten(s.obs), reward=s.reward,
                     done=s.done, metrics=s.metrics, info=s.info)

    def _flatten(self, obs: Any) -> jax.Array:
        if self._layout is None:
            return jnp.asarray(obs, jnp.float32)
        return jnp.concatenate([jnp.reshape(jnp.asarray(obs[k], jnp.float32), (-1,))
                                for k, _, _ in self._layout])

    def _unflatten(self, flat: jax.Array) -> Any:
        if self._layout is None:
            return flat.astype(self._obs_dtype)
        out, start = {}, 0
        for key, shape, dtype in self._layout:
            size = int(np.prod(shape))
            out[key] = flat[start:start + size].reshape(shape).astype(dtype)
            start += size
        return out

    def _scale(self, action: jax.Array) -> jax.Array:
        if self._low is None:
            return action
        return self._low + (action + 1.0) * (0.5 * (self._high - self._low))


def ctrl_bounds(mj_model: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The actuators' control range when it is not [-1, 1] for every actuator (None when it is).
    Raises ValueError for an unlimited actuator, which no affine map of [-1, 1] covers."""
    limited = np.asarray(mj_model.actuator_ctrllimited, bool)
    ranges = np.asarray(mj_model.actuator_ctrlrange, np.float32).reshape(-1, 2)
    if not np.all(limited):
        raise ValueError(f"actuators {np.flatnonzero(~limited).tolist()} have no control range")
    if np.all(ranges == np.array([-1.0, 1.0], np.float32)):
        return None
    return ranges[:, 0], ranges[:, 1]


def load(name: str, **config_overrides: Any) -> PlaygroundAdapter:
    """The bare Playground DM Control task ``name`` (no Playground wrappers) on MJX's JAX
    implementation, adapted. ``config_overrides`` go to Playground's locked task config (an unknown
    key fails there); ``impl`` is always "jax" (Playground 0.2.0 ships "warp" as the default)."""
    impl = config_overrides.pop("impl", "jax")
    if impl != "jax":
        raise ValueError(f"env {name!r}: impl={impl!r}; qvpo-mjx runs Playground tasks on MJX's "
                         f"JAX implementation only (impl='jax')")
    try:
        from mujoco_playground import dm_control_suite  # lazy: ~2 s, and not needed by Brax tasks
    except ImportError as e:
        raise ImportError(f"env {name!r} needs MuJoCo Playground (pip install playground): {e}") \
            from e

    env = dm_control_suite.load(name, config_overrides={"impl": "jax", **config_overrides})
    if str(getattr(env.mjx_model.impl, "value", env.mjx_model.impl)) != "jax":
        raise RuntimeError(f"env {name!r}: Playground built impl {env.mjx_model.impl}, not jax")
    try:
        bounds = ctrl_bounds(env.mj_model)
    except ValueError as e:
        raise ValueError(f"env {name!r}: {e}") from None
    return PlaygroundAdapter(env, name, action_bounds=bounds)
