"""Env steps per second of the training loop beside the raw physics rate that bounds it.

    python benchmarks/loop_speed.py            # inverted_pendulum and halfcheetah, N in 1 16 256
    python benchmarks/loop_speed.py --quick    # fewer timed steps
    python benchmarks/loop_speed.py --time-to-return   # also: CPU preset to return 1000, cold

For each env and N, in one process: ``physics`` (random actions, auto-reset: the ceiling),
``acting`` (best-of-behavior_samples diffusion sampling + physics + replay insert, no updates) and
``loop`` (the real vector step, after warm-up, at the preset's updates_per_step). Network sizes,
batch and updates per step are the ``--preset``'s (default ``cpu``). Compile time is excluded from rates and reported separately. Writes
``benchmarks/results/loop_speed.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, write_result  # noqa: E402

from qvpo_mjx import agent, replay  # noqa: E402
from qvpo_mjx.config import QVPOConfig  # noqa: E402
from qvpo_mjx.loop import Trainer  # noqa: E402
from qvpo_mjx.presets import PRESETS, preset_config  # noqa: E402
from qvpo_mjx.train import train  # noqa: E402


def timed_scan(step_fn, state, length: int, repeats: int) -> tuple[float, float]:
    """(seconds per call of a `length`-step scan, compile seconds); state is not donated."""
    run = jax.jit(lambda s: jax.lax.scan(lambda c, _: (step_fn(c), None), s, None, length)[0])
    t0 = time.perf_counter()
    compiled = run.lower(state).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(state))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(state))
        best = min(best, time.perf_counter() - t0)
    return best, compile_s


PARTS = ("physics", "acting", "loop")


def bench(env_name: str, num_envs: int, steps: int, repeats: int, preset: str = "cpu",
          parts: tuple[str, ...] = PARTS, overrides: dict | None = None) -> dict:
    """Rates of the ``parts`` (of :data:`PARTS`) for one env and N, networks from ``preset``
    with ``overrides``."""
    base = preset_config(preset, {"num_envs": num_envs, **(overrides or {})})
    warmup = max(base.batch_size, num_envs)
    cfg = base.replace(start_steps=warmup, eval_interval=num_envs,
                       replay_size=max(PRESETS[preset]["config"].get("replay_size", 0),
                                       4 * warmup, 100_000))
    trainer = Trainer(cfg, env_name)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    vec, N, d = trainer.vec, num_envs, trainer.vec.action_size
    if "loop" in parts:
        # Run the warm-up, so the timed loop acts with the policy and updates every vector step.
        state = jax.jit(lambda s: jax.lax.scan(lambda c, _: trainer.vector_step(c), s, None,
                                               -(-warmup // N))[0])(state)

    def physics(c):
        env_state, key = c
        key, k = jax.random.split(key)
        env_state, _ = vec.step(env_state, jax.random.uniform(k, (N, d), minval=-1, maxval=1))
        return env_state, key

    def acting(c):
        env_state, buf, key = c
        key, k = jax.random.split(key)
        obs = env_state.obs
        action = agent.act(state.agent, obs, k)
        env_state, r = vec.step(env_state, action)
        buf = replay.add(buf, agent.Transition(obs, action, r.reward, r.next_obs, r.terminated))
        return env_state, buf, key

    rows = {}
    for name, fn, init in [
        ("physics", physics, (state.env, state.key)),
        ("acting", acting, (state.env, state.replay, state.key)),
        ("loop", lambda s: trainer.vector_step(s)[0], state),
    ]:
        if name not in parts:
            continue
        seconds, compile_s = timed_scan(fn, init, steps, repeats)
        rows[name] = {"env_steps_per_s": N * steps / seconds, "compile_s": compile_s,
                      "timed_env_steps": N * steps, "seconds_per_vector_step": seconds / steps}
    for name in ("acting", "loop"):
        if name in rows and "physics" in rows:
            rows[name]["share_of_physics"] = (rows[name]["env_steps_per_s"]
                                              / rows["physics"]["env_steps_per_s"])
    rows["updates_per_step"] = cfg.updates_per_step
    return rows


def time_to_return(seed: int, threshold: float) -> dict:
    """The CPU preset on inverted_pendulum from a cold start (no compilation cache)."""
    cfg = QVPOConfig(**PRESETS["cpu"]["config"])
    t0 = time.perf_counter()
    hit = {}

    def progress(steps, row):
        if not hit and row["eval_return_mean"] >= threshold:
            hit.update(env_steps=steps, wall_s=time.perf_counter() - t0)

    rows = train(cfg, "inverted_pendulum", seed, None, progress=False, progress_fn=progress)
    return {"seed": seed, "threshold": threshold, "reached": bool(hit), **hit,
            "total_wall_s": time.perf_counter() - t0,
            "eval_returns": [r["eval_return_mean"] for r in rows]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--envs", nargs="+", default=["inverted_pendulum", "halfcheetah"])
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1, 16, 256])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="network sizes, batch and updates_per_step from this preset")
    parser.add_argument("--time-to-return", action="store_true",
                        help="also time the CPU preset to eval return 1000 (seeds 0, 1, 2)")
    parser.add_argument("--out", default="benchmarks/results/loop_speed.json")
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else 3
    results: dict = {"machine": machine_info(), "rates": {}}
    print(f"{'env':<20} {'N':>5} {'physics/s':>10} {'acting/s':>10} {'share':>6} "
          f"{'loop/s':>9} {'share':>6} {'compile s (phys/act/loop)':>26}")
    for env_name in args.envs:
        for n in args.num_envs:
            steps = max(4, (512 if args.quick else 2048) // n) if n < 256 else (4 if args.quick else 16)
            r = bench(env_name, n, steps, repeats, args.preset)
            results["rates"][f"{env_name}/{n}"] = r
            print(f"{env_name:<20} {n:>5} {r['physics']['env_steps_per_s']:>10.0f} "
                  f"{r['acting']['env_steps_per_s']:>10.0f} {r['acting']['share_of_physics']:>6.0%} "
                  f"{r['loop']['env_steps_per_s']:>9.0f} {r['loop']['share_of_physics']:>6.0%} "
                  f"{r['physics']['compile_s']:>8.1f}/{r['acting']['compile_s']:.1f}/"
                  f"{r['loop']['compile_s']:.1f}", flush=True)
    if args.time_to_return:
        results["time_to_1000"] = [time_to_return(s, 1000.0) for s in (0, 1, 2)]
        for r in results["time_to_1000"]:
            print(f"cpu preset, inverted_pendulum, seed {r['seed']}: "
                  + (f"return 1000 at {r['env_steps']} env steps, {r['wall_s']:.1f} s "
                     f"(compile included)" if r["reached"] else "did not reach 1000")
                  + f"; run {r['total_wall_s']:.1f} s")
    results["preset"] = args.preset
    results["note"] = (f"loop = vector step with the {args.preset} preset's updates_per_step "
                       f"updates after warm-up, with its network sizes and batch")
    write_result(args.out, results)
    return results


if __name__ == "__main__":
    main()
