"""N environments in lock-step with time limits and auto-reset, as pure functions.

Unlike Brax's training wrappers, ``step`` hands back the true next observation of an episode that
just ended (not the reset one), and separate ``terminated`` / ``truncated`` flags, so the TD target
can bootstrap through time limits. Resets draw a fresh random initial state, and only run when some
environment finished (``lax.cond``), so the common step pays no reset. The env is a Brax ``Env``;
Playground tasks reach it through ``envs.PlaygroundAdapter``, whose ``step`` never resets, so the
same promises hold for both families.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env, State
from flax import struct


def _strong(tree):
    """Float leaves as strongly typed float32: Brax returns weak floats from ``step`` but strong
    ones from ``reset``, and the mismatch retraces any loop that carries the state."""
    def fix(x):
        x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.floating):
            return jax.lax.convert_element_type(x, jnp.float32)
        return x
    return jax.tree.map(fix, tree)


@struct.dataclass
class EnvState:
    inner: State  # Brax state (Playground's adapted to it), every leaf with leading axis N
    episode_step: jax.Array  # (N,) int32, steps taken in the current episode
    episode_return: jax.Array  # (N,) float32, reward summed in the current episode
    key: jax.Array  # PRNG key for resets

    @property
    def obs(self) -> jax.Array:
        """(N, o) float32 current observations."""
        return self.inner.obs


@struct.dataclass
class StepResult:
    next_obs: jax.Array  # (N, o) the observation the action led to, before any reset
    reward: jax.Array  # (N,) float32
    terminated: jax.Array  # (N,) float32 1.0 at a true terminal state
    truncated: jax.Array  # (N,) float32 1.0 where the time limit ended a non-terminal episode
    episode_return: jax.Array  # (N,) the finished episode's return where done, else 0
    done: jax.Array  # (N,) float32, terminated or truncated
    invalid: jax.Array  # (N,) float32 1.0 where the physics diverged (counted terminal)


class VecEnv:
    """``num_envs`` copies of ``env``; episodes end at termination or after ``episode_length`` steps.

    ``divergence_bound``: a step whose observation or reward has an entry above it in absolute
    value, or a non-finite one, is diverged physics (MJX can run away through huge but finite
    states for many steps before a NaN): it ends its episode as terminal with reward 0 and a
    zero next observation, and the env is reset. inf (the default here) checks finiteness only;
    training takes the config's ``divergence_bound``.

    A plain Python object holding only static settings: ``reset`` and ``step`` are pure and jit,
    vmap (over seeds) and scan.
    """

    def __init__(self, env: Env, num_envs: int, episode_length: int,
                 divergence_bound: float = float("inf")):
        if num_envs <= 0 or episode_length <= 0:
            raise ValueError(f"num_envs and episode_length must be positive, got {num_envs}, "
                             f"{episode_length}")
        if not divergence_bound > 0:
            raise ValueError(f"divergence_bound must be positive, got {divergence_bound}")
        self.env = env
        self.num_envs = int(num_envs)
        self.episode_length = int(episode_length)
        self.divergence_bound = float(divergence_bound)

    # Read once per VecEnv (Brax computes observation_size by running a reset) and checked: the
    # agent needs one flat observation vector.
    @functools.cached_property
    def observation_size(self) -> int:
        return self._size("observation_size")

    @functools.cached_property
    def action_size(self) -> int:
        return self._size("action_size")

    def _size(self, what: str) -> int:
        size = getattr(self.env, what)
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
            raise TypeError(
                f"VecEnv needs a positive int {what}, got {size!r} from {type(self.env).__name__}; "
                f"a dict observation must be flattened first (envs.PlaygroundAdapter does it for "
                f"Playground-style envs)")
        return int(size)

    def _reset_inner(self, key: jax.Array) -> State:
        return _strong(jax.vmap(self.env.reset)(jax.random.split(key, self.num_envs)))

    def reset(self, key: jax.Array) -> EnvState:
        k_reset, k_next = jax.random.split(key)
        inner = self._reset_inner(k_reset)
        return EnvState(inner=inner,
                        episode_step=jnp.zeros((self.num_envs,), jnp.int32),
                        episode_return=jnp.zeros((self.num_envs,), jnp.float32), key=k_next)

    def step(self, state: EnvState, action: jax.Array, auto_reset: bool = True,
             reset_axis: str | None = None) -> tuple[EnvState, StepResult]:
        """action (N, d) in [-1, 1] -> (next state, what happened).

        ``auto_reset=False`` leaves finished episodes where they ended (evaluation runs each
        episode once and masks what follows), and saves compiling the reset.
        ``reset_axis``: inside a ``vmap`` over that axis (seeds), the reset runs when an
        episode ended in any of its members, so the decision is one unbatched value and the
        ``lax.cond`` stays a branch (a batched predicate turns it into a select that resets
        every step).
        """
        inner = _strong(jax.vmap(self.env.step)(state.inner, action))
        # MJX can diverge (non-finite states seen on inverted_double_pendulum; huge finite ones
        # on other models): such a step ends its episode as terminal with reward 0 and a zero
        # observation, so nothing diverged reaches the replay buffer or a return, and the env
        # is reset.
        def healthy(x):
            return jnp.isfinite(x) & (jnp.abs(x) <= self.divergence_bound)

        invalid = ~(jnp.all(healthy(inner.obs), axis=-1) & healthy(inner.reward))
        next_obs = jnp.where(invalid[:, None], 0.0, inner.obs)
        reward = jnp.where(invalid, 0.0, inner.reward)
        episode_step = state.episode_step + 1
        episode_return = state.episode_return + reward
        terminated = jnp.where(invalid, 1.0, inner.done)
        truncated = jnp.where((episode_step >= self.episode_length) & (terminated == 0), 1.0, 0.0)
        done = jnp.maximum(terminated, truncated)
        result = StepResult(next_obs=next_obs, reward=reward, terminated=terminated,
                            truncated=truncated, episode_return=episode_return * done, done=done,
                            invalid=invalid.astype(jnp.float32))

        key, k_reset = jax.random.split(state.key)

        def reset_done(inner):
            fresh = self._reset_inner(k_reset)
            pick = lambda new, old: jnp.where(  # noqa: E731
                done.reshape((-1,) + (1,) * (old.ndim - 1)) > 0, new, old)
            return jax.tree.map(pick, fresh, inner)

        if auto_reset:
            any_done = jnp.any(done > 0)
            if reset_axis is not None:
                any_done = jax.lax.psum(any_done.astype(jnp.int32), reset_axis) > 0
            inner = jax.lax.cond(any_done, reset_done, lambda inner: inner, inner)
        keep = 1 - done.astype(jnp.int32)
        new_state = EnvState(inner=inner, episode_step=episode_step * keep,
                             episode_return=episode_return * (1.0 - done), key=key)
        return new_state, result
