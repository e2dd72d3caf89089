"""The wide regime's verdict (issue 13): which regime reaches the rule's final return with at most
a tenth of the rule's sequential updates, on how many tasks.

    python benchmarks/wide_report.py              # results/wide.json -> results/wide_report.json
    python benchmarks/wide_report.py --markdown   # and print the tables as Markdown

Reads the runs that ``benchmarks/scaling.py --out benchmarks/results/wide --summary
benchmarks/results/wide.json`` trained (each a batched run of S seeds, evaluated ~10 times). Per
task the rule is the ``delay`` run (the ``gpu`` preset's one critic update of batch 256 per env
step) at N = ``RULE_N`` (issue 24's bar: the N = 64 rule), or where there is none the one with
the best final return over the N and settings it was run at; its final return, averaged over
seeds, is the task's bar. (The other ``delay`` runs, N = 16 and 256, are rows like any other.) For every run: final return (mean and standard error over
seeds; runs of one setting trained as separate processes with ``--seed K`` count as one run of
all their seeds), the mean over the run's evaluations, where the seed-mean curve first reaches the bar (and
80% of it) on three axes (env steps, sequential updates: critic + actor, what a GPU user waits
on, and this machine's wall-clock), and the rule's return after as many sequential updates as the
run made. ``updates_saved`` is the rule's sequential updates over the run's at that point; a
regime passes the issue's bar on a task where it is at least ``FACTOR``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

RULE = "delay"
RULE_N = 64  # the bar's N: "the N = 64 rule's final return" (issue 24)
FACTOR = 10.0  # the bar: the rule's final return with at most 1/FACTOR of its updates
TASKS_NEEDED = 2  # ... on at least this many tasks


def load_curve(run_dir: Path) -> dict:
    """A run's curve on the three axes: env_steps, updates, wall_s (E,); returns (E, S); and its
    saved config."""
    from qvpo_mjx import plot
    curve = np.load(run_dir / "curve.npz")
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg = cfg.get("config", cfg)
    updates = plot.sequential_updates(curve, cfg).max(axis=1)  # seeds update in lockstep
    returns = np.asarray(curve["eval_return_mean"], np.float64)
    return {"env_steps": np.asarray(curve["env_steps"], np.float64),
            "updates": updates,
            "wall_s": np.asarray(curve["wall_time_s"], np.float64),
            "returns": returns.reshape(len(returns), -1), "config": cfg}


def first_reach(curve: dict, threshold: float) -> dict | None:
    """The three axes at the first evaluation whose seed-mean return is >= threshold (None if
    none is)."""
    mean = curve["returns"].mean(axis=1)
    hits = np.flatnonzero(mean >= threshold)
    if not len(hits):
        return None
    i = int(hits[0])
    return {"env_steps": int(curve["env_steps"][i]), "updates": int(curve["updates"][i]),
            "wall_s": round(float(curve["wall_s"][i]), 1)}


def rule_return_at(rule_curve: dict, updates: float) -> float | None:
    """The rule's seed-mean return after ``updates`` sequential updates, interpolated linearly
    between its evaluations (None before its first evaluation, its final return after its
    last): what the rule has reached when a wide run stops."""
    x, y = rule_curve["updates"], rule_curve["returns"].mean(axis=1)
    if updates < x[0]:
        return None
    return round(float(np.interp(updates, x, y)), 1)


def summarise(curve: dict) -> dict:
    final = curve["returns"][-1]
    seeds = len(final)
    return {"seeds": seeds, "final_mean": round(float(final.mean()), 1),
            "final_se": round(float(final.std(ddof=1) / np.sqrt(seeds)) if seeds > 1 else 0.0, 1),
            "final_per_seed": final.round(1).tolist(),
            "mean_over_run": round(float(curve["returns"].mean()), 1),
            "env_steps": int(curve["env_steps"][-1]), "updates": int(curve["updates"][-1]),
            "wall_s": round(float(curve["wall_s"][-1]), 1)}


# Set per run by scaling.run_one from the budget and N, not by the regime or --set.
PER_RUN = {"total_steps", "eval_interval", "start_steps", "num_seeds", "num_devices",
           "replay_size"}


def label(row: dict, config: dict) -> str:
    """REGIME plus _KEYVALUE for every setting the run's saved config has that differs from what
    the regime means today (the cpu preset with the regime's changes): ``--set`` overrides, and
    a preset value that has changed since the run (e.g. ``behavior_epsilon0.0``). Fields an older
    config lacks are taken as today's."""
    from qvpo_mjx.config import QVPOConfig
    from qvpo_mjx.presets import PRESETS
    from scaling import overrides_tag, regime
    base = dict(PRESETS["cpu"]["config"])
    # Every field, so an option the preset leaves at its default (critic_bins) is named too.
    expected = {**QVPOConfig().to_dict(), **base,
                **(regime(row["regime"], row["num_envs"], base) or {})}
    differs = {k: config[k] for k, v in expected.items()
               if k not in PER_RUN and k in config and config[k] != v}
    return row["regime"] + overrides_tag(differs)


def task_report(rows: list[dict], root: Path = ROOT) -> dict:
    """One task's rows (from the summary) -> its bar and every run measured against it, each
    labelled by :func:`label`; the rule is the ``delay`` run at N = RULE_N (the best of them,
    whatever their other settings), else the best ``delay`` run at any N."""
    # Runs of one setting trained as separate processes (``--seed K``, one core each) are one
    # run of their seeds together: their evaluations fall at the same env steps.
    groups: dict[tuple, list] = {}
    for row in sorted(rows, key=lambda r: r.get("first_seed", 0)):
        curve = load_curve(root / row["run_dir"])
        key = (label(row, curve["config"]), row["num_envs"], tuple(curve["env_steps"]))
        groups.setdefault(key, []).append((row, curve))
    runs = []
    for (name, _, _), members in groups.items():
        row, curve = members[0]
        if len(members) > 1:
            curve = {**curve, "returns": np.concatenate([c["returns"] for _, c in members], 1),
                     "wall_s": np.max([c["wall_s"] for _, c in members], axis=0)}
        runs.append({"regime": name,
                     "base_regime": row["regime"],
                     "num_envs": row["num_envs"],
                     "batch_size": row["batch_size"], "updates_per_step": row["updates_per_step"],
                     "run_dir": row["run_dir"] if len(members) == 1
                     else [r["run_dir"] for r, _ in members],
                     **summarise(curve), "_curve": curve})
    rules = [r for r in runs if r["base_regime"] == RULE]
    if not rules:
        raise ValueError(f"{rows[0]['env']}: no {RULE!r} run to measure the others against")
    rule = max([r for r in rules if r["num_envs"] == RULE_N] or rules,
               key=lambda r: r["final_mean"])
    bar = rule["final_mean"]
    rule_curve = rule["_curve"]
    for r in runs:
        curve = r.pop("_curve")
        r["rule_at_same_updates"] = rule_return_at(rule_curve, r["updates"])
        for name, threshold in (("reach_bar", bar), ("reach_80", 0.8 * bar)):
            hit = first_reach(curve, threshold)
            r[name] = hit
            if hit is not None:
                hit["updates_saved"] = round(rule["updates"] / max(hit["updates"], 1), 2)
        r["passes"] = r["base_regime"] != RULE and r["reach_bar"] is not None \
            and r["reach_bar"]["updates_saved"] >= FACTOR
    runs.sort(key=lambda r: (r["base_regime"] != RULE, r["updates_per_step"] * r["batch_size"],
                             r["regime"], r["num_envs"]))
    return {"bar": bar, "rule": f"{rule['regime']}_N{rule['num_envs']}",
            "rule_updates": rule["updates"],
            "runs": runs}


def report(summary: dict, root: Path = ROOT) -> dict:
    by_env: dict[str, list[dict]] = {}
    for row in summary["rows"]:
        by_env.setdefault(row["env"], []).append(row)
    tasks = {env: task_report(rows, root) for env, rows in sorted(by_env.items())}
    passed: dict[str, list[str]] = {}
    for env, task in tasks.items():
        for r in task["runs"]:
            if r["passes"]:
                passed.setdefault(f"{r['regime']}_N{r['num_envs']}", []).append(env)
    chosen = sorted((name for name, envs in passed.items() if len(envs) >= TASKS_NEEDED),
                    key=lambda name: -len(passed[name]))
    return {"factor": FACTOR, "tasks_needed": TASKS_NEEDED, "tasks": tasks,
            "passes_on": passed, "qualifies": chosen}


def markdown(rep: dict) -> str:
    def reach(hit):
        if hit is None:
            return "not reached"
        return f"{hit['env_steps']:,} / {hit['updates']:,} / {hit['wall_s']:.0f} s " \
               f"({hit['updates_saved']:.1f}x)"

    def at(value):
        return "before its first evaluation" if value is None else f"{value:.0f}"

    out = []
    for env, task in rep["tasks"].items():
        out += [f"**{env}**: bar {task['bar']:.0f} ({task['rule']}'s final return, "
                f"{task['rule_updates']:,} sequential updates)", "",
                "| regime | N | env steps | sequential updates | final return | the rule at as "
                "many updates | mean over run | bar reached at: env steps / updates / CPU s "
                "(updates saved) | 80% of bar |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in task["runs"]:
            out.append(f"| {r['regime']} | {r['num_envs']} | {r['env_steps']:,} | "
                       f"{r['updates']:,} | {r['final_mean']:.0f} ± {r['final_se']:.0f} | "
                       f"{at(r['rule_at_same_updates'])} | "
                       f"{r['mean_over_run']:.0f} | {reach(r['reach_bar'])} | "
                       f"{reach(r['reach_80'])} |")
        out.append("")
    out.append(f"Passing (bar with >= {rep['factor']:.0f}x fewer updates): "
               + (", ".join(f"{k} on {', '.join(v)}" for k, v in rep["passes_on"].items())
                  or "none")
               + f". On >= {rep['tasks_needed']} tasks: {', '.join(rep['qualifies']) or 'none'}.")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summary", default=str(HERE / "results" / "wide.json"))
    parser.add_argument("--out", default=str(HERE / "results" / "wide_report.json"))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    summary_path = Path(args.summary)
    if not summary_path.exists():
        parser.error(f"{summary_path} does not exist: run benchmarks/scaling.py with --summary "
                     f"{summary_path} first")
    rep = report(json.loads(summary_path.read_text()))
    from common import machine_info, write_result
    write_result(args.out, {"machine": machine_info(), "summary": str(summary_path), **rep})
    if args.markdown:
        print(markdown(rep))
    else:
        print(json.dumps({"passes_on": rep["passes_on"], "qualifies": rep["qualifies"]}))


if __name__ == "__main__":
    main()
