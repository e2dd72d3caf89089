"""QVPO vs Brax SAC (MuJoCo Playground's published settings) on Playground's DM Control tasks, on
the CPU: learning curves against env steps and wall-clock, a per-seed table and the random floor.

    python benchmarks/playground.py random --env CartpoleSwingup CheetahRun   # random-policy floor
    python benchmarks/playground.py qvpo --env CartpoleSwingup --timesteps 100000 --seeds 0 1 2
    python benchmarks/playground.py sac  --env CartpoleSwingup --timesteps 100000 --seeds 0 1 2
    python benchmarks/playground.py sac  --env CartpoleSwingup --timesteps 500000 --label sac_long
    python benchmarks/playground.py report --env CartpoleSwingup CheetahRun \\
        --threshold CartpoleSwingup=400 CheetahRun=100

``qvpo``: the ``cpu`` preset (16 envs, batch 128, 8 updates per vector step, hidden 64, T 5, Kt 16,
lr 3e-4 / 1e-3, tau 0.02) with ``total_steps`` = the budget, evaluation every tenth of it (16
episodes of 1000 steps), replay = max(budget, the preset's 100k); one seed per run, each in a fresh
process (cold: compilation on its clock, as SAC's), into ``results/runs/ENV/qvpo_sSEED``.
``sac``: ``peers.run_brax("sac", ..., settings="playground")`` (Playground's
``brax_sac_config`` for the task: 128 envs, batch 512, 8 gradient updates per actor step,
lr 1e-3, Q LayerNorm, observation normalisation, min replay 8192, ...), same budget and
evaluation spacing, 16 evaluation episodes, each seed in a fresh process, into
``results/runs/ENV/sac_sSEED`` (``--label sac_long``: ``sac_long_sSEED``, for a second budget,
e.g. the env steps SAC takes in QVPO's wall-clock). ``report``: plots under ``results/playground/`` and the table in
``results/playground/learning.json``.

"Mean return over the run": each seed's curve, interpolated linearly between its evaluations, at
10%, 20%, ..., 100% of the budget, averaged (QVPO evaluates first at 10%, SAC at 0 and then every
~10% after its 8192-step prefill, so the raw evaluation points differ).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import machine_info, random_policy_returns, write_result  # noqa: E402

RESULTS = HERE / "results"
RUNS = RESULTS / "runs"
OUT = RESULTS / "playground"
EVAL_EPISODES = 16
EPISODE_LENGTH = 1000


# ------------------------------------------------------------------------------------------
# Random-policy floor


def random_return(env_name: str, episodes: int = 64, seed: int = 0) -> dict:
    """Return of uniform random actions in [-1, 1] over ``episodes`` episodes of 1000 steps."""
    returns = random_policy_returns(env_name, episodes, EPISODE_LENGTH, seed)
    return {"episodes": episodes, "mean": float(returns.mean()), "std": float(returns.std()),
            "min": float(returns.min()), "max": float(returns.max())}


def cmd_random(args) -> int:
    path = OUT / "random_returns.json"
    out = json.loads(path.read_text()) if path.exists() else {"returns": {}}
    for env_name in args.env:
        out["returns"][env_name] = random_return(env_name, args.episodes)
        r = out["returns"][env_name]
        print(f"{env_name}: random policy return {r['mean']:.1f} +- {r['std']:.1f} "
              f"({r['episodes']} episodes, min {r['min']:.1f}, max {r['max']:.1f})", flush=True)
    out["machine"] = machine_info()
    write_result(path, out)
    return 0


# ------------------------------------------------------------------------------------------
# Runs


def qvpo_config(timesteps: int):
    from qvpo_mjx.presets import PRESETS, preset_config

    return preset_config("cpu", {
        "total_steps": timesteps, "eval_interval": max(timesteps // 10, 1),
        "num_eval_envs": EVAL_EPISODES, "episode_length": EPISODE_LENGTH,
        "replay_size": max(timesteps, PRESETS["cpu"]["config"]["replay_size"])})


def _qvpo_run(env_name: str, timesteps: int, seed: int, out_dir: str, overwrite: bool) -> dict:
    """One seed, in the calling (fresh) process; the clock starts before the Trainer is built."""
    from qvpo_mjx.train import train

    t0 = time.perf_counter()
    rows = train(qvpo_config(timesteps), env_name, seed, out_dir, progress=False,
                 overwrite=overwrite, checkpoint_minutes=1e9,
                 progress_fn=lambda s, r: print(f"  qvpo {env_name} s{seed}: step {s:>8,} "
                                                f"t {r['wall_time_s']:7.1f}s return "
                                                f"{r['eval_return_mean']:8.1f}",
                                                file=sys.stderr, flush=True),
                 extra_meta={"algorithm": "QVPO (cpu preset)", "preset": "cpu"})
    return {"total_wall_s": time.perf_counter() - t0,
            "final_return": rows[-1]["eval_return_mean"]}


def cmd_qvpo(args) -> int:
    from peers import in_fresh_process

    for env_name in args.env:
        for seed in args.seeds:
            out = RUNS / env_name / f"qvpo_s{seed}"
            r = in_fresh_process(_qvpo_run, env_name, args.timesteps, seed, str(out),
                                 args.overwrite)
            print(f"qvpo {env_name} seed {seed}: final {r['final_return']:.1f}, "
                  f"{r['total_wall_s']:.0f} s -> {out}", flush=True)
    return 0


def cmd_sac(args) -> int:
    from peers import in_fresh_process, run_brax

    for env_name in args.env:
        for seed in args.seeds:
            out = RUNS / env_name / f"{args.label}_s{seed}"
            r = in_fresh_process(run_brax, "sac", env_name, args.num_envs, args.timesteps, seed,
                                 str(out), eval_every=max(args.timesteps // 10, 1),
                                 overwrite=args.overwrite, verbose=True, settings="playground",
                                 num_eval_envs=EVAL_EPISODES)
            print(f"sac {env_name} seed {seed}: final {r['eval_return_mean'][-1]:.1f}, "
                  f"{r['total_wall_s']:.0f} s -> {out}", flush=True)
    return 0


# ------------------------------------------------------------------------------------------
# Report


def labels(env_name: str) -> list[str]:
    """The run labels found for ``env_name`` (``qvpo``, ``sac``, ``sac_long``, ...), qvpo first."""
    found = {d.name.rsplit("_s", 1)[0] for d in (RUNS / env_name).glob("*_s*")
             if (d / "curve.npz").exists()}
    return sorted(found, key=lambda label: (label != "qvpo", label))


def load_seed_runs(env_name: str, label: str) -> list[dict]:
    from qvpo_mjx import plot

    runs = []
    for d in sorted((RUNS / env_name).glob(f"{label}_s*")):
        if d.name.rsplit("_s", 1)[0] == label and (d / "curve.npz").exists():
            runs.extend(plot.load_runs(d))
    return runs


def legend(label: str, runs: list[dict]) -> str:
    """QVPO (cpu preset) / Brax SAC (Playground settings, B env steps)."""
    if label == "qvpo":
        return "QVPO (cpu preset)"
    budget = f", {run_budget(runs[0]):,} env steps" if runs else ""
    return f"Brax SAC (Playground settings{budget})"


def run_budget(run: dict) -> int:
    """The run's env-step budget, from its config.json (QVPO: total_steps; brax: num_timesteps)."""
    cfg = run["meta"].get("config", {})
    return int(cfg.get("total_steps") or cfg["num_timesteps"])


def summarise(run: dict, threshold: float | None) -> dict:
    import numpy as np

    budget = run_budget(run)
    x, t, y = run["x"]["env_steps"], run["x"]["wall_time"], run["y"]
    grid = budget * np.arange(1, 11) / 10
    # Linear between evaluations; before the first one (QVPO: none at 0) the first is held.
    mean_over_run = float(np.mean(np.interp(grid, x, y)))
    out = {"seed": int(run["meta"]["seed"]), "budget_env_steps": budget,
           "final_return": float(y[-1]),
           "best_return": float(np.max(y)), "mean_return_over_run": mean_over_run,
           "last_env_steps": int(x[-1]), "wall_s": float(t[-1]),
           "evals": [[int(a), float(b), float(c)] for a, b, c in zip(x, t, y)]}
    if threshold is not None:
        hit = np.flatnonzero(y >= threshold)
        out["threshold"] = threshold
        out["first_crossing"] = (None if hit.size == 0 else
                                 {"env_steps": int(x[hit[0]]), "wall_s": float(t[hit[0]])})
    return out


def plot_env(env_name: str, runs_by_algo: dict[str, list[dict]], x_axis: str, path: Path,
             random_floor: float | None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qvpo_mjx import plot

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for algo, runs in runs_by_algo.items():
        if not runs:
            continue
        grid, mean, low, high = plot.aggregate(runs, x_axis)
        line, = ax.plot(grid, mean,
                        label=f"{legend(algo, runs)} ({len(runs)} seeds, mean; band min-max)")
        if len(runs) > 1:
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    if random_floor is not None:
        ax.axhline(random_floor, color="grey", linestyle=":", linewidth=1,
                   label=f"random policy ({random_floor:.0f})")
    ax.set_title(f"{env_name} (MuJoCo Playground, MJX) on a 2-core CPU")
    ax.set_xlabel(plot.X_AXES[x_axis] + (" (each seed's own clock, compilation included)"
                                         if x_axis == "wall_time" else ""))
    ax.set_ylabel(f"evaluation return ({EVAL_EPISODES} episodes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    print(f"wrote {path}")


def cmd_report(args) -> int:
    import numpy as np

    thresholds = {}
    for item in args.threshold:
        name, _, value = item.partition("=")
        thresholds[name] = float(value)
    floors_path = OUT / "random_returns.json"
    floors = json.loads(floors_path.read_text())["returns"] if floors_path.exists() else {}
    report = {"machine": machine_info(), "code": args.code, "eval_episodes": EVAL_EPISODES,
              "envs": {}, "note": __doc__.split("\n\n")[-1].strip()}
    for env_name in args.env:
        runs = {label: load_seed_runs(env_name, label) for label in labels(env_name)}
        floor = floors.get(env_name, {}).get("mean")
        for x_axis in ("env_steps", "wall_time"):
            plot_env(env_name, runs, x_axis, OUT / f"{env_name}_{x_axis}.png", floor)
        entry = {"random_return": floors.get(env_name), "threshold": thresholds.get(env_name)}
        for algo, rs in runs.items():
            seeds = [summarise(r, thresholds.get(env_name)) for r in rs]
            cfg_path = RUNS / env_name / f"{algo}_s{seeds[0]['seed']}" / "config.json" \
                if seeds else None
            entry[algo] = {"seeds": seeds,
                           "config": (json.loads(cfg_path.read_text()) if cfg_path else None)}
            if seeds:
                for k in ("final_return", "mean_return_over_run", "wall_s"):
                    v = np.array([s[k] for s in seeds])
                    entry[algo][f"{k}_mean"] = float(v.mean())
                    entry[algo][f"{k}_se"] = (float(v.std(ddof=1) / np.sqrt(len(v)))
                                             if len(v) > 1 else None)
        report["envs"][env_name] = entry
        thr = thresholds.get(env_name)
        print(f"\n{env_name} (random {floor if floor is None else round(floor, 1)}; threshold "
              f"{thr})")
        print(f"{'run':<9} {'seed':>4} {'final':>8} {'best':>8} {'mean/run':>9} "
              f"{'steps to R':>11} {'s to R':>7} {'wall s':>7}")
        for algo in runs:
            for s in entry[algo]["seeds"]:
                c = s.get("first_crossing")
                print(f"{algo:<9} {s['seed']:>4} {s['final_return']:>8.1f} "
                      f"{s['best_return']:>8.1f} "
                      f"{s['mean_return_over_run']:>9.1f} "
                      f"{(format(c['env_steps'], ',') if c else '-'):>11} "
                      f"{(format(c['wall_s'], '.0f') if c else '-'):>7} {s['wall_s']:>7.0f}")
    write_result(OUT / "learning.json", report)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("random", "qvpo", "sac", "report"):
        s = sub.add_parser(name)
        s.add_argument("--env", nargs="+", default=["CartpoleSwingup", "CheetahRun"])
        if name == "random":
            s.add_argument("--episodes", type=int, default=64)
            continue
        if name in ("qvpo", "sac"):
            s.add_argument("--timesteps", type=int, default=100_000)
            s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
            s.add_argument("--overwrite", action="store_true")
        if name == "sac":
            s.add_argument("--num-envs", type=int, default=128, help="Playground's: 128")
            s.add_argument("--label", default="sac",
                           help="runs go to runs/ENV/LABEL_sSEED (e.g. sac_long for a longer "
                                "budget beside the default one)")
        if name == "report":
            s.add_argument("--threshold", nargs="*", default=[], metavar="ENV=R")
            s.add_argument("--code", default=None,
                           help="what code the runs used (e.g. a commit), recorded as given")
    args = p.parse_args(argv)
    return {"random": cmd_random, "qvpo": cmd_qvpo, "sac": cmd_sac, "report": cmd_report}[
        args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
