"""Smoke tests of the benchmark scripts at tiny size: they run and report (no timing asserts)."""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # 3-6 minutes on 2 cores: Brax SAC's and PPO's compiles dominate
def test_peers_tiny_runs_brax_sac_and_writes_a_plottable_run():
    proc = subprocess.run([sys.executable, "benchmarks/peers.py", "--tiny"], cwd=ROOT,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "brax_sac" in proc.stdout and "plot label" in proc.stdout


def test_scaling_regimes_keep_the_ratios_they_are_named_for():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scaling
    from qvpo_mjx.presets import PRESETS
    base = dict(PRESETS["cpu"]["config"])
    for N in (16, 64, 256):
        def config(name, **overrides):  # what run_one trains
            return scaling.study_config(name, N, 1, 30_000, overrides)

        cfgs = {name: config(name) for name in scaling.REGIMES if name != "reference"}

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
        # The wide regime: U updates of batch B per vector step whatever N, actor every second.
        wide = config("u2_b4096")
        assert per_env_step(wide) == (2 / N, 1 / N, 2 * 4096 / N)
        assert (wide.obs_normalization, wide.n_step, wide.critic_layer_norm) == (False, 1, False)
        opt = config("u2_b4096_opt")
        assert per_env_step(opt) == per_env_step(wide)
        assert (opt.obs_normalization, opt.n_step, opt.critic_layer_norm) == (True, 3, True)
        assert opt.start_steps == 4096 and opt.total_steps == 30_000  # a full first batch
        # Another algorithm keeps its own chain and actor delay in every regime, as --algo does.
        dacer = config("u2_b4096_opt", algo="dacer")
        assert (dacer.diffusion_steps, dacer.beta_schedule, dacer.reward_scale) == (20, "vp", 0.2)
        assert per_env_step(dacer) == per_env_step(opt)
        assert config("utd", algo="td3").critic_updates_per_actor == 2
        assert config("delay4", algo="td3").critic_updates_per_actor == 4
        assert config("utd", algo="dipo", diffusion_steps=10).diffusion_steps == 10  # the flag
        assert config("utd", algo="sac").diffusion_steps == base["diffusion_steps"]
    with pytest.raises(argparse.ArgumentTypeError, match="uU_bB"):
        scaling.regime_name("u0_b256")
    assert scaling.regime_name("u8_b1024") == "u8_b1024"
    assert scaling.regime_name("u8_b1024_opt") == "u8_b1024_opt"
    with pytest.raises(argparse.ArgumentTypeError):
        scaling.regime_name("u8_b1024_fast")
    assert scaling.regime("reference", 16, base) is None
    # --set KEY=VALUE: typed by the config field, named in the run directory.
    assert scaling.config_override("train_samples=4") == ("train_samples", 4)
    assert scaling.config_override("obs_normalization=false") == ("obs_normalization", False)
    assert scaling.config_override("tau=0.1") == ("tau", 0.1)
    for bad in ("train_samples=4.5", "no_such_field=1", "tau", "critic_layer_norm=maybe"):
        with pytest.raises(argparse.ArgumentTypeError):
            scaling.config_override(bad)
    assert scaling.overrides_tag({"train_samples": 4, "diffusion_steps": 3}) == \
        "_diffusion_steps3_train_samples4"
    assert scaling.regime("reference", 1, base)["updates_per_step"] == 1


@pytest.mark.slow  # about 3 minutes on 2 cores: QVPO, Brax SAC and the random policy on 2 tasks
def test_suite_quick_reports_fractions_of_the_better_peer(tmp_path):
    out = tmp_path / "suite.json"
    proc = subprocess.run([sys.executable, "benchmarks/suite.py", "--quick", "--peers", "sac",
                           "--algos", "qvpo", "sac",
                           "--runs-dir", str(tmp_path / "runs"), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert sorted(result["tasks"]) == ["CartpoleSwingup", "pendulum_swingup"]
    for task, row in result["tasks"].items():
        q, ref, rand = row["qvpo"], row["reference_final"], row["random"]
        assert row["sac"]["final_mean"] == ref  # the only peer is the reference
        assert row["fraction_final"] == pytest.approx((q["final_mean"] - rand) / (ref - rand))
        ours = row["ours_sac"]  # this loop's SAC beside Brax's, on the same scale
        assert row["fraction_final_ours_sac"] == pytest.approx(
            (ours["final_mean"] - rand) / (ref - rand))
        assert json.loads((tmp_path / "runs" / task / "sac_cpu" / "config.json").read_text()
                          )["config"]["algo"] == "sac"
        assert (tmp_path / "runs" / "plots" / f"{task}.png").exists()


def test_cost_model_predicts_a_run_from_its_measured_costs():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import cost_model
    # Costs measured at B = 256 and 1024 (critic 1 ms -> 2 ms, actor 3 ms -> 12 ms: linear in
    # log-log between them and beyond); a vector step 4 ms at N = 64 and 8 ms at N = 256.
    results = {"updates": [
        {"batch_size": 256, "train_samples": 64, "diffusion_steps": 20, "critic_ms": 1.0,
         "actor_ms": 3.0},
        {"batch_size": 1024, "train_samples": 64, "diffusion_steps": 20, "critic_ms": 2.0,
         "actor_ms": 12.0}],
        "vector_steps": [{"env": "halfcheetah", "num_envs": 64, "vector_step_ms": 4.0},
                         {"env": "halfcheetah", "num_envs": 256, "vector_step_ms": 8.0}]}
    p = cost_model.predict(results, num_envs=128, batch_size=512, updates_per_step=4,
                           critic_updates_per_actor=2, env_steps=128_000, start_steps=12_800,
                           env="halfcheetah")
    # Geometric midpoints: critic sqrt(2) ms, actor 6 ms, vector step sqrt(32) ms.
    vector_steps, updating = 1000, 900
    expected = (vector_steps * np.sqrt(32) + updating * 4 * np.sqrt(2) + updating * 2 * 6) / 1e3
    assert p["seconds"] == pytest.approx(expected, rel=1e-9)
    assert p["critic_updates"] == 3600 and p["actor_updates"] == 1800
    wide = cost_model.predict(results, num_envs=256, batch_size=4096, updates_per_step=1,
                              critic_updates_per_actor=1, env_steps=256_000, env="halfcheetah")
    assert wide["critic_ms"] == pytest.approx(4.0) and wide["actor_ms"] == pytest.approx(48.0)


def fake_curve(run_dir, steps, returns, config=None):
    run_dir.mkdir(parents=True)
    steps = np.asarray(steps, float)
    np.savez(run_dir / "curve.npz", env_steps=steps, wall_time_s=steps / 100,
             eval_return_mean=np.asarray(returns, float), eval_return_std=np.zeros(len(steps)))
    (run_dir / "config.json").write_text(json.dumps(
        {"env": "pendulum_swingup", "seed": 0, "config": config or {"num_envs": 16}}))


def test_suite_counts_only_evaluations_within_the_budget(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import suite
    # Brax PPO overshoots a 30,000 budget to 51,200; the step-0 evaluation does not count either.
    fake_curve(tmp_path / "ppo", [0, 10240, 20480, 30720, 40960, 51200], [5, 100, 200, 300, 400, 900])
    fake_curve(tmp_path / "sac", [0, 15064, 30128], [1, 10, 50])
    ppo = suite.summarise([tmp_path / "ppo"], 30_000)
    assert ppo["final"] == [200.0] and ppo["mean_over_run"] == [150.0]
    assert ppo["env_steps"] == 20480
    sac = suite.summarise([tmp_path / "sac"], 30_000)  # 30,128: within the 2% slack
    assert sac["final"] == [50.0] and sac["mean_over_run"] == [30.0]
    fake_curve(tmp_path / "started", [0], [3])
    assert suite.summarise([tmp_path / "started", tmp_path / "nothing"], 30_000) is None
    assert suite.fraction(50.0, 10.0, 90.0) == 0.5


def test_suite_reuses_a_qvpo_run_only_of_the_same_config(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import suite
    cfg = suite.qvpo_config("cpu", 2_000, 3, {}, 10, 1000)
    fake_curve(tmp_path / "done", [1008, 2000], [1, 2], cfg.to_dict())
    assert suite.qvpo_done(tmp_path / "done", cfg)
    other = suite.qvpo_config("cpu", 2_000, 3, {"behavior_epsilon": 0.0}, 10, 1000)
    assert not suite.qvpo_done(tmp_path / "done", other)  # the preset changed since
    fake_curve(tmp_path / "cut", [1008], [1], cfg.to_dict())
    assert not suite.qvpo_done(tmp_path / "cut", cfg)  # stopped before its budget
    assert not suite.qvpo_done(tmp_path / "missing", cfg)
    # A run saved before a field existed ran at that field's default: still the same config,
    # but not for a variant that sets the new field.
    older = {k: v for k, v in cfg.to_dict().items() if k != "behavior_optimism"}
    fake_curve(tmp_path / "older", [1008, 2000], [1, 2], older)
    assert suite.qvpo_done(tmp_path / "older", cfg)
    optimism = suite.qvpo_config("cpu", 2_000, 3, {"behavior_optimism": 1.0}, 10, 1000)
    assert not suite.qvpo_done(tmp_path / "older", optimism)


def _fake_run(root, name, env_steps, critic_updates, returns, per_actor=2):
    """A run directory as scaling.py leaves it: curve.npz (E evaluations x S seeds), config."""
    run = root / name
    run.mkdir(parents=True)
    E = len(env_steps)
    np.savez(run / "curve.npz", env_steps=np.asarray(env_steps, np.float64),
             wall_time_s=np.arange(1, E + 1, dtype=np.float64) * 10,
             eval_return_mean=np.asarray(returns, np.float64),
             updates=np.repeat(np.asarray(critic_updates, np.float64)[:, None], 3, 1))
    (run / "config.json").write_text(json.dumps({"config": {
        "critic_updates_per_actor": per_actor}}))
    return str(run.relative_to(root))


def test_wide_report_measures_each_regime_against_the_rules_final_return(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import wide_report
    rows = []
    for env, wide_final in (("a", 120.0), ("b", 90.0)):
        rule = _fake_run(tmp_path, f"{env}/delay", [1000, 2000], [1000, 2000],
                         [[40, 50, 60], [90, 100, 110]])  # bar: mean 100 after 3000 updates
        # The wide run's seed-mean crosses 80 (80% of the bar) at its 2nd evaluation, 100 at
        # its 3rd: 20 and 30 critic updates, 30 and 45 sequential ones.
        wide = _fake_run(tmp_path, f"{env}/u1", [10_000, 20_000, 30_000], [10, 20, 30],
                         [[0, 0, 0], [80, 80, 80], [wide_final] * 3])
        rows += [{"env": env, "regime": "delay", "num_envs": 64, "batch_size": 256,
                  "updates_per_step": 64, "run_dir": rule},
                 {"env": env, "regime": "u1_b1024", "num_envs": 256, "batch_size": 1024,
                  "updates_per_step": 1, "run_dir": wide}]
    rep = wide_report.report({"rows": rows}, tmp_path)
    a = rep["tasks"]["a"]
    assert a["bar"] == 100.0 and a["rule_updates"] == 3000  # 2000 critic + 1000 actor
    rule, wide = a["runs"]
    assert rule["regime"] == "delay" and not rule["passes"]
    assert wide["final_mean"] == 120.0 and wide["final_se"] == 0.0
    assert wide["reach_80"] == {"env_steps": 20_000, "updates": 30, "wall_s": 20.0,
                                "updates_saved": 100.0}
    assert wide["reach_bar"]["updates"] == 45 and wide["passes"]
    # The rule after 45 sequential updates: before its first evaluation (1500 updates); after
    # its own 3000 it is its final return, and 2250 lies halfway between its evaluations.
    assert wide["rule_at_same_updates"] is None and rule["rule_at_same_updates"] == 100.0
    rule_curve = wide_report.load_curve(tmp_path / rows[0]["run_dir"])
    assert wide_report.rule_return_at(rule_curve, 2250) == 75.0
    b_wide = rep["tasks"]["b"]["runs"][1]
    assert b_wide["reach_bar"] is None and not b_wide["passes"]  # 90 < 100: never reached
    assert rep["passes_on"] == {"u1_b1024_N256": ["a"]} and rep["qualifies"] == []
    assert "not reached" in wide_report.markdown(rep)
    # Labels name what a run's saved config has that the regime does not mean today.
    row = {"regime": "u4_b1024_opt", "num_envs": 256}
    today = {"behavior_epsilon": 0.5, "n_step": 3, "batch_size": 1024, "total_steps": 300_000}
    assert wide_report.label(row, today) == "u4_b1024_opt"
    assert wide_report.label(row, {**today, "behavior_epsilon": 0.0, "actor_lr": 6e-4}) == \
        "u4_b1024_opt_actor_lr0.0006_behavior_epsilon0.0"
    assert wide_report.label(row, {**today, "n_step": 1}) == "u4_b1024_opt_n_step1"


def test_algo_cost_times_every_algorithm_on_one_scale(tmp_path):
    out = tmp_path / "algo_cost.json"
    proc = subprocess.run([sys.executable, "benchmarks/algo_cost.py", "--batch-size", "8",
                           "--hidden-size", "8", "--scan", "1", "--repeats", "1",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["algo"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"qvpo", "sac", "td3", "qsm", "dacer", "dipo"}
    assert rows["sac"]["relative_to_sac"] == 1.0
    td3 = rows["td3"]  # the policy delay: half an actor update per critic update
    assert td3["critic_updates_per_actor"] == 2
    assert td3["ms_per_update"] == pytest.approx(td3["critic_ms"] + td3["actor_ms"] / 2)
    assert rows["qsm"]["diffusion_steps"] == 5 and rows["qvpo"]["diffusion_steps"] == 20
    dacer = rows["dacer"]  # its entropy estimate's share: once in 5,000 actor updates
    assert dacer["diffusion_steps"] == 20 and dacer["entropy_ms"] > 0
    assert dacer["ms_per_update"] == pytest.approx(
        dacer["critic_ms"] + (dacer["actor_ms"] + dacer["entropy_ms"] / 5000) / 2)
    assert rows["dipo"]["diffusion_steps"] == 100 and rows["dipo"]["entropy_ms"] is None


def test_wide_report_joins_the_seeds_of_one_setting_run_apart(tmp_path):
    # scaling.py --seed K on separate cores: two runs of one setting, seeds 0 and 1, evaluated
    # at the same env steps, are one run of two seeds (and a run elsewhere stays apart).
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import wide_report
    rule = _fake_run(tmp_path, "a/delay", [1000, 2000], [1000, 2000], [[100], [100]])
    s0 = _fake_run(tmp_path, "a/u4", [10_000, 20_000], [10, 20], [[50], [90]])
    s1 = _fake_run(tmp_path, "a/u4_s1", [10_000, 20_000], [10, 20], [[70], [130]])
    other = _fake_run(tmp_path, "a/u4_b", [10_000, 30_000], [10, 30], [[0], [0]])
    wide = {"env": "a", "regime": "u4_b1024", "num_envs": 256, "batch_size": 1024,
            "updates_per_step": 4}
    rows = [{"env": "a", "regime": "delay", "num_envs": 64, "batch_size": 256,
             "updates_per_step": 64, "run_dir": rule},
            {**wide, "run_dir": s1, "first_seed": 1}, {**wide, "run_dir": s0},
            {**wide, "run_dir": other}]
    runs = wide_report.report({"rows": rows}, tmp_path)["tasks"]["a"]["runs"]
    joined = [r for r in runs if r["seeds"] == 2]
    assert len(runs) == 3 and len(joined) == 1
    assert joined[0]["final_per_seed"] == [90.0, 130.0]  # seed 0 first
    assert joined[0]["reach_bar"]["updates"] == 30  # the mean 110 >= 100 at 20 critic updates


def test_suite_compare_welch_t_against_a_hand_computation():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from suite_compare import welch_t

    # means 2 and 6, sample variances 1 and 4, n 3 each: t = 4 / sqrt(1/3 + 4/3) = 3.0984
    assert welch_t([1.0, 2.0, 3.0], [4.0, 6.0, 8.0]) == pytest.approx(4 / np.sqrt(5 / 3))
    assert welch_t([4.0, 6.0, 8.0], [1.0, 2.0, 3.0]) == pytest.approx(-4 / np.sqrt(5 / 3))
    assert np.isnan(welch_t([5.0, 5.0], [5.0, 5.0]))  # no spread: no t


def test_suite_compare_takes_per_task_the_first_variant_with_runs(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import suite_compare
    monkeypatch.setattr(suite_compare, "variant", lambda runs, task, name, budget: {"n": name})
    for task, names in {"A": ["nov05gd", "eps05"], "B": ["eps05"]}.items():
        for name in names:
            (tmp_path / task / f"qvpo_cpu_{name}").mkdir(parents=True)
            (tmp_path / task / f"qvpo_cpu_{name}" / "curve.npz").touch()
    pick = suite_compare.first_variant
    assert pick(tmp_path, "A", ["nov05gd", "eps05"], 1) == ("nov05gd", {"n": "nov05gd"})
    assert pick(tmp_path, "B", ["nov05gd", "eps05"], 1) == ("eps05", {"n": "eps05"})
    with pytest.raises(SystemExit, match="no saved runs of any of"):
        pick(tmp_path, "B", ["gd_eps0"], 1)


def test_algos_table_reads_every_algorithm_from_saved_runs(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import algos_table

    suite = tmp_path / "suite" / "hopper"
    cfg = {"num_envs": 16, "start_steps": 1000, "updates_per_step": 8,
           "critic_updates_per_actor": 2}
    # An older curve without update columns: (30,080 - 1,000) / 16 = 1,817.5 -> 1,818 vector
    # steps of 8 critic updates, 14,544, and an actor update every second one, 7,272.
    fake_curve(suite / "qvpo_cpu_eps05", [0, 15040, 30080], [0, 100, 300], cfg)
    (suite / "sac_cpu").mkdir(parents=True)
    np.savez(suite / "sac_cpu" / "curve.npz", env_steps=np.array([15040.0, 30080.0]),
             wall_time_s=np.array([1.0, 2.0]),
             eval_return_mean=np.array([[10.0, 30.0], [50.0, 70.0]]),  # (evaluations, seeds)
             eval_return_std=np.zeros((2, 2)), actor_updates=np.zeros((2, 2)),
             critic_updates=np.array([[7000, 7000], [14000, 14000]]))
    (suite / "sac_cpu" / "config.json").write_text(json.dumps(
        {"env": "hopper", "seed": 0, "seeds": [0, 1], "config": cfg}))
    for s, r in enumerate((40.0, 80.0)):
        fake_curve(suite / f"sac_s{s}", [0, 30000], [0, r])
    # Runs with the novelty bonus make a second row (SAC's alone here; no Brax peers there).
    shutil.copytree(suite / "sac_cpu", suite / "sac_cpu_nov05gd")
    (suite / "random_return.json").write_text(json.dumps({"return": 22.0}))
    row = {"regime": "u4_b1024_opt", "num_envs": 1024, "budget": 1_208_320, "env": "hopper",
           "return_final": [1.0, 3.0], "return_auc": [0.5, 1.5], "sequential_updates": 7080}
    wide = tmp_path / "wide.json"
    wide.write_text(json.dumps({"rows": [
        {**row, "overrides": {"reward_scale_auto": True}},
        {**row, "overrides": {"reward_scale_auto": True, "algo": "td3"}, "return_final": [5.0]},
        {**row, "overrides": {"reward_scale_auto": True, "tau": 0.1}},  # another setting
        {**row, "num_envs": 256, "overrides": {"reward_scale_auto": True, "algo": "sac"}}]}))
    costs = tmp_path / "cost.json"
    costs.write_text(json.dumps({"rows": [{"algo": "qvpo", "ms_per_update": 600.0},
                                          {"algo": "sac", "ms_per_update": 10.0}]}))
    result = algos_table.main(["--runs-dir", str(tmp_path / "suite"), "--tasks", "hopper",
                               "--seeds", "2", "--wide-summary", str(wide), "--costs",
                               str(costs), "--out", str(tmp_path / "out.json")])
    hopper = result["suite"]["hopper"]
    assert hopper["qvpo"]["final"] == [300.0] and hopper["qvpo"]["mean_over_run"] == [200.0]
    assert hopper["qvpo_variant"] == "eps05"  # the first of nov05gd, eps05 with runs
    assert hopper["qvpo"]["sequential_updates"] == 1818 * 8 + 1818 * 4
    assert hopper["sac"]["final"] == [50.0, 70.0] and hopper["sac"]["mean_over_run"] == [30.0, 50.0]
    assert hopper["sac"]["sequential_updates"] == 14000
    assert hopper["brax_sac"]["final_mean"] == 60.0
    assert "sequential_updates" not in hopper["brax_sac"]
    assert "td3" not in hopper and hopper["random"] == 22.0
    bonus = result["suite_bonus"]["hopper"]
    assert set(bonus) == {"budget", "random", "qvpo_variant", "sac"}
    assert bonus["sac"]["final"] == [50.0, 70.0] and bonus["qvpo_variant"] == "nov05gd"
    assert set(result["wide"]["hopper"]) == {"qvpo", "td3"}
    assert result["wide"]["hopper"]["qvpo"]["final_mean"] == 2.0
    assert result["wide"]["hopper"]["td3"]["final"] == [5.0]
    table = algos_table.markdown(result)
    assert "| hopper | 30,000 | 22 | 60 ± 20 (60) | - | 300 (200) | 60 ± 10 (40) | - |" in table
    assert "| hopper, novelty bonus | 30,000 | 22 | - | - | - | 60 ± 10 (40) | - |" in table
    assert "| QVPO | 600.0 | 21,816 | 7,080 |" in table and "| QSM | - | - | - |" in table


def test_peers_brax_sac_takes_this_loops_activation_by_name():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import peers
    from qvpo_mjx.networks import mish
    hyper = {"hidden_layer_sizes": [8, 8, 8], "activation": "mish", "learning_rate": 1e-3}
    peers._network_factory("sac", hyper)
    factory = hyper.pop("network_factory")
    assert hyper == {"learning_rate": 1e-3}  # the network keys do not reach brax's train()
    assert factory.keywords == {"hidden_layer_sizes": (8, 8, 8), "activation": mish}
    nets = factory(observation_size=3, action_size=2)
    import jax
    q_params = nets.q_network.init(jax.random.PRNGKey(0))
    kernels = [k for k in jax.tree_util.tree_leaves(q_params) if k.ndim == 2]
    assert len(kernels) == 2 * 4  # twin critics, three hidden layers and the output each
    with pytest.raises(ValueError, match="known are relu, mish, swish, tanh"):
        peers._network_factory("sac", {"activation": "gelu"})


def test_peers_brax_sac_takes_this_loops_initialisation_by_name():
    # kernel_init=qvpo: every kernel of Brax SAC's actor and critics drawn as this loop draws
    # them, std 1 / (2 sqrt(fan_in)); Brax's own LeCun uniform has std 1 / sqrt(fan_in).
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import jax
    import peers
    stds = {}
    for name in peers.KERNEL_INITS:
        hyper = {"hidden_layer_sizes": [256, 256], "kernel_init": name}
        peers._network_factory("sac", hyper)
        nets = hyper.pop("network_factory")(observation_size=17, action_size=6)
        assert hyper == {}
        params = {"policy": nets.policy_network.init(jax.random.PRNGKey(0)),
                  "q": nets.q_network.init(jax.random.PRNGKey(1))}
        stds[name] = [(k.shape[0], float(np.std(k))) for k in jax.tree_util.tree_leaves(params)
                      if k.ndim == 2]
    for scale, name in ((1.0, "lecun_uniform"), (0.5, "qvpo")):
        assert len(stds[name]) == 3 + 2 * 3  # the actor, and twin critics, 3 kernels each
        for fan_in, std in stds[name]:
            assert std == pytest.approx(scale / np.sqrt(fan_in), rel=0.15), (name, fan_in)
    with pytest.raises(ValueError, match="known are lecun_uniform, qvpo"):
        peers._network_factory("sac", {"kernel_init": "orthogonal"})
