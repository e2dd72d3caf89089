"""Env steps per second of the training loop beside the raw physics rate that bounds it.

    python benchmarks/loop_speed.py            # inverted_pendulum and halfcheetah, N in 1 16 256
    python benchmarks/loop_speed.py --quick    # fewer timed steps
    python benchmarks/loop_speed.py --time-to-return   # also: CPU preset to return 1000, cold
    python benchmarks/loop_speed.py --playground       # MuJoCo Playground (DM Control) tasks:
        # physics and acting at N in 16 256 1024 -> results/loop_speed_playground.json

For each env and N, in one process: ``physics`` (random actions, auto-reset: the ceiling),
``acting`` (best-of-behavior_samples diffusion sampling + physics + replay insert, no updates) and
``loop`` (the real vector step, after warm-up, at the preset's updates_per_step). Network sizes,
batch and updates per step are the ``--preset``'s (default ``cpu``). Compile time is excluded from rates and reported separately. Writes
``benchmarks/results/loop_speed.json``.

``--playground``: ``physics`` and ``acting`` only (no updates), for every MuJoCo Playground DM
Control task (``envs.names("playground")``; ``--envs`` picks some), one task per physics model first
(the tasks of a domain share the model and differ only in reward and observation), the cheap ones
before the expensive ones. Each timed call is repeated until ``--min-seconds`` of timed calls (at
least ``repeats``); rows carry the best and the median call. The JSON is rewritten after every row;
``--resume`` keeps the rows already in it; ``--max-minutes`` stops starting rows after that long
and lists what it skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
    stats = timed_scan_stats(step_fn, state, length, repeats)
    return stats["best_s"], stats["compile_s"]


def timed_scan_stats(step_fn, state, length: int, repeats: int,
                     min_seconds: float = 0.0) -> dict:
    """A `length`-step scan of ``step_fn``, compiled once (timed apart), called once to warm up,
    then ``repeats`` times and more until the timed calls add up to ``min_seconds``:
    {best_s, median_s, calls, compile_s}. State is not donated."""
    run = jax.jit(lambda s: jax.lax.scan(lambda c, _: (step_fn(c), None), s, None, length)[0])
    t0 = time.perf_counter()
    compiled = run.lower(state).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(state))
    times: list[float] = []
    while len(times) < repeats or sum(times) < min_seconds:
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(state))
        times.append(time.perf_counter() - t0)
    return {"best_s": min(times), "median_s": statistics.median(times), "calls": len(times),
            "compile_s": compile_s}


PARTS = ("physics", "acting", "loop")


def bench(env_name: str, num_envs: int, steps: int, repeats: int, preset: str = "cpu",
          parts: tuple[str, ...] = PARTS, overrides: dict | None = None,
          min_seconds: float = 0.0) -> dict:
    """Rates of the ``parts`` (of :data:`PARTS`) for one env and N, networks from ``preset``
    with ``overrides``. ``env_steps_per_s`` is from the best timed call, ``median_...`` from the
    median; each part is called ``repeats`` times and more until ``min_seconds`` of calls."""
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
        t = timed_scan_stats(fn, init, steps, repeats, min_seconds)
        seconds, compile_s = t["best_s"], t["compile_s"]
        rows[name] = {"env_steps_per_s": N * steps / seconds, "compile_s": compile_s,
                      "timed_env_steps": N * steps, "seconds_per_vector_step": seconds / steps,
                      "median_env_steps_per_s": N * steps / t["median_s"],
                      "timed_calls": t["calls"]}
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


# One task per physics model first (the others of a domain share its model), roughly cheapest
# first, so a time budget (--max-minutes) cuts the expensive and the redundant rows.
PLAYGROUND_ORDER = (
    "CartpoleSwingup", "PendulumSwingup", "PointMass", "AcrobotSwingup", "ReacherEasy",
    "BallInCup", "FingerSpin", "CheetahRun", "WalkerWalk", "HopperHop", "FishSwim",
    "SwimmerSwimmer6", "HumanoidWalk",
    "CartpoleBalance", "CartpoleBalanceSparse", "CartpoleSwingupSparse", "AcrobotSwingupSparse",
    "ReacherHard", "FingerTurnEasy", "FingerTurnHard", "WalkerRun", "WalkerStand", "HopperStand",
    "HumanoidRun", "HumanoidStand")
PLAYGROUND_NUM_ENVS = (16, 256, 1024)
# Tasks that run the physics model of the one named (same MJCF and solver settings; the reward,
# and for some the observation, differ).
PLAYGROUND_SAME_MODEL = {
    "CartpoleBalance": "CartpoleSwingup", "CartpoleBalanceSparse": "CartpoleSwingup",
    "CartpoleSwingupSparse": "CartpoleSwingup", "AcrobotSwingupSparse": "AcrobotSwingup",
    "ReacherHard": "ReacherEasy", "FingerTurnEasy": "FingerSpin", "FingerTurnHard": "FingerSpin",
    "WalkerRun": "WalkerWalk", "WalkerStand": "WalkerWalk", "HopperStand": "HopperHop",
    "HumanoidRun": "HumanoidWalk", "HumanoidStand": "HumanoidWalk"}


def playground_steps(n: int, quick: bool = False) -> int:
    """Vector steps per timed call at N envs: 4096 env steps (calls repeat to --min-seconds)."""
    steps = max(4, 4096 // n) if n < 1024 else 4
    return max(2, steps // 4) if quick else steps


def playground_task_info(env_name: str) -> dict:
    import envs
    env = envs.make(env_name)
    inner = env.unwrapped
    return {"observation_size": env.observation_size, "action_size": env.action_size,
            "ctrl_dt": float(inner.dt), "sim_dt": float(inner.sim_dt),
            "substeps": int(round(inner.dt / inner.sim_dt)), "nv": int(env.mjx_model.nv),
            **envs.solver_settings(env)}


def main_playground(args) -> dict:
    """Physics and acting steps/s for the Playground tasks; writes after every row."""
    import envs

    known = envs.names("playground")
    tasks = args.envs if args.envs else [t for t in PLAYGROUND_ORDER if t in known] + sorted(
        set(known) - set(PLAYGROUND_ORDER))
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise SystemExit(f"not Playground tasks: {', '.join(unknown)}")
    num_envs = args.num_envs or list(PLAYGROUND_NUM_ENVS)
    skip = {tuple(s.split("/")) for s in args.skip}
    out = Path(args.out or "benchmarks/results/loop_speed_playground.json")
    results: dict = {"rates": {}, "tasks": {}, "skipped": {}}
    if args.resume and out.exists():
        results.update(json.loads(out.read_text()))
        results.setdefault("skipped", {})
    results.update(machine=machine_info(), preset=args.preset, parts=["physics", "acting"],
                   same_model_as=PLAYGROUND_SAME_MODEL,
                   commands=results.get("commands", []) + [machine_info()["command"]],
                   note=(f"physics = random actions + auto-reset; acting = best-of-Kb diffusion "
                         f"sampling with the {args.preset} preset's networks + physics + replay "
                         f"insert, no updates. env_steps_per_s from the best timed call, "
                         f"median_env_steps_per_s from the median; compile_s apart. "
                         f"load_avg_1min: os.getloadavg() before and after the row (the machine "
                         f"is shared; 2 cores)."))
    t_start = time.perf_counter()
    print(f"{'env':<22} {'N':>5} {'physics/s':>10} {'median':>10} {'acting/s':>10} {'median':>10} "
          f"{'share':>6} {'compile s (phys/act)':>21} {'load':>9}", flush=True)
    for env_name in tasks:
        for n in num_envs:
            key = f"{env_name}/{n}"
            if key in results["rates"]:
                continue
            if (env_name, str(n)) in skip:
                results["skipped"][key] = args.skip_reason or "skipped on request (--skip)"
                continue
            if args.max_minutes and time.perf_counter() - t_start > 60 * args.max_minutes:
                results["skipped"][key] = f"time budget of {args.max_minutes} min spent"
                continue
            results["tasks"].setdefault(env_name, playground_task_info(env_name))
            load0 = os.getloadavg()[0]
            t_row = time.perf_counter()
            r = bench(env_name, n, playground_steps(n, args.quick), 2 if args.quick else 3,
                      args.preset, parts=("physics", "acting"), min_seconds=args.min_seconds)
            r.pop("updates_per_step", None)
            r["load_avg_1min"] = [load0, os.getloadavg()[0]]
            r["row_wall_s"] = time.perf_counter() - t_row
            results["rates"][key] = r
            results["skipped"].pop(key, None)
            p, a = r["physics"], r["acting"]
            print(f"{env_name:<22} {n:>5} {p['env_steps_per_s']:>10.0f} "
                  f"{p['median_env_steps_per_s']:>10.0f} {a['env_steps_per_s']:>10.0f} "
                  f"{a['median_env_steps_per_s']:>10.0f} {a['share_of_physics']:>6.0%} "
                  f"{p['compile_s']:>12.1f}/{a['compile_s']:<8.1f} "
                  f"{r['load_avg_1min'][0]:>4.1f}/{r['load_avg_1min'][1]:.1f}", flush=True)
            write_result(out, results)
    for key, why in results["skipped"].items():
        print(f"skipped {key}: {why}")
    write_result(out, results)
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--envs", nargs="+", default=None,
                        help="default: inverted_pendulum halfcheetah; with --playground, every "
                             "Playground task")
    parser.add_argument("--num-envs", nargs="+", type=int, default=None,
                        help="default: 1 16 256; with --playground, 16 256 1024")
    parser.add_argument("--playground", action="store_true",
                        help="physics and acting rates of the MuJoCo Playground DM Control tasks; "
                             "writes results/loop_speed_playground.json")
    parser.add_argument("--min-seconds", type=float, default=1.0,
                        help="--playground: repeat each timed call to at least this long in all")
    parser.add_argument("--max-minutes", type=float, default=0.0,
                        help="--playground: start no row after this many minutes (0: no limit)")
    parser.add_argument("--skip", nargs="+", default=[], metavar="TASK/N",
                        help="--playground: rows not to run (recorded as skipped)")
    parser.add_argument("--skip-reason", default=None, help="--playground: why (recorded)")
    parser.add_argument("--resume", action="store_true",
                        help="--playground: keep the rows already in --out, run the rest")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="network sizes, batch and updates_per_step from this preset")
    parser.add_argument("--time-to-return", action="store_true",
                        help="also time the CPU preset to eval return 1000 (seeds 0, 1, 2)")
    parser.add_argument("--out", default=None,
                        help="default: benchmarks/results/loop_speed.json (--playground: "
                             "loop_speed_playground.json)")
    args = parser.parse_args(argv)
    if args.playground:
        return main_playground(args)
    args.envs = args.envs or ["inverted_pendulum", "halfcheetah"]
    args.num_envs = args.num_envs or [1, 16, 256]
    args.out = args.out or "benchmarks/results/loop_speed.json"
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
