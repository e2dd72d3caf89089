"""Throughput side by side: physics ceiling, QVPO acting, the QVPO loop, Brax SAC and Brax PPO.

    python benchmarks/throughput.py --quick                          # inverted_pendulum, N = 16
    python benchmarks/throughput.py --env halfcheetah --num-envs 16 256 --preset cpu

One run: for each N, the QVPO rows come from ``loop_speed.bench`` (in this process) and each peer
from ``peers.throughput`` (each in a fresh process, so it compiles from scratch, as QVPO did).
Prints env steps per second and the ratios to the ceiling and to each peer; writes
``benchmarks/results/throughput_{env}.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loop_speed  # noqa: E402
import peers  # noqa: E402
from common import machine_info, write_result  # noqa: E402


def peer_budget(algo: str, env: str, n: int, quick: bool) -> dict:
    if algo == "sac":
        epoch = max(2048 if quick else 8192, 8 * n)
        return {"num_timesteps": 1008 + 4 * epoch, "eval_every": epoch}
    cfg = peers.ppo_defaults(env, n, 0)
    update = cfg["batch_size"] * cfg["num_minibatches"] * cfg["unroll_length"]
    epoch = (16 if quick else 32) * update
    return {"num_timesteps": 4 * epoch, "eval_every": epoch}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--env", default="inverted_pendulum")
    parser.add_argument("--num-envs", nargs="+", type=int, default=[16])
    parser.add_argument("--preset", default="cpu", help="QVPO preset for network sizes and batch")
    parser.add_argument("--peers", nargs="*", default=["sac", "ppo"], choices=["sac", "ppo"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rows = {}
    for n in args.num_envs:
        steps = max(4, (512 if args.quick else 2048) // n)
        q = loop_speed.bench(args.env, n, steps, 2 if args.quick else 3, args.preset)
        row = {"physics": q["physics"]["env_steps_per_s"],
               "qvpo_acting": q["acting"]["env_steps_per_s"],
               "qvpo_loop": q["loop"]["env_steps_per_s"],
               "qvpo_updates_per_step": q["updates_per_step"]}
        for algo in args.peers:
            p = peers.in_fresh_process(peers.throughput, algo, args.env, n,
                                       **peer_budget(algo, args.env, n, args.quick))
            row[f"brax_{algo}"] = p["steps_per_s"]
            row[f"brax_{algo}_config"] = p["config"]
        row["ratios"] = {
            "qvpo_loop/physics": row["qvpo_loop"] / row["physics"],
            "qvpo_acting/physics": row["qvpo_acting"] / row["physics"],
            **{f"qvpo_loop/brax_{a}": row["qvpo_loop"] / row[f"brax_{a}"] for a in args.peers}}
        rows[n] = row
        print(f"{args.env} N={n}: physics {row['physics']:,.0f}/s | QVPO acting "
              f"{row['qvpo_acting']:,.0f}/s | QVPO loop {row['qvpo_loop']:,.0f}/s "
              f"({row['qvpo_updates_per_step']} updates/vector step) | "
              + " | ".join(f"Brax {a.upper()} {row[f'brax_{a}']:,.0f}/s" for a in args.peers),
              flush=True)
        print("  ratios: " + ", ".join(f"{k} {v:.3g}" for k, v in row["ratios"].items()))
    out = args.out or f"benchmarks/results/throughput_{args.env}.json"
    write_result(out, {"machine": machine_info(), "env": args.env, "preset": args.preset,
                       "quick": args.quick, "rows": rows,
                       "note": "steps/s exclude compilation; peers' include their evaluations"})
    return rows


if __name__ == "__main__":
    main()
