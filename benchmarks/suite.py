"""The generality suite: a QVPO preset on tasks nobody tuned it for, against SAC and PPO.

    python benchmarks/suite.py                       # cpu preset, every SUITE task, 3 seeds
    python benchmarks/suite.py --quick               # CI-sized smoke test: 2 tasks, 2,048 steps
    python benchmarks/suite.py --tasks pendulum_swingup CartpoleSwingup --seeds 3
    python benchmarks/suite.py --variant adapt15 --set entropy_target_spread=0.15
    python benchmarks/suite.py --algos qvpo sac td3  # + this loop's baselines (qvpo_mjx/algorithms/)
    python benchmarks/suite.py --report-only         # tables and plots from the saved runs

Per task, at one env-step budget (``BUDGETS``; the same for every algorithm): QVPO with the
``--preset`` (and a ``--variant``'s overrides), S seeds in one batched run; Brax SAC (one update
per env step, batch 256: ``peers.sac_defaults``) and Brax PPO (``peers.ppo_defaults``), S seeds each
(``--peers``); and the return of the uniform random policy (64 episodes). Each algorithm's
**final** return (the last evaluation) and **mean return over the run** (the mean of its
evaluations: the area under the curve over the budget), averaged over seeds, is reported as a
fraction of the task's reference:

    fraction = (R - R_random) / (R_reference - R_random),

R_reference = the better of SAC and PPO on that measure (random policy = 0, the best peer = 1).
``--algos`` adds this loop's baselines (``--algo``; same preset, budget, N and seeds as QVPO),
reported on the same scale as ``ours_ALGO`` beside Brax's runs.
Runs are saved as run directories (``--runs-dir``, default ``benchmarks/results/suite/``) and
reused: a finished run is not trained again unless ``--rerun`` (QVPO's only if its saved config is
the one it would run now), so variants and presets share the peers' runs. Writes
``benchmarks/results/suite[_VARIANT].json`` and per-task plots ``suite/plots/TASK[_VARIANT].png``;
prints a table (``--markdown``: also as Markdown). Every run trains in its own process: one
process that compiled every task's programs in turn ran out of memory maps (XLA's CPU JIT maps
memory per executable, and Linux allows 65,530 maps by default). Returns count only evaluations within the
budget (Brax PPO overshoots it to whole training epochs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import machine_info, random_policy_returns, write_result  # noqa: E402
from peers import in_fresh_process  # noqa: E402

# The suite's tasks and their env-step budgets on a 2-core CPU: what 3 seeds of the cpu preset
# and of Brax SAC each train in about 10 minutes (cheap physics: more steps).
BUDGETS = {
    "pendulum_swingup": 30_000,
    "inverted_double_pendulum": 30_000,
    "reacher": 30_000,
    "hopper": 30_000,
    "halfcheetah": 30_000,
    "CartpoleSwingup": 50_000,
    "AcrobotSwingup": 50_000,
    "PendulumSwingup": 50_000,
    "BallInCup": 50_000,
    "FingerSpin": 50_000,
}
# The smoke test: two tasks, tiny networks, episodes of 200 steps, two evaluations per run.
QUICK = {"tasks": ["pendulum_swingup", "CartpoleSwingup"], "budget": 1_024, "episode_length": 200,
         "evaluations": 2,
         "qvpo": {"hidden_size": 16, "time_embed_size": 8, "diffusion_steps": 3,
                  "train_samples": 4, "eval_samples": 2, "num_eval_envs": 2, "batch_size": 64,
                  "updates_per_step": 1, "start_steps": 256},
         "peers": {"sac": {"min_replay_size": 256, "batch_size": 64, "num_eval_envs": 2,
                           "hidden_layer_sizes": [16, 16]},
                   "ppo": {"num_eval_envs": 2}}}
EPISODE_LENGTH = 1000
EVALUATIONS = 10
NUM_ENVS = 16  # every algorithm, every task: the cpu preset's N


def random_return(task: str, episodes: int = 64, episode_length: int = 1000,
                  seed: int = 0) -> float:
    """Mean return of uniform random actions over ``episodes`` episodes run in parallel."""
    return float(np.mean(random_policy_returns(task, episodes, episode_length, seed)))


def qvpo_config(preset: str, budget: int, seeds: int, overrides: dict, evaluations: int,
                episode_length: int):
    from qvpo_mjx.presets import preset_config
    return preset_config(preset, {"num_envs": NUM_ENVS, "total_steps": budget,
                                  "eval_interval": max(budget // evaluations, NUM_ENVS),
                                  "episode_length": episode_length, "num_seeds": seeds,
                                  "num_devices": 1, **overrides})


def finished(run_dir: Path, budget: int) -> bool:
    """Whether ``run_dir``'s curve reaches the budget (a run cut short by a crash does not)."""
    try:
        steps = np.load(run_dir / "curve.npz")["env_steps"]
    except (OSError, KeyError, ValueError):
        return False
    return len(steps) > 0 and steps[-1] >= budget


def qvpo_done(run_dir: Path, cfg) -> bool:
    """Whether ``run_dir`` holds a finished run of exactly ``cfg``: a preset whose settings have
    changed since its run was saved trains again rather than reporting the old run under its
    name."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())["config"]
        # A field added since the run was saved is absent there: it ran at that field's default
        saved = type(cfg).from_dict(saved).to_dict()
    except (OSError, KeyError, ValueError, TypeError):
        return False
    return saved == cfg.to_dict() and finished(run_dir, cfg.total_steps)


def qvpo_run(task: str, preset: str, cfg, run_dir: Path) -> None:
    """One batched run of this project's loop (QVPO, or the baseline ``cfg.algo``)."""
    from qvpo_mjx.train import train
    label = run_dir.name.split("_", 1)[1]
    label = ("QVPO " if cfg.algo == "qvpo" else f"{cfg.algo.upper()} (this loop) ") + label
    train(cfg, task, seed=0, out_dir=run_dir, overwrite=True, progress=False,
          extra_meta={"preset": preset, "algorithm": label})


def peer_run(algo: str, task: str, budget: int, seed: int, run_dir: Path, evaluations: int,
             episode_length: int, hyper: dict) -> None:
    from peers import brax_compat, run_brax
    with brax_compat():
        run_brax(algo, task, NUM_ENVS, budget, seed, run_dir,
                 eval_every=max(budget // evaluations, 1), overwrite=True,
                 episode_length=episode_length, **hyper)


def first_saved(task_dir: Path, variants: list[str], preset: str = "cpu") -> str | None:
    """The first of ``variants`` whose QVPO run (``qvpo_PRESET_VARIANT/curve.npz``) is saved in
    ``task_dir``: one setting whose runs are named per task (today's ``cpu`` preset is
    ``nov05gd`` where its novelty bonus changes the run and ``eps05`` where it cannot)."""
    return next((v for v in variants
                 if (task_dir / f"qvpo_{preset}_{v}" / "curve.npz").exists()), None)


def summarise(run_dirs: list[Path], budget: int) -> dict | None:
    """Per-seed final and mean-over-run returns of the runs (a batched run holds several), over
    their evaluations within the budget: Brax PPO rounds its steps up to whole training epochs
    (51,200 for 30,000 on the pendulums), and what it learns past the budget does not count.
    2% slack: QVPO and SAC end their last vector step just past it (30,080 and 30,128)."""
    from qvpo_mjx import plot
    finals, means, walls, steps = [], [], [], []
    for d in run_dirs:
        if not (d / "curve.npz").exists():
            continue
        for run in plot.load_runs(d):
            x = np.asarray(run["x"]["env_steps"])
            within = (x > 0) & (x <= 1.02 * budget)  # brax's step-0 evaluation aside
            x, y = x[within], run["y"][within]
            if not len(y):  # a run that has only just started
                continue
            finals.append(float(y[-1]))
            means.append(float(np.mean(y)))
            walls.append(float(run["x"]["wall_time"][-1]))
            steps.append(int(x[-1]))
    if not finals:
        return None
    return {"final": finals, "mean_over_run": means, "final_mean": float(np.mean(finals)),
            "mean_over_run_mean": float(np.mean(means)), "seeds": len(finals),
            "wall_s": float(np.max(walls)), "env_steps": min(steps)}


def fraction(r: float, random: float, reference: float) -> float:
    return (r - random) / (reference - random) if reference != random else math.nan


def plot_task(task: str, dirs: list[Path], out: Path, title: str) -> None:
    from qvpo_mjx import plot
    existing = [str(d) for d in dirs if (d / "curve.npz").exists()]
    if existing:
        plot.plot(existing, str(out), x_axis="env_steps", band="minmax", title=title)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--variant", default="", help="a name for --set overrides")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="config overrides of the variant (JSON values)")
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=None, help="env steps for every task")
    parser.add_argument("--peers", nargs="*", default=["sac", "ppo"],
                        help="Brax's algorithms, the outside reference")
    parser.add_argument("--algos", nargs="+", default=["qvpo"],
                        help="algorithms of this project's loop (qvpo_mjx/algorithms/), each with "
                        "the preset and --set; a baseline's run is ALGO_PRESET[_VARIANT]")
    parser.add_argument("--skip-qvpo", action="store_true",
                        help="train only the peers (e.g. in a second process beside the QVPO one)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rerun", action="store_true", help="train again runs that exist")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--runs-dir", default=str(HERE / "results" / "suite"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--markdown", action="store_true",
                        help="also print the table as Markdown (for benchmarks/README.md)")
    args = parser.parse_args(argv)

    tasks = args.tasks or (QUICK["tasks"] if args.quick else list(BUDGETS))
    seeds = 1 if args.quick and args.seeds == 3 else args.seeds
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    if args.quick:  # small networks and updates: a smoke test of the whole pipeline
        overrides = {**QUICK["qvpo"], **overrides}
    evaluations = QUICK["evaluations"] if args.quick else EVALUATIONS
    episode_length = QUICK["episode_length"] if args.quick else EPISODE_LENGTH
    suffix = f"_{args.preset}" + (f"_{args.variant}" if args.variant else "")
    name = "qvpo" + suffix
    from qvpo_mjx.config import ALGOS
    unknown = sorted(set(args.algos) - set(ALGOS))
    if unknown:
        parser.error(f"--algos: unknown {unknown}; known: {', '.join(ALGOS)}")
    baselines = [a for a in args.algos if a != "qvpo"]
    runs_dir = Path(args.runs_dir)
    out = Path(args.out or HERE / "results" / (
        "suite" + ("_quick" if args.quick else "") + (f"_{args.variant}" if args.variant else "")
        + ".json"))
    result = {"machine": machine_info(), "preset": args.preset, "variant": args.variant,
              "overrides": overrides, "seeds": seeds, "num_envs": NUM_ENVS,
              "algos": args.algos, "tasks": {}}
    t_start = time.perf_counter()
    for task in tasks:
        budget = args.budget or (QUICK["budget"] if args.quick else BUDGETS.get(task, 30_000))
        task_dir = runs_dir / task
        qvpo_dir = task_dir / name
        own_dirs = {a: (qvpo_dir if a == "qvpo" else task_dir / (a + suffix)) for a in args.algos}
        peer_dirs = {algo: [task_dir / f"{algo}_s{s}" for s in range(seeds)]
                     for algo in args.peers}
        if not args.report_only:
            for algo, run_dir in own_dirs.items():
                cfg = qvpo_config(args.preset, budget, seeds,
                                  overrides if algo == "qvpo" else {**overrides, "algo": algo},
                                  evaluations, episode_length)
                if not args.skip_qvpo and (args.rerun or not qvpo_done(run_dir, cfg)):
                    print(f"[{task}] {run_dir.name}: {budget:,} env steps, {seeds} seeds",
                          flush=True)
                    in_fresh_process(qvpo_run, task, args.preset, cfg, run_dir)
            for algo, dirs in peer_dirs.items():
                for s, d in enumerate(dirs):
                    if args.rerun or not finished(d, budget):
                        print(f"[{task}] brax {algo} seed {s}: {budget:,} env steps", flush=True)
                        in_fresh_process(peer_run, algo, task, budget, s, d, evaluations,
                                         episode_length,
                                         QUICK["peers"].get(algo, {}) if args.quick else {})
        random_file = task_dir / "random_return.json"
        if random_file.exists():
            random = json.loads(random_file.read_text())["return"]
        else:
            random = in_fresh_process(random_return, task, episode_length=episode_length)
            task_dir.mkdir(parents=True, exist_ok=True)
            write_result(random_file, {"task": task, "return": random, "episodes": 64,
                                       "episode_length": episode_length})
        row = {"budget": budget, "random": random, "qvpo": summarise([qvpo_dir], budget)}
        for algo, dirs in peer_dirs.items():
            row[algo] = summarise(dirs, budget)
        for algo in baselines:  # this loop's baselines, beside the Brax peers of the same name
            row[f"ours_{algo}"] = summarise([own_dirs[algo]], budget)
        peers = [row[a] for a in args.peers if row.get(a)]
        for measure in ("final", "mean_over_run"):
            ref = max((p[f"{measure}_mean"] for p in peers), default=math.nan)
            row[f"reference_{measure}"] = ref
            if row["qvpo"]:
                row[f"fraction_{measure}"] = fraction(row["qvpo"][f"{measure}_mean"], random, ref)
                row[f"fraction_{measure}_per_seed"] = [fraction(v, random, ref)
                                                       for v in row["qvpo"][measure]]
            for algo in baselines:
                if row[f"ours_{algo}"]:
                    row[f"fraction_{measure}_ours_{algo}"] = fraction(
                        row[f"ours_{algo}"][f"{measure}_mean"], random, ref)
        result["tasks"][task] = row
        plots = runs_dir / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        plot_task(task, [qvpo_dir, *[own_dirs[a] for a in baselines],
                         *[d for ds in peer_dirs.values() for d in ds]],
                  plots / f"{task}{'_' + args.variant if args.variant else ''}.png",
                  f"{task}: {name} vs Brax {' / '.join(args.peers).upper()}, {budget:,} env steps")
    result["wall_s"] = time.perf_counter() - t_start
    print(f"\n{'task':<26} {'budget':>7} {'random':>8} {'reference':>10} {'QVPO final':>11} "
          f"{'fraction':>9} {'mean/run':>9}")
    for task, r in result["tasks"].items():
        q = r["qvpo"] or {}
        print(f"{task:<26} {r['budget']:>7,} {r['random']:>8.1f} {r['reference_final']:>10.1f} "
              f"{q.get('final_mean', math.nan):>11.1f} {r.get('fraction_final', math.nan):>9.2f} "
              f"{r.get('fraction_mean_over_run', math.nan):>9.2f}")
        for algo in baselines:
            b = r.get(f"ours_{algo}") or {}
            print(f"{'  ' + algo + ' (this loop)':<26} {'':>7} {'':>8} {'':>10} "
                  f"{b.get('final_mean', math.nan):>11.1f} "
                  f"{r.get(f'fraction_final_ours_{algo}', math.nan):>9.2f} "
                  f"{r.get(f'fraction_mean_over_run_ours_{algo}', math.nan):>9.2f}")
    if args.markdown:
        print("\n" + markdown_table(result, args.peers))
    write_result(out, result)
    return result


def mean_se(values: list[float]) -> str:
    v = np.asarray(values, float)
    se = v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else math.nan
    return f"{v.mean():.0f} ± {se:.0f}" if len(v) > 1 else f"{v.mean():.0f}"


def markdown_table(result: dict, peers: list[str]) -> str:
    """One row per task: budget, random, each peer's final return (mean ± s.e. over seeds),
    QVPO's final return per seed, and QVPO's fractions of the reference (final, mean over run)."""
    ours = [a for a in result.get("algos", ["qvpo"]) if a != "qvpo"]
    head = (["task", "env steps", "random"] + [f"{p.upper()} final" for p in peers]
            + [f"{a.upper()} (this loop) final" for a in ours]
            + ["QVPO final (per seed)", "fraction, final", "fraction, mean over run"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, r in result["tasks"].items():
        q = r.get("qvpo")
        cells = [task, f"{r['budget']:,}", f"{r['random']:.0f}"]
        cells += [mean_se(r[p]["final"]) if r.get(p) else "-" for p in peers]
        cells += [mean_se(r[f"ours_{a}"]["final"]) if r.get(f"ours_{a}") else "-" for a in ours]
        cells += [f"{mean_se(q['final'])} ({', '.join(f'{v:.0f}' for v in q['final'])})"
                  if q else "-",
                  f"{r.get('fraction_final', math.nan):.2f}",
                  f"{r.get('fraction_mean_over_run', math.nan):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
