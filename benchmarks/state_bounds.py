"""The largest observation and reward magnitudes of every registered task: the evidence behind
the config's ``divergence_bound`` (1e6), the magnitude past which a step counts as diverged
physics (envs.VecEnv).

    python benchmarks/state_bounds.py                  # every task, 32 envs x 1,000 steps
    python benchmarks/state_bounds.py --env halfcheetah hopper --steps 300
    python benchmarks/state_bounds.py --resume        # after a cut-short run: the tasks left

Each task runs ``--num-envs`` envs for ``--steps`` steps under two behaviours: uniform random
actions in [-1, 1], and bang-bang actions (each env holds a random corner of the action box for
50 steps: the violent, saturating behaviour of an early or diverging policy). Episodes reset as
in training; steps VecEnv already flags as non-finite are counted apart and left out of the
maxima. Writes ``benchmarks/results/state_bounds.json``: per task the max |obs| and |reward|,
and the ratio of the bound to the largest of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

# Magnitudes, not speed, are measured: XLA's optimisation passes off halve each task's compile.
jax.config.update("jax_disable_most_optimizations", True)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import machine_info, write_result  # noqa: E402

import envs  # noqa: E402
from qvpo_mjx.config import QVPOConfig  # noqa: E402

HOLD = 50  # bang-bang: steps each corner of the action box is held


def maxima(task: str, num_envs: int, steps: int, seed: int) -> dict:
    """{behaviour: {max_abs_obs, max_abs_reward, nonfinite_steps}} for one task."""
    vec = envs.VecEnv(envs.make(task), num_envs, 1000)
    d = vec.action_size

    @jax.jit
    def run(key, bang):
        """bang: a traced bool, so both behaviours share one compile."""
        k_reset, k_steps = jax.random.split(key)

        def body(carry, xs):
            state, corner = carry
            t, k = xs
            k_act, k_corner = jax.random.split(k)
            flip = jnp.sign(jax.random.uniform(k_corner, (num_envs, d), minval=-1, maxval=1))
            corner = jnp.where(t % HOLD == 0, flip, corner)
            uniform = jax.random.uniform(k_act, (num_envs, d), minval=-1, maxval=1)
            state, r = vec.step(state, jnp.where(bang, corner, uniform))
            ok = r.invalid == 0
            obs = jnp.where(ok[:, None], jnp.abs(r.next_obs), 0.0).max()
            rew = jnp.where(ok, jnp.abs(r.reward), 0.0).max()
            return (state, corner), (obs, rew, r.invalid.sum())

        init = (vec.reset(k_reset), jnp.ones((num_envs, d)))
        _, (obs, rew, bad) = jax.lax.scan(body, init, (jnp.arange(steps),
                                                       jax.random.split(k_steps, steps)))
        return obs.max(), rew.max(), bad.sum()

    out = {}
    for name, bang in (("random", False), ("bang_bang", True)):
        obs, rew, bad = run(jax.random.PRNGKey(seed), jnp.asarray(bang))
        out[name] = {"max_abs_obs": float(obs), "max_abs_reward": float(rew),
                     "nonfinite_steps": int(bad)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", nargs="+", default=None, help="default: every registered task")
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(HERE / "results" / "state_bounds.json"))
    parser.add_argument("--resume", action="store_true",
                        help="keep the tasks --out already holds and measure the others")
    args = parser.parse_args()
    bound = QVPOConfig().divergence_bound
    tasks = args.env or [n for n in envs.names() if envs.spec(n).family != "user"]
    out = Path(args.out)
    rows = {}
    if args.resume and out.exists():  # a cut-short run: keep its tasks, measure the rest
        rows = json.loads(out.read_text())["tasks"]
    for task in tasks:
        if task in rows:
            continue
        began = time.perf_counter()
        behaviours = maxima(task, args.num_envs, args.steps, args.seed)
        largest = max(max(b["max_abs_obs"], b["max_abs_reward"]) for b in behaviours.values())
        rows[task] = {**behaviours, "bound_over_largest": bound / max(largest, 1e-30)}
        print(f"{task:26s} max|obs| random {behaviours['random']['max_abs_obs']:9.3g}, "
              f"bang-bang {behaviours['bang_bang']['max_abs_obs']:9.3g}; largest {largest:9.3g}: "
              f"bound / largest {bound / max(largest, 1e-30):8.3g} "
              f"({time.perf_counter() - began:.0f} s)", flush=True)
        # After every task: a run cut short keeps what it measured (--resume goes on).
        write_result(out, {"machine": machine_info(), "divergence_bound": bound,
                           "num_envs": args.num_envs, "steps": args.steps, "tasks": rows})


if __name__ == "__main__":
    main()
