"""The cost model of a QVPO run: what one critic update, one actor update and one vector step
cost on this machine, and the wall-clock of a run predicted from them.

    python benchmarks/cost_model.py                  # updates vs B, Kt, T; vector step vs N
    python benchmarks/cost_model.py --quick          # CPU-sized sweep
    python benchmarks/cost_model.py --part updates --batch-sizes 256 1024 4096 16384
    python benchmarks/cost_model.py --predict-only   # predictions from results/cost_model.json

A run of E env steps on N envs with U critic updates of batch B per vector step, the actor
taking every r-th, after W warm-up steps, costs about

    E / N x t_step(N)  +  (E - W) / N x U x (t_critic(B) + t_actor(B) / r)

(evaluation aside). Updates run one after another, so on a GPU, where t_critic and t_actor are
flat in B up to the width that fills the chip, the number of sequential updates is what a user
waits for; on a CPU they grow about linearly with B. Each update is timed as a ``lax.scan`` of
``--scan`` updates inside one compiled call (as in the training loop: no per-call dispatch), the
best of ``--repeats``; compile times are reported apart. Writes
``benchmarks/results/cost_model.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, write_result  # noqa: E402

from qvpo_mjx import agent  # noqa: E402
from qvpo_mjx.config import QVPOConfig  # noqa: E402

from update_speed import ACTION_SIZE, OBS_SIZE, make_batch  # noqa: E402  (halfcheetah's sizes)


def _time_scanned(step, state, inputs, scan: int, repeats: int) -> tuple[float, float]:
    """(seconds per step, compile seconds) of ``scan`` calls of ``step(state, input)`` in one
    compiled scan; the same inputs every step (the cost does not depend on their values)."""
    def run(state):
        return jax.lax.scan(lambda s, _: (step(s, inputs)[0], None), state, None, scan)[0]

    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(state).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(state))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(state))
        best = min(best, time.perf_counter() - t0)
    return best / scan, compile_s


def update_cost(config: QVPOConfig, scan: int, repeats: int) -> dict:
    """Seconds of one critic step and one actor step (Polyak step included) at ``config``."""
    state = agent.init(jax.random.PRNGKey(0), OBS_SIZE, ACTION_SIZE, config)
    batch = make_batch(jax.random.PRNGKey(1), config.batch_size)
    key = jax.random.PRNGKey(2)
    critic_s, critic_compile = _time_scanned(
        lambda s, b: agent.critic_step(s, b, key), state, batch, scan, repeats)
    actor_s, actor_compile = _time_scanned(
        lambda s, o: agent.actor_step(s, o, key), state, batch.obs, scan, repeats)
    return {"batch_size": config.batch_size, "train_samples": config.train_samples,
            "diffusion_steps": config.diffusion_steps, "hidden_size": config.hidden_size,
            "critic_ms": 1e3 * critic_s, "actor_ms": 1e3 * actor_s,
            "critic_compile_s": critic_compile, "actor_compile_s": actor_compile}


def update_sweep(batch_sizes, train_samples, diffusion_steps, hidden: int, scan: int,
                 repeats: int, base: QVPOConfig, budget_s: float = math.inf) -> list[dict]:
    """Every (B, Kt, T) combination, smallest first; stops starting new ones past the budget."""
    rows, start = [], time.perf_counter()
    combos = sorted(itertools.product(batch_sizes, train_samples, diffusion_steps),
                    key=lambda c: c[0] * c[1] * c[2])
    for B, Kt, T in combos:
        if time.perf_counter() - start > budget_s:
            print(f"  budget of {budget_s:.0f} s spent: B {B}, Kt {Kt}, T {T} not measured",
                  flush=True)
            continue
        cfg = base.replace(batch_size=B, train_samples=Kt, diffusion_steps=T, hidden_size=hidden)
        try:
            row = update_cost(cfg, scan, repeats)
        except Exception as e:  # out of memory at the widest batches: record it, go on
            row = {"batch_size": B, "train_samples": Kt, "diffusion_steps": T,
                   "hidden_size": hidden, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        rows.append(row)
        if "error" in row:
            print(f"  B {B:>6} Kt {Kt:>3} T {T:>3}: {row['error']}", flush=True)
        else:
            print(f"  B {B:>6} Kt {Kt:>3} T {T:>3}: critic {row['critic_ms']:9.3f} ms, actor "
                  f"{row['actor_ms']:9.3f} ms (compile {row['critic_compile_s']:.1f} + "
                  f"{row['actor_compile_s']:.1f} s)", flush=True)
    return rows


def vector_step_sweep(env_names, num_envs, steps: int, repeats: int, preset: str) -> list[dict]:
    """Seconds of one vector step (act with the preset's networks + physics + insert) and of
    the physics alone, per env and N."""
    from loop_speed import bench  # builds MJX envs: imported only when asked for

    rows = []
    for env_name, N in itertools.product(env_names, num_envs):
        try:
            r = bench(env_name, N, steps, repeats, preset, parts=("physics", "acting"))
            row = {"env": env_name, "num_envs": N,
                   "physics_steps_per_s": r["physics"]["env_steps_per_s"],
                   "acting_steps_per_s": r["acting"]["env_steps_per_s"],
                   "vector_step_ms": 1e3 * r["acting"]["seconds_per_vector_step"],
                   "physics_compile_s": r["physics"]["compile_s"],
                   "acting_compile_s": r["acting"]["compile_s"]}
            print(f"  {env_name:<12} N {N:>6}: physics {row['physics_steps_per_s']:>11,.0f}/s, "
                  f"acting {row['acting_steps_per_s']:>11,.0f}/s, vector step "
                  f"{row['vector_step_ms']:.2f} ms", flush=True)
        except Exception as e:
            row = {"env": env_name, "num_envs": N, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            print(f"  {env_name:<12} N {N:>6}: {row['error']}", flush=True)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Prediction


def _interp_loglog(x: float, xs, ys) -> float:
    """y(x) through measured points, linear in log-log; beyond the ends, the end segment's
    slope (one point: constant)."""
    xs, ys = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    order = np.argsort(xs)
    xs, ys = xs[order], ys[order]
    lx = math.log(x)
    if len(xs) == 1:
        return float(np.exp(ys[0]))
    i = int(np.clip(np.searchsorted(xs, lx) - 1, 0, len(xs) - 2))
    slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
    return float(np.exp(ys[i] + slope * (lx - xs[i])))


def predict(results: dict, *, num_envs: int, batch_size: int, updates_per_step: float,
            critic_updates_per_actor: int, env_steps: int, start_steps: int = 0,
            env: str | None = None, train_samples: int = 64, diffusion_steps: int = 20) -> dict:
    """Predicted seconds of a run from measured costs (see the module docstring)."""
    ups = [r for r in results["updates"] if "error" not in r
           and r["train_samples"] == train_samples and r["diffusion_steps"] == diffusion_steps]
    if not ups:
        raise ValueError(f"no update costs measured at train_samples {train_samples}, "
                         f"diffusion_steps {diffusion_steps}")
    B = [r["batch_size"] for r in ups]
    critic = _interp_loglog(batch_size, B, [r["critic_ms"] for r in ups]) / 1e3
    actor = _interp_loglog(batch_size, B, [r["actor_ms"] for r in ups]) / 1e3
    steps = [r for r in results.get("vector_steps", []) if "error" not in r
             and (env is None or r["env"] == env)]
    step_s = (_interp_loglog(num_envs, [r["num_envs"] for r in steps],
                             [r["vector_step_ms"] for r in steps]) / 1e3 if steps else 0.0)
    vector_steps = env_steps / num_envs
    updating = max(0.0, (env_steps - start_steps) / num_envs)
    critic_updates = updating * updates_per_step
    actor_updates = critic_updates / critic_updates_per_actor
    seconds = vector_steps * step_s + critic_updates * critic + actor_updates * actor
    return {"seconds": seconds, "minutes": seconds / 60, "critic_updates": critic_updates,
            "actor_updates": actor_updates, "sequential_updates": critic_updates + actor_updates,
            "critic_ms": 1e3 * critic, "actor_ms": 1e3 * actor,
            "vector_step_ms": 1e3 * step_s, "share_updates": 1 - vector_steps * step_s / seconds
            if seconds else 0.0}


def preset_scenario(preset: str, num_envs: int) -> dict:
    """:func:`predict`'s arguments for a run of ``preset`` at ``num_envs`` as the preset sets it
    (qvpo_mjx/presets.py: what N implies), to the preset's whole budget."""
    from qvpo_mjx.presets import preset_config
    cfg = preset_config(preset, {"num_envs": num_envs})
    return dict(num_envs=num_envs, batch_size=cfg.batch_size,
                updates_per_step=cfg.updates_per_step,
                critic_updates_per_actor=cfg.critic_updates_per_actor,
                env_steps=cfg.total_steps, start_steps=cfg.start_steps,
                train_samples=cfg.train_samples, diffusion_steps=cfg.diffusion_steps)


# Runs worth a prediction: the gpu preset as --num-envs 4096 gives it (the wide regime), the
# same preset's narrow rule at N = 64 and at N = 4,096 (what it ran before issue 24's rule),
# and gpu_wide.
SCENARIOS = {
    "gpu preset, 4096 envs (the wide regime, 50,000 vector steps)": preset_scenario("gpu", 4096),
    "gpu preset, 64 envs (the narrow rule, 1M env steps)": preset_scenario("gpu", 64),
    "the narrow rule at 4096 envs, 1M env steps (the gpu preset before issue 24)": dict(
        num_envs=4096, batch_size=256, updates_per_step=4096, critic_updates_per_actor=2,
        env_steps=1_000_000, start_steps=10_000),
    "gpu_wide preset, 4096 envs, 10M env steps": preset_scenario("gpu_wide", 4096),
}


def predictions(results: dict, env: str = "halfcheetah") -> dict:
    out = {}
    for name, s in SCENARIOS.items():
        try:
            out[name] = predict(results, env=env, **s)
        except ValueError as e:
            out[name] = {"error": str(e)}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a CPU-sized sweep")
    parser.add_argument("--part", choices=("updates", "env", "all"), default="all")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=None)
    parser.add_argument("--train-samples", nargs="+", type=int, default=None, help="Kt values")
    parser.add_argument("--diffusion-steps", nargs="+", type=int, default=None, help="T values")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--envs", nargs="+", default=["halfcheetah"])
    parser.add_argument("--num-envs", nargs="+", type=int, default=None)
    parser.add_argument("--env-preset", default="gpu",
                        help="networks of the acting policy in the vector-step timing")
    parser.add_argument("--scan", type=int, default=None, help="updates per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=math.inf,
                        help="seconds after which no new update configuration is started")
    parser.add_argument("--predict-only", action="store_true",
                        help="print predictions from --out's saved measurements")
    parser.add_argument("--out", default="benchmarks/results/cost_model.json")
    args = parser.parse_args(argv)

    if args.predict_only:
        results = json.loads(Path(args.out).read_text())
    else:
        gpu = jax.default_backend() == "gpu"
        quick = args.quick
        batch_sizes = args.batch_sizes or ([64, 256, 1024] if quick else [256, 1024, 4096, 16384])
        train_samples = args.train_samples or ([8, 64] if quick else [16, 64])
        diffusion_steps = args.diffusion_steps or ([5, 20] if quick else [5, 20])
        num_envs = args.num_envs or ([16, 64, 256] if quick else [256, 1024, 4096])
        scan = args.scan or (20 if gpu else 2)
        results = {"machine": machine_info(), "updates": [], "vector_steps": [],
                   "obs_size": OBS_SIZE, "action_size": ACTION_SIZE,
                   "note": "ms per update: lax.scan of `scan` updates in one call, best of "
                           "`repeats`; Polyak step included; paper config otherwise",
                   "scan": scan, "repeats": args.repeats}
        if args.part in ("updates", "all"):
            print(f"updates (obs {OBS_SIZE}, action {ACTION_SIZE}, hidden {args.hidden_size}):",
                  flush=True)
            results["updates"] = update_sweep(batch_sizes, train_samples, diffusion_steps,
                                              args.hidden_size, scan, args.repeats, QVPOConfig(),
                                              args.budget)
        if args.part in ("env", "all"):
            print(f"vector step (acting with the {args.env_preset} preset's networks):",
                  flush=True)
            steps = 4 if quick else 8
            results["vector_steps"] = vector_step_sweep(args.envs, num_envs, steps, args.repeats,
                                                        args.env_preset)
    if results["updates"]:
        results["predictions"] = predictions(results, env=args.envs[0])
        for name, p in results["predictions"].items():
            if "error" in p:
                print(f"  {name}: {p['error']}")
            else:
                print(f"  {name}: {p['minutes']:.1f} min predicted ({p['sequential_updates']:,.0f}"
                      f" sequential updates, {p['share_updates']:.0%} of the time in updates)")
    if not args.predict_only:
        write_result(args.out, results)
    return results


if __name__ == "__main__":
    main()
