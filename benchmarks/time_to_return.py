"""Wall-clock and env steps to a return: QVPO against Brax SAC, same env, same seeds, one process.

    python benchmarks/time_to_return.py                 # inverted_double_pendulum, 3 seeds
    python benchmarks/time_to_return.py --quick         # inverted_pendulum, 1 seed
    python benchmarks/time_to_return.py --algos qvpo sac ppo --seeds 0 1 2

Each run goes until its evaluation return reaches ``--threshold`` or ``--budget`` env steps, from
a cold start (compilation included in its clock; nothing is cached between runs). Curves go to
``--runs-dir`` in the format ``python -m qvpo_mjx.plot`` reads; the summary (per seed and the
median ratio QVPO / peer) to ``benchmarks/results/time_to_return.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, write_result  # noqa: E402

import peers  # noqa: E402

from qvpo_mjx.config import QVPOConfig  # noqa: E402
from qvpo_mjx.presets import PRESETS  # noqa: E402

# Threshold: the task's maximum is about 9350-9360 (9.35 per step for 1000 steps).
DEFAULTS = {"inverted_double_pendulum": 9300.0, "inverted_pendulum": 1000.0}


class _Reached(Exception):
    pass


def run_qvpo(env_name: str, seed: int, budget: int, threshold: float, eval_every: int,
             out_dir: Path) -> dict:
    from qvpo_mjx.train import train

    cfg = QVPOConfig(**{**PRESETS["cpu"]["config"], "total_steps": budget,
                        "eval_interval": eval_every})
    t0 = time.perf_counter()
    hit: dict = {}

    def progress(steps, row):
        if row["eval_return_mean"] >= threshold:
            hit.update(env_steps=steps, wall_time_s=time.perf_counter() - t0)
            raise _Reached

    try:
        train(cfg, env_name, seed, out_dir, overwrite=True, progress=False, progress_fn=progress,
              extra_meta={"preset": "cpu", "algorithm": "QVPO (cpu preset)"})
    except _Reached:
        pass
    return {"algo": "qvpo", "seed": seed, "reached": bool(hit), **hit,
            "wall_s": time.perf_counter() - t0}


def run_peer(algo: str, env_name: str, seed: int, budget: int, threshold: float,
             eval_every: int, out_dir: Path) -> dict:
    t0 = time.perf_counter()
    result = peers.run_brax(algo, env_name, 16, budget, seed, out_dir, eval_every=eval_every,
                            overwrite=True, stop_at=threshold)
    crossing = peers.first_crossing(result, threshold)
    return {"algo": algo, "seed": seed, "reached": crossing is not None, **(crossing or {}),
            "wall_s": time.perf_counter() - t0}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="inverted_pendulum, 1 seed")
    parser.add_argument("--env", default=None)
    parser.add_argument("--algos", nargs="+", default=["qvpo", "sac"],
                        choices=["qvpo", "sac", "ppo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--budget", type=int, default=None, help="env steps per run at most")
    parser.add_argument("--eval-every", type=int, default=4000)
    parser.add_argument("--runs-dir", default="benchmarks/results/runs")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    env = args.env or ("inverted_pendulum" if args.quick else "inverted_double_pendulum")
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    threshold = args.threshold if args.threshold is not None else DEFAULTS.get(env, 1000.0)
    budget = args.budget or (20_000 if args.quick else 100_000)
    eval_every = 2000 if args.quick and args.eval_every == 4000 else args.eval_every
    out = args.out or f"benchmarks/results/time_to_return{'_quick' if args.quick else ''}.json"

    results = []
    for seed in seeds:
        for algo in args.algos:
            run_dir = Path(args.runs_dir) / env / f"{algo}_s{seed}"
            r = (run_qvpo(env, seed, budget, threshold, eval_every, run_dir) if algo == "qvpo"
                 else peers.in_fresh_process(run_peer, algo, env, seed, budget, threshold,
                                             eval_every, run_dir))
            r["run_dir"] = str(run_dir)
            results.append(r)
            print(f"{algo:>5} seed {seed}: " + (
                f"return {threshold:g} at {r['env_steps']:>7,} env steps, "
                f"{r['wall_time_s']:7.1f} s" if r["reached"] else
                f"not reached in {budget:,} env steps") + f" (run {r['wall_s']:.0f} s)", flush=True)

    summary = {}
    for algo in args.algos:
        rs = [r for r in results if r["algo"] == algo]
        reached = [r for r in rs if r["reached"]]
        summary[algo] = {
            "reached": f"{len(reached)}/{len(rs)}",
            "median_wall_s": statistics.median(r["wall_time_s"] for r in reached) if reached else None,
            "median_env_steps": statistics.median(r["env_steps"] for r in reached) if reached else None}
    for algo in args.algos:
        if algo != "qvpo" and "qvpo" in summary and summary[algo]["median_wall_s"] and \
                summary["qvpo"]["median_wall_s"]:
            summary[f"qvpo_over_{algo}_wall"] = (summary["qvpo"]["median_wall_s"]
                                                 / summary[algo]["median_wall_s"])
            summary[f"qvpo_over_{algo}_env_steps"] = (summary["qvpo"]["median_env_steps"]
                                                      / summary[algo]["median_env_steps"])
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items()})
    write_result(out, {"machine": machine_info(), "env": env, "threshold": threshold,
                       "budget": budget, "eval_every": eval_every, "runs": results,
                       "summary": summary,
                       "qvpo_config": QVPOConfig(**PRESETS["cpu"]["config"]).to_dict()})
    return summary


if __name__ == "__main__":
    main()
