import json
import subprocess
import sys

import numpy as np
import pytest

from qvpo_mjx import plot


def fake_run(path, seed, scale=1.0, env="inverted_pendulum", **config):
    path.mkdir(parents=True)
    steps = np.arange(1, 6) * 1000.0
    np.savez(path / "curve.npz", env_steps=steps, wall_time_s=steps / 100.0,
             eval_return_mean=scale * steps / 10.0 + seed, eval_return_std=np.zeros(5),
             loss_critic=np.full(5, 0.5 + seed))
    (path / "config.json").write_text(json.dumps(
        {"env": env, "seed": seed, "preset": "cpu", "versions": {"jax": str(seed)},
         "config": {"num_envs": 16, "batch_size": 128, "num_devices": 1, **config}}))
    return path


def test_aggregate_mean_and_band_across_seeds(tmp_path):
    runs = [plot.load_run(fake_run(tmp_path / f"s{i}", seed=i)) for i in range(3)]
    assert len(plot.group_runs(runs)) == 1  # same env and config: one line
    grid, mean, low, high = plot.aggregate(runs, "env_steps")
    np.testing.assert_allclose(mean, grid / 10.0 + 1.0)
    np.testing.assert_allclose(low, grid / 10.0)
    np.testing.assert_allclose(high, grid / 10.0 + 2.0)
    grid, mean, low, high = plot.aggregate(runs, "wall_time", band="std")
    np.testing.assert_allclose(high - mean, np.std([0, 1, 2]), rtol=1e-6)


def test_command_renders_png(tmp_path):
    a = [str(fake_run(tmp_path / f"a{i}", seed=i)) for i in range(2)]
    b = str(fake_run(tmp_path / "b", seed=0, env="pendulum_swingup"))
    out = tmp_path / "curves.png"
    assert plot.main(a + [b, "-o", str(out), "--x", "wall_time"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_missing_and_malformed_curves_name_the_file(tmp_path, capsys):
    assert plot.main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere/curve.npz: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "curve.npz").write_bytes(b"not a zip")
    assert plot.main([str(bad)]) == 2
    assert "bad/curve.npz: not a readable curve file" in capsys.readouterr().err
    partial = tmp_path / "partial"
    partial.mkdir()
    np.savez(partial / "curve.npz", env_steps=np.arange(3.0))
    with pytest.raises(plot.CurveError, match="partial/curve.npz: malformed curve, missing "
                                               "wall_time_s, eval_return_mean"):
        plot.load_run(partial)


def test_plot_does_not_import_jax(tmp_path):
    run = fake_run(tmp_path / "r", seed=0)
    code = ("import sys; from qvpo_mjx import plot; "
            f"plot.main([{str(run)!r}, '-o', {str(tmp_path / 'x.png')!r}]); "
            "assert 'jax' not in sys.modules, 'jax imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_runs_of_different_length_use_the_union_range(tmp_path):
    short = fake_run(tmp_path / "short", seed=0)
    long = fake_run(tmp_path / "long", seed=2)
    with np.load(long / "curve.npz") as d:
        arrays = {k: d[k] for k in d.files}
    arrays = {k: np.r_[v, v[-1] * 2] for k, v in arrays.items()}
    np.savez(long / "curve.npz", **arrays)
    runs = [plot.load_run(short), plot.load_run(long)]
    grid, mean, low, high = plot.aggregate(runs, "env_steps")
    assert grid[-1] == 10_000 and mean[-1] == high[-1] == low[-1]  # only the long run remains
    grid, mean, _, _ = plot.aggregate(runs, "env_steps", hold_last=True)
    assert mean[-1] == pytest.approx((500.0 + 1004.0) / 2)  # short run held at its last value


def test_runs_that_differ_in_a_config_field_are_separate_lines_named_by_it(tmp_path):
    # Same env, preset and N: before, an ablation of batch_size was averaged into one line.
    runs = [*plot.load_runs(fake_run(tmp_path / "a0", seed=0)),
            *plot.load_runs(fake_run(tmp_path / "a1", seed=1, num_devices=2)),  # how it ran
            *plot.load_runs(fake_run(tmp_path / "b0", seed=0, batch_size=1024))]
    groups = plot.group_runs(runs)
    assert sorted(groups) == ["inverted_pendulum, QVPO cpu, N=16, batch_size=1024",
                              "inverted_pendulum, QVPO cpu, N=16, batch_size=128"]
    assert len(groups["inverted_pendulum, QVPO cpu, N=16, batch_size=128"]) == 2  # seeds merge
    out = tmp_path / "ablation.png"
    assert plot.main([str(tmp_path / n) for n in ("a0", "a1", "b0")] + ["-o", str(out)]) == 0


def test_metric_plots_any_curve_column(tmp_path, capsys):
    run = fake_run(tmp_path / "r", seed=2)
    (only,) = plot.load_runs(run, metric="loss_critic")
    np.testing.assert_array_equal(only["y"], np.full(5, 2.5))
    assert plot.main([str(run), "--metric", "loss_critic", "-o", str(tmp_path / "l.png")]) == 0
    assert plot.main([str(run), "--metric", "nope", "-o", str(tmp_path / "n.png")]) == 2
    assert "no column 'nope'; it has eval_return_mean, eval_return_std, loss_critic" in \
        capsys.readouterr().err


def png_size(path):
    data = path.read_bytes()
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_several_metrics_give_one_panel_each(tmp_path, capsys):
    run = str(fake_run(tmp_path / "r", seed=0))
    one, two, three = (tmp_path / f"{n}.png" for n in ("one", "two", "three"))
    assert plot.main([run, "-o", str(one)]) == 0
    assert plot.main([run, "--metric", "eval_return_mean", "loss_critic", "-o", str(two)]) == 0
    assert plot.main([run, "--metric", "eval_return_mean", "loss_critic", "eval_return_std",
                      "-o", str(three)]) == 0
    # 7 x 4.5 inches per panel at 120 dpi; two panels side by side, a third on a second row;
    # several panels share one legend below them.
    assert png_size(one) == (840, 540)
    (w2, h2), (w3, h3) = png_size(two), png_size(three)
    assert w2 == w3 == 1680
    assert 540 < h2 < 1080 and h3 == h2 + 540
    assert plot.main([run, "--metric", "loss_critic", "nope", "-o", str(tmp_path / "n.png")]) == 2
    assert "no column 'nope'" in capsys.readouterr().err


def test_many_lines_put_the_legend_below_and_log_x_scales_the_axis(tmp_path, monkeypatch):
    runs = [str(fake_run(tmp_path / f"r{i}", seed=0, batch_size=128 * (i + 1)))
            for i in range(plot.LEGEND_INSIDE + 1)]
    few, many = tmp_path / "few.png", tmp_path / "many.png"
    assert plot.main(runs[:plot.LEGEND_INSIDE] + ["-o", str(few)]) == 0
    assert plot.main(runs + ["-o", str(many)]) == 0
    assert png_size(few) == (840, 540)  # the legend inside the panel
    assert png_size(many)[1] > 540  # the figure grows to hold the legend below
    wide = str(fake_run(tmp_path / "wide", seed=0, batch_size=128, env="x" * 150))
    assert plot.main(runs + [wide, "-o", str(tmp_path / "wide.png")]) == 0
    assert png_size(tmp_path / "wide.png")[0] > 120 * 0.067 * 150  # ... and to its longest label
    import matplotlib.axes
    scales = []
    real = matplotlib.axes.Axes.set_xscale
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xscale",
                        lambda ax, value, **kw: (scales.append(value), real(ax, value, **kw)))
    assert plot.main(runs[:1] + ["-o", str(tmp_path / "log.png"), "--log-x"]) == 0
    assert scales == ["log"]


def test_a_seed_recorded_in_the_config_does_not_split_lines(tmp_path):
    # Brax's trainers record the seed among their settings; seeds are still one line.
    runs = []
    for i in range(3):
        run = fake_run(tmp_path / f"p{i}", seed=i)
        meta = json.loads((run / "config.json").read_text())
        meta["config"]["seed"] = i
        (run / "config.json").write_text(json.dumps(meta))
        runs += plot.load_runs(run)
    assert len(plot.group_runs(runs)) == 1


def test_fields_an_older_run_lacks_do_not_label_lines(tmp_path):
    old = plot.load_runs(fake_run(tmp_path / "old", seed=0))
    new = plot.load_runs(fake_run(tmp_path / "new", seed=0, batch_size=256, n_step=1))
    assert sorted(plot.group_runs(old + new)) == [
        "inverted_pendulum, QVPO cpu, N=16, batch_size=128",
        "inverted_pendulum, QVPO cpu, N=16, batch_size=256"]
    only_missing = plot.load_runs(fake_run(tmp_path / "m", seed=0, n_step=1))
    assert sorted(plot.group_runs(old + only_missing)) == [
        "inverted_pendulum, QVPO cpu, N=16, n_step=1",
        "inverted_pendulum, QVPO cpu, N=16, n_step=None"]


def test_updates_axis_counts_critic_and_actor_updates(tmp_path, capsys):
    # Today's curves count both: the axis is their sum, per seed.
    new = tmp_path / "new"
    new.mkdir()
    steps = np.array([1000.0, 2000.0, 3000.0])
    np.savez(new / "curve.npz", env_steps=steps, wall_time_s=steps / 10,
             eval_return_mean=np.stack([steps, steps], 1),
             critic_updates=np.array([[0, 0], [1000, 1000], [2001, 2001]], np.float64),
             actor_updates=np.array([[0, 0], [333, 333], [667, 667]], np.float64))
    (new / "config.json").write_text(json.dumps(
        {"env": "halfcheetah", "seeds": [0, 1], "preset": "gpu",
         "config": {"num_envs": 64, "critic_updates_per_actor": 2}}))
    for r in plot.load_runs(new):  # the columns, not the config's ratio
        np.testing.assert_array_equal(r["x"]["updates"], [0, 1333, 2668])
    # Curves written before the rename: one `updates` column of critic updates, with a seed
    # axis (3 seeds batched in one run); the actor's are derived from the config.
    run = tmp_path / "r"
    run.mkdir()
    steps = np.array([1000.0, 2000.0, 3000.0])
    critic = np.array([[0, 0, 0], [1000, 1000, 1000], [2001, 2001, 2001]], np.float64)
    np.savez(run / "curve.npz", env_steps=steps, wall_time_s=steps / 10,
             eval_return_mean=np.stack([steps, steps, steps], 1), updates=critic)
    (run / "config.json").write_text(json.dumps(
        {"env": "halfcheetah", "seeds": [0, 1, 2], "preset": "gpu",
         "config": {"num_envs": 64, "critic_updates_per_actor": 2}}))
    runs = plot.load_runs(run)
    # The actor takes every second critic update over the run: 1000 -> 500, 2001 -> 1000.
    for r in runs:
        np.testing.assert_array_equal(r["x"]["updates"], [0, 1500, 3001])
    grid, mean, _, _ = plot.aggregate(runs, "updates")
    np.testing.assert_allclose(np.interp(1500, grid, mean), 2000.0, rtol=1e-5)
    assert plot.main([str(run), "--x", "updates", "-o", str(tmp_path / "u.png")]) == 0
    # A curve without the column (a Brax peer's) cannot go on that axis: said, not drawn.
    peer = fake_run(tmp_path / "peer", seed=0)
    assert plot.main([str(peer), "--x", "updates", "-o", str(tmp_path / "p.png")]) == 2
    assert "no sequential gradient updates" in capsys.readouterr().err
