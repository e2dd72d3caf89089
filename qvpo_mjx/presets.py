"""Named settings of a run: config overrides, a default env and a checkpoint interval.

Flags override presets. What ``--num-envs`` implies comes between the two (:func:`implied`): a
preset with an ``update_to_data`` ratio derives ``updates_per_step`` from ``num_envs``, and
``cpu`` derives its regime, batch and env-step budget from it (the study behind it:
benchmarks/README.md, "Any N").
"""

from __future__ import annotations

from typing import Any

from qvpo_mjx.config import QVPOConfig

# The share of env steps acted with one plain sample of the diffusion policy instead of the best
# of behavior_samples under the critic (the reference's --epsilon, 0 in its runs). Best-of-Kb
# alone exploits what the critic already believes: on swing-up tasks every seed settled on
# spinning the pole and never saw the braking that balances it. Half the steps plain kept
# inverted_pendulum as it was and lifted the generality suite (benchmarks/README.md, "The
# generality suite"). The paper preset keeps the reference's 0.
BEHAVIOR_EPSILON = 0.5

# What FastTD3 and FastSAC add to a wide regime, as this project's options: gpu_wide's, and the
# scaling study's uU_bB_opt regimes.
WIDE_OPTIONS = {"obs_normalization": True, "n_step": 3, "critic_layer_norm": True}

PRESETS: dict[str, dict[str, Any]] = {
    # The reference regime: one env, one update per env step, batch 256, every ALGORITHM.md default.
    # One env cannot be split over devices, so it runs on one whatever the machine has.
    "paper": {"env": "halfcheetah", "checkpoint_minutes": 5.0, "config": {"num_devices": 1}},
    # Thousands of envs on one GPU, set by the scaling study (benchmarks/README.md): the paper's
    # networks and hyper-parameters, with the reference's one critic update of batch 256 per env
    # step (updates_per_step = N; see preset_config) and one actor update per two critic ones.
    # Fewer critic updates per env step (naive scaling, or half as many) lost return; larger
    # batches did not make up for it. Checkpoints every 5 minutes: a 1M-transition buffer is
    # too big to copy and write after every chunk.
    "gpu": {"env": "halfcheetah", "update_to_data": 1.0, "checkpoint_minutes": 5.0,
            "config": dict(num_envs=4096, critic_updates_per_actor=2, eval_interval=81_920,
                           total_steps=1_000_000, replay_size=1_000_000,
                           behavior_epsilon=BEHAVIOR_EPSILON)},
    # Issue 13's wide regime, opt-in (benchmarks/README.md, "The wide regime"): 4 critic updates of
    # batch 1024 per 256 env steps (1/64 of the rule's, so --num-envs 4096 gives 64 per vector
    # step), the actor every second, observation normalisation, 3-step returns and LayerNorm
    # critics, and 10x the env steps. In the CPU study (N = 256, small networks) it needed 7.7x
    # fewer sequential updates than the rule to reach the rule's final return on
    # inverted_double_pendulum, but on halfcheetah it led the rule at 7k updates (957 vs 152)
    # and was only level with it at 14k (1,126 vs 1,075), short of the rule's final 2,280: not
    # the gpu default until a GPU run shows its wall-clock. The paper's networks and rates, as
    # the gpu preset, but Kt 16: the reference's 16k candidates per actor update (B 256 x Kt 64)
    # spread over 4x the states; it keeps the actor update near B 256's cost on a GPU, and Kt 16
    # is what the study ran.
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
        actor_lr=3e-4, critic_lr=1e-3, tau=0.02, behavior_epsilon=BEHAVIOR_EPSILON)},
}


# How the cpu preset follows --num-envs (issue 24's study, benchmarks/README.md "Any N"). Below
# CPU_WIDE_FROM envs it keeps its 8 updates of batch 128 per vector step. From there on a
# vector step brings so many transitions that the narrow regime spends nearly all its time in
# updates that each see few of them; the preset turns to the wide regime: CPU_WIDE's 4 critic
# updates of batch 1,024 per vector step, the actor every second one, observation
# normalisation, 3-step returns and LayerNorm critics. Whatever N, the run gets at least
# CPU_VECTOR_STEPS vector steps (env steps are what a large N has plenty of) and an evaluation
# every CPU_EVAL_VECTOR_STEPS of them (an evaluation costs 1,000 steps of the eval envs, which
# would dominate a chunk of a single vector step).
CPU_WIDE_FROM = 256
CPU_WIDE = {"updates_per_step": 4, "batch_size": 1024, "critic_updates_per_actor": 2,
            **WIDE_OPTIONS}
CPU_VECTOR_STEPS = 400
CPU_EVAL_VECTOR_STEPS = 10


def implied(name: str, num_envs: int) -> tuple[dict[str, Any], str]:
    """(config values, why) that ``num_envs`` implies for preset ``name``: flags override them.
    ``why`` is the clause the run's first line prints ("" where N implies nothing)."""
    preset = PRESETS[name]
    ratio = preset.get("update_to_data")
    if ratio is not None:
        ups = max(1, int(ratio * num_envs + 0.5))
        return {"updates_per_step": ups}, (f"N = {num_envs} implies {ups} critic updates per "
                                           f"vector step ({ratio:g} per env step)")
    if name != "cpu":
        return {}, ""
    base = preset["config"]
    total = max(base["total_steps"], CPU_VECTOR_STEPS * num_envs)
    values = {"total_steps": total,
              "eval_interval": max(base["eval_interval"], CPU_EVAL_VECTOR_STEPS * num_envs),
              "replay_size": max(base["replay_size"], min(total, 1_000_000))}
    if num_envs < CPU_WIDE_FROM:
        if total == base["total_steps"]:
            return {}, ""
        return values, (f"N = {num_envs} implies {total:,} env steps ({CPU_VECTOR_STEPS} vector "
                        f"steps)")
    values.update(CPU_WIDE, start_steps=max(base["start_steps"], num_envs, CPU_WIDE["batch_size"]))
    return values, (f"N = {num_envs} >= {CPU_WIDE_FROM} implies the wide regime: "
                    f"{CPU_WIDE['updates_per_step']} critic updates of batch "
                    f"{CPU_WIDE['batch_size']} per vector step, the actor every "
                    f"{CPU_WIDE['critic_updates_per_actor']}nd, obs normalisation, "
                    f"{WIDE_OPTIONS['n_step']}-step returns, LayerNorm critics, "
                    f"{total:,} env steps ({CPU_VECTOR_STEPS} vector steps)")


def preset_config(name: str, overrides: dict[str, Any] | None = None) -> QVPOConfig:
    """The preset's config, with what ``num_envs`` implies (:func:`implied`) and ``overrides``
    on top: a flag always wins over what N implies. A preset with an ``update_to_data`` ratio
    sets ``updates_per_step`` = ratio x ``num_envs`` (rounded half up, at least 1), so
    ``--num-envs`` alone keeps the critic updates per env step; the actor's share
    (``critic_updates_per_actor``) is counted over the whole run, so it holds for any N too.
    ``cpu`` follows N as :data:`CPU_WIDE_FROM` describes."""
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
    derived, why = implied(name, num_envs)
    kept = {k: v for k, v in derived.items() if k not in overrides}
    if why and len(kept) < len(derived):
        why += f" ({', '.join(sorted(set(derived) - set(kept)))} from the flags)"
    return {**base, **kept, **overrides}, why
