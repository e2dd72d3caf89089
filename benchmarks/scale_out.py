"""Scale-out: S seeds batched in one program against S sequential runs; 1 against D devices.

    python benchmarks/scale_out.py              # seeds S in 1 2 4 8, then devices 1 and 2
    python benchmarks/scale_out.py --quick      # seeds S in 1 2 4, no learning comparison
    python benchmarks/scale_out.py --part seeds # or devices, or warmup

Seeds (one process, one device): the CPU preset on inverted_pendulum; ``--chunks`` chunks of
2,000 env steps per seed, the first with the warm-up. Batched: one program of S seeds
(``trainer.compile_chunk`` over ``init_seeds``); sequential: the one-seed program run for each
seed in turn. Compile time is reported apart from run time; the one-seed program is compiled
once for all sequential runs (separate processes without a compile cache would pay it S times).

Devices: each D in a fresh process with ``XLA_FLAGS=--xla_force_host_platform_device_count=D``
(the flag must precede JAX's start). Steady env steps per second of the CPU preset's loop, and
(unless --quick) the learning comparison of test_learning.py: the same four seeds for 14k steps
on one device and on two. On a CPU, forced host devices share the same cores, so D = 2 brings
no extra compute; it measures the cost of the collectives, and that the run learns alike.

Writes ``benchmarks/results/scale_out.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def preset_config(**changes):
    from qvpo_mjx.config import QVPOConfig
    from qvpo_mjx.presets import PRESETS
    return QVPOConfig(**{**PRESETS["cpu"]["config"], **changes})


def run_chunks(trainer, state, run_chunk, chunks: int) -> tuple[object, float]:
    import jax
    t0 = time.perf_counter()
    for _ in range(chunks):
        state, metrics = run_chunk(state)
    jax.block_until_ready(metrics)
    return state, time.perf_counter() - t0


def compile_and_first(trainer, seeds):
    """Build the state, compile the chunk (timed apart) and return both."""
    import jax
    state = trainer.init_seeds(seeds)
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    run_chunk = trainer.compile_chunk(state, len(seeds))
    compiled = run_chunk.lower(state).compile()
    return state, compiled, time.perf_counter() - t0


def seeds_part(sizes: list[int], chunks: int) -> dict:
    import jax

    from qvpo_mjx.loop import Trainer
    env = "inverted_pendulum"
    single = Trainer(preset_config(num_devices=1), env)
    rows = []
    _, run1, seq_compile = compile_and_first(single, [0])  # once for every sequential run
    for S in sizes:
        batched = Trainer(preset_config(num_devices=1, num_seeds=S), env)
        state, run, compile_s = compile_and_first(batched, list(range(S)))
        _, batched_s = run_chunks(batched, state, run, chunks)
        seq_s = 0.0
        for seed in range(S):
            state = jax.block_until_ready(single.init_seeds([seed]))
            _, t = run_chunks(single, state, run1, chunks)
            seq_s += t
        steps = S * chunks * single.chunk_env_steps
        row = {"seeds": S, "env_steps_total": steps,
               "batched_run_s": round(batched_s, 3), "sequential_run_s": round(seq_s, 3),
               "batched_compile_s": round(compile_s, 2),
               "speedup_run": round(seq_s / batched_s, 3),
               "speedup_with_compile": round((seq_s + seq_compile) / (batched_s + compile_s), 3),
               "batched_env_steps_per_s": round(steps / batched_s, 1),
               "sequential_env_steps_per_s": round(steps / seq_s, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return {"env": env, "preset": "cpu", "chunks_per_seed": chunks,
            "chunk_env_steps": single.chunk_env_steps, "sequential_compile_s": round(seq_compile, 2),
            "rows": rows}


def warmup_part(seeds: int, chunks: int) -> dict:
    """S seeds in one program during warm-up (uniform actions, no updates) should cost S
    acting steps per env step, not the updates their results then discard: a batched predicate
    under vmap turns the warm-up and reset branches into selects that run both sides. Times
    ``chunks`` warm-up chunks and ``chunks`` updating chunks of the CPU preset for 1 and S seeds
    (compile apart)."""
    from qvpo_mjx.loop import Trainer
    out = {"env": "inverted_pendulum", "preset": "cpu", "chunks": chunks, "rows": []}
    for S in (1, seeds):
        # start_steps past the timed chunks: all of them are warm-up.
        warm = Trainer(preset_config(num_devices=1, num_seeds=S, start_steps=10 ** 9), "inverted_pendulum")
        state, run, compile_s = compile_and_first(warm, list(range(S)))
        _, warm_s = run_chunks(warm, state, run, chunks)
        upd = Trainer(preset_config(num_devices=1, num_seeds=S), "inverted_pendulum")
        state, run, _ = compile_and_first(upd, list(range(S)))
        state, _ = run_chunks(upd, state, run, 1)  # past the warm-up
        _, upd_s = run_chunks(upd, state, run, chunks)
        row = {"seeds": S, "warmup_chunk_s": round(warm_s / chunks, 3),
               "updating_chunk_s": round(upd_s / chunks, 3), "compile_s": round(compile_s, 2)}
        print(json.dumps(row), flush=True)
        out["rows"].append(row)
    one, many = out["rows"]
    out["warmup_cost_of_S_seeds_over_S_x_one"] = round(
        many["warmup_chunk_s"] / (seeds * one["warmup_chunk_s"]), 3)
    out["warmup_over_updating_S_seeds"] = round(many["warmup_chunk_s"] / many["updating_chunk_s"], 3)
    return out


def devices_child(D: int, chunks: int, learn: bool) -> dict:
    """Runs in a process started with D forced host devices."""
    import jax
    import numpy as np

    from qvpo_mjx.loop import Trainer
    from qvpo_mjx.train import train
    assert len(jax.devices()) >= D
    trainer = Trainer(preset_config(num_devices=D), "inverted_pendulum")
    state, run, compile_s = compile_and_first(trainer, [0])
    state, _ = run_chunks(trainer, state, run, 1)  # past the warm-up
    _, t = run_chunks(trainer, state, run, chunks)
    out = {"devices": D, "compile_s": round(compile_s, 2),
           "env_steps_per_s": round(chunks * trainer.chunk_env_steps / t, 1)}
    if learn:
        rows = train(preset_config(num_devices=D, num_seeds=4, total_steps=14_000),
                     "inverted_pendulum", seed=0, progress=False)
        returns = np.array([r["eval_return_mean"] for r in rows])  # (chunks, 4)
        out.update(eval_returns=returns.tolist(), env_steps=[r["env_steps"] for r in rows],
                   mean_return_per_seed=returns.mean(0).round(1).tolist(),
                   learn_wall_s=round(rows[-1]["wall_time_s"], 1))
    return out


def devices_part(chunks: int, learn: bool) -> dict:
    import numpy as np
    results = []
    for D in (1, 2):
        env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
        done = subprocess.run([sys.executable, __file__, "--child", str(D), "--chunks",
                               str(chunks)] + ([] if learn else ["--quick"]),
                              capture_output=True, text=True, env=env)
        if done.returncode:
            raise RuntimeError(done.stderr[-3000:])
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "eval_returns"}),
              flush=True)
    out = {"env": "inverted_pendulum", "preset": "cpu", "runs": results,
           "two_over_one_steps_per_s": round(results[1]["env_steps_per_s"]
                                             / results[0]["env_steps_per_s"], 3)}
    if learn:
        a = np.array(results[0]["mean_return_per_seed"])
        b = np.array(results[1]["mean_return_per_seed"])
        out["welch_t_mean_return"] = round(float(abs(a.mean() - b.mean()) / np.sqrt(
            a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b) + 1e-9)), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=["seeds", "devices", "warmup", "all"], default="all")
    parser.add_argument("--chunks", type=int, default=2, help="timed chunks per seed")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(HERE / "results" / "scale_out.json"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(devices_child(args.child, args.chunks, not args.quick)))
        return
    from common import machine_info, write_result
    result = {"machine": machine_info(), "quick": args.quick}
    if args.part in ("seeds", "all"):
        result["seeds"] = seeds_part([1, 2, 4] if args.quick else [1, 2, 4, 8], args.chunks)
    if args.part in ("devices", "all"):
        result["devices"] = devices_part(args.chunks, learn=not args.quick)
    if args.part in ("warmup", "all"):
        result["warmup"] = warmup_part(4, args.chunks)
    write_result(args.out, result)


if __name__ == "__main__":
    main()
