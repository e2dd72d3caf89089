"""Nothing lost, nothing silent: kill -9 and Ctrl-C, then resume; the numerical guard; bad input."""

import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from qvpo_mjx import checkpoint as checkpoint_module
from qvpo_mjx import cli, rundir, train
from qvpo_mjx.interrupts import ChunkInterrupts
from test_loop import TINY, TINY_ENV
from test_train_cli import TINY_FLAGS

TINY_RUN = TINY.replace(updates_per_step=1)  # 3 chunks of 16 env steps, the first warm-up only

LONG = TINY_FLAGS + ["--episode-length", "100", "--total-steps", "320"]  # 20 chunks


def command(out, cache, *extra):
    return [sys.executable, "-m", "qvpo_mjx.train", *LONG, "--out", str(out),
            "--compile-cache", str(cache), *extra]


def curve(out):
    with np.load(out / "curve.npz") as d:
        return {k: d[k] for k in d.files}


def checkpoint(out):
    """The newest checkpoint's arrays by name."""
    return checkpoint_module.read(out)


def has_checkpoint(out):
    """A complete checkpoint exists (Orbax renames it into place when it is whole)."""
    root = out / checkpoint_module.CHECKPOINT_DIR
    return root.is_dir() and any(p.name.isdigit() for p in root.iterdir())


def start_and_interrupt(cmd, sig, out):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600  # the first checkpoint: start-up and compile, 30-90 s
    while not has_checkpoint(out):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def assert_same_run(a, b):
    ca, cb = curve(a), curve(b)
    assert ca.keys() == cb.keys()
    for k in ca:
        if k != "wall_time_s":
            np.testing.assert_array_equal(ca[k], cb[k], err_msg=k)
    ka, kb = checkpoint(a), checkpoint(b)
    assert ka.keys() == kb.keys() and len(ka) > 20
    for name in ka:
        np.testing.assert_array_equal(ka[name], kb[name], err_msg=name)


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    cache = tmp_path / "cache"
    full, crashed = tmp_path / "full", tmp_path / "crashed"
    assert subprocess.run(command(full, cache), capture_output=True, timeout=600).returncode == 0
    rc, _ = start_and_interrupt(command(crashed, cache), signal.SIGKILL, crashed)
    assert rc == -signal.SIGKILL
    rows_at_crash = len(curve(crashed)["env_steps"])
    assert 1 <= rows_at_crash < 20
    resumed = subprocess.run([sys.executable, "-m", "qvpo_mjx.train", "--resume", str(crashed),
                              "--no-progress", "--compile-cache", str(cache)],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    steps = curve(crashed)["env_steps"]
    np.testing.assert_array_equal(steps, np.arange(1, 21) * 16)  # no gap, no duplicate
    assert_same_run(full, crashed)  # bit for bit, wall time aside


def test_a_crash_between_curve_and_checkpoint_loses_nothing(tmp_path):
    # The curve is written every chunk, the checkpoint at its interval (or a crash cut its
    # write short): the curve can be ahead of the newest checkpoint. Rebuild that state by
    # removing the newest checkpoint (the last two are kept).
    cfg = TINY_RUN
    out = tmp_path / "run"
    full = train.train(cfg, TINY_ENV, seed=1, out_dir=out, progress=False)
    root = out / checkpoint_module.CHECKPOINT_DIR
    assert sorted(p.name for p in root.iterdir()) == ["2", "3"]
    shutil.rmtree(root / "3")  # chunk 3's checkpoint never landed
    assert len(curve(out)["env_steps"]) == 3
    resumed = train.train(cfg, TINY_ENV, seed=1, out_dir=out, resume=True,
                          progress=False)
    np.testing.assert_array_equal(curve(out)["env_steps"], [16, 32, 48])
    for a, b in zip(full, resumed):
        assert {k: v for k, v in a.items() if k != "wall_time_s"} == pytest.approx(
            {k: v for k, v in b.items() if k != "wall_time_s"}, nan_ok=True, rel=0, abs=0)
    # A curve behind its checkpoint can only mean damage: refused, not silently gapped.
    rundir.save_curve(out / "curve.npz", full[:1])
    with pytest.raises(ValueError, match="has 1 rows but the checkpoint is at chunk 3"):
        train.train(cfg, TINY_ENV, seed=1, out_dir=out, resume=True, progress=False)


def test_ctrl_c_keeps_checkpoint_and_curve_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    rc, err = start_and_interrupt(command(out, tmp_path / "cache"), signal.SIGINT, out)
    assert rc == 130 and "--resume" in err
    rows = len(curve(out)["env_steps"])
    assert rows >= 1 and len(checkpoint(out)) > 20
    # The chunk in flight was finished and saved: the checkpoint is as far as the curve.
    assert int(checkpoint(out)["chunks"]) == rows
    assert not list(out.glob("*.tmp"))
    assert not [p for p in (out / checkpoint_module.CHECKPOINT_DIR).iterdir()
                if not p.name.isdigit()]  # no half-written checkpoint left behind


def test_non_finite_values_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    # Chunk 1 (16 steps) is warm-up only; the first updates, in chunk 2, blow the critic up.
    flags = TINY_FLAGS + ["--start-steps", "32", "--critic-lr", "1e30", "--actor-lr", "1e30",
                          "--out", str(out)]
    assert cli.main(flags) == 3
    err = capsys.readouterr().err
    assert "non-finite" in err and "at env step" in err and "last good checkpoint" in err
    assert any(name in err for name in ("critic/loss", "actor/loss", "critic/q_mean", "critic/q_target",
                                        "parameters"))
    np.testing.assert_array_equal(curve(out)["env_steps"], [16])
    kept = checkpoint(out)
    assert int(kept["chunks"]) == 1
    assert all(np.all(np.isfinite(x)) for x in kept.values() if x.dtype.kind == "f")


def test_same_seed_same_curve(tmp_path):
    cfg = TINY_RUN
    a = train.train(cfg, TINY_ENV, seed=5, progress=False)
    b = train.train(cfg, TINY_ENV, seed=5, progress=False)
    c = train.train(cfg, TINY_ENV, seed=6, progress=False)
    def table(rows):
        return np.array([[v for k, v in sorted(r.items()) if k != "wall_time_s"] for r in rows])

    np.testing.assert_array_equal(table(a), table(b))  # NaN (no finished episode) equals NaN
    assert not np.array_equal(table(a), table(c), equal_nan=True)


def test_bad_input_fails_before_anything_is_written(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert cli.main(TINY_FLAGS + ["--out", str(blocker / "run")]) == 2
    assert "not writable" in capsys.readouterr().err
    out = tmp_path / "never"
    assert cli.main(TINY_FLAGS + ["--batch-size", "0", "--out", str(out)]) == 2
    assert "batch_size must be a positive integer" in capsys.readouterr().err
    assert cli.main(TINY_FLAGS + ["--batch-size", "4096", "--out", str(out)]) == 2
    assert "exceeds" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit) as e:
        cli.main(["--preset", "tpu"])
    assert e.value.code == 2


def test_resume_with_a_different_env_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(TINY_FLAGS + ["--out", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["--resume", str(out), "--env", "inverted_pendulum"]) == 2
    assert "was run with env = 'double_integrator'" in capsys.readouterr().err
    assert cli.main(["--resume", str(out), "--train-samples", "8"]) == 2
    assert "was run with train_samples = 4, not 8" in capsys.readouterr().err
    # An edited config.json that no longer fits the checkpoint is refused too.
    meta = json.loads((out / "config.json").read_text())
    meta["env"] = "inverted_pendulum"
    (out / "config.json").write_text(json.dumps(meta))
    assert cli.main(["--resume", str(out), "--no-progress"]) == 2
    assert "does not match this run's state" in capsys.readouterr().err


def test_a_checkpoint_without_a_newer_hyper_parameter_still_restores(tmp_path):
    import jax.numpy as jnp
    saved = {"agent": {"hparams": {"tau": jnp.float32(0.02), "gone": jnp.float32(7.0)},
                       "w": jnp.arange(3.0)}, "chunks": jnp.int32(4)}
    ckpt = checkpoint_module.Checkpointer(tmp_path)
    ckpt.save(saved, 4)
    ckpt.wait()
    template = {"agent": {"hparams": {"tau": jnp.float32(0.0), "new": jnp.float32(0.5)},
                          "w": jnp.zeros(3)}, "chunks": jnp.int32(0)}
    with pytest.raises(ValueError, match="agent/hparams/gone is only in the checkpoint"):
        ckpt.restore(template)
    got = ckpt.restore(template, optional=("agent/hparams/",))
    np.testing.assert_array_equal(got["agent"]["w"], [0.0, 1.0, 2.0])
    assert int(got["chunks"]) == 4 and float(got["agent"]["hparams"]["tau"]) == np.float32(0.02)
    assert float(got["agent"]["hparams"]["new"]) == 0.5  # the template's: not in the checkpoint
    assert set(got["agent"]["hparams"]) == {"tau", "new"}
    template["w_extra"] = jnp.zeros(2)  # anything else missing is still refused
    with pytest.raises(ValueError, match="w_extra is missing from the checkpoint"):
        ckpt.restore(template, optional=("agent/hparams/",))
    ckpt.close()


def test_ctrl_c_stops_at_the_chunk_end_and_twice_aborts_but_never_mid_save():
    import os
    def ctrl_c():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs at the next bytecode
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs in the background
    with ChunkInterrupts() as interrupts:
        ctrl_c()  # the first: a request, no exception
        assert interrupts.requested == 1
        done = []
        with pytest.raises(KeyboardInterrupt):
            with interrupts.saving():
                ctrl_c()  # the second, mid-save: held until the pair is written
                done += ["curve", "checkpoint"]
        assert done == ["curve", "checkpoint"]
        with pytest.raises(KeyboardInterrupt):
            ctrl_c()  # outside a save: at once
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "curve.npz"
    rundir.save_npz(path, {"a": np.arange(3)})
    def broken(f):
        f.write(b"half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        rundir.atomic_write_bytes(path, broken)
    with np.load(path) as d:
        np.testing.assert_array_equal(d["a"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["curve.npz"]
