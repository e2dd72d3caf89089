"""MJX solver settings: physics speed against whether the task still behaves.

    python benchmarks/env_settings.py [--quick] [--envs halfcheetah hopper walker2d]

For each contact task and each setting (as Brax ships it; ``ls_iterations`` 4; ``iterations`` 2
with ``ls_iterations`` 4), in one process: env steps per second at N envs with random actions, and
a return-scale check: the mean return over a fixed horizon of (a) uniform random actions and
(b) a fixed open-loop sinusoidal gait, from the same seeds, compared with the shipped setting's.
A setting that changes the physics materially shows up as a return ratio far from 1. Writes
``benchmarks/results/env_settings.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, write_result  # noqa: E402

import envs  # noqa: E402
from envs.registry import solver_settings  # noqa: E402

SETTINGS = {
    "shipped": {"iterations": None, "ls_iterations": None},
    "ls4": {"iterations": None, "ls_iterations": 4},
    "it2_ls4": {"iterations": 2, "ls_iterations": 4},
}


def measure(env_name: str, setting: dict, num_envs: int, horizon: int, repeats: int) -> dict:
    # Resolve "shipped" explicitly: the registry's own defaults may already differ from Brax's.
    raw = envs.registry.spec(env_name).build()
    opts = {k: (v if v is not None else int(getattr(raw.sys.opt, k))) for k, v in setting.items()}
    env = envs.make(env_name, **opts)
    vec = envs.VecEnv(env, num_envs, episode_length=horizon)
    d = vec.action_size
    phases = jnp.linspace(0, 2 * jnp.pi, d, endpoint=False)

    def rollout(key, gait: bool):
        state = vec.reset(key)

        def body(c, t):
            state, ret, alive, key = c
            key, k = jax.random.split(key)
            random = jax.random.uniform(k, (num_envs, d), minval=-1, maxval=1)
            periodic = jnp.broadcast_to(jnp.sin(2 * jnp.pi * t / 25.0 + phases), (num_envs, d))
            state, r = vec.step(state, jnp.where(gait, periodic, random), auto_reset=False)
            return (state, ret + alive * r.reward, alive * (1 - r.done), key), None

        init = (state, jnp.zeros(num_envs), jnp.ones(num_envs), key)
        (_, ret, _, _), _ = jax.lax.scan(body, init, jnp.arange(horizon, dtype=jnp.float32))
        return ret

    run = jax.jit(rollout)
    t0 = time.perf_counter()
    compiled = run.lower(jax.random.PRNGKey(0), False).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(jax.random.PRNGKey(0), False))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        ret_random = jax.block_until_ready(compiled(jax.random.PRNGKey(1), False))
        best = min(best, time.perf_counter() - t0)
    ret_gait = compiled(jax.random.PRNGKey(1), True)
    return {"solver": solver_settings(env), "env_steps_per_s": num_envs * horizon / best,
            "compile_s": compile_s, "return_random": float(ret_random.mean()),
            "return_random_std": float(ret_random.std()), "return_gait": float(ret_gait.mean()),
            "finite": bool(jnp.all(jnp.isfinite(ret_random)) & jnp.all(jnp.isfinite(ret_gait)))}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--envs", nargs="+", default=["halfcheetah", "hopper", "walker2d"])
    parser.add_argument("--num-envs", type=int, default=128)
    parser.add_argument("--out", default="benchmarks/results/env_settings.json")
    args = parser.parse_args(argv)
    horizon = 100 if args.quick else 200
    results: dict = {"machine": machine_info(), "num_envs": args.num_envs, "horizon": horizon,
                     "envs": {}}
    print(f"{'env':<12} {'setting':<9} {'it/ls':>6} {'steps/s':>9} {'speedup':>8} "
          f"{'R random':>9} {'ratio':>6} {'R gait':>9} {'ratio':>6}")
    for env_name in args.envs:
        rows = {}
        for name, setting in SETTINGS.items():
            rows[name] = r = measure(env_name, setting, args.num_envs, horizon,
                                     1 if args.quick else 3)
            base = rows["shipped"]
            r["speedup"] = r["env_steps_per_s"] / base["env_steps_per_s"]
            r["return_random_ratio"] = r["return_random"] / base["return_random"]
            r["return_gait_ratio"] = r["return_gait"] / base["return_gait"]
            s = r["solver"]
            print(f"{env_name:<12} {name:<9} {s['iterations']:>3}/{s['ls_iterations']:<2} "
                  f"{r['env_steps_per_s']:>9.0f} {r['speedup']:>7.2f}x "
                  f"{r['return_random']:>9.2f} {r['return_random_ratio']:>6.2f} "
                  f"{r['return_gait']:>9.2f} {r['return_gait_ratio']:>6.2f}", flush=True)
        results["envs"][env_name] = rows
    write_result(args.out, results)
    return results


if __name__ == "__main__":
    main()
