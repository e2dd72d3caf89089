"""Checks run with two forced host devices: ``XLA_FLAGS=--xla_force_host_platform_device_count=2
python tests/two_devices.py CHECK DIR``; prints one JSON line. Driven by test_scale_out.py."""

import contextlib
import io
import json
import sys
from pathlib import Path

import jax
import numpy as np

from qvpo_mjx import cli, presets, rundir, train
from qvpo_mjx.interrupts import ChunkInterrupts
from qvpo_mjx.loop import Trainer
from test_loop import TINY, TINY_ENV, spy_on_batches
from test_train_cli import TINY_FLAGS


def curve_table(rows):
    """Every per-chunk value but the wall time, flattened; NaN where no value."""
    return np.array([np.hstack([np.ravel(v) for k, v in sorted(r.items()) if k != "wall_time_s"])
                     for r in rows], float)


def mechanics(tmp: Path) -> dict:
    assert len(jax.devices()) == 2
    # The runs below repeat one program; the cache turns the repeats into loads.
    jax.config.update("jax_compilation_cache_dir", str(tmp / "cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    # One seed (two seeds over two devices, vmap inside shard_map, is the CI learning test).
    cfg = TINY.replace(updates_per_step=1, num_devices=2, num_eval_envs=3)
    trainer = Trainer(cfg, TINY_ENV)
    state = trainer.init_seeds([0])
    run_chunk = trainer.compile_chunk(state)
    for _ in range(3):  # warm-up, then updates: one compilation must serve them all
        state, metrics = run_chunk(state)
    # Parameters are replicated: both devices must hold identical copies after updates.
    replicas_equal = all(
        np.array_equal(np.asarray(leaf.addressable_shards[0].data),
                       np.asarray(leaf.addressable_shards[1].data))
        for leaf in jax.tree.leaves(state.agent))
    env_rows = [s.data.shape[0] for s in state.env.episode_step.addressable_shards]
    a = train.train(cfg, TINY_ENV, seed=3, progress=False)
    b = train.train(cfg, TINY_ENV, seed=3, progress=False)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(TINY_FLAGS + ["--num-envs", "3", "--out", str(tmp / "never")])
    options = options_on_two_devices()
    return {**options, "devices": len(jax.devices()), "num_devices": trainer.num_devices,
            "num_eval_envs": trainer.config.num_eval_envs,
            "compilations": run_chunk._cache_size(), "replicas_equal": replicas_equal,
            "env_rows_split": env_rows, "reproducible": bool(np.array_equal(curve_table(a), curve_table(b), equal_nan=True)),
            "finite": bool(np.all(np.isfinite(metrics["critic/loss"]))),
            "split_error": f"exit {code}: {err.getvalue()}"}


def options_on_two_devices() -> dict:
    """n-step returns, observation normalisation and the novelty bonus with the envs, buffer and
    batch split over two devices: each device's windows follow its own envs (stride N / D), the
    statistics pool both devices' observations (the buffer holds every one of them: it never
    wrapped), and the bonus's predictor stays replicated."""
    import pytest
    cfg = TINY.replace(updates_per_step=1, num_devices=2, n_step=3, obs_normalization=True,
                       gamma=0.5, novelty_weight=0.5)
    with pytest.MonkeyPatch.context() as mp:
        spy_on_batches(mp)
        trainer = Trainer(cfg, "tagged_counter")
        state = trainer.init_seeds([0])
        run_chunk = trainer.compile_chunk(state)
        for _ in range(3):
            state, metrics = run_chunk(state)
    # Each device's rows are its own envs' (size counts one device's filled rows).
    size = int(state.replay.size)
    obs = np.concatenate([np.asarray(shard.data)[:size]
                          for shard in state.replay.data.obs.addressable_shards])
    stats = state.agent.obs_stats
    return {"windows_ok": float(metrics["critic/window_ok"]),
            "windows_long": float(metrics["critic/reward_steps"]),
            "stats_pooled": bool(np.allclose(stats.mean, obs.mean(0), rtol=1e-5, atol=1e-5)
                                 and np.allclose(stats.var, obs.var(0), rtol=1e-4, atol=1e-5)),
            "stats_count": float(stats.count), "stored": len(obs),
            "stats_replicated": all(np.array_equal(np.asarray(x.addressable_shards[0].data),
                                                   np.asarray(x.addressable_shards[1].data))
                                    for x in jax.tree.leaves(stats)),
            "novelty_replicated": all(
                np.array_equal(np.asarray(x.addressable_shards[0].data),
                               np.asarray(x.addressable_shards[1].data))
                for x in jax.tree.leaves(state.agent.novelty)),
            "novelty_bonus": float(metrics["critic/novelty_bonus"])}


def learning(tmp: Path) -> dict:
    """The CPU preset on two devices, two seeds at once (see test_learning.py)."""
    from qvpo_mjx.config import QVPOConfig
    cfg = QVPOConfig(**{**presets.PRESETS["cpu"]["config"], "total_steps": 14_000,
                        "num_seeds": 2, "num_devices": 2})
    rows = train.train(cfg, "inverted_pendulum", seed=0, progress=False)
    return {"returns": [np.asarray(r["eval_return_mean"]).tolist() for r in rows],
            "wall_time_s": rows[-1]["wall_time_s"]}



def one_vs_two(tmp: Path) -> dict:
    """The CPU preset for four seeds on one device and on two (see test_learning.py)."""
    from qvpo_mjx.config import QVPOConfig
    out = {}
    for d in (1, 2):
        cfg = QVPOConfig(**{**presets.PRESETS["cpu"]["config"], "total_steps": 14_000,
                            "num_seeds": 4, "num_devices": d})
        rows = train.train(cfg, "inverted_pendulum", seed=0, progress=False)
        out[str(d)] = [np.asarray(r["eval_return_mean"]).tolist() for r in rows]
    return out

def baselines(tmp: Path) -> dict:
    """Each baseline of qvpo_mjx/algorithms/ with envs, buffer and batches split over two
    devices: parameters stay replicated, values finite, counters as on one device."""
    jax.config.update("jax_compilation_cache_dir", str(tmp / "cache"))
    out = {}
    for algo in ("sac", "td3", "qsm", "dacer", "dipo"):
        cfg = TINY.replace(algo=algo, updates_per_step=2, num_devices=2, obs_normalization=True,
                           critic_updates_per_actor=2)
        trainer = Trainer(cfg, TINY_ENV)
        state = trainer.init_seeds([0])
        run_chunk = trainer.compile_chunk(state)
        for _ in range(3):
            state, metrics = run_chunk(state)
        out[algo] = {
            "replicas_equal": all(
                np.array_equal(np.asarray(leaf.addressable_shards[0].data),
                               np.asarray(leaf.addressable_shards[1].data))
                for leaf in jax.tree.leaves(state.agent)),
            "finite": all(bool(np.isfinite(float(metrics[k])))
                          for k in ("critic/loss", "actor/loss", "eval_return_mean")),
            "updates": [int(state.agent.critic_updates), int(state.agent.actor_updates)]}
    return out


if __name__ == "__main__":
    check, tmp = sys.argv[1], Path(sys.argv[2])
    print(json.dumps({"mechanics": mechanics, "learning": learning, "one_vs_two": one_vs_two,
                      "baselines": baselines}[check](tmp)))

