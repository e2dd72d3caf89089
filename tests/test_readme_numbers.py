"""The READMEs quote numbers from committed result files: check that they still say the same.

Each test rebuilds a README table or figure from its JSON under benchmarks/results/ with the
benchmark script's own formatting, and looks for it in the README (no training, no JAX)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

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


def test_any_n_task_table_and_memory_table_are_their_jsons():
    """benchmarks/README's "Any N" rows for the other tasks (results/wide_report.json) and its
    memory table (results/memory.json)."""
    report = json.loads((RESULTS / "wide_report.json").read_text())["tasks"]

    def run(task, label, n):
        runs = [r for r in report[task]["runs"] if r["regime"] == label and r["num_envs"] == n]
        assert len(runs) == 1, (task, label, n)
        return runs[0]

    for task, n, saved in (("inverted_pendulum", 4096, 11.6), ("CartpoleSwingup", 1024, 13.1),
                           ("CartpoleSwingup", 4096, 14.8),
                           ("inverted_double_pendulum", 4096, 6.1),
                           ("inverted_double_pendulum", 1024, 6.2)):
        row = run(task, "u4_b1024_opt", n)
        assert round(row["reach_bar"]["updates_saved"], 1) == saved
        assert f"{row['reach_bar']['updates']:,} |" in BENCH_README
    rerun = run("inverted_pendulum", "u4_b1024_opt_reward_scale_autoTrue", 4096)
    assert round(rerun["reach_bar"]["updates_saved"], 1) == 9.7 and rerun["seeds"] == 3
    for label, saved in (("", 15.4), ("_critic_updates_per_actor4", 14.8),
                         ("_critic_updates_per_actor1", 9.2)):  # the actor's share at N = 1,024
        row = run("inverted_double_pendulum", f"u4_b1024_opt{label}_reward_scale_autoTrue", 1024)
        assert round(row["reach_bar"]["updates_saved"], 1) == saved and row["seeds"] == 3
        final = f"{row['final_mean']:,.0f} ± {row['final_se']:.0f}"
        cells = f"{final} | {row['reach_bar']['updates']:,} |"
        assert cells in BENCH_README
    for label in ("u1_b4096_opt_actor_lr0.0006_critic_lr0.002",
                  "u1_b16384_opt_actor_lr0.0012_critic_lr0.004"):  # wider batches, fewer updates
        row = run("inverted_double_pendulum", f"{label}_reward_scale_autoTrue", 1024)
        assert row["reach_bar"] is None
        assert f"{row['final_mean']:,.0f} ± {row['final_se']:.0f} | not reached |" in BENCH_README
    auto = run("inverted_double_pendulum", "u4_b1024_opt_reward_scale_autoTrue", 4096)
    assert round(auto["reach_bar"]["updates_saved"], 1) == 14.4 and auto["seeds"] == 3
    assert f"| {auto['reach_bar']['updates']:,} | **14.4x** |" in BENCH_README
    assert run("inverted_double_pendulum", "u4_b1024_opt_critic_bins101",
               1024)["reach_bar"]["updates_saved"] == pytest.approx(7.7, abs=0.05)
    width = run("halfcheetah", "u4_b1024_opt_hidden_size256", 256)
    assert f"**{width['final_mean']:,.0f} ± {width['final_se']:.0f}**" in BENCH_README
    rows = json.loads((RESULTS / "memory.json").read_text())["rows"]

    def temporaries(label, env, batch):
        [row] = [r for r in rows if (r["label"], r["env"], r["preset"], r["batch_size"])
                 == (label, env, "gpu", batch)]
        return row["gib"]["temporaries"]

    assert round(temporaries("before", "humanoid", 256), 2) == 2.62  # "2.62 GiB" before
    assert temporaries("rule", "humanoid", 1024) < 0.5  # the target
    assert f"| **{temporaries('rule', 'humanoid', 1024):.2f}** |" in BENCH_README


@pytest.mark.parametrize("variant,label", [("opt4", "`behavior_optimism 4`"),
                                           ("nov05", "`novelty_weight 0.5`")])
def test_pendulum_swingup_exploration_rows_are_their_suite_jsons(variant, label):
    """benchmarks/README's PendulumSwingup table of exploration options (issue 25)."""
    result = json.loads((RESULTS / f"suite_{variant}.json").read_text())
    qvpo = result["tasks"]["PendulumSwingup"]["qvpo"]
    finals = ", ".join(f"{v:.0f}" for v in qvpo["final"])
    means = ", ".join(f"{v:.0f}" if v >= 100 else f"{v:.1f}" for v in qvpo["mean_over_run"])
    assert f"| QVPO, {label} | {finals} | {means} |" in BENCH_README


def test_rule_at_n16_and_halfcheetah_peers_are_their_files():
    """benchmarks/README's "The rule below N = 64" and its halfcheetah peers (issue 24)."""
    report = json.loads((RESULTS / "wide_report.json").read_text())["tasks"]
    text = flat(BENCH_README)
    for task, saved in (("inverted_double_pendulum", 1.7), ("CartpoleSwingup", 2.6),
                        ("halfcheetah", None)):
        [row] = [r for r in report[task]["runs"] if (r["regime"], r["num_envs"]) == ("delay", 16)]
        assert f"{row['final_mean']:,.0f} ± {row['final_se']:.0f}" in text, task
        if saved is None:
            assert row["reach_bar"] is None
        else:
            assert round(row["reach_bar"]["updates_saved"], 1) == saved
            assert f"after {row['reach_bar']['updates']:,}" in text
    peers = RESULTS / "wide" / "peers"
    finals = [float(np.load(peers / "hc_sac_wide" / f"halfcheetah__brax_sac__N256__s{s}"
                            / "curve.npz")["eval_return_mean"][-1]) for s in range(3)]
    assert "ends at " + ", ".join(f"{v:.0f}" for v in finals[:2]) + f" and {finals[2]:.0f}" in text


# The novelty bonus's settings on the four sparse tasks at 100k env steps (issue 25), each a
# results file of the same Brax SAC runs: constant, falling over the run, gated, and gated and
# falling (the cpu preset's since 2026-12-07).
SPARSE_VARIANTS = (
    ("sparse.json", {"novelty_weight": 0.5}),
    ("sparse_nov05d100k.json", {"novelty_weight": 0.5, "novelty_decay_steps": 100000}),
    ("sparse_nov05gate.json", {"novelty_weight": 0.5, "novelty_reward_gate": True}),
    ("sparse_nov05gd100k.json", {"novelty_weight": 0.5, "novelty_reward_gate": True,
                                 "novelty_decay_steps": 100000}))
# AcrobotSwingup's reward is never exactly 0 (a Gaussian tolerance of margin 1), so the gate
# closes at the first batch: gated and gated-and-falling are the same run there.
SAME_AS_GATED = "as gated"


def sparse_rows() -> list[str]:
    """benchmarks/README's table of the four sparse tasks at 100k env steps (issue 25), rebuilt
    from the :data:`SPARSE_VARIANTS` files."""
    runs = []
    for name, overrides in SPARSE_VARIANTS:
        result = json.loads((RESULTS / name).read_text())
        assert result["overrides"] == overrides, name
        runs.append(result["tasks"])
    rows = []
    for task, c in runs[0].items():
        cells = [r.get(task) for r in runs]
        for row in cells:
            if row is not None:
                assert row["qvpo"]["env_steps"] == 100_000 and row["qvpo"]["seeds"] == 3
                assert row["sac"] == c["sac"]  # the same Brax runs
        assert c["sac"]["seeds"] == 3 and c["sac"]["env_steps"] <= 102_000  # 2% slack

        def finals(r):
            return ", ".join(f"{v:.0f}" for v in r["final"]) if r else SAME_AS_GATED

        def fraction(r, bold=False):
            if r is None:
                return SAME_AS_GATED
            f = f"{r['fraction_final']:.2f}"
            return (f"**{f}**" if bold else f) + f" / {r['fraction_mean_over_run']:.2f}"

        means = " / ".join(f"{r['mean_over_run_mean']:.0f}" if r else "-"
                           for r in [c["sac"]] + [x and x["qvpo"] for x in cells])
        rows.append(f"| {task} | {c['random']:.1f} | {finals(c['sac'])} | "
                    + " | ".join(finals(x and x["qvpo"]) for x in cells)
                    + f" | {means} | "
                    + " | ".join(fraction(x, bold=i == 3) for i, x in enumerate(cells)) + " |")
    return rows


def test_sparse_tasks_at_100k_rows_are_the_sparse_json():
    tasks = json.loads((RESULTS / "sparse.json").read_text())["tasks"]
    assert set(tasks) == {"PendulumSwingup", "BallInCup", "FingerSpin", "AcrobotSwingup"}
    gated = json.loads((RESULTS / "sparse_nov05gate.json").read_text())["tasks"]
    assert set(gated) == set(tasks)
    both = json.loads((RESULTS / "sparse_nov05gd100k.json").read_text())["tasks"]
    assert set(both) == set(tasks) - {"AcrobotSwingup"}
    for row in sparse_rows():
        assert row in BENCH_README, row


def suite_default_rows() -> list[str]:
    """benchmarks/README's rows of the suite under today's preset (the gated, falling novelty
    bonus) against the preset before it, from results/suite_nov05gd.json, suite_eps05.json and
    their comparison."""
    today = json.loads((RESULTS / "suite_nov05gd.json").read_text())["tasks"]
    before = json.loads((RESULTS / "suite_eps05.json").read_text())["tasks"]
    compare = json.loads((RESULTS / "suite_nov05gd_compare.json").read_text())
    rows = []
    for task in ("PendulumSwingup", "BallInCup", "FingerSpin", "CartpoleSwingup"):
        b, t, c = before[task], today[task], compare[task]
        assert t["qvpo"]["final"] == c["nov05gd"]["final"]  # the same runs
        t_text = f"{c['welch_t_final']:+.1f} / {c['welch_t_mean_over_run']:+.1f}"
        rows.append(
            f"| {task} | {t['budget']:,} | "
            + ", ".join(f"{v:.0f}" for v in b["qvpo"]["final"]) + " → "
            + ", ".join(f"{v:.0f}" for v in t["qvpo"]["final"])
            + f" | {b['fraction_final']:.2f} → {t['fraction_final']:.2f} | "
            f"{b['fraction_mean_over_run']:.2f} → {t['fraction_mean_over_run']:.2f} | "
            + t_text.replace("-", "−") + " |")
    return rows


def test_the_suite_under_todays_preset_is_its_json():
    for row in suite_default_rows():
        assert row in BENCH_README, row


def test_the_falling_bonus_on_dense_tasks_is_its_compare_json():
    """benchmarks/README's table of the bonus falling over the run on three dense tasks."""
    compare = json.loads((RESULTS / "suite_nov05drun_compare.json").read_text())
    suite = json.loads((RESULTS / "suite_nov05drun.json").read_text())["tasks"]

    def seeds(v):
        return ", ".join(f"{x:.0f}" for x in v["final"]) + \
            f" ({sum(v['mean_over_run']) / len(v['mean_over_run']):.0f})"

    for task in ("pendulum_swingup", "inverted_double_pendulum", "halfcheetah"):
        c = compare[task]
        t = f"{c['welch_t_final']:+.1f} / {c['welch_t_mean_over_run']:+.1f}".replace("-", "−")
        row = (f"| {task} | {seeds(c['eps05'])} | {seeds(c['nov05drun'])} | {t} | "
               f"{suite[task]['fraction_final']:.2f}")
        assert row in BENCH_README, row


def test_halfcheetah_at_n1024_is_the_wide_report():
    """benchmarks/README's halfcheetah row at N = 1,024 (issue 24)."""
    report = json.loads((RESULTS / "wide_report.json").read_text())["tasks"]["halfcheetah"]
    [row] = [r for r in report["runs"] if r["num_envs"] == 1024]
    seeds = ", ".join(f"{v:,.0f}" for v in row["final_per_seed"])
    assert f"{row['final_mean']:,.0f} ± {row['final_se']:.0f} ({seeds}) | not reached |" \
        in BENCH_README


def test_the_fairness_checks_are_their_files():
    """benchmarks/README's fairness checks on inverted_double_pendulum and halfcheetah (issue
    26): our SAC at Brax SAC's settings against Brax SAC."""
    text = flat(BENCH_README)
    for task in ("inverted_double_pendulum", "halfcheetah"):
        fair = json.loads((RESULTS / f"suite_fairness_{task}.json").read_text())
        row = fair["tasks"][task]
        for name in ("ours_sac", "sac"):
            v = row[name]["final"]
            assert (f"{v[0]:,.0f}, {v[1]:,.0f} and {v[2]:,.0f} ({row[name]['final_mean']:,.0f})"
                    in text), (task, name)
    ent = json.loads((RESULTS / "suite_fairness_halfcheetah_ent.json").read_text())
    assert ent["overrides"]["sac_target_entropy"] == -0.5
    v = ent["tasks"]["halfcheetah"]["ours_sac"]
    assert (f"{v['final'][0]:,.0f}, {v['final'][1]:,.0f} and {v['final'][2]:,.0f} "
            f"({v['final_mean']:,.0f})") in text
    # Brax SAC evaluating its mean action, and with this loop's network shape
    for name, check in (("brax_sac_det", lambda c: c["deterministic_eval"]),
                        ("brax_sac_mish3", lambda c: c["hidden_layer_sizes"] == [256] * 3
                         and c["activation"] == "mish" and "kernel_init" not in c),
                        ("brax_sac_mish3_qinit", lambda c: c["hidden_layer_sizes"] == [256] * 3
                         and c["activation"] == "mish" and c["kernel_init"] == "qvpo"),
                        ("brax_sac_qinit", lambda c: "hidden_layer_sizes" not in c
                         and "activation" not in c and c["kernel_init"] == "qvpo")):
        runs = json.loads((RESULTS / "suite" / "halfcheetah" / name / "peers_summary.json"
                           ).read_text())["runs"]
        finals = [r["final_return"] for r in runs]
        assert len(runs) == 3 and all(check(r["config"]) for r in runs), name
        assert "ends at " + ", ".join(f"{v:,.0f}" for v in finals[:2]) + f" and {finals[2]:,.0f}" \
            in text, name
    # With the same networks the two SACs are within seed noise (the README's "the loop is
    # fair"): Welch t of the finals, both ways of counting, under 2.
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from suite_compare import welch_t
    same = [r["final_return"] for r in json.loads(
        (RESULTS / "suite" / "halfcheetah" / "brax_sac_mish3_qinit" / "peers_summary.json"
         ).read_text())["runs"]]
    ours = json.loads((RESULTS / "suite_fairness_halfcheetah.json").read_text()
                      )["tasks"]["halfcheetah"]["ours_sac"]["final"]
    assert abs(welch_t(ours, same)) < 2 and f"t {welch_t(ours, same):+.1f}".replace(
        "-", "−") in text


SUITE_TASKS = ("pendulum_swingup", "inverted_double_pendulum", "reacher", "hopper", "halfcheetah",
               "CartpoleSwingup", "AcrobotSwingup", "PendulumSwingup", "BallInCup", "FingerSpin")


def epsilon_rows() -> list[str]:
    """benchmarks/README's table of behavior_epsilon 0.5 against 0 under today's preset on all
    ten suite tasks (issue 25), from results/suite_epsilon_today.json; fractions against the
    suite's reference and random return (results/suite_eps05.json, the same peers' runs)."""
    compare = json.loads((RESULTS / "suite_epsilon_today.json").read_text())
    suite = json.loads((RESULTS / "suite_eps05.json").read_text())["tasks"]
    rows = []
    for task in SUITE_TASKS:
        c, s = compare[task], suite[task]
        a, b = c[c["a"]], c[c["b"]]
        assert c["a"] in ("nov05gd", "eps05") and c["b"] in ("gd_eps0", "eps0")

        def fraction(values, ref):
            return (float(np.mean(values)) - s["random"]) / (ref - s["random"])

        cells = [", ".join(f"{v:.0f}" for v in a["final"]),
                 ", ".join(f"{v:.0f}" for v in b["final"]),
                 f"{fraction(a['final'], s['reference_final']):.2f} / "
                 f"{fraction(b['final'], s['reference_final']):.2f}",
                 f"{fraction(a['mean_over_run'], s['reference_mean_over_run']):.2f} / "
                 f"{fraction(b['mean_over_run'], s['reference_mean_over_run']):.2f}",
                 f"{c['welch_t_final']:+.1f} / {c['welch_t_mean_over_run']:+.1f}"]
        rows.append(f"| {task} | {c['budget']:,} | " + " | ".join(cells).replace("-", "−")
                    + " |")
    return rows


def test_behavior_epsilon_on_all_ten_tasks_is_its_compare_json():
    compare = json.loads((RESULTS / "suite_epsilon_today.json").read_text())
    assert set(SUITE_TASKS) <= set(compare)
    assert len(compare["inverted_double_pendulum"]["eps05"]["final"]) == 6
    for row in epsilon_rows():
        assert row in BENCH_README, row
    # the decision's reading: 0.5 ahead beyond noise on three tasks, 0 nowhere beyond t 1.3
    t = {task: (compare[task]["welch_t_final"], compare[task]["welch_t_mean_over_run"])
         for task in SUITE_TASKS}
    assert {k for k, v in t.items() if max(v) < -2} == {
        "pendulum_swingup", "CartpoleSwingup", "PendulumSwingup"}
    assert max(max(v) for v in t.values()) < 1.35


def test_the_six_algorithm_table_is_its_json():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import algos_table
    result = json.loads((RESULTS / "algos_table.json").read_text())
    for line in algos_table.markdown(result).splitlines():
        if line.startswith("| "):
            assert line in BENCH_README, line
