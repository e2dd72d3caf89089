"""Many seeds in one program (vmap) and many devices in one run (shard_map).

The multi-device checks run in a subprocess with two forced host devices (the flag must be set
before JAX starts); see ``two_devices.py``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qvpo_mjx import agent, cli, presets, train
from qvpo_mjx.config import QVPOConfig
from qvpo_mjx.loop import Trainer
from test_agent import OBS, ACT, SMALL, make_batch
from test_loop import TINY, TINY_ENV
from test_train_cli import TINY_FLAGS

HERE = Path(__file__).parent


def test_scale_out_settings_are_validated():
    with pytest.raises(ValueError, match="num_seeds must be a positive integer"):
        QVPOConfig(num_seeds=0)
    with pytest.raises(ValueError, match="num_devices must be a non-negative integer"):
        QVPOConfig(num_devices=-1)
    with pytest.raises(ValueError, match=r"num_envs \(6\) must be a multiple of num_devices \(4\)"):
        TINY.replace(num_envs=6, num_devices=4)
    with pytest.raises(ValueError, match=r"batch_size \(6\) must be a multiple of num_devices"):
        TINY.replace(num_eval_envs=4, batch_size=6, num_devices=4)
    with pytest.raises(ValueError, match="exceeds the 1 cpu device.*device_count=2"):
        Trainer(TINY.replace(num_devices=2), TINY_ENV)


def test_unsplittable_envs_exit_2_before_compiling(capsys):
    assert cli.main(TINY_FLAGS + ["--num-envs", "6", "--num-devices", "4"]) == 2
    assert "num_envs (6) must be a multiple of num_devices (4)" in capsys.readouterr().err


def test_seeds_get_their_own_init_exploration_and_envs():
    trainer = Trainer(TINY, TINY_ENV)
    batched = trainer.init_seeds([3, 4])
    assert batched.env_steps.shape == (2,)
    kernels = [x for x in jax.tree.leaves((batched.agent.actor_params, batched.agent.critic_params)) if x.ndim > 2]
    assert kernels and all(not np.allclose(x[0], x[1]) for x in kernels)  # biases start at 0
    assert not np.allclose(batched.env.obs[0], batched.env.obs[1])
    assert not np.array_equal(batched.key[0], batched.key[1])
    # Slice i is the one-seed state of seed i: exactly in its integers (keys, counters), up to
    # float rounding in its floats (the vmapped init is another compiled program).
    single = jax.jit(trainer.init)(jax.random.PRNGKey(4))
    for x, y in zip(jax.tree.leaves(batched), jax.tree.leaves(single)):
        if jnp.issubdtype(y.dtype, jnp.floating):
            np.testing.assert_allclose(x[1], y, rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(x[1], y)


def checkpoint(out):
    from qvpo_mjx import checkpoint as checkpoint_module
    return checkpoint_module.read(out)


def test_seed_i_of_a_batched_run_equals_a_run_of_that_seed(tmp_path):
    cfg = TINY.replace(updates_per_step=1)
    batched = train.train(cfg.replace(num_seeds=2), TINY_ENV, seed=5,
                          out_dir=tmp_path / "b", progress=False)
    single = train.train(cfg, TINY_ENV, seed=6, out_dir=tmp_path / "s", progress=False)
    meta = json.loads((tmp_path / "b" / "config.json").read_text())
    assert meta["seeds"] == [5, 6] and meta["config"]["num_devices"] == 1
    with np.load(tmp_path / "b" / "curve.npz") as d:  # the documented layout: (rows, seeds)
        assert d["env_steps"].shape == (3,) and d["eval_return_mean"].shape == (3, 2)
        assert d["critic_loss"].shape == (3, 2)
    for b, s in zip(batched, single):
        assert b["env_steps"] == s["env_steps"]
        for k in s:
            if k not in ("env_steps", "wall_time_s"):
                np.testing.assert_allclose(b[k][1], s[k], rtol=1e-4, atol=1e-5, err_msg=k)
        assert not np.allclose(b["critic_loss"][0], b["critic_loss"][1])
    b, s = checkpoint(tmp_path / "b"), checkpoint(tmp_path / "s")
    assert b.keys() == s.keys()
    for name in s:
        np.testing.assert_allclose(b[name][1], s[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_averaged_gradients_equal_the_whole_batch_step():
    # gamma = 0 makes the TD target the reward, so the critic step has no sampling in it: two
    # devices holding half the batch each (vmap with an axis name runs the same collectives as
    # shard_map) must take exactly the step of one device holding all of it.
    state = agent.init(jax.random.PRNGKey(0), OBS, ACT, SMALL.replace(gamma=0.0))
    batch = make_batch(jax.random.PRNGKey(1), B=16)
    whole, _ = jax.jit(agent.critic_update)(state, batch, jax.random.PRNGKey(2))
    halves = jax.tree.map(lambda x: x.reshape(2, 8, *x.shape[1:]), batch)
    split, _ = jax.jit(jax.vmap(lambda b: agent.critic_update(state, b, jax.random.PRNGKey(2),
                                                              axis_name="d"),
                                axis_name="d"))(halves)
    for x, y in zip(jax.tree.leaves(whole.critic_params), jax.tree.leaves(split.critic_params)):
        np.testing.assert_allclose(y[0], x, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(y[0], y[1])  # both devices keep the same parameters
    moved = [np.abs(a - b).max() for a, b in zip(jax.tree.leaves(whole.critic_params),
                                                   jax.tree.leaves(state.critic_params))]
    assert max(moved) > 1e-5  # the step did something


def test_pooled_score_statistics_equal_the_whole_batch():
    scores = jax.random.normal(jax.random.PRNGKey(0), (8, 6)) * 3.0 + 1.0
    mean, std = agent.score_stats(scores)
    pooled = jax.vmap(lambda s: agent.score_stats(s, "d"), axis_name="d")(scores.reshape(2, 4, 6))
    np.testing.assert_allclose(pooled[0], [mean, mean], rtol=1e-5)
    np.testing.assert_allclose(pooled[1], [std, std], rtol=1e-5)
    assert float(std) == pytest.approx(float(np.std(np.asarray(scores), ddof=1)), rel=1e-5)


def run_on_two_devices(tmp_path, check):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": str(HERE)}
    done = subprocess.run([sys.executable, str(HERE / "two_devices.py"), check, str(tmp_path)],
                          capture_output=True, text=True, timeout=1100, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_devices_compile_once_stay_replicated_and_reproduce(tmp_path):
    r = run_on_two_devices(tmp_path, "mechanics")
    assert r["devices"] == 2 and r["num_devices"] == 2
    assert r["compilations"] == 1
    assert r["replicas_equal"] and r["env_rows_split"] == [2, 2]  # N / D envs each
    assert r["num_eval_envs"] == 4  # 3 asked for: rounded up to a multiple of 2, not refused
    assert r["reproducible"]
    assert r["finite"]
    assert r["split_error"].startswith("exit 2")
    assert "num_envs (3) must be a multiple of num_devices (2)" in r["split_error"]
    assert "num_devices 0 means all devices" in r["split_error"]
    # n-step windows follow each device's own envs; the statistics pool both devices'.
    assert r["windows_ok"] == 1.0 and r["windows_long"] >= 2.0
    assert r["stats_pooled"] and r["stats_replicated"]
    assert r["novelty_replicated"] and 0 < r["novelty_bonus"] < 10  # about 0.5 a step
    assert r["stats_count"] == r["stored"] == 48


@pytest.mark.slow  # 40 s: two processes compile side by side on two cores
def test_two_processes_train_as_one_run(tmp_path):
    # The multi-host path on one machine: two processes of one CPU device each, joined by
    # jax.distributed (gloo collectives); one mesh over both, process 0 writes the files.
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    # Every process checkpoints its own shards into the same run directory (a shared file
    # system on a real cluster); only process 0 writes the curve and config.
    procs = [subprocess.Popen(
        [sys.executable, "-m", "qvpo_mjx.train", *TINY_FLAGS, "--out", str(tmp_path / "run"),
         "--compile-cache", "none", "--distributed", "--coordinator", f"127.0.0.1:{port}",
         "--num-processes", "2", "--process-id", str(i)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs[0][-2000:] + errs[1][-2000:]
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["config"]["num_devices"] == 2 and len(meta["devices"]) == 2
    with np.load(tmp_path / "run" / "curve.npz") as d:
        np.testing.assert_array_equal(d["env_steps"], [16, 32, 48])
        assert np.all(np.isfinite(d["critic_loss"][1:]))
    ckpt = checkpoint(tmp_path / "run")  # both processes' halves of the envs and buffer
    assert int(ckpt["chunks"]) == 3 and ckpt["replay/data/obs"].shape == (64, 2)
