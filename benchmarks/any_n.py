"""What the user's own command reaches at any N: `python -m qvpo_mjx.train --num-envs N`, cold.

    python benchmarks/any_n.py                          # N in 16 256 1024 4096, seeds 0 1 2
    python benchmarks/any_n.py --quick                  # N = 16 and 256, seed 0
    python benchmarks/any_n.py --num-envs 4096 --seeds 0 1 2 --full

Each run is the train command itself in a subprocess (the ``cpu`` preset with what N implies,
``presets.implied``), with the compile cache off, so its clock includes compilation as a new
user's first run does. The script watches the run's curve (written after every chunk) and stops
the run with Ctrl-C once an evaluation reaches ``--target`` (``--full``: let it run to its
``total_steps``). From the curve: the first evaluation at or above the target, its wall-clock
(compilation included), env steps and sequential updates (critic + actor: what a user waits for
on a GPU), the last evaluation, and with ``--full`` the first evaluation from which every
later one holds the target. Rows go to ``benchmarks/results/any_n.json`` (keyed by env, N and
seed: a rerun replaces its rows and keeps the others), each with its command, the machine and
the day's matmul speed (``common.matmul_gflops``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine_info, matmul_gflops, write_result  # noqa: E402

ROOT = HERE.parent
TARGETS = {"inverted_pendulum": 1000.0}


def read_curve(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError):  # not written yet (it is replaced atomically)
        return None


def first_at(curve: dict[str, np.ndarray], target: float) -> int | None:
    """Index of the first curve row whose evaluation return reaches ``target``."""
    hits = np.flatnonzero(np.asarray(curve["eval_return_mean"]).reshape(-1) >= target)
    return int(hits[0]) if hits.size else None


def steady_from(curve: dict[str, np.ndarray], target: float) -> int | None:
    """Index of the first curve row from which every evaluation reaches ``target`` (None if the
    last one does not): when a run that reached the target holds it."""
    below = np.flatnonzero(np.asarray(curve["eval_return_mean"]).reshape(-1) < target)
    n = len(curve["env_steps"])
    start = int(below[-1]) + 1 if below.size else 0
    return start if start < n else None


def run_one(env: str, N: int, seed: int, target: float, out: Path, full: bool,
            timeout_s: float) -> dict:
    run_dir = out / env / f"N{N}_s{seed}"
    cmd = [sys.executable, "-m", "qvpo_mjx.train", "--env", env, "--num-envs", str(N),
           "--seed", str(seed), "--out", str(run_dir), "--overwrite", "--no-progress",
           "--compile-cache", "none"]
    print("$", " ".join(cmd[1:]), flush=True)
    gflops = matmul_gflops()  # the day's speed, read just before the run
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    stopped = False
    curve_path = run_dir / "curve.npz"
    seen = 0.0
    while proc.poll() is None:
        time.sleep(2.0)
        if time.perf_counter() - t0 > timeout_s:
            proc.send_signal(signal.SIGINT)
            break
        if full or not curve_path.exists() or curve_path.stat().st_mtime == seen:
            continue
        seen = curve_path.stat().st_mtime
        curve = read_curve(curve_path)
        if curve is not None and first_at(curve, target) is not None:
            stopped = True
            proc.send_signal(signal.SIGINT)  # the command's own Ctrl-C: it saves and exits
            break
    output, _ = proc.communicate(timeout=600)
    wall = time.perf_counter() - t0
    first_line = output.splitlines()[0] if output else ""
    curve = read_curve(curve_path)
    if curve is None:
        raise RuntimeError(f"{run_dir}: no curve; output:\n{output[-3000:]}")
    config = json.loads((run_dir / "config.json").read_text())
    cfg = config.get("config", config)
    hit, steady = first_at(curve, target), steady_from(curve, target)
    updates = curve["critic_updates"] + curve["actor_updates"]
    row = {"env": env, "num_envs": N, "seed": seed, "target": target,
           "updates_per_step": cfg["updates_per_step"], "batch_size": cfg["batch_size"],
           "critic_updates_per_actor": cfg["critic_updates_per_actor"],
           "total_steps": cfg["total_steps"], "stopped_at_target": stopped,
           "reached": hit is not None,
           "wall_s_to_target": None if hit is None else round(float(curve["wall_time_s"][hit]), 1),
           "env_steps_to_target": None if hit is None else int(curve["env_steps"][hit]),
           "updates_to_target": None if hit is None else int(updates[hit]),
           "last_env_steps": int(curve["env_steps"][-1]),
           # --full runs only: from where on every evaluation held the target.
           "env_steps_steady": None if not full or steady is None
           else int(curve["env_steps"][steady]),
           "updates_steady": None if not full or steady is None else int(updates[steady]),
           "last_eval_return": round(float(np.asarray(curve["eval_return_mean"])[-1]), 1),
           "process_wall_s": round(wall, 1), "matmul_gflops": gflops,
           "command": " ".join(["python", *cmd[1:]]), "machine": machine_info(),
           "first_line": first_line,
           "run_dir": str(run_dir.resolve().relative_to(ROOT))
           if run_dir.resolve().is_relative_to(ROOT) else str(run_dir)}
    print(json.dumps(row), flush=True)
    return row


def markdown_table(rows: list[dict], env: str = "inverted_pendulum") -> str:
    """benchmarks/README.md's table ("Any N"): per N, each seed's time, env steps and sequential
    updates to the target, and its last evaluation (test_readme_numbers checks the README
    against this)."""
    def cells(rs, key, fmt):
        return ", ".join("-" if r[key] is None else fmt(r[key]) for r in rs)

    lines = ["| N | critic updates x batch per vector step | s to 1000, cold (per seed) | "
             "env steps to 1000 | sequential updates to 1000 | last evaluation |",
             "|---|---|---|---|---|---|"]
    for N in sorted({r["num_envs"] for r in rows if r["env"] == env}):
        rs = sorted((r for r in rows if r["env"] == env and r["num_envs"] == N),
                    key=lambda r: r["seed"])
        lines.append(f"| {N:,} | {rs[0]['updates_per_step']} x {rs[0]['batch_size']:,} | "
                     f"{cells(rs, 'wall_s_to_target', lambda v: f'{v:.0f}')} | "
                     f"{cells(rs, 'env_steps_to_target', lambda v: f'{v / 1000:.0f}k')} | "
                     f"{cells(rs, 'updates_to_target', lambda v: f'{v:,}')} | "
                     f"{cells(rs, 'last_eval_return', lambda v: f'{v:.0f}')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 16 and 256, seed 0")
    parser.add_argument("--env", default="inverted_pendulum")
    parser.add_argument("--num-envs", type=int, nargs="+", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--target", type=float, default=None,
                        help="evaluation return to reach (default: 1000 on inverted_pendulum)")
    parser.add_argument("--full", action="store_true", help="run to total_steps, not the target")
    parser.add_argument("--timeout-min", type=float, default=60.0,
                        help="stop a run (Ctrl-C) after this many minutes")
    parser.add_argument("--out", default=str(HERE / "results" / "any_n"))
    parser.add_argument("--summary", default=str(HERE / "results" / "any_n.json"))
    parser.add_argument("--table", action="store_true", help="print the summary's table, run nothing")
    args = parser.parse_args()
    summary = Path(args.summary)
    if args.table:
        print(markdown_table(json.loads(summary.read_text())["rows"], args.env))
        return
    sizes = args.num_envs or ([16, 256] if args.quick else [16, 256, 1024, 4096])
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    target = args.target if args.target is not None else TARGETS.get(args.env)
    if target is None:
        parser.error(f"--target is needed for {args.env} (known: {', '.join(TARGETS)})")
    rows = json.loads(summary.read_text())["rows"] if summary.exists() else []
    for N in sizes:
        for seed in seeds:
            row = run_one(args.env, N, seed, target, Path(args.out), args.full,
                          args.timeout_min * 60)
            rows = [r for r in rows if (r["env"], r["num_envs"], r["seed"])
                    != (row["env"], N, seed)] + [row]
            rows.sort(key=lambda r: (r["env"], r["num_envs"], r["seed"]))
            # After every run: a crash of a later run loses nothing.
            write_result(summary, {"rows": rows})


if __name__ == "__main__":
    main()
