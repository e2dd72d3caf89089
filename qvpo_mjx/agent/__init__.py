"""QVPO's agent: its state and the pure ``init`` / ``act`` / ``eval_act`` / ``update`` functions.

One concept per module, each reading the state and returning a new one (or a value), never
touching anything else:

- ``state``: :class:`AgentState` (networks, targets, optimiser states, statistics, counters),
  its static :class:`AgentStructure`, :class:`Transition` and :func:`init`;
- ``normalizer``: running observation statistics and the normalised view of observations;
- ``values``: what the critic's output means (Q, or a histogram's mean with ``critic_bins``)
  and the critic's regression loss;
- ``selection``: sampling the diffusion actor and best-of-K selection under min(Q1, Q2)
  (behaviour, TD target, evaluation);
- ``transforms``: the Q-weight transforms and the running score statistics;
- ``entropy``: the entropy term's weight (the reference's decay, or adaptive);
- ``updates``: the losses, one critic and one actor update, their targets, and the schedule that
  interleaves them.

Everything below is importable as ``agent.NAME``::

    state = agent.init(key, obs_size, action_size, config)
    action = agent.act(state, obs, key)                 # obs (N, o) -> (N, d)
    state, metrics = agent.update(state, batch, key)    # batch: Transition of (B,) arrays
"""

from qvpo_mjx.agent.entropy import (LOG_ENTROPY_WEIGHT_RANGE, adapted_log_entropy_weight,
                                    entropy_weight)
from qvpo_mjx.agent.normalizer import (COUNT_BASE, OBS_CLIP, ObsStats, normalize_obs,
                                       update_obs_stats)
from qvpo_mjx.agent.selection import (act, act_with_stats, behavior_scores, best_candidate,
                                      candidate_spread, denoise, eval_act, min_q,
                                      sample_candidates, select_action)
from qvpo_mjx.agent.state import (AgentState, AgentStructure, Metrics, Params, Transition, init,
                                  init_novelty, optimizer)
from qvpo_mjx.agent.transforms import Q_TRANSFORM_FNS, QTransform, score_stats
from qvpo_mjx.agent.values import (HL_GAUSS_SIGMA, bin_centres, bin_edges, critic_q,
                                   critic_regression_loss, hl_gauss_target)
from qvpo_mjx.agent.updates import (actor_loss, actor_loss_from_samples, actor_step, actor_update,
                                   add_novelty, critic_loss, critic_step, critic_update,
                                   delayed_update, loss_samples, optimizer_step, polyak,
                                   scheduled_updates, td_target, update)

__all__ = [
    "LOG_ENTROPY_WEIGHT_RANGE", "adapted_log_entropy_weight", "entropy_weight",
    "COUNT_BASE", "OBS_CLIP", "ObsStats", "normalize_obs", "update_obs_stats",
    "act", "act_with_stats", "behavior_scores", "best_candidate", "candidate_spread", "denoise",
    "eval_act", "min_q",
    "sample_candidates", "select_action",
    "AgentState", "AgentStructure", "Metrics", "Params", "Transition", "init", "optimizer",
    "Q_TRANSFORM_FNS", "QTransform", "score_stats",
    "HL_GAUSS_SIGMA", "bin_centres", "bin_edges", "critic_q", "critic_regression_loss",
    "hl_gauss_target",
    "actor_loss", "actor_loss_from_samples", "actor_step", "actor_update", "critic_loss",
    "critic_step", "critic_update", "delayed_update", "loss_samples", "optimizer_step", "polyak",
    "scheduled_updates",
    "td_target", "update",
]
