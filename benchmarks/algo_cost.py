"""What one update of each algorithm costs, at the sizes its paper runs (issue 26's comparison).

    python benchmarks/algo_cost.py                   # every algorithm, B 256, hidden 256
    python benchmarks/algo_cost.py --batch-size 1024 --algos qvpo sac

A diffusion policy's update costs many network passes (QVPO samples Kt candidates through T
denoising steps and scores them; QSM differentiates Q once per state; DACER backpropagates
through its chain; DIPO runs 20 ascent steps on Q and a 100-step target chain; SAC and TD3 run
one small MLP), and a user pays for them in every update. Each algorithm's critic step and actor step are
timed as in ``cost_model.py`` (a ``lax.scan`` of ``--scan`` steps in one compiled call, best of
``--repeats``; targets' Polyak steps included) on halfcheetah's sizes, with the config the
algorithm runs by default (``--algo NAME`` on the ``paper`` preset: QVPO T 20, Kt 64; QSM's
5-step vp chain; DACER's 20-step one, its entropy estimate timed apart and amortised over
``dacer_alpha_every`` actor updates; DIPO's 100-step cosine chain). Ratios mean something on
any machine when measured side by side in one run; absolute times only on the machine named in
the result. Writes
``benchmarks/results/algo_cost.json``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, write_result  # noqa: E402
from cost_model import _time_scanned  # noqa: E402
from update_speed import ACTION_SIZE, OBS_SIZE, make_batch  # noqa: E402

from qvpo_mjx import algorithms  # noqa: E402
from qvpo_mjx.algorithms import dacer  # noqa: E402
from qvpo_mjx.config import ALGOS, QVPOConfig  # noqa: E402
from qvpo_mjx.presets import preset_values  # noqa: E402


def _time_call(fn, *args, repeats: int) -> float:
    """Seconds of one call of the compiled ``fn(*args)``, best of ``repeats`` after a warm one."""
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def algo_cost(algo: str, batch_size: int, hidden_size: int, scan: int, repeats: int) -> dict:
    """ms of one critic step and one actor step of ``algo`` at the paper preset's settings."""
    values, _ = preset_values("paper", {"algo": algo, "batch_size": batch_size,
                                        "hidden_size": hidden_size})
    config = QVPOConfig.from_dict(values)
    algorithm = algorithms.get(algo)
    state = algorithm.init(jax.random.PRNGKey(0), OBS_SIZE, ACTION_SIZE, config)
    batch = make_batch(jax.random.PRNGKey(1), batch_size)
    key = jax.random.PRNGKey(2)
    actor_data = batch.obs if algorithm.actor_own_batch else batch
    if algorithm.improves_actions:  # DIPO: rows of the buffer's improved-action column
        state = state.replace(improved=batch.action)
        actor_data = algorithms.ActorRows(rows=jnp.arange(batch_size), obs=batch.obs)
    entropy_s = None
    if algo == "dacer":
        # Its entropy estimate (dacer_entropy_samples chains per state and a mixture fit) runs
        # once in dacer_alpha_every actor updates: timed apart and amortised, and kept out of
        # the scanned actor steps (which start past its turn).
        entropy_s = _time_call(lambda s, o: dacer.entropy_estimate(s, o, key), state, batch.obs,
                               repeats=repeats)
        state = state.replace(actor_updates=state.actor_updates + 1)
    critic_s, critic_compile = _time_scanned(
        lambda s, b: algorithm.critic_step(s, b, key), state, batch, scan, repeats)
    actor_s, actor_compile = _time_scanned(
        lambda s, x: algorithm.actor_step(s, x, key), state, actor_data, scan, repeats)
    ratio = config.critic_updates_per_actor
    entropy_share = 0.0 if entropy_s is None else entropy_s / config.dacer_alpha_every
    return {"algo": algo, "batch_size": batch_size, "hidden_size": hidden_size,
            "diffusion_steps": (config.diffusion_steps
                                if algo in ("qvpo", "qsm", "dacer", "dipo") else None),
            "critic_updates_per_actor": ratio, "critic_ms": 1e3 * critic_s,
            "actor_ms": 1e3 * actor_s,
            "entropy_ms": None if entropy_s is None else 1e3 * entropy_s,
            # what one critic update costs with its share of the actor's (and of DACER's
            # entropy estimate)
            "ms_per_update": 1e3 * (critic_s + (actor_s + entropy_share) / ratio),
            "critic_compile_s": critic_compile, "actor_compile_s": actor_compile}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--scan", type=int, default=None, help="updates per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/algo_cost.json")
    args = parser.parse_args(argv)
    scan = args.scan or (20 if jax.default_backend() == "gpu" else 4)
    rows = []
    for algo in args.algos:
        row = algo_cost(algo, args.batch_size, args.hidden_size, scan, args.repeats)
        rows.append(row)
        print(f"  {algo:<5} critic {row['critic_ms']:8.2f} ms, actor {row['actor_ms']:8.2f} ms "
              f"(every {row['critic_updates_per_actor']}), {row['ms_per_update']:8.2f} ms per "
              f"update", flush=True)
    base = next((r for r in rows if r["algo"] == "sac"), rows[0])
    for row in rows:
        row["relative_to_" + base["algo"]] = row["ms_per_update"] / base["ms_per_update"]
    result = {"machine": machine_info(), "obs_size": OBS_SIZE, "action_size": ACTION_SIZE,
              "scan": scan, "repeats": args.repeats, "rows": rows}
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
