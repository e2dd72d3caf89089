"""Named tasks: the paper's MuJoCo locomotion tasks and cheap CPU tasks, all on MJX through Brax."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import mujoco
from brax.envs.base import PipelineEnv, State
from brax.io import mjcf

_HERE = Path(__file__).resolve().parent


class PendulumSwingup(PipelineEnv):
    """Our own task (``pendulum_swingup.xml``): swing a pole up from hanging and balance it.

    Observation [cos(theta), sin(theta), theta_dot] with theta = 0 upright; reward
    (1 + cos(theta)) / 2 in [0, 1] per step minus 0.001 |u|^2, so an episode of L steps returns at
    most L (a random policy, which mostly hangs, gets about 0.1 L to 0.2 L). Never terminates.
    """

    def __init__(self, backend: str = "mjx", **kwargs: Any):
        sys = mjcf.load(_HERE / "pendulum_swingup.xml")
        kwargs.setdefault("n_frames", 2)  # dt = 0.02 s
        super().__init__(sys=sys, backend=backend, **kwargs)

    def reset(self, rng: jax.Array) -> State:
        k_q, k_qd = jax.random.split(rng)
        q = jnp.pi + jax.random.uniform(k_q, (1,), minval=-0.1, maxval=0.1)
        qd = jax.random.uniform(k_qd, (1,), minval=-0.1, maxval=0.1)
        pipeline_state = self.pipeline_init(q, qd)
        zero = jnp.zeros((), jnp.float32)
        return State(pipeline_state, self._obs(pipeline_state), zero, zero, {}, {})

    def step(self, state: State, action: jax.Array) -> State:
        pipeline_state = self.pipeline_step(state.pipeline_state, action)
        theta = pipeline_state.q[0]
        reward = 0.5 * (1.0 + jnp.cos(theta)) - 0.001 * jnp.sum(jnp.square(action))
        return state.replace(pipeline_state=pipeline_state, obs=self._obs(pipeline_state),
                             reward=reward, done=jnp.zeros((), jnp.float32))

    @property
    def action_size(self) -> int:
        return 1

    @staticmethod
    def _obs(pipeline_state) -> jax.Array:
        theta, theta_dot = pipeline_state.q[0], pipeline_state.qd[0]
        return jnp.stack([jnp.cos(theta), jnp.sin(theta), theta_dot])


def _brax(name: str) -> Callable[..., PipelineEnv]:
    def build(**kwargs: Any) -> PipelineEnv:
        from brax import envs as brax_envs
        return brax_envs.get_environment(name, backend="mjx", **kwargs)
    return build


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """How to build a task, and the MJX solver settings it gets by default."""

    build: Callable[..., PipelineEnv]
    iterations: int | None = None  # None: as the task ships
    ls_iterations: int | None = None
    description: str = ""


# Solver defaults for the contact tasks: benchmarks/results/env_settings.json has the speed and
# return-scale measurements behind them (benchmarks/env_settings.py).
# Measured at 128 envs, 100 steps: ls_iterations 4 (from 50) steps halfcheetah, hopper and walker2d
# 5.0-5.4x faster with returns equal to 0.1% under random and open-loop-gait actions;
# iterations 2 as well gives 6.6-8.5x but moves returns by up to 6%, so it stays an option
# (--iterations 2). Ant and humanoid already ship with iterations 1, ls_iterations 4.
_REGISTRY: dict[str, EnvSpec] = {
    "halfcheetah": EnvSpec(_brax("halfcheetah"), None, 4, "Brax HalfCheetah (paper task)"),
    "ant": EnvSpec(_brax("ant"), None, None, "Brax Ant (paper task)"),
    "hopper": EnvSpec(_brax("hopper"), None, 4, "Brax Hopper (paper task)"),
    "walker2d": EnvSpec(_brax("walker2d"), None, 4, "Brax Walker2d (paper task)"),
    "humanoid": EnvSpec(_brax("humanoid"), None, None, "Brax Humanoid (paper task)"),
    "inverted_pendulum": EnvSpec(_brax("inverted_pendulum"),
                                 description="Brax InvertedPendulum: balance a cart-pole"),
    "inverted_double_pendulum": EnvSpec(_brax("inverted_double_pendulum"),
                                        description="Brax InvertedDoublePendulum"),
    "reacher": EnvSpec(_brax("reacher"), description="Brax Reacher: reach a target"),
    "pendulum_swingup": EnvSpec(PendulumSwingup,
                                description="ours: pendulum swing-up and balance (MJCF in envs/)"),
}


def names() -> list[str]:
    return sorted(_REGISTRY)


def spec(name: str) -> EnvSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown env {name!r}; known envs: {', '.join(names())}")
    return _REGISTRY[name]


_SOLVER_OPTIONS = ("iterations", "ls_iterations")


@contextlib.contextmanager
def _model_on_a_local_device():
    """MJX puts a model on ``jax.devices()[0]``; across several processes (multi-host) that is
    process 0's device, which no other process can read. While a model is built, let the first
    device be this process's own. One process: nothing changes."""
    if jax.process_count() == 1:
        yield
        return
    devices = jax.devices
    jax.devices = lambda backend=None: jax.local_devices(backend=backend)
    try:
        yield
    finally:
        jax.devices = devices


@functools.lru_cache(maxsize=None)
def _make_cached(name: str, options: tuple[tuple[str, Any], ...]) -> PipelineEnv:
    s = spec(name)
    opts = dict(options)
    solver = {k: opts.pop(k, getattr(s, k)) for k in _SOLVER_OPTIONS}
    with _model_on_a_local_device():
        env = s.build(**opts)
    replace = {f"opt.{k}": int(v) for k, v in solver.items() if v is not None}
    if replace:
        env.sys = env.sys.tree_replace(replace)
    return env


def make(name: str, **options: Any) -> PipelineEnv:
    """One unbatched MJX env by name; ``options`` go to its constructor, except the MJX solver
    settings ``iterations`` and ``ls_iterations`` (None keeps what the task ships).

    The same name and options return the same object, so jitted code that closes over it is reused.
    """
    spec(name)  # the unknown-name error, before anything is built
    for k, v in options.items():
        if k in _SOLVER_OPTIONS and v is not None and (not isinstance(v, int) or v <= 0):
            raise ValueError(f"{k} must be a positive integer or None, got {v!r}")
    return _make_cached(name, tuple(sorted(options.items())))


def solver_settings(env: PipelineEnv) -> dict[str, int]:
    opt = env.sys.opt
    return {"iterations": int(opt.iterations), "ls_iterations": int(opt.ls_iterations),
            "solver": str(mujoco.mjtSolver(int(opt.solver)).name)}
