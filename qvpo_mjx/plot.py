"""Plot learning curves from saved runs: ``python -m qvpo_mjx.plot RUN_DIR [RUN_DIR ...] -o curves.png``.

Reads only ``curve.npz`` and ``config.json`` (no JAX). Runs that differ only in their seed (same
env, algorithm or preset, and config; how many seeds a run batched, and over how many devices,
aside) are one line: their mean, with a band from min to max across them (or +- one std with
``--band std``), on a common grid of the x axis. Lines that would share a label name the config
fields in which they differ (``batch_size=1024``). A run of ``--num-seeds S`` counts as S runs:
its per-seed columns have shape (chunks, S). ``--metric`` plots any column of the curve instead
of the evaluation return; several metrics give one panel each (``--metric eval_return_mean
behavior_spread behavior_at_bounds``: has the policy collapsed?). ``--x updates`` puts the
run's sequential gradient updates (critic updates plus actor updates, one after another) on the
x axis: on a GPU, where a wide update costs
about what a narrow one does, that is what a user waits for (QVPO runs only: the curve's
``critic_updates`` and ``actor_updates`` columns).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

X_AXES = {"env_steps": "environment steps", "wall_time": "wall-clock seconds",
          "updates": "sequential gradient updates (critic + actor)"}
DEFAULT_METRIC = "eval_return_mean"
# Config fields that say how a run was executed, not what it computed: runs that differ only in
# these are the same experiment.
EXECUTION_FIELDS = ("num_seeds", "num_devices")
# Peers' configs (Brax's trainers) record the seed among their settings: not part of an experiment.
SEED_FIELDS = ("seed",)


class CurveError(ValueError):
    pass


def load_run(run_dir: str | Path) -> dict:
    """{"label", "x": {env_steps, wall_time}, "y", "meta"} of a one-seed run directory (or
    curve.npz); :func:`load_runs` also reads runs of several seeds."""
    runs = load_runs(run_dir)
    if len(runs) > 1:
        raise CurveError(f"{run_dir} holds {len(runs)} seeds; read it with load_runs")
    return runs[0]


def load_runs(run_dir: str | Path, metric: str = DEFAULT_METRIC) -> list[dict]:
    """One dict as :func:`load_run`'s per seed of a run directory (or curve.npz): curves with a
    seed axis, (chunks, S), give S runs, seed i with ``meta["seed"]`` = ``meta["seeds"][i]``.
    ``y`` is the curve's ``metric`` column."""
    run = Path(run_dir)
    curve_path = run if run.suffix == ".npz" else run / "curve.npz"
    if not curve_path.exists():
        raise CurveError(f"{curve_path}: no such file (is {run} a run directory?)")
    try:
        with np.load(curve_path) as data:
            arrays = {k: np.asarray(data[k], np.float64) for k in data.files}
    except Exception as e:  # zip, pickle and format errors all mean the same to the user
        raise CurveError(f"{curve_path}: not a readable curve file ({e})") from e
    missing = [k for k in ("env_steps", "wall_time_s", "eval_return_mean") if k not in arrays]
    if missing:
        raise CurveError(f"{curve_path}: malformed curve, missing {', '.join(missing)}")
    if metric not in arrays:
        raise CurveError(f"{curve_path}: no column {metric!r}; it has "
                         f"{', '.join(sorted(k for k in arrays if k not in ('env_steps', 'wall_time_s')))}")
    n = len(arrays["env_steps"])
    if n == 0 or any(len(arrays[k]) != n for k in ("wall_time_s", metric)):
        raise CurveError(f"{curve_path}: malformed curve, empty or columns of unequal length")
    meta_path = curve_path.parent / "config.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    y = arrays[metric]
    if y.ndim == 1:
        y = y[:, None]
    seeds = meta.get("seeds") or [meta.get("seed", 0) + i for i in range(y.shape[1])]
    if y.ndim != 2 or len(seeds) != y.shape[1]:
        raise CurveError(f"{curve_path}: {metric} has shape {arrays[metric].shape}"
                         f" but config.json lists {len(seeds)} seeds")
    x = {"env_steps": arrays["env_steps"], "wall_time": arrays["wall_time_s"]}
    label = label_of(meta, curve_path.parent.name)
    runs = [{"label": label, "meta": {**meta, "seed": s}, "x": dict(x), "y": y[:, i]}
            for i, s in enumerate(seeds)]
    updates = sequential_updates(arrays, meta.get("config", {}))
    if updates is not None:
        for i, run in enumerate(runs):
            run["x"]["updates"] = updates[:, min(i, updates.shape[1] - 1)]
    return runs


def sequential_updates(curve: dict, config: dict) -> np.ndarray | None:
    """A QVPO curve's critic plus actor updates so far, (rows, S): the sum of its
    ``critic_updates`` and ``actor_updates`` columns. Curves written before those columns had
    one ``updates`` column of critic updates; their actor updates are derived (the actor took
    every ``critic_updates_per_actor``-th critic update, counted over the run). None for a
    curve with neither (a peer's)."""
    def columns(x):
        x = np.asarray(x, np.float64)
        return x if x.ndim == 2 else x[:, None]

    if "critic_updates" in curve:
        return columns(curve["critic_updates"]) + columns(curve["actor_updates"])
    if "updates" in curve:
        critic = columns(curve["updates"])
        return critic + np.floor(critic / config.get("critic_updates_per_actor", 1))
    return None


def label_of(meta: dict, fallback: str) -> str:
    if not meta:
        return fallback
    cfg = meta.get("config", {})
    parts = [meta.get("env", "?"), f"QVPO {meta.get('preset') or ''}".strip(),
             f"N={cfg.get('num_envs', '?')}"]
    if meta.get("algorithm"):
        parts[1] = meta["algorithm"]
    return ", ".join(parts)


def identity(meta: dict) -> str:
    """What makes runs one experiment: everything in config.json but the seed, the record of
    the run (versions, devices, ...) and the execution fields."""
    cfg = {k: v for k, v in meta.get("config", {}).items()
           if k not in EXECUTION_FIELDS + SEED_FIELDS}
    return json.dumps({"env": meta.get("env"), "env_options": meta.get("env_options", {}),
                       "algorithm": meta.get("algorithm"), "preset": meta.get("preset"),
                       "config": cfg}, sort_keys=True, default=str)


def group_runs(runs: list[dict]) -> dict[str, list[dict]]:
    """{legend label: runs} with one group per :func:`identity`. Groups whose label would be
    the same get the config fields in which they differ appended (``batch_size=1024``)."""
    by_identity: dict[str, list[dict]] = {}
    for run in runs:
        by_identity.setdefault(identity(run["meta"]), []).append(run)
    by_label: dict[str, list[str]] = {}
    for ident, group in by_identity.items():
        by_label.setdefault(group[0]["label"], []).append(ident)
    groups: dict[str, list[dict]] = {}
    for label, idents in by_label.items():
        if len(idents) == 1:
            groups[label] = by_identity[idents[0]]
            continue
        metas = [json.loads(i) for i in idents]
        flat = [{**{k: m[k] for k in ("env_options", "algorithm", "preset")}, **m["config"]}
                for m in metas]
        # A field that an older run's config.json does not record says nothing about how the
        # runs differ: name the fields they all record, unless those do not tell them apart.
        common = set.intersection(*(set(f) for f in flat))
        for keys in (common, set().union(*flat)):
            differ = _differing(flat, keys)
            suffixes = [", ".join(f"{k}={f.get(k)}" for k in differ) for f in flat]
            if len(set(suffixes)) == len(flat):
                break
        for ident, suffix in zip(idents, suffixes):
            groups[f"{label}, {suffix}"] = by_identity[ident]
    return groups


def _differing(flat: list[dict], keys: set[str]) -> list[str]:
    return sorted(k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1)


def aggregate(runs: list[dict], x_axis: str, band: str = "minmax", points: int = 200,
              hold_last: bool = False):
    """(grid, mean, low, high) on a grid over the union of the runs' x ranges.

    Each run counts where it has data (runs that stop early, at a return threshold, drop out of
    the tail rather than cutting every curve to the shortest). ``hold_last`` keeps a finished run
    at its last value instead, for runs that stopped on reaching a return threshold.
    """
    lacking = sorted({r["label"] for r in runs if x_axis not in r["x"]})
    if lacking:
        raise CurveError(f"no {X_AXES[x_axis]} in the curves of {', '.join(lacking)} (the "
                         f"updates axis needs QVPO's `updates` column)")
    if len(runs) == 1:
        r = runs[0]
        return r["x"][x_axis], r["y"], r["y"], r["y"]
    lo = min(r["x"][x_axis][0] for r in runs)
    hi = max(r["x"][x_axis][-1] for r in runs)
    grid = np.linspace(lo, hi, points)
    ys = np.stack([np.interp(grid, r["x"][x_axis], r["y"], left=np.nan,
                             right=r["y"][-1] if hold_last else np.nan) for r in runs])
    keep = np.any(np.isfinite(ys), axis=0)
    grid, ys = grid[keep], ys[:, keep]
    mean = np.nanmean(ys, 0)
    if band == "std":
        return grid, mean, mean - np.nanstd(ys, 0), mean + np.nanstd(ys, 0)
    return grid, mean, np.nanmin(ys, 0), np.nanmax(ys, 0)


LEGEND_INSIDE = 4  # more lines than this and a legend inside the panel hides the curves


def plot(run_dirs: list[str], out: str, x_axis: str = "env_steps", band: str = "minmax",
         title: str | None = None, hold_last: bool = False,
         metric: str | list[str] = DEFAULT_METRIC, log_x: bool = False) -> Path:
    """Write one figure with a panel per metric (one metric: one panel), all on ``x_axis``
    (logarithmic with ``log_x``: runs whose x ranges differ tenfold, such as a wide regime's
    sequential updates beside the rule's). The legend sits inside a lone panel with up to
    ``LEGEND_INSIDE`` lines, below the panels otherwise."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [metric] if isinstance(metric, str) else list(metric)
    if not metrics:
        raise CurveError("no metric to plot")
    cols = 1 if len(metrics) == 1 else 2
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.5 * rows), dpi=120, squeeze=False)
    envs: set[str] = set()
    for ax, name in zip(axes.flat, metrics):
        runs = [run for d in run_dirs for run in load_runs(d, name)]
        envs |= {r["meta"].get("env", "?") for r in runs}
        for label, group in group_runs(runs).items():
            grid, mean, low, high = aggregate(group, x_axis, band, hold_last=hold_last)
            line, = ax.plot(grid, mean,
                            label=f"{label} ({len(group)} run{'s' * (len(group) > 1)})")
            if len(group) > 1:
                ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel(X_AXES[x_axis] + (" (log scale)" if log_x else ""))
        if log_x:
            ax.set_xscale("log")
        ax.set_ylabel("evaluation return (mean over episodes)" if name == DEFAULT_METRIC
                      else name)
        ax.grid(alpha=0.3)
        if len(metrics) > 1:
            ax.set_title(name, fontsize=10)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    lines = len(axes.flat[0].get_lines())
    below = len(metrics) > 1 or lines > LEGEND_INSIDE
    if not below:
        axes.flat[0].legend(fontsize=8)
    else:  # below the panels, so long labels neither squeeze them nor hide the curves
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", fontsize=8, ncol=1)
    what = ("Evaluation return" if metrics == [DEFAULT_METRIC]
            else metrics[0] if len(metrics) == 1 else "Curves")
    default_title = f"{what} on {', '.join(sorted(envs))}"
    if not below:
        axes.flat[0].set_title(title or default_title)
        fig.tight_layout()
    else:
        if len(metrics) == 1:
            axes.flat[0].set_title(title or default_title)
        else:
            fig.suptitle(title or default_title)
        legend_height = 0.25 + 0.18 * lines  # inches
        fig.set_figheight(fig.get_figheight() + legend_height)
        # A label of 8-point text is about 0.067 inch a character: widen the figure to hold the
        # longest one (a study's labels name every override) rather than cut it at both edges.
        longest = max((len(label) for label in axes.flat[0].get_legend_handles_labels()[1]),
                      default=0)
        fig.set_figwidth(max(fig.get_figwidth(), 0.9 + 0.067 * longest))
        fig.tight_layout(rect=(0, legend_height / fig.get_figheight(), 1, 1))
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qvpo_mjx.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories (or curve.npz files)")
    parser.add_argument("-o", "--out", default="curves.png", help="image file to write")
    parser.add_argument("--x", choices=sorted(X_AXES), default="env_steps",
                        help="x axis: env steps, wall-clock, or sequential gradient updates "
                        "(critic + actor; the GPU-time proxy)")
    parser.add_argument("--band", choices=["minmax", "std"], default="minmax",
                        help="spread shown across runs of one label")
    parser.add_argument("--metric", nargs="+", default=[DEFAULT_METRIC],
                        help="curve column(s) on the y axis (e.g. critic_loss, critic_q_mean, "
                        "actor_train_spread); several give one panel each; default: the "
                        "evaluation return")
    parser.add_argument("--title", default=None)
    parser.add_argument("--log-x", action="store_true", help="logarithmic x axis")
    parser.add_argument("--hold-last", action="store_true",
                        help="hold each run's last value to the end of the axis (for runs that "
                        "stopped at a return threshold)")
    args = parser.parse_args(argv)
    try:
        path = plot(args.runs, args.out, args.x, args.band, args.title, args.hold_last,
                    args.metric, args.log_x)
    except CurveError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
