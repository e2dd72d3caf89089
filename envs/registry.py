"""Named tasks, all on MJX: the paper's locomotion tasks and cheap CPU tasks through Brax (family
"brax"), MuJoCo Playground's DM Control Suite (family "playground", imported only when one is built)
and tasks added from user code with :func:`register` (family "user")."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import mujoco
from brax.envs.base import Env, PipelineEnv, State
from brax.io import mjcf
from mujoco import mjx

from envs import _quiet, playground
from envs.playground import PlaygroundAdapter

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


class DoubleIntegrator(Env):
    """Our own test task, in plain JAX (no MJX): drive a point on a line to the origin.

    State and observation [x, v], reset uniform in [-1, 1]^2; the action a in [-1, 1] is an
    acceleration: v += dt a, x += dt v (dt 0.05); reward -(x^2 + 0.1 v^2 + 0.01 a^2), never
    terminates. It compiles in about a second where an MJX model takes tens, so the tests of
    the training loop's mechanics (and a user trying flags) run fast; every learning claim is
    made on MJX tasks.
    """

    dt = 0.05

    def reset(self, rng: jax.Array) -> State:
        q = jax.random.uniform(rng, (2,), minval=-1.0, maxval=1.0)
        zero = jnp.zeros((), jnp.float32)
        return State(pipeline_state=q, obs=q, reward=zero, done=zero, metrics={}, info={})

    def step(self, state: State, action: jax.Array) -> State:
        x, v = state.pipeline_state
        a = action[0]
        v = v + self.dt * a
        x = x + self.dt * v
        q = jnp.stack([x, v])
        reward = -(jnp.square(x) + 0.1 * jnp.square(v) + 0.01 * jnp.square(a))
        return state.replace(pipeline_state=q, obs=q, reward=reward,
                             done=jnp.zeros((), jnp.float32))

    @property
    def observation_size(self) -> int:
        return 2

    @property
    def action_size(self) -> int:
        return 1

    @property
    def backend(self) -> str:
        return "jax"


def _brax(name: str) -> Callable[..., PipelineEnv]:
    def build(**kwargs: Any) -> PipelineEnv:
        from brax import envs as brax_envs
        return brax_envs.get_environment(name, backend="mjx", **kwargs)
    return build


FAMILIES = ("brax", "playground", "user")


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """How to build a task, and the MJX solver settings it gets by default.

    ``build(**options)`` returns a Brax ``Env`` (``brax`` family, and ``user`` tasks built as one)
    or a Playground-style env, which ``make`` wraps in ``PlaygroundAdapter``. ``options`` are the
    task's default ``build`` options, under those given to ``make``.
    """

    build: Callable[..., Any]
    iterations: int | None = None  # None: as the task ships
    ls_iterations: int | None = None
    description: str = ""
    family: str = "brax"  # "brax", "playground" or "user"
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


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
    "double_integrator": EnvSpec(DoubleIntegrator,
                                 description="ours, plain JAX (no MJX): a point to the origin; "
                                 "compiles in a second, for tests and trying flags"),
}
# MuJoCo Playground's DM Control Suite, under Playground's names, with the MJX solver settings
# each task's MJCF ships (its MJX model is the env's own, so envs.make can't change them).
_REGISTRY.update({
    name: EnvSpec(functools.partial(playground.load, name), description=description,
                  family="playground")
    for name, description in playground.PLAYGROUND_TASKS.items()
})


def names(family: str | None = None) -> list[str]:
    """Every registered task name, sorted (Playground's CamelCase names sort before Brax's
    lower-case ones); only those of ``family`` when given."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
    return sorted(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def spec(name: str) -> EnvSpec:
    """The registered ``EnvSpec`` of ``name``; ValueError listing the known names if none."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown env {name!r}{hint}; known envs: {', '.join(names())}")
    return _REGISTRY[name]


_SOLVER_OPTIONS = ("iterations", "ls_iterations")


def _check_solver_option(key: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ValueError(f"{key} must be a positive integer or None, got {value!r}")


def register(name: str, builder: Callable[..., Any], *, description: str = "",
             iterations: int | None = None, ls_iterations: int | None = None,
             **options: Any) -> EnvSpec:
    """Add a task from user code; ``envs.make(name)`` then builds it (and ``--env name`` of the
    train command accepts it, in a process that registered it before parsing).

    ``builder(**options)`` returns one unbatched env: an MJX Brax ``Env`` (a ``PipelineEnv``, whose
    ``sys.opt`` takes ``iterations`` / ``ls_iterations``), or a Playground-style env
    (``reset(rng) -> State(data, obs, reward, done, metrics, info)``, ``step``, ``action_size``,
    ``mjx_model``), which ``make`` wraps in ``PlaygroundAdapter``: its actions must be in [-1, 1]
    as given, and a dict observation is flattened in sorted key order. ``options`` here are the
    task's defaults, under those given to ``make``; ``iterations`` / ``ls_iterations`` are its
    default MJX solver settings (None: as the env ships; Brax-style envs only).

    Raises ValueError when ``name`` is taken (every name, of any family, stays as registered).
    """
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"env name must be a non-empty string without outer spaces, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"env name {name!r} is already registered ({_REGISTRY[name].family}: "
                         f"{_REGISTRY[name].description or 'no description'}); choose another")
    if not callable(builder):
        raise TypeError(f"register({name!r}): builder must be callable, got {builder!r}")
    _check_solver_option("iterations", iterations)
    _check_solver_option("ls_iterations", ls_iterations)
    _options_key(name, options)  # hashable, or a clear error now rather than at make
    s = EnvSpec(builder, iterations, ls_iterations, description, family="user",
                options=dict(options))
    _REGISTRY[name] = s
    return s


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


def _as_env(env: Any, name: str) -> Env:
    """A Brax ``Env`` as is; a Playground-style env wrapped in ``PlaygroundAdapter``; anything else
    a TypeError naming the task."""
    if isinstance(env, Env):
        return env
    if all(hasattr(env, a) for a in ("reset", "step", "action_size", "mjx_model")):
        return PlaygroundAdapter(env, name)
    raise TypeError(f"env {name!r}: its builder returned {type(env).__name__}, which is neither a "
                    f"Brax Env nor a Playground-style env (reset, step, action_size, mjx_model)")


@functools.lru_cache(maxsize=None)
def _make_cached(name: str, options: tuple[tuple[str, Any], ...]) -> Env:
    s = spec(name)
    opts = dict(options)
    solver = {k: opts.pop(k, getattr(s, k)) for k in _SOLVER_OPTIONS}
    solver = {k: v for k, v in solver.items() if v is not None}
    if solver and s.family == "playground":
        raise ValueError(_no_solver_options(name, s.family))
    shipped = (_quiet.shipped_model_deprecation_ignored() if s.family in ("brax", "playground")
               else contextlib.nullcontext())
    with _model_on_a_local_device(), _quiet.brax_unmaintained_ignored(), shipped:
        env = _as_env(s.build(**opts), name)
    if solver:
        if not isinstance(getattr(env, "sys", None), mjx.Model):
            raise ValueError(_no_solver_options(name, s.family))
        env.sys = env.sys.tree_replace({f"opt.{k}": int(v) for k, v in solver.items()})
    return env


def _no_solver_options(name: str, family: str) -> str:
    return (f"env {name!r} ({family}): iterations / ls_iterations apply to Brax envs only; a "
            f"Playground env's MJX model is its own, so it runs with the solver settings it ships "
            f"(envs.solver_settings(envs.make({name!r})) shows them)")


def _options_key(name: str, options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    key = tuple(sorted(options.items()))
    try:
        hash(key)
    except TypeError:
        raise ValueError(f"env {name!r}: options must be hashable (envs are cached by name and "
                         f"options), got {dict(options)!r}") from None
    return key


def make(name: str, **options: Any) -> Env:
    """One unbatched MJX env (a Brax ``Env``, actions in [-1, 1]) by name.

    ``options`` go to the task's builder: constructor arguments for Brax tasks, Playground config
    overrides for Playground tasks (e.g. ``ctrl_dt=0.02``; an unknown key fails in Playground),
    over the task's registered defaults. Except ``iterations`` and ``ls_iterations``, the MJX
    solver settings, which apply to Brax envs (None keeps what the task ships) and are refused for
    Playground ones. The same name and options return the same object, so jitted code that closes
    over it is reused.
    """
    s = spec(name)  # the unknown-name error, before anything is built
    for k, v in options.items():
        if k in _SOLVER_OPTIONS:
            _check_solver_option(k, v)
    return _make_cached(name, _options_key(name, {**s.options, **options}))


def solver_settings(env: Env) -> dict[str, int | str]:
    """The MJX solver settings ``env`` runs with (a Brax env's ``sys.opt`` or an adapted
    Playground env's ``mjx_model.opt``)."""
    model = env.sys if hasattr(env, "sys") else env.mjx_model
    opt = model.opt
    return {"iterations": int(opt.iterations), "ls_iterations": int(opt.ls_iterations),
            "solver": str(mujoco.mjtSolver(int(opt.solver)).name)}
