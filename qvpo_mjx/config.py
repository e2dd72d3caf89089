"""The one configuration of a QVPO run.

Every default traces to ``ALGORITHM.md`` (the reference implementation's behaviour); every deviation
from it is a named option that is off by default.

Fields come in two kinds, recorded in each field's metadata:

* structural fields (sizes, sample counts, names of code paths) shape the compiled program, so a
  change recompiles;
* ``traced`` fields (learning rates, gamma, tau, entropy weights, ...) travel inside the agent state
  as float32 arrays (:func:`QVPOConfig.hyperparams`), so one compiled ``update`` serves every value
  and a sweep can ``vmap`` over them; the agent's static part (``agent.AgentStructure``) holds
  structural fields only.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

BETA_SCHEDULES = ("cosine", "linear", "vp")
Q_TRANSFORMS = ("qadv", "qcut", "qrelu", "qexpn")
BEHAVIOR_NOISES = ("white", "ar1", "pink")  # qvpo_mjx/behavior_noise.py
ALGOS = ("qvpo", "sac", "td3", "qsm", "dacer", "dipo")  # qvpo_mjx/algorithms/
DACER_COMPONENTS = 3  # the Gaussian mixture of DACER's entropy estimate (its code's)
# QVPO's own options (its behaviour sampler and selection) and their values off: another algo
# must have them off, and a preset's values give way to them for another algo.
QVPO_OPTIONS = {"behavior_noise": "white", "behavior_optimism": 0.0}
# The loop's options that a preset turns on for QVPO and off for another algo (which then runs
# as its paper and code do); a flag turns them on for any algo (the novelty bonus sits in the
# TD target, which every algorithm shares).
PRESET_QVPO_ONLY = {**QVPO_OPTIONS, "novelty_weight": 0.0}


def _field(default: Any, doc: str, *, traced: bool = False) -> Any:
    return dataclasses.field(default=default, metadata={"doc": doc, "traced": traced})


@dataclasses.dataclass(frozen=True)
class QVPOConfig:
    """All hyper-parameters of QVPO and of the training loop that runs it."""

    # --- diffusion actor -------------------------------------------------------------------
    diffusion_steps: int = _field(20, "T, the number of denoising steps of the actor.")
    beta_schedule: str = _field("cosine", f"Noise schedule, one of {BETA_SCHEDULES}.")
    hidden_size: int = _field(256, "Width of every hidden layer (actor trunk, time MLP, critics).")
    time_embed_size: int = _field(32, "Size of the sinusoidal time embedding (even).")
    noise_ratio: float = _field(
        1.0, "Scale of the noise added at each reverse step (0 makes sampling deterministic).",
        traced=True)
    deterministic_eval: bool = _field(False, "Evaluate with noise_ratio 0 instead of noise_ratio.")

    # --- action selection ------------------------------------------------------------------
    behavior_samples: int = _field(4, "Kb: candidates per state when acting in the environment.")
    behavior_epsilon: float = _field(
        0.0, "Probability, per env and step, that the behaviour policy acts with one plain "
        "diffusion sample instead of the best of behavior_samples (the reference's --epsilon; "
        "0 in its runs).", traced=True)
    behavior_noise: str = _field(
        "white", f"The behaviour policy's sampler noise (x_T and every z) in env time, one of "
        f"{BEHAVIOR_NOISES}: white is fresh every step (the reference); ar1 and pink are "
        "correlated from one step to the next and N(0, I) at every step, one stream per env and "
        "candidate, restarted when the env's episode ends (qvpo_mjx/behavior_noise.py).")
    behavior_noise_tau: float = _field(
        10.0, "ar1 noise: correlation time in env steps (lag-1 correlation exp(-1/tau)).",
        traced=True)
    behavior_optimism: float = _field(
        0.0, "kappa: the behaviour policy picks its candidate by min(Q1, Q2) + kappa |Q1 - Q2| / 2 "
        "(0: min, the reference; 1: the mean; an upper bound as in OAC above 1). The TD target, "
        "the Q-weights and evaluation keep min(Q1, Q2).", traced=True)
    target_samples: int = _field(4, "Candidates per next state from the target actor (TD target).")
    eval_samples: int = _field(32, "Candidates per state at evaluation.")
    train_samples: int = _field(64, "Kt: candidates per batch state scored for the actor update.")
    chosen: int = _field(1, "Top-scoring candidates per state kept for the Q-weighted loss.")

    # --- Q-weighted variational loss -------------------------------------------------------
    q_transform: str = _field("qadv", f"Q-weight transform, one of {Q_TRANSFORMS}.")
    q_cut: float = _field(1.0, "qcut: weights below this value are replaced by it.", traced=True)
    q_neg: float = _field(0.0, "qrelu: weight = max(Q, -q_neg) + q_neg.", traced=True)
    q_beta: float = _field(1.0, "qexpn: inverse temperature of the exponential weight.", traced=True)
    q_stats_rate: float = _field(
        0.001, "qexpn: EMA rate of the running mean and std of the scores.", traced=True)
    entropy_samples: int = _field(10, "Uniform actions per chosen sample for the entropy term.")
    entropy_weight: float = _field(
        0.02, "w0, the entropy weight at step 0 (the paper's text uses a fixed 0.01).", traced=True)
    entropy_weight_final: float = _field(
        0.002, "Floor of the linear decay of the entropy weight over total_steps; set it equal "
        "to entropy_weight for a constant weight.", traced=True)
    entropy_target_spread: float = _field(
        0.0, "0 (the reference): the entropy weight follows its schedule. > 0: it adapts instead, "
        "as SAC's temperature does, to hold the spread of the actor's train candidates (their "
        "std over the train_samples, averaged over states and action dims; 0.577 for uniform "
        "actions) at this target, starting from entropy_weight.", traced=True)
    entropy_adapt_rate: float = _field(
        0.01, "With entropy_target_spread: change of log(entropy weight) per actor update per "
        "unit of relative spread error ((target - spread) / target).", traced=True)
    entropy_decay_steps: int = _field(
        0, "Environment transitions over which the entropy weight decays linearly from "
        "entropy_weight to its floor; 0 means total_steps, as in the reference. An extended "
        "run (--resume with a larger --total-steps) keeps its original horizon here.",
        traced=True)

    # --- optimisation ----------------------------------------------------------------------
    actor_lr: float = _field(1e-4, "Adam learning rate of the actor.", traced=True)
    critic_lr: float = _field(3e-4, "Adam learning rate of the critics.", traced=True)
    adam_eps: float = _field(1e-5, "Adam epsilon (both optimisers).", traced=True)
    grad_clip: float = _field(2.0, "Global gradient-norm clip (both optimisers).", traced=True)
    gamma: float = _field(0.99, "Discount factor.", traced=True)
    tau: float = _field(0.005, "Polyak rate of both target networks, applied every update.",
                        traced=True)
    batch_size: int = _field(256, "B: transitions per gradient update.")

    # --- training loop (counts are environment transitions) -------------------------------
    num_envs: int = _field(1, "N: parallel environments; one vector step adds N transitions.")
    updates_per_step: int = _field(1, "Gradient updates per vector step after warm-up.")
    critic_updates_per_actor: int = _field(
        1, "Critic updates per actor update (TD3's policy delay; not in the reference, which "
        "updates both every step). updates_per_step counts critic updates; the actor takes "
        "every critic_updates_per_actor-th of them, counted over the whole run, so the ratio "
        "holds whether or not updates_per_step is a multiple of it. The critic target moves "
        "every critic update, the actor target with the actor.")
    total_steps: int = _field(
        1_000_000, "Environment transitions to train for; also the entropy-decay horizon.",
        traced=True)
    start_steps: int = _field(10_000, "Transitions with uniform random actions and no updates.")
    replay_size: int = _field(1_000_000, "Replay buffer capacity in transitions.")
    eval_interval: int = _field(10_000, "Transitions between evaluations.")
    num_eval_envs: int = _field(10, "Evaluation episodes, run in parallel.")
    episode_length: int = _field(1000, "Time limit of an episode (truncation, not termination).")
    divergence_bound: float = _field(
        1e6, "Physics that runs away: a step whose observation or reward has an entry above this "
        "in absolute value (or a non-finite one) ends its episode as terminal with reward 0, is "
        "counted in nonfinite_steps and never reaches the replay buffer's observations. Far above "
        "the largest entry of any registered task's healthy states "
        "(benchmarks/results/state_bounds.json); inf turns the bound off (non-finite only).")

    # --- options beyond the reference (off by default; docs/algorithm.md) ------------------
    critic_hidden_size: int = _field(
        0, "Width of the critics' hidden layers; 0 means hidden_size (the reference: one width).")
    critic_layer_norm: bool = _field(
        False, "LayerNorm after each hidden Linear of the critics (before Mish).")
    obs_normalization: bool = _field(
        False, "Normalise observations by running mean and variance (updated from every vector "
        "step's observations, inside the loop) wherever actor and critic read them; the buffer "
        "keeps raw observations, so every use is normalised with the current statistics.")
    reward_scale: float = _field(
        1.0, "Rewards are multiplied by this in the TD target, so Q is learnt in these units "
        "(1 is the reference). A critic whose values sit in the hundreds needs many Adam steps "
        "to grow its outputs there; a smaller scale shortens that climb. The returns in the "
        "curve stay the env's.", traced=True)
    reward_scale_auto: bool = _field(
        False, "At the first update, set reward_scale to 1 / max(1, mean |r|) of the "
        "transitions in the buffer then (the warm-up's): rewards larger than 1 per step in "
        "size are scaled to about 1, so every Q stays within about 1 / (1 - gamma) and a "
        "critic with few updates can reach it; rewards of at most 1 keep their scale (1). "
        "Kept for the run (and on resume).")
    novelty_weight: float = _field(
        0.0, "A novelty bonus in the TD target (random network distillation; "
        "qvpo_mjx/agent/novelty.py): weight x novelty(s') / the running mean of the batches' "
        "novelty, so it averages about this much per step and favours states not yet learnt. "
        "For sparse rewards, where the critic is otherwise flat until the first reward. "
        "0 (the reference) turns it off; the cpu and gpu presets set 0.5, gated "
        "(novelty_reward_gate) and falling to 0 over the run (novelty_decay_steps = "
        "total_steps) for qvpo; any algo takes it from a flag.", traced=True)
    novelty_decay_steps: float = _field(
        0.0, "With novelty_weight: the bonus's weight falls linearly from novelty_weight to 0 "
        "over this many env steps, so a run that has found its reward stops being pulled away "
        "from it late in training; 0 keeps the weight constant.", traced=True)
    novelty_reward_gate: bool = _field(
        False, "With novelty_weight: each critic batch's bonus is scaled by the fraction of its "
        "transitions whose reward is exactly 0 (all devices pooled), so it keeps its weight "
        "where no reward has been seen, fades as rewarded transitions fill the buffer and is 0 "
        "under a dense reward (every transition rewarded), where a bonus only distracts.",
        traced=True)
    n_step: int = _field(
        1, "n of n-step returns: the TD target sums up to n discounted rewards of the same env "
        "and bootstraps from where the window ends (at most n steps, fewer at a terminal state, "
        "a time limit or the newest data). 1 is the reference.")
    critic_bins: int = _field(
        0, "A distributional critic: each Q network outputs logits over this many bins evenly "
        "spaced on [critic_v_min, critic_v_max] and is trained by cross-entropy to an HL-Gauss "
        "histogram of the TD target (a normal of 0.75 bin widths around it); Q is the "
        "distribution's mean wherever a Q is read (TD target, Q-weights, behaviour and "
        "evaluation selection). 0 is the reference's scalar critic trained by MSE.")
    critic_v_min: float = _field(
        -1000.0, "Lower end of the distributional critic's support (with critic_bins); TD "
        "targets outside the support are clipped into it.", traced=True)
    critic_v_max: float = _field(
        1000.0, "Upper end of the distributional critic's support (with critic_bins).",
        traced=True)

    # --- scale-out (not in the reference, which runs one seed on one CPU) -------------------
    num_seeds: int = _field(
        1, "S: independent seeds (seed, seed+1, ...) trained in one compiled program, vmapped "
        "over a leading seed axis of the whole state.")
    num_devices: int = _field(
        0, "D: devices that share the environments, the replay buffer and every batch (data "
        "parallel, gradients averaged); 0 means every device JAX sees.")

    # --- the algorithm (qvpo_mjx/algorithms/; baselines, not in the reference) ----------------
    algo: str = _field(
        "qvpo", f"The algorithm the loop trains, one of {ALGOS}. qvpo is this project's. Every "
        "baseline uses the same loop, replay buffer, critics (critic_* fields and "
        "the options), learning rates, gamma, tau, batch and update schedule; the selection and "
        "Q-weighting fields apply to qvpo alone (qsm, dacer and dipo also use the actor's "
        "diffusion fields), and their own fields are the sac_*, td3_*, qsm_*, dacer_* and "
        "dipo_* below.")
    sac_alpha_lr: float = _field(3e-4, "sac: Adam learning rate of log(alpha), the temperature "
                                 "(softlearning's default).")
    sac_initial_alpha: float = _field(1.0, "sac: the temperature alpha at the start (log alpha "
                                      "0, softlearning's).")
    sac_target_entropy: float = _field(
        -1.0, "sac: the entropy the temperature holds, per action dimension (target -d for "
        "the default -1, SAC's heuristic).")
    td3_action_noise: float = _field(0.1, "td3: std of the Gaussian noise added to mu(s) when "
                                     "acting (Fujimoto et al.).")
    td3_target_noise: float = _field(0.2, "td3: std of the target policy's smoothing noise.")
    td3_target_noise_clip: float = _field(0.5, "td3: the smoothing noise is clipped to +- this.")
    qsm_q_scale: float = _field(
        50.0, "qsm: M_q, the scale of the action-gradient of Q that the noise network's output "
        "matches (-M_q grad_a Q; Psenka et al.'s default; 120 for their humanoid and quadruped "
        "runs).")
    qsm_action_noise: float = _field(0.1, "qsm: std of the Gaussian noise added to the chain's "
                                     "action when acting and in the TD target (their code's).")
    dacer_initial_alpha: float = _field(
        3.0, "dacer: alpha, the scale of the noise added to the chain's action, at the start "
        "(log alpha = ln 3, its code's).")
    dacer_alpha_lr: float = _field(0.03, "dacer: Adam learning rate of log(alpha) (its code's).")
    dacer_noise_scale: float = _field(
        0.15, "dacer: the added noise's std is alpha times this (its code's 0.15, for "
        "HalfCheetah and Humanoid; 0.1 for its other tasks).")
    dacer_target_entropy: float = _field(
        -0.9, "dacer: the entropy alpha holds, per action dimension (target -0.9 d).")
    dacer_alpha_every: int = _field(
        5_000, "dacer: actor updates between two entropy estimates and alpha steps (its code's "
        "10,000 updates, the actor taking every 2nd; the first at the first actor update).")
    dipo_action_lr: float = _field(
        0.03, "dipo: Adam learning rate of the gradient ascent on Q that improves the stored "
        "actions (its code's eta).")
    dipo_action_steps: int = _field(
        20, "dipo: Adam steps of that ascent per actor update (its code's; 40 for HalfCheetah).")
    dipo_action_clip: float = _field(
        0.1, "dipo: each ascent step's gradient (the whole batch's) is clipped to this times d "
        "in global norm (its code's ratio; 0.08 for Walker2d and HalfCheetah).")
    dacer_entropy_samples: int = _field(
        200, "dacer: actions per batch state the entropy estimate fits its Gaussian mixture to.")

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that is out of range or inconsistent."""
        positive_ints = (
            "diffusion_steps", "hidden_size", "time_embed_size", "behavior_samples",
            "target_samples", "eval_samples", "train_samples", "chosen", "batch_size",
            "num_envs", "updates_per_step", "critic_updates_per_actor", "total_steps",
            "replay_size", "eval_interval", "num_eval_envs", "episode_length", "num_seeds",
            "n_step")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("entropy_samples", "start_steps", "num_devices", "entropy_decay_steps",
                     "critic_hidden_size", "critic_bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {', '.join(BETA_SCHEDULES)}; "
                             f"got {self.beta_schedule!r}")
        if self.behavior_noise not in BEHAVIOR_NOISES:
            raise ValueError(f"behavior_noise must be one of {', '.join(BEHAVIOR_NOISES)}; "
                             f"got {self.behavior_noise!r}")
        if not (_finite(self.behavior_noise_tau) and self.behavior_noise_tau > 0):
            raise ValueError(f"behavior_noise_tau must be a positive finite number of env steps, "
                             f"got {self.behavior_noise_tau!r}")
        if not (_finite(self.behavior_optimism) and self.behavior_optimism >= 0):
            raise ValueError(f"behavior_optimism must be a non-negative finite number, got "
                             f"{self.behavior_optimism!r}")
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {', '.join(ALGOS)}; got {self.algo!r}")
        if self.algo != "qvpo":
            for name, ref in QVPO_OPTIONS.items():
                if getattr(self, name) != ref:
                    raise ValueError(f"{name} ({getattr(self, name)!r}) is an option of qvpo "
                                     f"(its behaviour sampler and selection); algo {self.algo} "
                                     f"needs {ref!r}")
        for name in ("sac_alpha_lr", "sac_initial_alpha"):
            value = getattr(self, name)
            if not _finite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not (_finite(self.qsm_q_scale) and self.qsm_q_scale > 0):
            raise ValueError(f"qsm_q_scale must be a positive finite number, got "
                             f"{self.qsm_q_scale!r}")
        for name in ("td3_action_noise", "td3_target_noise", "td3_target_noise_clip",
                     "qsm_action_noise"):
            value = getattr(self, name)
            if not _finite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
        for name in ("dacer_initial_alpha", "dacer_alpha_lr", "reward_scale"):
            value = getattr(self, name)
            if not _finite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not (_finite(self.dacer_noise_scale) and self.dacer_noise_scale >= 0):
            raise ValueError(f"dacer_noise_scale must be a non-negative finite number, got "
                             f"{self.dacer_noise_scale!r}")
        if not _finite(self.dacer_target_entropy):
            raise ValueError(f"dacer_target_entropy must be finite, got "
                             f"{self.dacer_target_entropy!r}")
        for name in ("dipo_action_lr", "dipo_action_clip"):
            value = getattr(self, name)
            if not _finite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not (_finite(self.novelty_weight) and self.novelty_weight >= 0):
            raise ValueError(f"novelty_weight must be a non-negative finite number, got "
                             f"{self.novelty_weight!r}")
        if not (_finite(self.novelty_decay_steps) and self.novelty_decay_steps >= 0):
            raise ValueError(f"novelty_decay_steps must be a non-negative finite number, got "
                             f"{self.novelty_decay_steps!r}")
        if self.novelty_reward_gate and self.novelty_weight == 0:
            raise ValueError("novelty_reward_gate gates the novelty bonus, which is off "
                             "(novelty_weight 0)")
        if self.novelty_decay_steps > 0 and self.novelty_weight == 0:
            raise ValueError(f"novelty_decay_steps ({self.novelty_decay_steps!r}) schedules the "
                             f"novelty bonus, which is off (novelty_weight 0)")
        if self.reward_scale_auto and self.reward_scale != 1.0:
            raise ValueError(f"reward_scale_auto sets reward_scale at the first update; "
                             f"reward_scale ({self.reward_scale!r}) must be left at 1 with it")
        if self.dipo_action_steps < 1:
            raise ValueError(f"dipo_action_steps must be at least 1, got {self.dipo_action_steps}")
        if self.dacer_alpha_every < 1:
            raise ValueError(f"dacer_alpha_every must be at least 1 actor update, got "
                             f"{self.dacer_alpha_every}")
        if self.dacer_entropy_samples < 2 * DACER_COMPONENTS:
            raise ValueError(f"dacer_entropy_samples must be at least {2 * DACER_COMPONENTS} "
                             f"(two per mixture component), got {self.dacer_entropy_samples}")
        if not _finite(self.sac_target_entropy):
            raise ValueError(f"sac_target_entropy must be finite, got {self.sac_target_entropy!r}")
        if self.q_transform not in Q_TRANSFORMS:
            raise ValueError(f"q_transform must be one of {', '.join(Q_TRANSFORMS)}; "
                             f"got {self.q_transform!r}")
        if self.time_embed_size % 2:
            raise ValueError(f"time_embed_size must be even (sin and cos halves), "
                             f"got {self.time_embed_size}")
        if self.time_embed_size < 4:
            raise ValueError(f"time_embed_size must be at least 4, got {self.time_embed_size}")
        if self.chosen > self.train_samples:
            raise ValueError(f"chosen ({self.chosen}) must not exceed train_samples "
                             f"({self.train_samples}): it keeps the top candidates of those")
        for name in ("actor_lr", "critic_lr", "adam_eps", "grad_clip", "q_stats_rate", "q_beta",
                     "entropy_adapt_rate"):
            value = getattr(self, name)
            if not _finite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("noise_ratio", "entropy_weight", "entropy_weight_final", "q_neg",
                     "entropy_target_spread"):
            value = getattr(self, name)
            if not _finite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
        if self.critic_bins == 1:
            raise ValueError("critic_bins must be 0 (a scalar critic) or at least 2 (a "
                             "histogram), got 1")
        if not (_finite(self.critic_v_min) and _finite(self.critic_v_max)
                and self.critic_v_min < self.critic_v_max):
            raise ValueError(f"critic_v_min ({self.critic_v_min!r}) must be finite and below "
                             f"critic_v_max ({self.critic_v_max!r}): they are the support's ends")
        if not _finite(self.q_cut):
            raise ValueError(f"q_cut must be finite, got {self.q_cut!r}")
        if not (_finite(self.behavior_epsilon) and 0.0 <= self.behavior_epsilon <= 1.0):
            raise ValueError(f"behavior_epsilon must lie in [0, 1], got {self.behavior_epsilon!r}")
        if not (_finite(self.gamma) and 0.0 <= self.gamma <= 1.0):
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma!r}")
        if not (_finite(self.tau) and 0.0 < self.tau <= 1.0):
            raise ValueError(f"tau must lie in (0, 1], got {self.tau!r}")
        if not (_finite(self.q_stats_rate) and self.q_stats_rate <= 1.0):
            raise ValueError(f"q_stats_rate must lie in (0, 1], got {self.q_stats_rate!r}")
        if self.entropy_target_spread > 0 and self.entropy_weight <= 0:
            raise ValueError("entropy_weight must be > 0 with entropy_target_spread: it is the "
                             "adaptive weight's starting value")
        if self.entropy_weight_final > self.entropy_weight:
            raise ValueError(f"entropy_weight_final ({self.entropy_weight_final}) must not exceed "
                             f"entropy_weight ({self.entropy_weight}): it is the decay's floor")
        if self.num_devices > 0:
            self.check_divisible(self.num_devices)
        if self.replay_size < self.num_envs:
            raise ValueError(f"replay_size ({self.replay_size}) must hold at least one vector "
                             f"step of num_envs ({self.num_envs}) transitions")
        if not (isinstance(self.divergence_bound, (int, float))
                and not isinstance(self.divergence_bound, bool)
                and self.divergence_bound > 0):  # inf allowed: no bound but finiteness
            raise ValueError(f"divergence_bound must be a positive number (inf: none), got "
                             f"{self.divergence_bound!r}")
        if self.batch_size > self.first_update_rows:
            raise ValueError(
                f"batch_size ({self.batch_size}) exceeds the {self.first_update_rows} transitions "
                f"the replay buffer holds at the first update (start_steps {self.start_steps}, "
                f"num_envs {self.num_envs}, replay_size {self.replay_size}); raise start_steps or "
                f"lower batch_size")

    # ------------------------------------------------------------------------------------
    # Sizes derived from the fields, computed here only. "env steps" are environment
    # transitions (N per vector step); "vector steps" step all N envs once.
    @property
    def first_update_rows(self) -> int:
        """Transitions in the replay buffer when the first update runs (the vector step that
        takes the count of env steps to start_steps or past it)."""
        return min(self.replay_size,
                   max(1, math.ceil(self.start_steps / self.num_envs)) * self.num_envs)

    @property
    def chunk_vector_steps(self) -> int:
        """Vector steps per chunk: one evaluation interval, rounded up to whole vector steps."""
        return max(1, math.ceil(self.eval_interval / self.num_envs))

    @property
    def chunk_env_steps(self) -> int:
        return self.chunk_vector_steps * self.num_envs

    @property
    def num_chunks(self) -> int:
        """Chunks (evaluations) of the run: total_steps rounded up to whole chunks."""
        return max(1, math.ceil(self.total_steps / self.chunk_env_steps))

    @property
    def run_env_steps(self) -> int:
        """Env steps the run really takes (whole chunks): total_steps, or more."""
        return self.num_chunks * self.chunk_env_steps

    def check_divisible(self, num_devices: int) -> None:
        """Each of ``num_devices`` devices steps an equal share of the envs and samples an equal
        share of every batch; neither can be changed without changing the run, so a size that
        does not split is refused (:meth:`fit_to_devices` rounds what can be rounded)."""
        for name in ("num_envs", "batch_size"):
            value = getattr(self, name)
            if value % num_devices:
                raise ValueError(
                    f"{name} ({value}) must be a multiple of num_devices ({num_devices}): each "
                    f"device takes an equal share" + ("" if self.num_devices else
                                                      "; num_devices 0 means all devices"))

    def fit_to_devices(self, num_devices: int) -> tuple["QVPOConfig", list[str]]:
        """This config for exactly ``num_devices`` devices, and a note per value it changed.

        ``num_eval_envs`` and ``replay_size`` are rounded up to a multiple of D (one more
        evaluation episode, a slightly larger buffer: neither changes what is learned);
        ``num_envs`` and ``batch_size`` must already split (:meth:`check_divisible`).
        ``num_devices`` becomes D, so a resumed run asks for the same devices.
        """
        D = int(num_devices)
        self.check_divisible(D)
        changes, notes = {"num_devices": D}, []
        for name in ("num_eval_envs", "replay_size"):
            value = getattr(self, name)
            if value % D:
                changes[name] = -(-value // D) * D
                notes.append(f"{name} {value} -> {changes[name]} (a multiple of {D} devices)")
        return self.replace(**changes), notes

    # ------------------------------------------------------------------------------------
    @classmethod
    def traced_fields(cls) -> tuple[str, ...]:
        """Names of the fields that enter compiled code as traced float32 values."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["traced"])

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        return {f.name: f.metadata["doc"] for f in dataclasses.fields(cls)}

    @classmethod
    def field_types(cls) -> dict[str, type]:
        """Each field's Python type (bool, int, float or str), for parsing values from text;
        the annotations are strings under ``from __future__ import annotations``."""
        kinds = {"bool": bool, "int": int, "float": float, "str": str}
        return {f.name: kinds[f.type if isinstance(f.type, str) else f.type.__name__]
                for f in dataclasses.fields(cls)}

    @property
    def novelty(self) -> bool:
        """The novelty bonus is on: a structural fact (it adds networks to the state) that
        follows the traced ``novelty_weight``."""
        return self.novelty_weight > 0

    def hyperparams(self) -> dict[str, float]:
        """The traced fields as a ``{name: float}`` dict; ``agent.init`` turns it into arrays."""
        return {name: float(getattr(self, name)) for name in self.traced_fields()}

    def replace(self, **changes: Any) -> "QVPOConfig":
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; known: "
                             f"{', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "QVPOConfig":
        return cls().replace(**values)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
