import json
import subprocess
import sys

import numpy as np
import pytest

from qvpo_mjx import checkpoint, cli, presets
from qvpo_mjx.config import QVPOConfig

TINY_FLAGS = [
    "--env", "double_integrator", "--hidden-size", "16", "--time-embed-size", "8",
    "--diffusion-steps", "3", "--batch-size", "8", "--train-samples", "4",
    "--behavior-samples", "2", "--target-samples", "2", "--eval-samples", "2",
    "--entropy-samples", "2", "--num-envs", "4", "--updates-per-step", "1",
    "--start-steps", "16", "--eval-interval", "16", "--num-eval-envs", "2",
    "--episode-length", "10", "--total-steps", "48", "--replay-size", "64", "--no-progress",
]


def test_help_documents_every_config_field(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for name in QVPOConfig.field_docs():
        assert "--" + name.replace("_", "-") in text


def test_command_writes_config_curve_and_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert cli.main(TINY_FLAGS + ["--out", str(out), "--seed", "3"]) == 0
    meta = json.loads((out / "config.json").read_text())
    assert meta["env"] == "double_integrator" and meta["seed"] == 3
    assert meta["config"]["batch_size"] == 8 and meta["versions"]["jax"]
    with np.load(out / "curve.npz") as curve:
        for key in ("env_steps", "wall_time_s", "eval_return_mean", "eval_return_std",
                    "critic_loss", "actor_loss", "critic_q_mean", "actor_entropy_weight", "train_return_mean"):
            assert key in curve.files, key
        np.testing.assert_array_equal(curve["env_steps"], [16, 32, 48])
        assert np.all(np.diff(curve["wall_time_s"]) > 0)
        assert np.all(np.isfinite(curve["eval_return_mean"]))
    ckpt = checkpoint.read(out)
    # Saved by name: the state's tree, not a list of leaves.
    assert int(ckpt["chunks"]) == 3 and int(ckpt["agent/env_steps"]) == 48
    assert ckpt["replay/data/obs"].shape == (64, 2)
    assert "agent/actor_params/params/out/kernel" in ckpt


def curve_and_checkpoint(out):
    with np.load(out / "curve.npz") as d:
        curve = {k: d[k] for k in d.files if k != "wall_time_s"}
    return curve, checkpoint.read(out)


def test_resume_with_a_larger_total_extends_the_run(tmp_path):
    # Extending a finished 48-step run to 80 steps must give exactly the run that was asked for
    # 80 steps from the start with the entropy horizon of the first (48): the extension keeps it,
    # and the preset's novelty bonus keeps the fall it was given (over the first 48).
    short, straight = tmp_path / "short", tmp_path / "straight"
    assert cli.main(TINY_FLAGS + ["--out", str(short)]) == 0
    assert cli.main(["--resume", str(short), "--total-steps", "80", "--no-progress"]) == 0
    assert cli.main(TINY_FLAGS + ["--total-steps", "80", "--entropy-decay-steps", "48",
                                  "--novelty-decay-steps", "48", "--out", str(straight)]) == 0
    meta = json.loads((short / "config.json").read_text())
    assert meta["config"]["total_steps"] == 80 and meta["config"]["entropy_decay_steps"] == 48
    assert meta["config"]["novelty_decay_steps"] == 48
    assert meta["extended"] == [{"total_steps": [48, 80]}]
    (ca, ka), (cb, kb) = curve_and_checkpoint(short), curve_and_checkpoint(straight)
    np.testing.assert_array_equal(ca["env_steps"], [16, 32, 48, 64, 80])
    assert ca.keys() == cb.keys() and ka.keys() == kb.keys()
    for k in ca:
        np.testing.assert_array_equal(ca[k], cb[k], err_msg=k)
    for k in ka:
        np.testing.assert_array_equal(ka[k], kb[k], err_msg=k)
    # Shortening, or any other change, is refused with the reason.
    assert cli.main(["--resume", str(short), "--total-steps", "32"]) == 2
    assert cli.main(["--resume", str(short), "--total-steps", "96", "--batch-size", "4"]) == 2


def test_checkpoint_interval_is_its_own_setting(tmp_path, capsys):
    # An hour between checkpoints: the curve still gets every chunk, the state only the last.
    out = tmp_path / "run"
    assert cli.main(TINY_FLAGS + ["--out", str(out), "--checkpoint-every", "60"]) == 0
    assert "checkpoints every 60 min" in capsys.readouterr().err
    with np.load(out / "curve.npz") as d:
        np.testing.assert_array_equal(d["env_steps"], [16, 32, 48])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["3"]
    assert cli.main(TINY_FLAGS + ["--out", str(tmp_path / "x"), "--checkpoint-every", "-1"]) == 2


def read_scalars(directory):
    """{tag: [(step, value), ...]} from TensorBoard event files (TFRecord of Event protos)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event
    out = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_scalars_mirror_the_curve(tmp_path):
    out = tmp_path / "run"
    assert cli.main(TINY_FLAGS + ["--out", str(out), "--tensorboard"]) == 0
    scalars = read_scalars(out / "tensorboard")
    with np.load(out / "curve.npz") as d:
        curve = {k: d[k] for k in d.files}
    for key in ("eval_return_mean", "wall_time_s", "critic_updates", "actor_updates"):
        assert [s for s, _ in scalars[key]] == [16, 32, 48], key
        np.testing.assert_allclose([v for _, v in scalars[key]], curve[key], rtol=1e-6)
    # Losses are NaN before the first update (chunk 1 is warm-up): not written, not zero.
    assert [s for s, _ in scalars["critic_loss"]] == [16, 32, 48][int(np.isnan(curve["critic_loss"][0])):]


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    assert cli.main(["--env", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "known envs:" in capsys.readouterr().err
    assert cli.main(TINY_FLAGS + ["--chosen", "9", "--out", str(tmp_path / "y")]) == 2
    assert "chosen" in capsys.readouterr().err
    out = tmp_path / "z"
    out.mkdir()
    (out / "something").write_text("x")
    assert cli.main(TINY_FLAGS + ["--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_gpu_wide_preset_keeps_the_studied_updates_per_env_step_at_any_num_envs():
    for n, updates in ((256, 4), (1024, 16), (4096, 64), (16, 1)):
        cfg = presets.preset_config("gpu_wide", {"num_envs": n})
        assert cfg.updates_per_step == updates, n
    cfg = presets.preset_config("gpu_wide")
    assert (cfg.num_envs, cfg.updates_per_step, cfg.batch_size) == (256, 4, 1024)
    assert (cfg.obs_normalization, cfg.n_step, cfg.critic_layer_norm) == (True, 3, True)
    assert cfg.total_steps == 10 * presets.PRESETS["gpu"]["config"]["total_steps"]
    # The paper's networks, as the gpu preset; Kt 16 keeps the rule's candidates per actor update.
    rule = presets.preset_config("gpu", {"num_envs": 64})
    assert (cfg.hidden_size, cfg.diffusion_steps, cfg.actor_lr, cfg.tau) == \
        (rule.hidden_size, rule.diffusion_steps, rule.actor_lr, rule.tau)
    assert cfg.batch_size * cfg.train_samples == rule.batch_size * rule.train_samples
    # At N = 256 it is the gpu preset's wide regime, budget and evaluations aside.
    same = presets.preset_config("gpu", {"num_envs": 256})
    keys = ("updates_per_step", "batch_size", "critic_updates_per_actor", "train_samples",
            "obs_normalization", "n_step", "critic_layer_norm", "hidden_size", "actor_lr")
    assert [getattr(cfg, k) for k in keys] == [getattr(same, k) for k in keys]


def test_module_entry_point_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "qvpo_mjx.train", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--num-envs" in proc.stdout and "--preset" in proc.stdout


# What --num-envs N implies, written out by hand for several N (presets.SCALING, WIDE_FROM):
# (updates_per_step, batch_size, critic_updates_per_actor, total_steps, eval_interval,
#  replay_size, start_steps, train_samples, wide options on).
IMPLIED = {
    "cpu": {
        16: (8, 128, 1, 20_000, 2_000, 100_000, 1_000, 16, False),
        64: (8, 128, 1, 25_600, 2_000, 100_000, 1_000, 16, False),
        255: (8, 128, 1, 102_000, 2_550, 102_000, 1_000, 16, False),
        256: (4, 1024, 2, 102_400, 2_560, 102_400, 1_024, 16, True),
        1024: (4, 1024, 2, 409_600, 10_240, 409_600, 1_024, 16, True),
        4096: (4, 1024, 2, 1_638_400, 40_960, 1_000_000, 4_096, 16, True),
        8192: (4, 1024, 2, 3_276_800, 81_920, 1_000_000, 8_192, 16, True),
    },
    "gpu": {
        1: (1, 256, 2, 1_000_000, 81_920, 1_000_000, 10_000, 64, False),
        5: (5, 256, 2, 1_000_000, 81_920, 1_000_000, 10_000, 64, False),  # half to even gave 4
        64: (64, 256, 2, 1_000_000, 81_920, 1_000_000, 10_000, 64, False),
        255: (255, 256, 2, 1_000_000, 81_920, 1_000_000, 10_000, 64, False),
        256: (4, 1024, 2, 12_800_000, 256_000, 1_000_000, 10_000, 16, True),
        1024: (4, 1024, 2, 51_200_000, 1_024_000, 1_000_000, 10_000, 16, True),
        4096: (4, 1024, 2, 204_800_000, 4_096_000, 1_000_000, 10_000, 16, True),
        8192: (4, 1024, 2, 409_600_000, 8_192_000, 1_000_000, 10_000, 16, True),
    },
}


@pytest.mark.parametrize("preset", sorted(IMPLIED))
def test_num_envs_implies_the_rule_for_the_cpu_and_gpu_presets(preset):
    for n, want in IMPLIED[preset].items():
        cfg = presets.preset_config(preset, {"num_envs": n})
        got = (cfg.updates_per_step, cfg.batch_size, cfg.critic_updates_per_actor,
               cfg.total_steps, cfg.eval_interval, cfg.replay_size, cfg.start_steps,
               cfg.train_samples, cfg.obs_normalization)
        assert got == want, (preset, n)
        wide = n >= presets.WIDE_FROM
        assert (cfg.n_step, cfg.critic_layer_norm, cfg.reward_scale_auto) == (
            (3, True, True) if wide else (1, False, False)), n
        assert cfg.first_update_rows >= cfg.batch_size  # a full first batch
        # The paper's (gpu) or the preset's (cpu) networks and rates at every N.
        base = presets.PRESETS[preset]["config"]
        assert cfg.hidden_size == base.get("hidden_size", 256)
        assert cfg.actor_lr == base.get("actor_lr", 1e-4)
    # N = 16 is the cpu preset as it was set (it reaches 1000 on inverted_pendulum in 10k steps).
    assert presets.implied("cpu", 16) == ({}, "")
    assert presets.preset_config(preset) == presets.preset_config(
        preset, {"num_envs": presets.PRESETS[preset]["config"]["num_envs"]})


@pytest.mark.parametrize("preset", ["cpu", "gpu"])
def test_the_presets_novelty_bonus_is_gated_falls_over_the_run_and_goes_with_its_weight(preset):
    for n in (16, 1024, 4096):  # over total_steps, whatever N implies it to be
        cfg = presets.preset_config(preset, {"num_envs": n})
        assert (cfg.novelty_weight, cfg.novelty_reward_gate) == (0.5, True)
        assert cfg.novelty_decay_steps == cfg.total_steps > 0, n
    assert presets.preset_config(preset, {"total_steps": 50_000}).novelty_decay_steps == 50_000
    # A flag wins, and the bonus's settings go with its weight or with another algorithm.
    assert presets.preset_config(preset, {"novelty_decay_steps": 7.0}).novelty_decay_steps == 7
    for flags in ({"novelty_weight": 0.0}, {"algo": "sac"}, {"algo": "dipo"}):
        cfg = presets.preset_config(preset, flags)
        assert (cfg.novelty_weight, cfg.novelty_reward_gate, cfg.novelty_decay_steps) == (
            0.0, False, 0.0), flags
    # A flag gives a baseline the preset's bonus as QVPO has it: gated, falling over the run.
    cfg = presets.preset_config(preset, {"algo": "sac", "novelty_weight": 0.5})
    assert (cfg.novelty_weight, cfg.novelty_reward_gate) == (0.5, True)
    assert cfg.novelty_decay_steps == cfg.total_steps > 0
    with pytest.raises(ValueError, match="novelty_reward_gate gates the novelty bonus"):
        presets.preset_config(preset, {"novelty_weight": 0.0, "novelty_reward_gate": True})
    # The paper preset is the reference's: no bonus.
    assert presets.preset_config("paper").novelty_weight == 0.0


def test_flags_win_over_what_num_envs_implies():
    assert presets.preset_config("gpu", {"num_envs": 1024, "updates_per_step": 6}).updates_per_step == 6
    assert presets.preset_config("gpu", {"num_envs": 64, "updates_per_step": 6}).updates_per_step == 6
    # A wider batch from the flags gets a warm-up that fills it (the study's B 16,384).
    wide = presets.preset_config("gpu", {"num_envs": 4096, "batch_size": 16384})
    assert wide.start_steps == 16384 and wide.first_update_rows >= 16384
    # The first line says which implied values the flags replaced.
    values, why = presets.preset_values("cpu", {"num_envs": 4096, "batch_size": 256})
    assert values["batch_size"] == 256 and values["updates_per_step"] == 4
    assert "wide regime" in why and "batch_size from the flags" in why
    # The parsed command goes through the same rule.
    args = cli.build_parser().parse_args(["--preset", "gpu", "--num-envs", "513"])
    assert cli.resolve(args)[0].updates_per_step == 4
    args = cli.build_parser().parse_args(["--preset", "gpu", "--num-envs", "100"])
    assert cli.resolve(args)[0].updates_per_step == 100
    args = cli.build_parser().parse_args(["--num-envs", "4096", "--updates-per-step", "2"])
    cfg, _, preset, _, why = cli.resolve(args)
    assert preset == "cpu" and cfg.updates_per_step == 2 and cfg.total_steps == 1_638_400
    assert "N = 4096" in why


@pytest.mark.parametrize("preset", sorted(presets.PRESETS))
def test_every_preset_compiles_at_4096_envs_with_tiny_networks(preset):
    """Each preset's chunk at N = 4,096, as the rule sets it (replay, batch, updates, options),
    with tiny networks and chains and a plain-JAX task: lowered and compiled, never run."""
    import jax

    from qvpo_mjx.loop import Trainer

    tiny = dict(num_envs=4096, hidden_size=8, time_embed_size=4, diffusion_steps=2,
                train_samples=2, behavior_samples=2, target_samples=2, eval_samples=2,
                entropy_samples=2, num_eval_envs=2, episode_length=4)
    cfg = presets.preset_config(preset, tiny)
    if preset != "paper":
        assert cfg.updates_per_step == {"gpu_wide": 64}.get(preset, 4)
    trainer = Trainer(cfg, "double_integrator")
    shapes = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
    compiled = trainer.compile_chunk(shapes).lower(shapes).compile()
    memory = compiled.memory_analysis()
    # The donated state is the arguments; the chunk's own buffers stay a small part of it.
    assert memory.argument_size_in_bytes > cfg.replay_size * 4
    assert memory.temp_size_in_bytes < memory.argument_size_in_bytes


def test_the_first_line_says_what_num_envs_implied(tmp_path, capsys, monkeypatch):
    from qvpo_mjx import driver

    def no_training(config, env, seed, out, on_start=None, **kwargs):
        class Resolved:  # what announce reads of the trainer
            fit_notes: list = []
        Resolved.config = config
        on_start(Resolved)
        return []

    monkeypatch.setattr(driver, "train", no_training)
    assert cli.main(["--num-envs", "4096", "--out", str(tmp_path / "r")]) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("qvpo-mjx: env inverted_pendulum, preset cpu, 4096 envs, "
                            "1,638,400 steps"), first
    assert "N = 4096 >= 256 implies the wide regime: 4 critic updates of batch 1024" in first
