"""Two suite variants of QVPO side by side on saved runs: ``behavior_epsilon`` 0 against 0.5.

    python benchmarks/suite_compare.py      # writes results/suite_behavior_epsilon.json

Reads the generality suite's run directories (``results/suite/TASK/qvpo_cpu_VARIANT``, and
``results/suite/TASK/more_seeds/qvpo_cpu_VARIANT`` where a task got more seeds: on
inverted_double_pendulum, made with ``python -m qvpo_mjx.train --preset cpu --env
inverted_double_pendulum --num-envs 16 --total-steps 30000 --eval-interval 3000 --num-seeds 3
--seed 3 --behavior-epsilon E``), summarises each seed as ``suite.py`` does (final return and
mean over the run, evaluations within the budget) and gives Welch's t of the means over the run,
variant B minus variant A. Trains nothing.
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
from suite import BUDGETS, summarise  # noqa: E402

TASKS = ("pendulum_swingup", "inverted_double_pendulum")
THRESHOLD = 9300.0  # inverted_double_pendulum's near-maximum (reported for both tasks)


def welch_t(a: list[float], b: list[float]) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float((b.mean() - a.mean()) / np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))


def variant(runs: Path, task: str, name: str) -> dict:
    dirs = [runs / task / f"qvpo_cpu_{name}", runs / task / "more_seeds" / f"qvpo_cpu_{name}"]
    s = summarise(dirs, BUDGETS[task])
    # reached: the run's best evaluation within the budget met the threshold
    from qvpo_mjx import plot
    reached = []
    for d in dirs:
        if (d / "curve.npz").exists():
            for run in plot.load_runs(d):
                x = np.asarray(run["x"]["env_steps"])
                y = run["y"][(x > 0) & (x <= 1.02 * BUDGETS[task])]
                reached.append(bool(np.max(y) >= THRESHOLD))
    return {"final": s["final"], "mean_over_run": s["mean_over_run"],
            f"reached_{int(THRESHOLD)}": reached}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default=str(HERE / "results" / "suite"))
    parser.add_argument("--a", default="eps0", help="variant A (the baseline)")
    parser.add_argument("--b", default="eps05", help="variant B")
    parser.add_argument("--out", default=str(HERE / "results" / "suite_behavior_epsilon.json"))
    args = parser.parse_args()
    result = {"machine": machine_info(),
              "note": "summarised from saved runs (trains nothing); the runs' own machine and "
                      "versions are in their config.json"}
    for task in TASKS:
        a = variant(Path(args.runs_dir), task, args.a)
        b = variant(Path(args.runs_dir), task, args.b)
        result[task] = {args.a: a, args.b: b,
                        "welch_t_mean_over_run": welch_t(a["mean_over_run"], b["mean_over_run"])}
        print(f"{task}: {args.a} final {np.round(a['final'])}, {args.b} final "
              f"{np.round(b['final'])}; Welch t (mean over run) "
              f"{result[task]['welch_t_mean_over_run']:+.2f}")
    write_result(args.out, result)


if __name__ == "__main__":
    main()
