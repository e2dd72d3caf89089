import json
import subprocess
import sys

import numpy as np
import pytest

from qvpo_mjx import train
from qvpo_mjx.config import QVPOConfig

TINY_FLAGS = [
    "--env", "pendulum_swingup", "--hidden-size", "16", "--time-embed-size", "8",
    "--diffusion-steps", "3", "--batch-size", "8", "--train-samples", "4",
    "--behavior-samples", "2", "--target-samples", "2", "--eval-samples", "2",
    "--entropy-samples", "2", "--num-envs", "4", "--updates-per-step", "1",
    "--start-steps", "16", "--eval-interval", "16", "--num-eval-envs", "2",
    "--episode-length", "10", "--total-steps", "48", "--replay-size", "64", "--no-progress",
]


def test_help_documents_every_config_field(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = capsys.readouterr().out
    for name in QVPOConfig.field_docs():
        assert "--" + name.replace("_", "-") in text


def test_command_writes_config_curve_and_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert train.main(TINY_FLAGS + ["--out", str(out), "--seed", "3"]) == 0
    meta = json.loads((out / "config.json").read_text())
    assert meta["env"] == "pendulum_swingup" and meta["seed"] == 3
    assert meta["config"]["batch_size"] == 8 and meta["versions"]["jax"]
    with np.load(out / "curve.npz") as curve:
        for key in ("env_steps", "wall_time_s", "eval_return_mean", "eval_return_std",
                    "loss_critic", "loss_actor", "q_mean", "entropy_weight", "train_return_mean"):
            assert key in curve.files, key
        np.testing.assert_array_equal(curve["env_steps"], [16, 32, 48])
        assert np.all(np.diff(curve["wall_time_s"]) > 0)
        assert np.all(np.isfinite(curve["eval_return_mean"]))
    with np.load(out / "checkpoint.npz") as ckpt:
        assert len(ckpt.files) > 20


def test_resume_continues_to_a_longer_total(tmp_path):
    out = tmp_path / "run"
    assert train.main(TINY_FLAGS + ["--out", str(out)]) == 0
    # Extending the run is a config change, so it is refused on resume ...
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["total_steps"] == 48
    # ... while resuming a finished run is a no-op that keeps the curve intact.
    assert train.main(["--resume", str(out), "--no-progress"]) == 0
    with np.load(out / "curve.npz") as curve:
        np.testing.assert_array_equal(curve["env_steps"], [16, 32, 48])


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    assert train.main(["--env", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "known envs:" in capsys.readouterr().err
    assert train.main(TINY_FLAGS + ["--chosen", "9", "--out", str(tmp_path / "y")]) == 2
    assert "chosen" in capsys.readouterr().err
    out = tmp_path / "z"
    out.mkdir()
    (out / "something").write_text("x")
    assert train.main(TINY_FLAGS + ["--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_module_entry_point_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "qvpo_mjx.train", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--num-envs" in proc.stdout and "--preset" in proc.stdout


def test_gpu_preset_keeps_its_update_to_data_ratio_when_num_envs_changes():
    ratio = train.PRESETS["gpu"]["update_to_data"]
    base = train.preset_config("gpu")
    assert base.updates_per_step == round(ratio * base.num_envs)
    assert train.preset_config("gpu", {"num_envs": 1024}).updates_per_step == round(ratio * 1024)
    assert train.preset_config("gpu", {"num_envs": 8}).updates_per_step >= 1
    # An explicit count wins; presets without a ratio keep their own count.
    assert train.preset_config("gpu", {"num_envs": 1024, "updates_per_step": 6}).updates_per_step == 6
    cpu = train.preset_config("cpu", {"num_envs": 64})
    assert cpu.updates_per_step == train.PRESETS["cpu"]["config"]["updates_per_step"]
    # The parsed command goes through the same rule.
    args = train.build_parser().parse_args(["--preset", "gpu", "--num-envs", "512"])
    assert train.resolve(args)[0].updates_per_step == round(ratio * 512)
