"""Named settings of a run: config overrides, a default env and a checkpoint interval.

Flags override presets. What ``--num-envs`` implies comes between the two (:func:`implied`):
``cpu`` and ``gpu`` derive their regime (narrow below :data:`WIDE_FROM` envs, wide from there),
updates per vector step, batch, the actor's share and the env-step budget from it by one rule
(:data:`SCALING`; the study behind it: benchmarks/README.md, "Any N"); ``gpu_wide``, with an
``update_to_data`` ratio, derives ``updates_per_step`` alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from qvpo_mjx.config import PRESET_QVPO_ONLY, QVPOConfig

# The share of env steps acted with one plain sample of the diffusion policy instead of the best
# of behavior_samples under the critic (the reference's --epsilon, 0 in its runs). Best-of-Kb
# alone exploits what the critic already believes: on swing-up tasks every seed settled on
# spinning the pole and never saw the braking that balances it. Half the steps plain kept
# inverted_pendulum as it was and lifted the generality suite (benchmarks/README.md, "The
# generality suite"). The paper preset keeps the reference's 0.
BEHAVIOR_EPSILON = 0.5

# The novelty bonus of the cpu and gpu presets (qvpo_mjx/agent/novelty.py; benchmarks/README,
# "Exploration options"): weight 0.5, gated by the batch's share of unrewarded transitions and
# falling linearly to 0 over the run's env-step budget (``total_steps``, whatever N and budget
# are; a --novelty-decay-steps flag wins). Until a sparse reward is first seen QVPO's critic is
# flat and the actor copies its own samples: without it the cpu preset ended at 0.00-0.08 of the
# better peer on the four sparse tasks of the suite; with it, at 100k env steps, 2.08, 1.33 and
# 1.28 of Brax SAC on PendulumSwingup, BallInCup and FingerSpin (AcrobotSwingup is noise for
# both). The gate keeps it out of a dense task (no transition with a reward of exactly 0: the
# run is the one without the bonus), where the bonus sent pendulum_swingup back to spinning the
# pole; the fall stops it pulling a policy that has found its reward away late in the run,
# which the gate alone does too slowly (a buffer of 100k transitions holds mostly unrewarded
# ones long after the policy is rewarded: FingerSpin 0.78 with the gate alone).
NOVELTY = {"novelty_weight": 0.5, "novelty_reward_gate": True}
# The fields that only mean something with the bonus on: they go when a flag or --algo turns
# it off, unless a flag sets them.
NOVELTY_FIELDS = ("novelty_reward_gate", "novelty_decay_steps")

# What FastTD3 and FastSAC add to a wide regime, as this project's options: gpu_wide's, and the
# scaling study's uU_bB_opt regimes.
WIDE_OPTIONS = {"obs_normalization": True, "n_step": 3, "critic_layer_norm": True}

PRESETS: dict[str, dict[str, Any]] = {
    # The reference regime: one env, one update per env step, batch 256, every ALGORITHM.md default.
    # One env cannot be split over devices, so it runs on one whatever the machine has.
    "paper": {"env": "halfcheetah", "checkpoint_minutes": 5.0, "config": {"num_devices": 1}},
    # Thousands of envs on one GPU: the paper's networks and hyper-parameters, and what N implies
    # (SCALING below): from WIDE_FROM envs on, 4096 by default, the wide regime (4 critic updates
    # of batch 1,024 per vector step, the actor every second, 50,000 vector steps); below it the
    # scaling study's rule (one critic update of batch 256 per env step, the actor every second
    # critic update, 1M env steps). Checkpoints every 5 minutes: a 1M-transition buffer is too
    # big to copy and write after every chunk.
    "gpu": {"env": "halfcheetah", "checkpoint_minutes": 5.0,
            "config": dict(num_envs=4096, critic_updates_per_actor=2, eval_interval=81_920,
                           total_steps=1_000_000, replay_size=1_000_000,
                           behavior_epsilon=BEHAVIOR_EPSILON, **NOVELTY)},
    # The wide regime with the data per update held instead of the updates per vector step
    # (issue 13; benchmarks/README.md, "The wide regime"), opt-in: 4 critic updates of batch
    # 1,024 per 256 env steps (--num-envs 4096 gives 64 per vector step), the actor every
    # second, the wide options, 10M env steps, Kt 16. At N = 256 it is the gpu preset's wide
    # regime; at larger N it spends more sequential updates per env step than gpu does, which
    # the CPU study found bought nothing on inverted_double_pendulum (N = 1,024: the same 9,357
    # after as many updates with 4x fewer samples per env step).
    "gpu_wide": {"env": "halfcheetah", "update_to_data": 1 / 64, "checkpoint_minutes": 5.0,
                 "config": dict(num_envs=256, batch_size=1024, critic_updates_per_actor=2,
                                train_samples=16, **WIDE_OPTIONS,
                                eval_interval=204_800, total_steps=10_000_000,
                                replay_size=1_000_000, behavior_epsilon=BEHAVIOR_EPSILON)},
    # Learns a cheap task in a few minutes on a 2-core CPU (see README for the timing).
    # Smaller networks and chains for CPU speed; tau 0.02 because value propagation through the
    # target network was the bottleneck (tau 0.005: eval return ~70 after 16k steps; 0.02: 1000
    # at 10k steps; see the note on issue 3). Checkpoints after every chunk (they are small).
    "cpu": {"env": "inverted_pendulum", "checkpoint_minutes": 0.0, "config": dict(
        num_envs=16, batch_size=128, updates_per_step=8, start_steps=1_000,
        eval_interval=2_000, num_eval_envs=4, total_steps=20_000, replay_size=100_000,
        hidden_size=64, diffusion_steps=5, train_samples=16, eval_samples=8,
        actor_lr=3e-4, critic_lr=1e-3, tau=0.02, behavior_epsilon=BEHAVIOR_EPSILON, **NOVELTY)},
}


# How a preset follows --num-envs: one rule for the cpu and gpu presets (issue 24's study,
# benchmarks/README.md "Any N" and "The wide regime"; results/any_n*.json, results/wide.json).
#
# Below WIDE_FROM envs a preset keeps its narrow regime: cpu its 8 updates of batch 128 per
# vector step, gpu the reference's one critic update of batch 256 per env step (updates_per_step
# = N). From WIDE_FROM on, a vector step brings so many transitions that the narrow regime's
# updates run hundreds at a time between two acting steps, and that lost return: at N = 256 the
# reference ratio ended at 1,685 on inverted_double_pendulum and 198 on CartpoleSwingup, against
# 7,929 and 502 at N = 64, at equal updates. So both presets turn to the wide regime: WIDE's
# 4 critic updates of batch 1,024 per vector step (whatever N is), the actor every second one,
# observation normalisation, 3-step returns and LayerNorm critics, with the learning rates
# unchanged (doubling them took inverted_double_pendulum from 6.1x to 10.1x fewer updates and
# halfcheetah from 685 to 402, 6 seeds), and rewards scaled to a mean |r| of at most 1
# (reward_scale_auto): what held inverted_double_pendulum back was its critic's climb to
# Q near 900 (9 per step) in few updates, not data or targets. At N = 256 a reward scale of
# 0.1 reached its bar after 3,522 updates (12.4x; 0.3: 10.3x; the unscaled rule 7.7x; tau 0.05
# or 0.1 in place of 0.02: 7.7x); at N = 4,096 the auto scale (0.107) after 3,024 (14.4x,
# against 6.1x unscaled), at N = 1,024 after 2,832 (15.4x). It leaves every task whose rewards
# are at most 1 per step as it was (inverted_pendulum, CartpoleSwingup, halfcheetah: scale 1).
# Measured on the CPU with the cpu preset's networks, the wide regime reached the N = 64 rule's
# final return with 11.6x fewer sequential updates on inverted_pendulum at N = 4,096 (1,200 of
# 13,920), 14.8x on CartpoleSwingup at N = 4,096 (5,040 of 74,400; 13.1x at 1,024) and 14.4x on
# inverted_double_pendulum at N = 4,096 (3,024 of 43,680, rewards scaled); on halfcheetah
# (N = 256) it was level with the rule at equal updates. Env steps per update grow with N and
# bought nothing on inverted_double_pendulum (N = 1,024 and 4,096 ended where N = 256 did after
# as many updates), so the budget is counted in vector steps. The actor's share and the batch
# were axes too (inverted_double_pendulum, N = 1,024): the actor every 4th critic update did as
# well (14.8x), every update worse (9.2x); one update of batch 4,096 or 16,384 per vector step
# (rates scaled by the square root of the batch) never reached the bar: a wider batch does not
# stand in for updates. The budget: at least `vector_steps` vector steps, an evaluation every
# `eval_vector_steps` (an evaluation is 1,000 steps of the eval envs: a chunk of one vector step
# would be mostly evaluation).
WIDE_FROM = 256
WIDE = {"updates_per_step": 4, "batch_size": 1024, "critic_updates_per_actor": 2, **WIDE_OPTIONS,
        "reward_scale_auto": True}

# What a baseline (``--algo``, qvpo_mjx/algorithms/) changes in a preset's values unless a flag
# sets the field. TD3's and DACER's policy delay is part of them (the actor takes every 2nd
# critic update at least); QSM's chain is its paper's and code's (5 steps of the vp schedule),
# DACER's its code's (20 of vp), with its rewards scaled by 0.2; DIPO's its code's (100 of
# cosine).
ALGO_FLOORS: dict[str, dict[str, int]] = {"td3": {"critic_updates_per_actor": 2},
                                          "dacer": {"critic_updates_per_actor": 2}}
ALGO_VALUES: dict[str, dict[str, Any]] = {
    "qsm": {"diffusion_steps": 5, "beta_schedule": "vp"},
    "dacer": {"diffusion_steps": 20, "beta_schedule": "vp", "reward_scale": 0.2},
    "dipo": {"diffusion_steps": 100, "beta_schedule": "cosine"}}


def for_algo(values: dict[str, Any], algo: str) -> dict[str, Any]:
    """``values`` (config values before the flags) with what ``algo`` changes in them:
    QVPO's own options and the novelty bonus off (``config.PRESET_QVPO_ONLY``; a flag still
    turns the bonus on for any algorithm), :data:`ALGO_FLOORS` raised to,
    :data:`ALGO_VALUES` set. QVPO changes nothing."""
    values = dict(values)
    if algo != "qvpo":
        values.update(PRESET_QVPO_ONLY)
    for field, floor in ALGO_FLOORS.get(algo, {}).items():
        values[field] = max(floor, values.get(field, getattr(QVPOConfig, field)))
    values.update(ALGO_VALUES.get(algo, {}))
    return values


def settle_bonus(values: dict[str, Any], overrides: dict[str, Any], preset: str
                 ) -> dict[str, Any]:
    """``values`` (flags, ``overrides``, already in) with the novelty bonus's settings made
    whole: with the bonus off (a flag, or another ``algo``) its :data:`NOVELTY_FIELDS` go back
    to their defaults unless a flag sets them; with it on and ``preset`` one that sets it
    (:data:`NOVELTY`), it falls to 0 over the run's ``total_steps`` unless a flag sets
    ``novelty_decay_steps``."""
    values = dict(values)
    if not values.get("novelty_weight"):
        values.update({f: getattr(QVPOConfig, f) for f in NOVELTY_FIELDS if f not in overrides})
    elif PRESETS[preset]["config"].get("novelty_weight") and "novelty_decay_steps" not in overrides:
        values["novelty_decay_steps"] = float(values.get("total_steps", QVPOConfig.total_steps))
    return values


def settle_reward_scale(values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``values`` (flags, ``overrides``, already in) with one reward scale: what a flag sets
    wins over what a preset or the algorithm (DACER's 0.2) sets. A fixed scale from a flag or
    the algorithm turns off a preset's auto scale (which would overwrite it at the first
    update); the auto scale from a flag sets the scale itself, so an algorithm's fixed one goes
    back to 1. Both from flags are left for validation to refuse."""
    values = dict(values)
    fixed = values.get("reward_scale", 1.0) != 1.0
    if fixed and values.get("reward_scale_auto"):
        if "reward_scale_auto" not in overrides:
            values["reward_scale_auto"] = False
        elif "reward_scale" not in overrides:
            values["reward_scale"] = 1.0
    return values


@dataclasses.dataclass(frozen=True)
class Scaling:
    """What ``--num-envs N`` implies for one preset (see the comment above :data:`WIDE_FROM`).

    ``update_to_data``: in the narrow regime, critic updates per env step (updates_per_step =
    ratio x N), or None to keep the preset's own updates_per_step. ``narrow_vector_steps`` and
    ``wide_vector_steps``: the fewest vector steps a run gets in each regime (0: the preset's
    total_steps whatever N). ``narrow_eval_vector_steps`` and ``wide_eval_vector_steps``: the
    shortest evaluation interval in each regime, in vector steps (0: the preset's own).
    ``wide``: what the preset sets on top of :data:`WIDE` in the wide regime."""
    update_to_data: float | None
    narrow_vector_steps: int
    wide_vector_steps: int
    narrow_eval_vector_steps: int
    wide_eval_vector_steps: int
    wide: dict[str, Any] = dataclasses.field(default_factory=dict)


SCALING: dict[str, Scaling] = {
    # inverted_pendulum reached 1000 on every seed within 400 vector steps at N = 256-4,096
    # (results/any_n_full.json: held from 1,620 sequential updates on, of 2,400).
    "cpu": Scaling(update_to_data=None, narrow_vector_steps=400, wide_vector_steps=400,
                   narrow_eval_vector_steps=10, wide_eval_vector_steps=10),
    # The paper's networks at 1M env steps below WIDE_FROM (N critic updates per vector step).
    # In the wide regime 50,000 vector steps: 200k critic and 100k actor updates, a fifth of the
    # narrow rule's 1.5M sequential updates at 1M env steps (205M env steps at N = 4,096, which a
    # GPU steps in minutes), an evaluation every 1,000 (50 in all). Kt 16: the reference's 16k
    # candidates per actor update (B 256 x Kt 64) over 4x the states, as the wide study ran it.
    "gpu": Scaling(update_to_data=1.0, narrow_vector_steps=0, wide_vector_steps=50_000,
                   narrow_eval_vector_steps=0, wide_eval_vector_steps=1_000,
                   wide={"train_samples": 16}),
}


def _ratio_updates(ratio: float, num_envs: int) -> tuple[int, str]:
    """updates_per_step = ratio x N (rounded half up, at least 1) and the clause saying so."""
    ups = max(1, int(ratio * num_envs + 0.5))
    return ups, (f"N = {num_envs} implies {ups} critic update{'s' * (ups > 1)} per vector step "
                 f"({ratio:g} per env step)")


def implied(name: str, num_envs: int, batch_size: int | None = None
            ) -> tuple[dict[str, Any], str]:
    """(config values, why) that ``num_envs`` implies for preset ``name``: flags override them.
    ``why`` is the clause the run's first line prints ("" where N implies nothing).
    ``batch_size``: the batch a flag sets, if any; the wide regime's warm-up then holds a full
    first batch of it."""
    preset = PRESETS[name]
    ratio = preset.get("update_to_data")
    if ratio is not None:  # gpu_wide: the data per update held at any N
        ups, why = _ratio_updates(ratio, num_envs)
        return {"updates_per_step": ups}, why
    rule = SCALING.get(name)
    if rule is None:
        return {}, ""
    base = {**QVPOConfig().to_dict(), **preset["config"]}  # the preset's values or the defaults
    wide = num_envs >= WIDE_FROM
    steps = rule.wide_vector_steps if wide else rule.narrow_vector_steps
    total = max(base["total_steps"], steps * num_envs)
    interval = max(base["eval_interval"],
                   (rule.wide_eval_vector_steps if wide else rule.narrow_eval_vector_steps)
                   * num_envs)
    values: dict[str, Any] = {}
    if total != base["total_steps"]:
        values["total_steps"] = total
        values["replay_size"] = max(base["replay_size"], min(total, 1_000_000))
    if interval != base["eval_interval"]:
        values["eval_interval"] = interval
    budget = f"{total:,} env steps ({total // num_envs:,} vector steps)"
    if not wide:
        if rule.update_to_data is not None:
            values["updates_per_step"], why = _ratio_updates(rule.update_to_data, num_envs)
            return values, f"{why}, {budget}"
        return values, (f"N = {num_envs} implies {budget}" if values else "")
    values.update(WIDE, **rule.wide)
    values["start_steps"] = max(base["start_steps"], num_envs, batch_size or WIDE["batch_size"])
    return values, (f"N = {num_envs} >= {WIDE_FROM} implies the wide regime: "
                    f"{WIDE['updates_per_step']} critic updates of batch {WIDE['batch_size']} per "
                    f"vector step, the actor every {WIDE['critic_updates_per_actor']}nd, obs "
                    f"normalisation, {WIDE['n_step']}-step returns, LayerNorm critics, rewards "
                    f"scaled to a mean |r| of at most 1, {budget}")


def preset_config(name: str, overrides: dict[str, Any] | None = None) -> QVPOConfig:
    """The preset's config, with what ``num_envs`` implies (:func:`implied`) and ``overrides``
    on top: a flag always wins over what N implies. ``cpu`` and ``gpu`` follow N as
    :data:`SCALING` and :data:`WIDE_FROM` describe; a preset with an ``update_to_data`` ratio
    (``gpu_wide``) sets ``updates_per_step`` = ratio x ``num_envs`` (rounded half up, at least
    1). The actor's share (``critic_updates_per_actor``) is counted over the whole run, so it
    holds for any N."""
    return QVPOConfig.from_dict(preset_values(name, overrides)[0])


def preset_values(name: str, overrides: dict[str, Any] | None = None
                  ) -> tuple[dict[str, Any], str]:
    """(config values, why): :func:`preset_config`'s values before validation, and the clause
    saying what N implied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    overrides = dict(overrides or {})
    base = PRESETS[name]["config"]
    num_envs = overrides.get("num_envs", base.get("num_envs", 1))
    derived, why = implied(name, num_envs, overrides.get("batch_size"))
    kept = {k: v for k, v in derived.items() if k not in overrides}
    if why and len(kept) < len(derived):
        why += f" ({', '.join(sorted(set(derived) - set(kept)))} from the flags)"
    values = {**base, **kept}
    values = {**for_algo(values, overrides.get("algo", values.get("algo", "qvpo"))), **overrides}
    values = settle_bonus(values, overrides, name)
    return settle_reward_scale(values, overrides), why
