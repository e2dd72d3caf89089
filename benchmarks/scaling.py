"""The scaling study: how batch, updates per step and learning rates move with N.

    python benchmarks/scaling.py --quick      # inverted_pendulum, N in 1 16 64, 3 seeds
    python benchmarks/scaling.py              # + N = 256, + halfcheetah (hours on a 2-core CPU)
    python benchmarks/scaling.py --env halfcheetah --num-envs 1 64 --regimes reference half
    python benchmarks/scaling.py --env inverted_double_pendulum --num-envs 256 \
        --regimes u4_b1024_opt --budget 300000 --set actor_lr=0.0006 --out benchmarks/results/wide \
        --summary benchmarks/results/wide.json        # issue 13's study (wide_report.py reads it)
    python benchmarks/scaling.py --env inverted_double_pendulum --num-envs 1024 \
        --regimes u4_b1024_opt --algos qvpo sac td3 qsm --out benchmarks/results/wide \
        --summary benchmarks/results/wide.json        # every algorithm in the same regime

Every regime is one batched run of ``--seeds`` seeds (``num_seeds``), so a regime's seeds share
one compile and one clock. The network sizes, learning rates and tau are the ``cpu`` preset's
(small enough to learn on a CPU in minutes); what changes between regimes is only how the loop
spends env steps on updates:

* ``reference``: N = 1, one update of batch 256 per env step (the paper's regime; the baseline
  for sample efficiency);
* ``naive``: N envs, still one update of batch 256 per *vector* step, so N times fewer updates
  per env step (the scaling that has been reported to collapse);
* ``utd``: N envs and N updates of batch 256 per vector step: the reference's update-to-data
  ratio and the same number of updates, so only acting and physics get parallel;
* ``half`` / ``quarter``: N / 2 or N / 4 updates of batch 256 per vector step (update-to-data
  ratio 0.5 or 0.25: half or a quarter of the reference's update time);
* ``wide``: a rule under test: the reference's samples per env step (256) in N / 8 updates of
  batch 2048 per vector step (8x fewer, 8x larger updates), learning rates times sqrt(8)
  (square-root scaling with the batch);
* ``half_wide``: N / 2 updates of batch 512 (the reference's samples per env step in half the
  updates, learning rates unchanged): on a GPU a batch of 512 costs about what 256 does;
* ``delay`` / ``delay4``: N critic updates per vector step but one actor update per 2 (or 4) of
  them (``critic_updates_per_actor``): the reference's critic ratio, half (a quarter of) its
  actor updates. ``delay`` is the ``gpu`` preset's rule;
* ``uU_bB`` (e.g. ``u2_b4096``; issue 13's wide regime): a fixed U critic updates of batch B per
  vector step whatever N is, the actor every second one, as FastTD3 does: far fewer, far wider
  updates, meant to be given 10x or more the env steps (``--budget``), since on a GPU env steps
  are cheap and sequential updates are what a user waits for. ``uU_bB_opt`` adds the options
  FastTD3 and FastSAC use (``WIDE_OPTIONS``): observation normalisation, 3-step returns and
  LayerNorm critics.

Writes each run to ``benchmarks/results/scaling/ENV/REGIME_N/`` (curve.npz, config.json), a
summary table to ``benchmarks/results/scaling.json`` (one row per env, regime and N; a rerun replaces
its rows and keeps the others) and plots (``qvpo_mjx.plot``) against env
steps, wall-clock and sequential gradient updates (critic + actor: the GPU-time proxy) next to it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

from qvpo_mjx.presets import WIDE_OPTIONS  # light: presets import no JAX

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

REFERENCE_BATCH = 256
BUDGETS = {"inverted_pendulum": 10_000, "halfcheetah": 20_000}  # env steps per run, by default
DEFAULT_BUDGET = 20_000
WIDE_FACTOR = 8  # updates per vector step shrink, and batches grow, by this factor


def regime(name: str, N: int, base: dict) -> dict | None:
    """Config overrides of one regime at N envs (None where it does not apply)."""
    if name == "reference":
        return {"num_envs": 1, "updates_per_step": 1, "batch_size": REFERENCE_BATCH} if N == 1 \
            else None
    if N == 1:
        return None
    if name == "naive":
        return {"num_envs": N, "updates_per_step": 1, "batch_size": REFERENCE_BATCH}
    if name == "utd":
        return {"num_envs": N, "updates_per_step": N, "batch_size": REFERENCE_BATCH}
    if name in ("half", "quarter"):  # a lower update-to-data ratio: fewer updates, less time
        ups = max(1, N // (2 if name == "half" else 4))
        return {"num_envs": N, "updates_per_step": ups, "batch_size": REFERENCE_BATCH}
    if name == "wide":
        ups = max(1, N // WIDE_FACTOR)
        batch = REFERENCE_BATCH * N // ups
        scale = math.sqrt(batch / REFERENCE_BATCH)
        return {"num_envs": N, "updates_per_step": ups, "batch_size": batch,
                "actor_lr": base["actor_lr"] * scale, "critic_lr": base["critic_lr"] * scale}
    if name == "half_wide":
        return {"num_envs": N, "updates_per_step": max(1, N // 2),
                "batch_size": 2 * REFERENCE_BATCH}
    if name in ("delay", "delay4"):
        return {"num_envs": N, "updates_per_step": N, "batch_size": REFERENCE_BATCH,
                "critic_updates_per_actor": 2 if name == "delay" else 4}
    fixed = FIXED.fullmatch(name)
    if fixed:
        changes = {"num_envs": N, "updates_per_step": int(fixed[1]),
                   "batch_size": int(fixed[2]), "critic_updates_per_actor": 2}
        return {**changes, **(WIDE_OPTIONS if fixed[3] else {})}
    raise ValueError(name)


REGIMES = ("reference", "naive", "utd", "half", "quarter", "wide", "half_wide", "delay",
           "delay4")
FIXED = re.compile(r"u([1-9][0-9]*)_b([1-9][0-9]*)(_opt)?")  # the wide regime: uU_bB[_opt]


def regime_name(name: str) -> str:
    """argparse type: one of REGIMES or uU_bB."""
    if name in REGIMES or FIXED.fullmatch(name):
        return name
    raise argparse.ArgumentTypeError(f"unknown regime {name!r}: one of {', '.join(REGIMES)}, "
                                     f"or uU_bB (U critic updates of batch B per vector step; "
                                     f"uU_bB_opt with the wide options)")


def config_override(text: str) -> tuple[str, object]:
    """argparse type of --set: KEY=VALUE for a QVPOConfig field, VALUE parsed as its type."""
    from qvpo_mjx.config import QVPOConfig
    key, sep, value = text.partition("=")
    kinds = QVPOConfig.field_types()
    if not sep or key not in kinds:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected KEY=VALUE with KEY a "
                                         f"QVPOConfig field ({', '.join(sorted(kinds))})")
    if kinds[key] is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise argparse.ArgumentTypeError(f"--set {key}: {value!r} is not true or false")
        return key, value.lower() in ("true", "1")
    try:
        return key, kinds[key](value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--set {key}: {e}") from None


def overrides_tag(overrides: dict) -> str:
    """The run directory's suffix for --set overrides ('' without): _train_samples4, ..."""
    return "".join(f"_{k}{v}" for k, v in sorted(overrides.items()))


def study_config(name: str, N: int, seeds: int, budget: int, overrides: dict):
    """The config of regime ``name`` at N envs (None where it does not apply): the ``cpu``
    preset's networks and rates, the regime's changes, ``overrides`` on top."""
    from qvpo_mjx.config import QVPOConfig
    from qvpo_mjx.presets import PRESETS, for_algo, settle_bonus, settle_reward_scale
    base = dict(PRESETS["cpu"]["config"])
    changes = regime(name, N, base)
    if changes is None:
        return None
    start = max(base["start_steps"], changes["batch_size"], N)  # a full first batch
    # Another algorithm keeps its own chain and actor delay (as --algo does), then the flags;
    # the preset's novelty bonus follows as the preset's own runs have it.
    values = for_algo({**base, **changes}, overrides.get("algo", "qvpo"))
    values = {**values, "total_steps": budget, "eval_interval": max(budget // 10, N),
              "start_steps": start, "num_seeds": seeds, "num_devices": 1,
              "replay_size": max(budget, N), **overrides}
    return QVPOConfig(**settle_reward_scale(settle_bonus(values, overrides, "cpu"), overrides))


def run_one(env: str, name: str, N: int, seeds: int, budget: int, out: Path,
            seed: int = 0, overrides: dict | None = None, summarize: bool = False
            ) -> dict | None:
    """Train one regime (all its seeds in one run) and return its summary row; with
    ``summarize``, train nothing and summarise the run already saved where it would go."""
    from qvpo_mjx.train import train
    overrides = dict(overrides or {})
    cfg = study_config(name, N, seeds, budget, overrides)
    if cfg is None:
        return None
    # A run at another budget than the env's default, or at other seeds, gets a directory of its
    # own (and a label of its own in the plots, for another budget).
    other_budget = budget != BUDGETS.get(env, DEFAULT_BUDGET)
    run_dir = out / env / (f"{name}_N{N}" + (f"_b{budget}" if other_budget else "")
                           + overrides_tag(overrides)
                           + (f"_s{seed}" if seed else ""))
    if summarize:
        return summary_row(env, name, N, seed, budget, overrides, run_dir)
    t0 = time.perf_counter()
    train(cfg, env, seed=seed, out_dir=run_dir, overwrite=True, progress=False,
          extra_meta={"algorithm": f"{cfg.algo.upper()} {name}{overrides_tag(overrides)}"
                                   + (f", {budget} steps" if other_budget else ""),
                      "preset": f"scaling-{name}"})
    wall = time.perf_counter() - t0
    row = summary_row(env, name, N, seed, budget, overrides, run_dir)
    row["wall_s_total"] = round(wall, 1)
    print(json.dumps(row), flush=True)
    return row


def summary_row(env: str, name: str, N: int, seed: int, budget: int, overrides: dict,
                run_dir: Path) -> dict:
    """A run's row of the summary table, from what the run saved (curve.npz, config.json), so a
    run whose study was interrupted after it finished can still be summarised (--summarize)."""
    from qvpo_mjx import rundir
    cfg = rundir.read_meta(run_dir)["config"]
    curve = np.load(run_dir / rundir.CURVE_FILE)
    steps = curve["env_steps"]
    ret = np.atleast_2d(curve["eval_return_mean"].T).T  # (rows, seeds)
    half = int(np.searchsorted(steps, budget // 2))
    N, ups, cpa = cfg["num_envs"], cfg["updates_per_step"], cfg["critic_updates_per_actor"]
    return {"env": env, "regime": name, "num_envs": N, "overrides": overrides,
            "updates_per_step": ups, "critic_updates_per_actor": cpa,
            "batch_size": cfg["batch_size"], "actor_lr": cfg["actor_lr"],
            "critic_lr": cfg["critic_lr"], "updates_per_env_step": ups / N,
            "actor_updates_per_env_step": ups / cpa / N,
            "samples_per_env_step": ups * cfg["batch_size"] / N,
            "sequential_updates": int(np.max(curve["critic_updates"][-1])
                                      + np.max(curve["actor_updates"][-1])),
            "seeds": ret.shape[1], "first_seed": seed, "budget": budget,
            "env_steps": int(steps[-1]),
            "return_at_half": ret[min(half, len(ret) - 1)].round(1).tolist(),
            "return_final": ret[-1].round(1).tolist(),
            "return_auc": ret.mean(0).round(1).tolist(),  # mean over evaluations, per seed
            "wall_s_total": None,
            "wall_s_run": round(float(curve["wall_time_s"][-1]), 1),
            "run_dir": str(run_dir.resolve().relative_to(HERE.parent)
                           if run_dir.resolve().is_relative_to(HERE.parent) else run_dir)}


def plot_env(out: Path, env: str) -> None:
    """Plots against env steps, wall-clock and sequential updates per N: every regime run at that
    N, with the reference and with the ``delay`` rule at any N (the wide regimes' yardstick)."""
    from qvpo_mjx import plot
    def size(name: str) -> int:  # REGIME_N64 or REGIME_N64_s3
        return int(name.rsplit("_N", 1)[1].split("_")[0])

    runs = {p.name: p for p in (out / env).glob("*_N*") if (p / "curve.npz").exists()}
    for N in sorted({size(name) for name in runs} - {1}):
        chosen = [str(p) for name, p in sorted(runs.items())
                  if size(name) in (1, N) or name.startswith("delay_N")]
        for x in ("env_steps", "wall_time", "updates"):
            plot.plot(chosen, str(out / f"{env}_N{N}_{x}.png"), x_axis=x, band="minmax",
                      title=f"QVPO scaling regimes on {env}, N = {N}", log_x=x == "updates")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--env", nargs="+", default=None)
    parser.add_argument("--num-envs", type=int, nargs="+", default=None)
    parser.add_argument("--regimes", nargs="+", type=regime_name, default=list(REGIMES),
                        help=f"of {', '.join(REGIMES)}, or uU_bB: U critic updates of batch B "
                             f"per vector step, the actor every second (the wide regime)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0,
                        help="first seed (more seeds of a regime: rerun with --seed 3)")
    parser.add_argument("--budget", type=int, default=None, help="env steps per run")
    parser.add_argument("--set", type=config_override, action="append", default=[],
                        metavar="KEY=VALUE", help="a QVPOConfig field on top of every regime "
                        "(repeatable), e.g. train_samples=4; the run directory is named for it")
    parser.add_argument("--algos", nargs="+", default=["qvpo"],
                        help="algorithms of the loop (qvpo_mjx/algorithms/) each regime runs, "
                        "same N, budget and seeds; a baseline's runs are tagged _algoNAME")
    parser.add_argument("--out", default=str(HERE / "results" / "scaling"))
    parser.add_argument("--summary", default=str(HERE / "results" / "scaling.json"),
                        help="the summary table (rows are replaced by reruns, others kept)")
    parser.add_argument("--summarize", action="store_true",
                        help="write the summary rows of the runs these arguments name from their "
                             "saved files (a study cut off after they finished), train nothing")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw the plots from the runs on disk, run nothing")
    args = parser.parse_args()
    env_list = args.env or (["inverted_pendulum"] if args.quick
                            else ["inverted_pendulum", "halfcheetah"])
    sizes = args.num_envs or ([1, 16, 64] if args.quick else [1, 16, 64, 256])
    out = Path(args.out)
    overrides = dict(args.set)
    from qvpo_mjx.config import ALGOS
    unknown = sorted(set(args.algos) - set(ALGOS))
    if unknown:
        parser.error(f"--algos: unknown {unknown}; known: {', '.join(ALGOS)}")

    from common import machine_info, write_result
    summary_path = Path(args.summary)  # --quick reruns a subset of its rows
    for env in [] if args.plot_only else env_list:
        budget = args.budget or BUDGETS.get(env, DEFAULT_BUDGET)
        for N in sizes:
            for name, algo in itertools.product(args.regimes, args.algos):
                these = overrides if algo == "qvpo" else {**overrides, "algo": algo}
                row = run_one(env, name, N, args.seeds, budget, out, args.seed, these,
                              summarize=args.summarize)
                if row is not None:
                    # Runs already in the summary stay, unless this one reruns them; read just
                    # before writing, so two studies writing one summary keep each other's rows.
                    rows = (json.loads(summary_path.read_text())["rows"]
                            if summary_path.exists() else [])
                    rows = [r for r in rows if (r["env"], r["regime"], r["num_envs"],
                                                r.get("first_seed", 0), r.get("budget"),
                                                r.get("overrides", {}))
                            != (env, name, N, args.seed, budget, these)] + [row]
                    # Written after every run, so an interrupted study keeps what it measured.
                    write_result(summary_path, {"machine": machine_info(), "rows": rows})
    for env in env_list:
        plot_env(out, env)
    print(json.dumps({"wrote": str(summary_path)}))


if __name__ == "__main__":
    main()
