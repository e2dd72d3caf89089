"""Environments: a registry of MJX tasks and the vectorised, auto-resetting wrapper the loop uses.

Task families (``spec(name).family``):

- ``"brax"``: the paper's locomotion tasks and cheap CPU tasks through Brax (``halfcheetah``,
  ``inverted_pendulum``, our ``pendulum_swingup``, ...);
- ``"playground"``: MuJoCo Playground's DM Control Suite under Playground's names
  (``CartpoleSwingup``, ``CheetahRun``, ...), on MJX's JAX implementation. ``mujoco_playground``
  is imported only when one of them is built, so Brax tasks run where it is missing;
- ``"user"``: tasks added with ``register(name, builder, **defaults)``.

``make(name, **options)`` returns one unbatched Brax ``Env`` on MJX (actions in [-1, 1];
Playground envs come wrapped in ``PlaygroundAdapter``); ``names()`` lists every task;
``VecEnv(env, num_envs, episode_length)`` runs N of them with time limits and auto-reset.
"""

from envs import _quiet

_quiet.import_mjx()  # before Brax imports it: drops the Warp-probe prints, nothing else

from envs.playground import PlaygroundAdapter  # noqa: E402
from envs.registry import EnvSpec, make, names, register, solver_settings, spec  # noqa: E402
from envs.vec import EnvState, StepResult, VecEnv  # noqa: E402

__all__ = ["make", "names", "register", "spec", "solver_settings", "EnvSpec", "PlaygroundAdapter",
           "VecEnv", "EnvState", "StepResult"]
