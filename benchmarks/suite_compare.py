"""Two suite variants of QVPO side by side on saved runs, with Welch's t.

    python benchmarks/suite_compare.py      # behavior_epsilon 0 against 0.5 (the default)
    python benchmarks/suite_compare.py --a eps05 --b nov05d100k --tasks pendulum_swingup \\
        inverted_double_pendulum hopper --out /tmp/compare.json
    python benchmarks/suite_compare.py --runs-dir benchmarks/results/sparse --budget 100000 \\
        --a nov05 --b nov05d100k --tasks PendulumSwingup BallInCup --out /tmp/sparse.json
    python benchmarks/suite_compare.py --a nov05gd eps05 --b gd_eps0 eps0 --tasks ...
        # one setting per side whose runs are named per task: the first name with runs counts

Reads the generality suite's run directories (``results/suite/TASK/qvpo_cpu_VARIANT``, and
``results/suite/TASK/more_seeds/qvpo_cpu_VARIANT`` where a task got more seeds: on
inverted_double_pendulum, made with ``python -m qvpo_mjx.train --preset cpu --env
inverted_double_pendulum --num-envs 16 --total-steps 30000 --eval-interval 3000 --num-seeds 3
--seed 3 --behavior-epsilon E``), summarises each seed as ``suite.py`` does (final return and
mean over the run, evaluations within the budget) and gives Welch's t of the seeds' final returns
and of their means over the run, variant B minus variant A (positive: B is better). Writes
``--out`` (default ``results/suite_behavior_epsilon.json``). The budget is the suite's
(``suite.BUDGETS``) unless ``--budget`` sets one for every task. Trains nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import machine_info, write_result  # noqa: E402
from suite import BUDGETS, first_saved, summarise  # noqa: E402

TASKS = ("pendulum_swingup", "inverted_double_pendulum")
# A near-maximum return per task: how many seeds reached it is reported beside the means.
THRESHOLDS = {"inverted_double_pendulum": 9300.0}


def welch_t(a: list[float], b: list[float]) -> float:
    """(mean b - mean a) / sqrt(var a / n_a + var b / n_b), sample variances; nan where both
    groups are constant (no spread to measure the gap against)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return float((b.mean() - a.mean()) / se) if se > 0 else float("nan")


def variant(runs: Path, task: str, name: str, budget: int) -> dict:
    dirs = [runs / task / f"qvpo_cpu_{name}", runs / task / "more_seeds" / f"qvpo_cpu_{name}"]
    s = summarise(dirs, budget)
    if not s:
        raise SystemExit(f"{task}: no saved runs of variant {name!r} under {runs / task}")
    out = {"final": s["final"], "mean_over_run": s["mean_over_run"]}
    if task not in THRESHOLDS:
        return out
    # reached: the run's best evaluation within the budget met the threshold
    from qvpo_mjx import plot
    reached = []
    for d in dirs:
        if (d / "curve.npz").exists():
            for run in plot.load_runs(d):
                x = np.asarray(run["x"]["env_steps"])
                y = run["y"][(x > 0) & (x <= 1.02 * budget)]
                reached.append(bool(np.max(y) >= THRESHOLDS[task]))
    return {**out, f"reached_{int(THRESHOLDS[task])}": reached}


def first_variant(runs: Path, task: str, names: list[str], budget: int) -> tuple[str, dict]:
    """The first of ``names`` with saved runs on ``task``, and its summary: one setting whose run
    is named differently per task (today's preset is ``nov05gd`` where the bonus changes the run
    and ``eps05`` where it cannot)."""
    name = first_saved(runs / task, names)
    if name is None:
        raise SystemExit(f"{task}: no saved runs of any of {names} under {runs / task}")
    return name, variant(runs, task, name, budget)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default=str(HERE / "results" / "suite"))
    parser.add_argument("--a", nargs="+", default=["eps0"],
                        help="variant A (the baseline); several: per task the first with runs")
    parser.add_argument("--b", nargs="+", default=["eps05"], help="variant B (as --a)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--budget", type=int, default=0,
                        help="env steps for every task (default: the suite's budget per task)")
    parser.add_argument("--out", default=str(HERE / "results" / "suite_behavior_epsilon.json"))
    args = parser.parse_args()
    result = {"machine": machine_info(),
              "note": "summarised from saved runs (trains nothing); the runs' own machine and "
                      "versions are in their config.json"}
    for task in args.tasks:
        budget = args.budget or BUDGETS[task]
        name_a, a = first_variant(Path(args.runs_dir), task, args.a, budget)
        name_b, b = first_variant(Path(args.runs_dir), task, args.b, budget)
        result[task] = {"budget": budget, name_a: a, name_b: b, "a": name_a, "b": name_b,
                        "welch_t_final": welch_t(a["final"], b["final"]),
                        "welch_t_mean_over_run": welch_t(a["mean_over_run"], b["mean_over_run"])}
        print(f"{task}: {name_a} final {np.round(a['final'])} mean/run "
              f"{np.mean(a['mean_over_run']):.0f}; {name_b} final {np.round(b['final'])} "
              f"mean/run {np.mean(b['mean_over_run']):.0f}; Welch t final "
              f"{result[task]['welch_t_final']:+.2f}, mean over run "
              f"{result[task]['welch_t_mean_over_run']:+.2f}")
    write_result(args.out, result)


if __name__ == "__main__":
    main()
