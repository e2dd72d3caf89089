"""The READMEs quote numbers from committed result files: check that they still say the same.

Each test rebuilds a README table or figure from its JSON under benchmarks/results/ with the
benchmark script's own formatting, and looks for it in the README (no training, no JAX)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BENCH_README = (ROOT / "benchmarks" / "README.md").read_text()
README = (ROOT / "README.md").read_text()


def flat(text: str) -> str:
    """Whitespace-insensitive: README prose wraps at 100 columns."""
    return " ".join(text.split())


def test_generality_suite_table_is_the_suite_json():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import suite
    result = json.loads((RESULTS / "suite_eps05.json").read_text())
    for line in suite.markdown_table(result, ["sac", "ppo"]).splitlines():
        assert line in BENCH_README, line


def test_divergence_bound_is_far_above_every_tasks_measured_maximum():
    import envs
    from qvpo_mjx.config import QVPOConfig
    bounds = json.loads((RESULTS / "state_bounds.json").read_text())
    assert bounds["divergence_bound"] == QVPOConfig().divergence_bound
    assert bounds["machine"]["command"]  # how it was made
    builtin = {n for n in envs.names() if envs.spec(n).family != "user"}
    assert set(bounds["tasks"]) <= builtin and len(bounds["tasks"]) >= 12
    for task, row in bounds["tasks"].items():
        largest = max(max(b["max_abs_obs"], b["max_abs_reward"])
                      for k, b in row.items() if k != "bound_over_largest")
        assert largest < 1e3, (task, largest)  # README: "stay below 1e3"
    assert f"the {len(bounds['tasks'])} tasks measured so far" in flat(README)


def test_cpu_preset_time_to_1000_is_the_loop_speed_json():
    runs = json.loads((RESULTS / "loop_speed_time_to_return.json").read_text())["time_to_1000"]
    assert all(r["reached"] for r in runs)
    steps = " / ".join(f"{r['env_steps'] // 1000}k" for r in runs)
    secs = " / ".join(f"{r['wall_s']:.1f}" for r in runs)
    assert f"at {steps} env steps in {secs} s" in flat(BENCH_README)


def test_any_n_table_is_the_any_n_json():
    """benchmarks/README's "Any N" table: the user's command at N = 16 ... 4,096, cold."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import any_n
    rows = json.loads((RESULTS / "any_n.json").read_text())["rows"]
    assert {r["num_envs"] for r in rows} >= {16, 4096}
    for line in any_n.markdown_table(rows).splitlines():
        assert line in BENCH_README, line
