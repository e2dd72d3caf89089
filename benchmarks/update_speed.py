"""Milliseconds per jitted QVPO ``update``, beside this machine's own matmul rate.

    python benchmarks/update_speed.py            # reference and small configs
    python benchmarks/update_speed.py --quick    # fewer repeats

Prints a table and writes ``benchmarks/results/update_speed.json``. Figures from different runs are
not comparable on a machine whose speed drifts; compare only rows of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, write_result  # noqa: E402

from qvpo_mjx import agent, diffusion, networks  # noqa: E402
from qvpo_mjx.agent import selection as agent_selection  # noqa: E402
from qvpo_mjx.agent import updates as agent_update  # noqa: E402
from qvpo_mjx.config import QVPOConfig  # noqa: E402

# halfcheetah's sizes: the update's cost is nearly all hidden-layer matmuls, so these stand for any
# locomotion task.
OBS_SIZE, ACTION_SIZE = 17, 6

CONFIGS = {
    "reference": QVPOConfig(),  # batch 256, 64 train samples, 20 steps
    "small": QVPOConfig(batch_size=64, train_samples=8, diffusion_steps=5),
}


def update_flops(cfg: QVPOConfig, obs: int = OBS_SIZE, act: int = ACTION_SIZE) -> float:
    """Multiply-add count x 2 of one update's matmuls (the forward passes; backward counted 2x)."""
    H, T, B = cfg.hidden_size, cfg.diffusion_steps, cfg.batch_size
    trunk = act * H + 2 * H * H + H * act  # per candidate-step, with the split first layer
    q_net = (obs + act) * H + 2 * H * H + H
    sampling = B * (cfg.train_samples + cfg.target_samples) * T * trunk
    scoring = 2 * B * (cfg.train_samples + cfg.target_samples) * q_net
    n_loss = B * cfg.chosen * (1 + cfg.entropy_samples)
    time_mlp = 32 * H + H * 32 + 32 * H
    actor_loss = 3 * n_loss * (trunk + time_mlp)
    critic_loss = 3 * 2 * B * q_net
    return 2.0 * (sampling + scoring + actor_loss + critic_loss)


def make_batch(key: jax.Array, B: int) -> agent.Transition:
    k = jax.random.split(key, 4)
    return agent.Transition(
        obs=jax.random.normal(k[0], (B, OBS_SIZE)),
        action=jax.random.uniform(k[1], (B, ACTION_SIZE), minval=-1.0, maxval=1.0),
        reward=jax.random.normal(k[2], (B,)),
        next_obs=jax.random.normal(k[3], (B, OBS_SIZE)),
        terminated=jnp.zeros((B,)))


def time_calls(fn, args, repeats: int) -> list[float]:
    out = fn(*args)
    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return times


def _plain_sample_candidates(state, actor_params, obs, key, num_samples, noise_ratio):
    """The straightforward sampler: the whole network, concat input included, per candidate-step."""
    B, T, d = obs.shape[0], state.schedule.num_steps, state.structure.action_size
    k_start, k_noise = jax.random.split(key)
    x_T = jax.random.normal(k_start, (B, num_samples, d))
    noise = jax.random.normal(k_noise, (T, B, num_samples, d))
    obs_k = jnp.broadcast_to(obs[:, None, :], (B, num_samples, obs.shape[-1]))

    def eps_fn(x, t):
        return state.actor.apply(actor_params, x, jnp.full(x.shape[:-1], t), obs_k)

    return diffusion.sample(eps_fn, state.schedule, x_T, noise, noise_ratio)


@contextlib.contextmanager
def plain_variant():
    """Swap in jax.nn.mish and the unsplit first layer: the version without the exact savings."""
    # Every module that calls the sampler by name: the actions' and the updates'.
    users = (agent_selection, agent_update)
    saved = networks.mish, [m.sample_candidates for m in users]
    networks.mish = jax.nn.mish
    for m in users:
        m.sample_candidates = _plain_sample_candidates
    jax.clear_caches()  # jit caches key on the function object, not on the globals it reads
    try:
        yield
    finally:
        networks.mish = saved[0]
        for m, fn in zip(users, saved[1]):
            m.sample_candidates = fn
        jax.clear_caches()


def bench_update(cfg: QVPOConfig, repeats: int) -> dict:
    key = jax.random.PRNGKey(0)
    state = agent.init(key, OBS_SIZE, ACTION_SIZE, cfg)
    batch = make_batch(jax.random.PRNGKey(1), cfg.batch_size)
    update = jax.jit(agent.update)
    t0 = time.perf_counter()
    compiled = update.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - t0
    times = time_calls(compiled, (state, batch, key), repeats)
    median = statistics.median(times)
    flops = update_flops(cfg)
    return {"ms_median": 1e3 * median, "ms_min": 1e3 * min(times), "compile_s": compile_s,
            "gflop": flops / 1e9, "gflops_per_s": flops / median / 1e9, "repeats": repeats}


def bench_matmul(repeats: int) -> dict:
    a = jax.random.normal(jax.random.PRNGKey(0), (16384, 256))
    b = jax.random.normal(jax.random.PRNGKey(1), (256, 256))
    f = jax.jit(lambda a, b: a @ b)
    times = time_calls(f, (a, b), repeats)
    flops = 2.0 * 16384 * 256 * 256
    return {"ms_median": 1e3 * statistics.median(times),
            "gflops_per_s": flops / statistics.median(times) / 1e9}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", default="benchmarks/results/update_speed.json")
    args = parser.parse_args(argv)
    repeats = {"reference": 3 if args.quick else 10, "small": 20 if args.quick else 200}

    matmul = bench_matmul(20 if args.quick else 100)
    rows = {}
    for name in args.configs:  # interleaved, so drift hits both variants alike
        rows[name] = bench_update(CONFIGS[name], repeats[name])
        with plain_variant():
            rows[name + "/plain"] = bench_update(CONFIGS[name], repeats[name])
        rows[name]["speedup_vs_plain"] = rows[name + "/plain"]["ms_median"] / rows[name]["ms_median"]
    print("'plain' = the same update with jax.nn.mish and the unsplit first layer (no exact savings)")
    print(f"matmul 16384x256 @ 256x256: {matmul['ms_median']:.2f} ms, "
          f"{matmul['gflops_per_s']:.1f} GFLOP/s")
    print(f"{'config':<16} {'ms/update':>10} {'min ms':>8} {'compile s':>10} {'GFLOP':>7} "
          f"{'GFLOP/s':>8} {'of matmul':>9}")
    for name, r in rows.items():
        r["share_of_matmul_rate"] = r["gflops_per_s"] / matmul["gflops_per_s"]
        speedup = f"{r['speedup_vs_plain']:.2f}x vs plain" if "speedup_vs_plain" in r else ""
        print(f"{name:<16} {r['ms_median']:>10.2f} {r['ms_min']:>8.2f} {r['compile_s']:>10.2f} "
              f"{r['gflop']:>7.2f} {r['gflops_per_s']:>8.1f} {r['share_of_matmul_rate']:>9.0%}  {speedup}")
    result = {"machine": machine_info(), "matmul_16384x256x256": matmul, "updates": rows,
              "configs": {n: CONFIGS[n].to_dict() for n in args.configs}}
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
