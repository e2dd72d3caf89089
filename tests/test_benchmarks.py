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
