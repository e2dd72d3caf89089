"""Every algorithm of this loop side by side (issue 26's table), from saved runs: trains nothing.

    python benchmarks/algos_table.py        # results/algos_table.json, and the Markdown tables

The runs it reads are made by the generality suite and the scaling study:

    python benchmarks/suite.py --tasks TASK --algos qvpo sac td3 qsm dacer dipo
    python benchmarks/scaling.py --env inverted_double_pendulum --num-envs 1024 \\
        --regimes u4_b1024_opt --budget 1208320 --set reward_scale_auto=true \\
        --algos qvpo sac td3 qsm dacer dipo --out benchmarks/results/wide \\
        --summary benchmarks/results/wide.json

Per task of the suite (its budget, N = 16, the ``cpu`` preset; ``results/suite/TASK/``: QVPO's
``qvpo_cpu_VARIANT``, another algorithm's ``ALGO_cpu``, Brax's ``sac_sN`` and ``ppo_sN``), a
row of every algorithm without the novelty bonus (QVPO's run ``eps05``: today's preset with
the bonus off), and where the suite has runs with it (``suite.py --variant nov05gd --set
novelty_weight=0.5``: ``qvpo_cpu_nov05gd`` and ``ALGO_cpu_nov05gd``, the preset's bonus, gated
and falling over the run) a second row of every algorithm with it, so each row compares
algorithms with one and the same exploration aid. Per algorithm in a row: the final return and
the mean return over the run (mean over seeds, evaluations within the budget as
``suite.summarise`` counts them) and the sequential updates (critic plus actor) the run took.
Per environment of the wide regime at N = 1,024 (``results/wide.json``'s rows of that regime,
N and budget; an algorithm's row is the one whose overrides are the QVPO row's plus its
``algo``): the same three. Per algorithm, the milliseconds of one update at the paper's sizes
(``results/algo_cost.json``): what a user pays per sequential update. A run not made yet is a
"-" in the tables and absent from the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import machine_info, write_result  # noqa: E402
from qvpo_mjx import plot  # noqa: E402
from suite import BUDGETS, mean_se, summarise  # noqa: E402

ALGOS = ("qvpo", "sac", "td3", "qsm", "dacer", "dipo")  # the table's order: QVPO, then the paper's
PEERS = ("sac", "ppo")  # Brax's, the outside reference
WIDE = {"regime": "u4_b1024_opt", "num_envs": 1024, "budget": 1_208_320,
        "overrides": {"reward_scale_auto": True}}


def sequential_updates(run_dir: Path) -> int:
    """The sequential updates (critic plus actor, as :func:`qvpo_mjx.plot.sequential_updates`
    and the scaling study count them) a run of this loop had taken at its last evaluation. The
    oldest curves have no update column at all: their critic updates are derived from the
    config (``updates_per_step`` per vector step after ``start_steps``)."""
    curve = dict(np.load(run_dir / "curve.npz"))
    cfg = json.loads((run_dir / "config.json").read_text())["config"]
    if "critic_updates" not in curve and "updates" not in curve:
        vector_steps = np.ceil((curve["env_steps"] - cfg["start_steps"]) / cfg["num_envs"])
        curve["updates"] = np.maximum(vector_steps, 0) * cfg["updates_per_step"]
    return int(np.max(plot.sequential_updates(curve, cfg)[-1]))


def suite_cell(run_dirs: list[Path], budget: int, ours: bool) -> dict | None:
    s = summarise(run_dirs, budget)
    if s is None:
        return None
    cell = {"final": s["final"], "mean_over_run": s["mean_over_run"],
            "final_mean": s["final_mean"], "mean_over_run_mean": s["mean_over_run_mean"]}
    if ours:
        cell["sequential_updates"] = sequential_updates(run_dirs[0])
    return cell


def suite_rows(runs: Path, tasks: list[str], variant: str, seeds: int,
               bonus_variant: str | None = None) -> dict:
    """Per task, one row: QVPO's run ``qvpo_cpu_{variant}``, each baseline's ``ALGO_cpu``, Brax's
    peers. With ``bonus_variant``, the row of every algorithm's run of that variant
    (``qvpo_cpu_{bonus_variant}``, ``ALGO_cpu_{bonus_variant}``; no peers) instead, and only
    the tasks with at least one such run."""
    rows = {}
    for task in tasks:
        budget, here = BUDGETS[task], runs / task
        row: dict = {"budget": budget}
        random_file = here / "random_return.json"
        if random_file.exists():
            row["random"] = json.loads(random_file.read_text())["return"]
        row["qvpo_variant"] = bonus_variant or variant
        for algo in ALGOS:
            name = (f"qvpo_cpu_{bonus_variant or variant}" if algo == "qvpo"
                    else f"{algo}_cpu" + (f"_{bonus_variant}" if bonus_variant else ""))
            cell = suite_cell([here / name], budget, ours=True)
            if cell:
                row[algo] = cell
        if bonus_variant:
            if any(a in row for a in ALGOS):
                rows[task] = row
            continue
        for peer in PEERS:
            cell = suite_cell([here / f"{peer}_s{s}" for s in range(seeds)], budget, ours=False)
            if cell:
                row[f"brax_{peer}"] = cell
        rows[task] = row
    return rows


def wide_rows(summary: Path) -> dict:
    """{env: {algo: cell}} from the scaling study's summary rows at :data:`WIDE`'s setting."""
    if not summary.exists():
        return {}
    out: dict = {}
    for r in json.loads(summary.read_text())["rows"]:
        if (r["regime"], r["num_envs"], r.get("budget")) != (
                WIDE["regime"], WIDE["num_envs"], WIDE["budget"]):
            continue
        overrides = dict(r.get("overrides", {}))
        algo = overrides.pop("algo", "qvpo")
        if overrides != WIDE["overrides"] or algo not in ALGOS:
            continue
        out.setdefault(r["env"], {})[algo] = {
            "final": r["return_final"], "mean_over_run": r["return_auc"],
            "final_mean": float(np.mean(r["return_final"])),
            "mean_over_run_mean": float(np.mean(r["return_auc"])),
            "sequential_updates": r["sequential_updates"]}
    return out


def update_costs(path: Path) -> dict:
    if not path.exists():
        return {}
    return {r["algo"]: r["ms_per_update"] for r in json.loads(path.read_text())["rows"]}


def _cell(c: dict | None) -> str:
    """final mean ± s.e. (mean over the run)."""
    return f"{mean_se(c['final'])} ({c['mean_over_run_mean']:.0f})" if c else "-"


def markdown(result: dict) -> str:
    names = {"qvpo": "QVPO", "sac": "SAC", "td3": "TD3", "qsm": "QSM", "dacer": "DACER",
             "dipo": "DIPO"}
    head = ["task", "env steps", "random", "Brax SAC", "Brax PPO"] + [names[a] for a in ALGOS]
    lines = ["Final return, mean ± s.e. over seeds (mean over the run):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, r in result["suite"].items():
        random = f"{r['random']:.0f}" if "random" in r else "-"
        cells = [task, f"{r['budget']:,}", random, _cell(r.get("brax_sac")),
                 _cell(r.get("brax_ppo"))] + [_cell(r.get(a)) for a in ALGOS]
        lines.append("| " + " | ".join(cells) + " |")
    for task, r in result.get("suite_bonus", {}).items():
        random = f"{r['random']:.0f}" if "random" in r else "-"
        cells = [f"{task}, novelty bonus", f"{r['budget']:,}", random, "-", "-"]
        lines.append("| " + " | ".join(cells + [_cell(r.get(a)) for a in ALGOS]) + " |")
    for env, r in result["wide"].items():
        cells = [f"{env}, N = {WIDE['num_envs']:,} (wide)", f"{WIDE['budget']:,}", "-", "-", "-"]
        lines.append("| " + " | ".join(cells + [_cell(r.get(a)) for a in ALGOS]) + " |")
    # The suite's updates depend on the budget alone (the same preset and N on every task).
    budgets = sorted({r["budget"] for r in result["suite"].values()})
    head = (["algorithm", "ms per update (paper's sizes)"]
            + [f"updates in {b:,} env steps (N = 16)" for b in budgets]
            + [f"updates, {e} N = 1,024" for e in result["wide"]])
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in ALGOS:
        ms = result["ms_per_update"].get(a)
        cells = [names[a], f"{ms:.1f}" if ms is not None else "-"]
        for b in budgets:
            ns = [r[a]["sequential_updates"] for r in result["suite"].values()
                  if r["budget"] == b and a in r]
            cells.append(f"{ns[0]:,}" if ns else "-")
        for r in result["wide"].values():
            cells.append(f"{r[a]['sequential_updates']:,}" if a in r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default=str(HERE / "results" / "suite"))
    parser.add_argument("--tasks", nargs="+", default=list(BUDGETS))
    parser.add_argument("--variant", default="eps05",
                        help="QVPO's suite run without the novelty bonus (today's preset's else)")
    parser.add_argument("--bonus-variant", default="nov05gd",
                        help="every algorithm's suite runs with the novelty bonus ('' for none)")
    parser.add_argument("--seeds", type=int, default=3, help="Brax peers' seeds")
    parser.add_argument("--wide-summary", default=str(HERE / "results" / "wide.json"))
    parser.add_argument("--costs", default=str(HERE / "results" / "algo_cost.json"))
    parser.add_argument("--out", default=str(HERE / "results" / "algos_table.json"))
    args = parser.parse_args(argv)
    result = {"machine": machine_info(),
              "note": "summarised from saved runs (trains nothing); the runs' own machine and "
                      "versions are in their config.json",
              "suite": suite_rows(Path(args.runs_dir), args.tasks, args.variant, args.seeds),
              "suite_bonus": (suite_rows(Path(args.runs_dir), args.tasks, args.variant,
                                         args.seeds, args.bonus_variant)
                              if args.bonus_variant else {}),
              "wide": wide_rows(Path(args.wide_summary)),
              "ms_per_update": update_costs(Path(args.costs))}
    print(markdown(result))
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
