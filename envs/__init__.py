"""Environments: a registry of MJX tasks and the vectorised, auto-resetting wrapper the loop uses.

``make(name, **options)`` returns one unbatched Brax ``Env`` on the MJX backend (actions in
[-1, 1]); ``VecEnv(env, num_envs, episode_length)`` runs N of them with time limits and auto-reset.
"""

from envs.registry import make, names, spec
from envs.vec import EnvState, StepResult, VecEnv

__all__ = ["make", "names", "spec", "VecEnv", "EnvState", "StepResult"]
