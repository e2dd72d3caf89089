"""Smoke tests of the benchmark scripts at tiny size: they run and report (no timing asserts)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_peers_tiny_runs_brax_sac_and_writes_a_plottable_run():
    proc = subprocess.run([sys.executable, "benchmarks/peers.py", "--tiny"], cwd=ROOT,
                          capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "brax_sac" in proc.stdout and "plot label" in proc.stdout


def test_scaling_regimes_keep_the_ratios_they_are_named_for():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scaling
    from qvpo_mjx.config import QVPOConfig
    from qvpo_mjx.presets import PRESETS
    base = dict(PRESETS["cpu"]["config"])
    for N in (16, 64, 256):
        cfgs = {name: QVPOConfig(**{**base, **scaling.regime(name, N, base)})
                for name in scaling.REGIMES if name != "reference"}

        def per_env_step(c):  # (critic, actor) updates and samples per env step
            return (c.updates_per_step / N, c.updates_per_step / c.critic_updates_per_actor / N,
                    c.updates_per_step * c.batch_size / N)

        assert per_env_step(cfgs["naive"]) == (1 / N, 1 / N, 256 / N)
        assert per_env_step(cfgs["utd"]) == (1, 1, 256)
        assert per_env_step(cfgs["half"]) == (0.5, 0.5, 128)
        assert per_env_step(cfgs["quarter"]) == (0.25, 0.25, 64)
        assert per_env_step(cfgs["wide"]) == (1 / 8, 1 / 8, 256)
        assert cfgs["wide"].actor_lr == base["actor_lr"] * 8 ** 0.5
        assert per_env_step(cfgs["half_wide"]) == (0.5, 0.5, 256)
        assert per_env_step(cfgs["delay"]) == (1, 0.5, 256)
        assert per_env_step(cfgs["delay4"]) == (1, 0.25, 256)
    assert scaling.regime("reference", 16, base) is None
    assert scaling.regime("reference", 1, base)["updates_per_step"] == 1
