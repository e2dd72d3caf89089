"""The algorithms the training loop can run, behind one interface (``config.algo``).

The loop (qvpo_mjx/loop.py) knows an algorithm only as an :class:`Algorithm`:

- ``init(key, obs_size, action_size, config) -> state``: a pytree with at least
  ``actor_params``, ``critic_params``, ``hparams``, ``obs_stats``, ``structure`` (with
  ``obs_normalization``) and the counters ``critic_updates``, ``actor_updates`` and
  ``env_steps`` (the loop advances ``env_steps`` and the observation statistics);
- ``act(state, obs, key, draws) -> (action, metrics)``: the behaviour policy, raw obs (N, o) ->
  (N, d) in [-1, 1], and ``behavior/...`` scalars; ``draws`` is QVPO's correlated sampler noise
  (None otherwise);
- ``eval_act(state, obs, key) -> action``: the evaluation policy;
- ``critic_step(state, batch, key, axis_name) -> (state, metrics)`` and
  ``actor_step(state, data, key, axis_name) -> (state, metrics)``: one critic update on a batch
  of (B,) transitions and one actor update on ``data`` (below), each moving the targets its
  algorithm moves with it and counting itself; metrics named ``critic/...`` and ``actor/...``
  (``critic/loss``, ``critic/q_mean``, ``critic/q_target`` and ``actor/loss`` at least: the
  loop's numerical guard watches them). ``agent.scheduled_updates`` interleaves them, the actor
  taking every ``critic_updates_per_actor``-th critic update;
- ``actor_own_batch``: whether the actor's ``data`` is the states (B, o) of a batch of its own
  (QVPO, as its reference samples the buffer again) or the one-step transitions (B,) of the
  critic batch just used (the baselines: SAC, TD3 and DACER read its states, QSM its actions
  too);
- ``actor_takes_shared``: whether ``actor_step`` also takes ``shared``, the loop's function that
  makes a counter one unbatched value under a seed ``vmap`` (DACER: its periodic entropy
  estimate stays a branch instead of running on every actor step);
- ``improves_actions``: whether the replay buffer keeps a column of improved actions that the
  actor step reads and writes (DIPO): its ``data`` is then an :class:`ActorRows` (rows of its
  own batch and their states), and the column rides in the state's ``improved`` while the
  vector step's updates run.

QVPO (qvpo_mjx/agent/) is the default; the baselines are ``sac``, ``td3``, ``qsm``, ``dacer``
and ``dipo`` here, on what ``baseline`` gives them all (state, critic step, actors, the
diffusion chain).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from qvpo_mjx import agent
from qvpo_mjx.algorithms import baseline, dacer, dipo, qsm, sac, td3
from qvpo_mjx.algorithms.baseline import ActorRows
from qvpo_mjx.config import ALGOS


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """What the loop calls (see the module docstring for each function's contract)."""

    name: str
    init: Callable[..., Any]
    act: Callable[..., Any]
    eval_act: Callable[..., Any]
    critic_step: Callable[..., Any]
    actor_step: Callable[..., Any]
    actor_own_batch: bool
    actor_takes_shared: bool = False
    improves_actions: bool = False


ALGORITHMS: dict[str, Algorithm] = {
    "qvpo": Algorithm("qvpo", agent.init, agent.act_with_stats, agent.eval_act,
                      agent.critic_step, agent.actor_step, actor_own_batch=True),
    "sac": Algorithm("sac", baseline.init, sac.act, sac.eval_act, sac.critic_step,
                     sac.actor_step, actor_own_batch=False),
    "td3": Algorithm("td3", baseline.init, td3.act, td3.eval_act, td3.critic_step,
                     td3.actor_step, actor_own_batch=False),
    "qsm": Algorithm("qsm", baseline.init, qsm.act, qsm.eval_act, qsm.critic_step,
                     qsm.actor_step, actor_own_batch=False),
    "dacer": Algorithm("dacer", baseline.init, dacer.act, dacer.eval_act, dacer.critic_step,
                       dacer.actor_step, actor_own_batch=False, actor_takes_shared=True),
    "dipo": Algorithm("dipo", baseline.init, dipo.act, dipo.eval_act, dipo.critic_step,
                      dipo.actor_step, actor_own_batch=True, improves_actions=True),
}
assert tuple(ALGORITHMS) == ALGOS, "config.ALGOS and the registry name the same algorithms"

def get(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algo {name!r}; known: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]
