"""The baselines behind the algorithm interface (qvpo_mjx/algorithms/): SAC's and TD3's defining
steps against the closed forms of BASELINES.md, their targets' schedules, and each algorithm in
the loop with the options, seeds and resume."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qvpo_mjx import agent, algorithms, cli, rundir
from qvpo_mjx import checkpoint as checkpoint_module
from qvpo_mjx.algorithms import baseline, dacer, dipo, qsm, sac, td3
from qvpo_mjx.config import QVPOConfig
from qvpo_mjx.loop import Trainer
from qvpo_mjx.presets import preset_values
from test_loop import TINY, TINY_ENV
from test_train_cli import TINY_FLAGS

OBS, D = 3, 2


def state_of(algo, **changes):
    cfg = TINY.replace(algo=algo, **changes)
    return baseline.init(jax.random.PRNGKey(0), OBS, D, cfg)


def batch(B=8, seed=1):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    return agent.Transition(obs=jax.random.normal(k[0], (B, OBS)),
                            action=jax.random.uniform(k[1], (B, D), minval=-1, maxval=1),
                            reward=jax.random.normal(k[2], (B,)),
                            next_obs=jax.random.normal(k[3], (B, OBS)),
                            terminated=jnp.zeros((B,)))


def max_diff(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def peaked_q(state, params, obs, a):
    """A stand-in for ``baseline.both_q``: both critics' Q(s, a) = -|a - 0.5|^2, (2, B)."""
    q = -jnp.sum(jnp.square(a - 0.5), axis=-1)
    return jnp.stack([q, q])


# --- SAC: BASELINES.md's closed forms ------------------------------------------------------
def test_sac_log_prob_of_the_centre_sample():
    a, log_prob = sac.squash(jnp.zeros((1,)), jnp.ones((1,)), jnp.zeros((1,)))
    assert float(a[0]) == 0.0
    assert abs(float(log_prob) - (-0.918939)) < 2e-6  # -ln sqrt(2 pi), less the 1e-6 guard


def test_sac_log_prob_is_the_change_of_variables_density():
    # At a = tanh(u): log N(u; m, s) - log(1 - a^2), against scipy's normal density.
    mean, std, xi = jnp.array([0.3, -1.2]), jnp.array([0.5, 2.0]), jnp.array([0.7, -0.4])
    a, log_prob = sac.squash(mean, std, xi)
    u = mean + std * xi
    expected = jnp.sum(jax.scipy.stats.norm.logpdf(u, mean, std) - jnp.log(1 - jnp.tanh(u) ** 2))
    np.testing.assert_allclose(a, jnp.tanh(u), rtol=1e-6)
    assert abs(float(log_prob - expected)) < 1e-4


def test_sac_temperature_loss_and_its_gradient():
    loss, grad = jax.value_and_grad(sac.temperature_loss)(jnp.float32(0.0),
                                                          jnp.array([-0.918939]), -1.0)
    assert abs(float(loss) - 1.918939) < 1e-5
    assert abs(float(grad) - 1.918939) < 1e-5  # so Adam lowers log alpha: entropy above target


def test_sac_soft_td_target():
    state = state_of("sac")  # gamma 0.99
    b = agent.Transition(obs=jnp.zeros((1, OBS)), action=jnp.zeros((1, D)), reward=jnp.ones((1,)),
                         next_obs=jnp.zeros((1, OBS)), terminated=jnp.zeros((1,)))
    y = agent.td_target(state, b, sac.soft_value(jnp.array([2.0]), 1.0, jnp.array([-0.918939])))
    assert abs(float(y[0]) - 3.889750) < 1e-5


def test_sac_steps_move_the_critic_target_every_update_and_the_temperature_with_the_actor():
    state = state_of("sac")
    b = batch()
    new, metrics = sac.critic_step(state, b, jax.random.PRNGKey(2))
    tau = float(state.hparams["tau"])
    expected = jax.tree.map(lambda t, o: t + tau * (o - t), state.critic_target_params,
                            new.critic_params)
    assert max_diff(new.critic_target_params, expected) < 1e-6
    assert max_diff(new.critic_params, state.critic_params) > 0
    assert int(new.critic_updates) == 1 and int(new.actor_updates) == 0
    assert new.actor_target_params == {}  # SAC has no target actor
    after, m = sac.actor_step(new, b, jax.random.PRNGKey(3))
    assert int(after.actor_updates) == 1
    assert float(after.log_alpha) != float(new.log_alpha)
    assert max_diff(after.critic_target_params, new.critic_target_params) == 0
    # Adam's first step moves log alpha by lr against the sign of the temperature gradient:
    # entropy above the target (-d) lowers alpha, below it raises it.
    entropy = float(m["actor/entropy"])  # of the policy sample before the step (close enough)
    step = float(after.log_alpha - new.log_alpha)
    assert abs(abs(step) - TINY.sac_alpha_lr) < 1e-6
    assert math.copysign(1, step) == (-1 if entropy > -D else 1)


# --- TD3 ------------------------------------------------------------------------------------
def test_td3_smoothed_target_action_and_target():
    a = td3.smoothed_action(jnp.array([0.9]), jnp.array([0.7]), 0.5)
    assert float(a[0]) == 1.0  # noise clipped to 0.5, the sum to 1
    q1, q2 = 2.0 * a, 3.0 * a
    state = state_of("td3")
    for terminated, y_expected in ((0.0, 2.98), (1.0, 1.0)):
        b = agent.Transition(obs=jnp.zeros((1, OBS)), action=jnp.zeros((1, D)),
                             reward=jnp.ones((1,)), next_obs=jnp.zeros((1, OBS)),
                             terminated=jnp.full((1,), terminated))
        y = agent.td_target(state, b, jnp.minimum(q1, q2))
        assert abs(float(y[0]) - y_expected) < 1e-5


def test_td3_targets_move_only_with_the_delayed_actor():
    state = state_of("td3")
    b = batch()
    new, _ = td3.critic_step(state, b, jax.random.PRNGKey(2))
    assert max_diff(new.critic_target_params, state.critic_target_params) == 0
    assert max_diff(new.actor_target_params, state.actor_target_params) == 0
    assert max_diff(new.critic_params, state.critic_params) > 0
    after, _ = td3.actor_step(new, b, jax.random.PRNGKey(3))
    tau = float(state.hparams["tau"])
    for target, old, online in ((after.actor_target_params, new.actor_target_params,
                                 after.actor_params),
                                (after.critic_target_params, new.critic_target_params,
                                 new.critic_params)):
        expected = jax.tree.map(lambda t, o: t + tau * (o - t), old, online)
        assert max_diff(target, expected) < 1e-6
    assert int(after.actor_updates) == 1 and int(after.critic_updates) == 1


def test_td3_actor_step_raises_q1_of_its_action():
    state = state_of("td3")
    b = batch(B=64)
    obs = b.obs
    q1 = lambda s: float(jnp.mean(baseline.both_q(  # noqa: E731
        s, s.critic_params, obs, s.actor.apply(s.actor_params, obs))[0]))
    s = state
    for i in range(5):
        s, _ = td3.actor_step(s, b, jax.random.PRNGKey(i))
    assert q1(s) > q1(state)


def test_td3_acting_adds_clipped_gaussian_noise_and_evaluation_is_mu():
    state = state_of("td3", td3_action_noise=0.1)
    obs = batch(B=4096).obs
    mu = state.actor.apply(state.actor_params, obs)
    action, _ = td3.act(state, obs, jax.random.PRNGKey(5))
    inside = jnp.abs(mu + 0.3) < 0.7  # far from the bounds, where clipping cannot act
    diff = (action - mu)[inside]
    assert abs(float(jnp.std(diff)) - 0.1) < 0.005 and abs(float(jnp.mean(diff))) < 0.005
    assert float(jnp.max(jnp.abs(action))) <= 1.0
    np.testing.assert_array_equal(td3.eval_act(state, obs, jax.random.PRNGKey(0)), mu)


# --- The interface and the settings ---------------------------------------------------------
def test_every_algorithm_is_registered_and_unknown_ones_are_named():
    assert set(algorithms.ALGORITHMS) == {"qvpo", "sac", "td3", "qsm", "dacer", "dipo"}
    with pytest.raises(ValueError, match="known: qvpo, sac, td3, qsm, dacer, dipo"):
        algorithms.get("ppo")
    with pytest.raises(ValueError, match="algo must be one of"):
        QVPOConfig(algo="ppo")


def test_qvpo_only_exploration_options_are_refused_for_baselines():
    with pytest.raises(ValueError, match="behavior_noise"):
        QVPOConfig(algo="sac", behavior_noise="pink")
    with pytest.raises(ValueError, match="behavior_optimism"):
        QVPOConfig(algo="td3", behavior_optimism=1.0)


def test_td3_keeps_its_policy_delay_under_every_preset_unless_a_flag_sets_it():
    for preset in ("cpu", "paper"):
        assert preset_values(preset, {"algo": "td3"})[0]["critic_updates_per_actor"] == 2
        dacer_values = preset_values(preset, {"algo": "dacer"})[0]
        assert (dacer_values["critic_updates_per_actor"], dacer_values["diffusion_steps"],
                dacer_values["beta_schedule"], dacer_values["reward_scale"]) == (2, 20, "vp", 0.2)
        dipo_values = preset_values(preset, {"algo": "dipo"})[0]
        assert (dipo_values["diffusion_steps"], dipo_values["beta_schedule"]) == (100, "cosine")
        assert preset_values(preset, {"algo": "sac"})[0].get("critic_updates_per_actor", 1) == 1
    assert preset_values("cpu", {"algo": "td3", "critic_updates_per_actor": 1}
                         )[0]["critic_updates_per_actor"] == 1


# --- In the loop --------------------------------------------------------------------------
# One run per algorithm, through the command line, carries every option the loop gives the
# baselines (n-step windows, normalised observations, a LayerNorm distributional critic, the
# actor delay, the novelty bonus, two seeds) and is cut and resumed: one compile per algorithm
# checks both.
OPTIONS = ["--n-step", "3", "--obs-normalization", "--critic-layer-norm", "--critic-bins", "11",
           "--critic-v-min", "-20", "--critic-v-max", "20", "--critic-updates-per-actor", "2",
           "--updates-per-step", "2", "--novelty-weight", "0.5", "--num-seeds", "2"]


@pytest.mark.parametrize("algo", ["sac", "td3", "qsm", "dacer", "dipo"])
def test_baselines_run_with_the_options_and_seeds_and_resume_to_the_uninterrupted_run(
        tmp_path, algo):
    flags = TINY_FLAGS + OPTIONS + ["--algo", algo, "--compile-cache", "none"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli.main(flags + ["--out", str(full)]) == 0
    short = [f if f != "48" else "32" for f in flags]  # --total-steps 32: 2 of the 3 chunks
    assert cli.main(short + ["--out", str(part)]) == 0
    assert cli.main(["--resume", str(part), "--total-steps", "48", "--no-progress",
                     "--compile-cache", "none"]) == 0
    a, b = rundir.load_curve(full / rundir.CURVE_FILE), rundir.load_curve(part / rundir.CURVE_FILE)
    assert len(a) == len(b) == 3
    assert a[0].keys() == b[0].keys()
    for ra, rb in zip(a, b):
        for k in set(ra) - {"wall_time_s"}:  # two compiles of one program: close, not equal
            np.testing.assert_allclose(ra[k], rb[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert rundir.read_meta(full)["config"]["algo"] == algo
    last = a[-1]  # the curve's names: "critic/loss" is saved as critic_loss
    for k in ("critic_loss", "actor_loss", "critic_q_target", "eval_return_mean"):
        assert np.all(np.isfinite(np.asarray(last[k]))), k
    # The bonus is in the target (its value is tested in test_exploration; the preset gates it
    # by this dense reward and lets it fall to 0 over these 48 steps).
    assert all(np.all(np.asarray(r["critic_novelty_bonus"]) >= 0) for r in a)
    # 9 vector steps update (warm-up ends in the first chunk's 4th), 2 critic updates each,
    # the actor every second.
    np.testing.assert_array_equal(last["critic_updates"], [18, 18])
    np.testing.assert_array_equal(last["actor_updates"], [9, 9])
    arrays = checkpoint_module.read(full)
    kernel = arrays["agent/critic_params/params/q1/Dense_0/kernel"]
    assert np.max(np.abs(kernel[0] - kernel[1])) > 0  # the seeds differ
    np.testing.assert_array_equal(arrays["agent/obs_stats/seen"], [[0, 48], [0, 48]])  # every observation acted on
    assert arrays["agent/novelty/mean_novelty"].shape == (2,)  # resumed with the rest


def test_baseline_actors_update_on_the_critic_batch_they_follow(monkeypatch):
    # SAC and TD3 take the actor's states from the critic batch just used (QVPO samples a
    # batch of its own: test_loop): with the actor after every critic update, the two see the
    # same states.
    sac_algo = algorithms.ALGORITHMS["sac"]

    def critic_spy(state, batch, key, axis_name=None):
        state, metrics = sac_algo.critic_step(state, batch, key, axis_name)
        return state, {**metrics, "critic/obs_mean": jnp.mean(batch.obs)}

    def actor_spy(state, batch, key, axis_name=None):
        state, metrics = sac_algo.actor_step(state, batch, key, axis_name)
        return state, {**metrics, "actor/obs_mean": jnp.mean(batch.obs)}

    monkeypatch.setitem(algorithms.ALGORITHMS, "sac", dataclasses.replace(
        sac_algo, critic_step=critic_spy, actor_step=actor_spy))
    tr = Trainer(TINY.replace(algo="sac", updates_per_step=3), TINY_ENV)
    state = jax.jit(tr.init)(jax.random.PRNGKey(0))
    run = jax.jit(tr.run_chunk)
    for _ in range(3):
        state, metrics = run(state)
    assert abs(float(metrics["critic/obs_mean"] - metrics["actor/obs_mean"])) < 1e-5
    assert float(jnp.std(state.replay.data.obs[:48])) > 0.1  # the states differ between rows


# --- QSM ------------------------------------------------------------------------------------
def test_qsm_vp_schedule_and_score_target_closed_forms():
    from qvpo_mjx import diffusion
    np.testing.assert_allclose(diffusion.betas_for("vp", 5),
                               [0.195875, 0.458818, 0.635781, 0.754878, 0.835031], atol=2e-6)
    for T in (5, 20):
        abar = np.prod(1 - diffusion.betas_for("vp", T))
        assert abs(abar - math.exp(-5.05)) < 1e-9
    target = qsm.score_target(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]]), 50.0)
    np.testing.assert_allclose(target, [[-25.0, -25.0]])
    assert float(qsm.score_matching_loss(jnp.zeros((1, 2)), target)) == 625.0


def test_qsm_sampler_is_the_simple_chain():
    # With eps_theta = 0 and no step noise each step divides by sqrt(alpha_t) and clips: from
    # x_T = 0.01 five vp steps give 0.01 / sqrt(abar_0) = 0.01 exp(5.05 / 2), under 1.
    from qvpo_mjx import diffusion
    schedule = diffusion.make_schedule("vp", 5)
    x = diffusion.sample_simple(lambda x, t: jnp.zeros_like(x), schedule, jnp.full((1, 1), 0.01),
                                jnp.zeros((5, 1, 1)))
    assert abs(float(x[0, 0]) - 0.01 * math.exp(5.05 / 2)) < 1e-5
    x = diffusion.sample_simple(lambda x, t: jnp.zeros_like(x), schedule, jnp.full((1, 1), 0.5),
                                jnp.zeros((5, 1, 1)))
    assert float(x[0, 0]) == 1.0  # clipped at every step


def test_qsm_actor_step_matches_minus_the_scaled_action_gradient():
    # After a few steps on one batch, the noise net's output at the training points has moved
    # towards -M_q grad_a Q (its loss falls), and the critic and its target stay as they were.
    state = baseline.init(jax.random.PRNGKey(0), OBS, D,
                          TINY.replace(algo="qsm", beta_schedule="vp", diffusion_steps=5,
                                       actor_lr=1e-2))
    b = batch(B=64)
    # The first loss, computed independently: per-state gradients of each critic by vmap.
    k_t, k_eps = jax.random.split(jax.random.PRNGKey(7))
    t = jax.random.randint(k_t, (64,), 0, 5)
    eps = jax.random.normal(k_eps, (64, D))
    sched = state.schedule
    noisy = (sched.sqrt_alphas_cumprod[t][:, None] * b.action
             + sched.sqrt_one_minus_alphas_cumprod[t][:, None] * eps)

    def q_j(j, s_, a_):
        return state.critic.apply(state.critic_params, s_, a_)[j]

    g = [jax.vmap(jax.grad(lambda a_, s_, j=j: q_j(j, s_, a_)))(noisy, b.obs) for j in (0, 1)]
    pred = state.actor.apply(state.actor_params, noisy, t, b.obs)
    expected = float(jnp.mean(jnp.square(pred + 50.0 * 0.5 * (g[0] + g[1]))))
    losses = []
    s = state
    for i in range(30):
        s, m = qsm.actor_step(s, b, jax.random.PRNGKey(7))  # the same t and eps every step
        losses.append(float(m["actor/loss"]))
    assert abs(losses[0] - expected) < 1e-4 * expected
    assert losses[-1] < 0.5 * losses[0], losses
    assert max_diff(s.critic_params, state.critic_params) == 0
    assert max_diff(s.critic_target_params, state.critic_target_params) == 0
    assert int(s.actor_updates) == 30


def test_qsm_policy_climbs_a_known_q_to_its_maximum(monkeypatch):
    # Q(s, a) = -(a - 0.5)^2 for both critics: score matching to M_q grad_a Q turns the chain
    # into a narrow distribution around a = 0.5 (M_q 1: with BASELINES.md's 50 the 5-step chain
    # overshoots a maximum this sharp and lands on the bounds, which is QSM's, not a bug).
    monkeypatch.setattr(baseline, "both_q", peaked_q)
    cfg = TINY.replace(algo="qsm", hidden_size=32, diffusion_steps=5, beta_schedule="vp",
                       actor_lr=1e-3, qsm_q_scale=1.0)
    state = baseline.init(jax.random.PRNGKey(0), OBS, 1, cfg)

    def train(state, key):
        k_obs, k_act, k_step = jax.random.split(key, 3)
        b = agent.Transition(obs=jax.random.normal(k_obs, (128, OBS)),
                             action=jax.random.uniform(k_act, (128, 1), minval=-1, maxval=1),
                             reward=jnp.zeros(128), next_obs=jnp.zeros((128, OBS)),
                             terminated=jnp.zeros(128))
        return qsm.actor_step(state, b, k_step)[0], None

    state, _ = jax.lax.scan(train, state, jax.random.split(jax.random.PRNGKey(1), 600))
    a = qsm.chain(state, state.actor_params, jax.random.normal(jax.random.PRNGKey(2), (512, OBS)),
                  jax.random.PRNGKey(3))
    assert abs(float(jnp.mean(a)) - 0.5) < 0.1 and float(jnp.std(a)) < 0.2, (
        float(jnp.mean(a)), float(jnp.std(a)))


def test_baselines_on_two_devices_stay_replicated(tmp_path):
    from test_scale_out import run_on_two_devices
    r = run_on_two_devices(tmp_path, "baselines")
    for algo in ("sac", "td3", "qsm", "dacer", "dipo"):
        assert r[algo]["replicas_equal"] and r[algo]["finite"], (algo, r[algo])
        assert r[algo]["updates"] == [18, 9], algo  # as test_baselines_run_with_the_options_...


# --- DACER ----------------------------------------------------------------------------------
def test_dacer_entropy_of_a_mixture_and_its_alpha_step_closed_forms():
    # BASELINES.md: 3 equal N(0, 1) components in d = 1 give H = ln 3 + 1.418939 = 2.517551,
    # above the target -0.9, so one Adam step (lr 0.03) lowers log alpha by 0.03: 3 -> 2.911337.
    H = dacer.mixture_entropy(jnp.full((3,), 1 / 3), jnp.ones((3, 1, 1)))
    assert abs(float(H) - 2.517551) < 1e-5
    state = state_of("dacer")
    assert abs(math.exp(float(state.log_alpha)) - 3.0) < 1e-6
    assert abs(3.0 * state.structure.dacer_noise_scale - 0.45) < 1e-9  # first exploration std
    grad = jax.grad(dacer.alpha_loss)(state.log_alpha, H, -0.9)
    assert abs(float(grad) - (2.517551 + 0.9)) < 1e-5
    log_alpha, _ = baseline.adam_step(state.log_alpha, state.alpha_opt_state, grad, 0.03)
    assert abs(math.exp(float(log_alpha)) - 2.911337) < 1e-5


def test_dacer_mixture_fit_recovers_three_separated_clusters():
    # Clusters at -10, 0 and 10 on the first axis, each with covariance diag(1, 4), in random
    # order: each component's entropy is d/2 (1 + ln 2 pi) + 1/2 ln det = 2.837877 + ln 2,
    # so H = ln 3 + 3.531024 = 4.629637.
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    centres = jnp.repeat(jnp.array([[-10.0, 0.0], [0.0, 0.0], [10.0, 0.0]]), 1000, axis=0)
    x = centres + jax.random.normal(k[0], (3000, 2)) * jnp.array([1.0, 2.0])
    x = jax.random.permutation(k[1], x)
    weights, means, cov = jax.jit(dacer.fit_mixture)(x)
    order = jnp.argsort(means[:, 0])
    np.testing.assert_allclose(means[order, 0], [-10, 0, 10], atol=0.2)
    np.testing.assert_allclose(weights, [1 / 3] * 3, atol=0.02)
    np.testing.assert_allclose(cov[:, 1, 1], [4, 4, 4], rtol=0.15)
    assert abs(float(dacer.mixture_entropy(weights, cov)) - 4.629637) < 0.05


def test_dacer_loss_goes_through_a_two_step_chain():
    # eps_theta(x, t) = w x and one draw z at the first step: with no clip active the chain is
    # a = k0(w) (k1(w) x_T + s1 z), k_t(w) = m1_t (c1_t - c2_t w) + m2_t: its value and its
    # derivative in w against the closed form (the gradient DACER's actor follows).
    from qvpo_mjx import diffusion
    sched = diffusion.make_schedule("vp", 2)
    c1, c2 = np.asarray(sched.sqrt_recip_alphas_cumprod, np.float64), np.asarray(
        sched.sqrt_recipm1_alphas_cumprod, np.float64)
    m1, m2 = np.asarray(sched.posterior_mean_coef1, np.float64), np.asarray(
        sched.posterior_mean_coef2, np.float64)
    s1 = math.exp(0.5 * float(sched.posterior_log_variance_clipped[1]))
    x_T, z, w = 0.05, 0.02, 0.3

    def closed(w):
        k = [m1[t] * (c1[t] - c2[t] * w) + m2[t] for t in (0, 1)]
        return k[0] * (k[1] * x_T + s1 * z)

    def chain(w):
        return diffusion.sample(lambda x, t: w * x, sched, jnp.full((1, 1), x_T),
                                jnp.array([[[z]], [[0.7]]]))[0, 0]  # step 0's draw is unused

    assert abs(float(chain(w)) - closed(w)) < 1e-6
    fd = (closed(w + 1e-5) - closed(w - 1e-5)) / 2e-5
    assert abs(float(jax.grad(chain)(w)) - fd) < 1e-4 * max(1.0, abs(fd))


def test_dacer_actor_step_moves_alpha_on_its_turns_and_the_target_with_the_actor():
    state = state_of("dacer", dacer_alpha_every=2, dacer_entropy_samples=16)
    b = batch(B=8)
    s1, m1 = dacer.actor_step(state, b, jax.random.PRNGKey(1))  # actor update 0: alpha's turn
    assert abs(float(s1.log_alpha) - float(state.log_alpha)) > 0.029  # one Adam step of 0.03
    s2, _ = dacer.actor_step(s1, b, jax.random.PRNGKey(2))  # update 1: not its turn
    assert float(s2.log_alpha) == float(s1.log_alpha)
    s3, _ = dacer.actor_step(s2, b, jax.random.PRNGKey(3))  # update 2: its turn again
    assert float(s3.log_alpha) != float(s2.log_alpha)
    assert int(s3.actor_updates) == 3 and max_diff(s3.critic_params, state.critic_params) == 0
    assert max_diff(s1.critic_target_params, state.critic_target_params) == 0  # critic unmoved
    c, _ = dacer.critic_step(state, b, jax.random.PRNGKey(4))
    assert max_diff(c.critic_target_params, state.critic_target_params) == 0  # moves with actor
    assert max_diff(c.critic_params, state.critic_params) > 0
    s4, _ = dacer.actor_step(c, b, jax.random.PRNGKey(5))
    assert max_diff(s4.critic_target_params, c.critic_target_params) > 0
    assert np.isfinite(float(m1["actor/loss"])) and float(m1["actor/alpha"]) == pytest.approx(3.0)


def test_dacer_critic_target_scales_the_reward():
    # Terminal transitions: y = reward_scale r (DACER's 0.2 under the presets).
    state = state_of("dacer", reward_scale=0.2)
    b = batch(B=8).replace(terminated=jnp.ones((8,)))
    _, m = dacer.critic_step(state, b, jax.random.PRNGKey(0))
    np.testing.assert_allclose(float(m["critic/q_target"]), 0.2 * float(jnp.mean(b.reward)),
                               rtol=1e-5, atol=1e-6)


def test_dacer_policy_climbs_a_known_q_to_its_maximum(monkeypatch):
    # Q(s, a) = -(a - 0.5)^2 for both critics: the gradient through the chain moves the
    # chain's actions to around 0.5. With a small alpha: under its code's first noise (std
    # 0.45, clipped at the bounds) the best chain output of this Q is the bound itself, since
    # clipping there cuts the noise's variance (0.17 against 0.20 at 0.5).
    monkeypatch.setattr(baseline, "both_q", peaked_q)
    cfg = TINY.replace(algo="dacer", hidden_size=32, diffusion_steps=5, beta_schedule="vp",
                       actor_lr=1e-3, dacer_initial_alpha=0.01, dacer_alpha_every=100_000,
                       dacer_entropy_samples=6)
    state = baseline.init(jax.random.PRNGKey(0), OBS, 1, cfg)

    def train(state, key):
        k_obs, k_step = jax.random.split(key)
        b = agent.Transition(obs=jax.random.normal(k_obs, (128, OBS)),
                             action=jnp.zeros((128, 1)), reward=jnp.zeros(128),
                             next_obs=jnp.zeros((128, OBS)), terminated=jnp.zeros(128))
        return dacer.actor_step(state, b, k_step)[0], None

    state, _ = jax.lax.scan(train, state, jax.random.split(jax.random.PRNGKey(1), 400))
    a = dacer.eval_act(state, jax.random.normal(jax.random.PRNGKey(2), (512, OBS)),
                       jax.random.PRNGKey(3))
    assert abs(float(jnp.mean(a)) - 0.5) < 0.05 and float(jnp.std(a)) < 0.1, (
        float(jnp.mean(a)), float(jnp.std(a)))


# --- DIPO -----------------------------------------------------------------------------------
def test_dipo_action_ascent_closed_form(monkeypatch):
    # BASELINES.md: Q1 = Q2 = (1, -2) . a, A = 0, B = 1: every Adam step moves A by eta times
    # the sign of grad_a Q (the clip's scale cancels in Adam): (0.6, -0.6) after 20 steps,
    # (1, -1) after 40 (clamped).
    def linear_q(state, params, obs, a):
        q = a @ jnp.array([1.0, -2.0])
        return jnp.stack([q, q])

    monkeypatch.setattr(baseline, "both_q", linear_q)
    for steps, expected in ((20, [0.6, -0.6]), (40, [1.0, -1.0])):
        state = state_of("dipo", dipo_action_steps=steps)
        a = dipo.improve_actions(state, jnp.zeros((1, OBS)), jnp.zeros((1, D)))
        np.testing.assert_allclose(a, [expected], atol=1e-3)


def test_dipo_actor_step_writes_improved_actions_back_and_clones_them(monkeypatch):
    # Q = -(a - 0.5)^2: the ascent moves the chosen rows' actions towards 0.5 and writes them
    # back (the other rows keep theirs); repeated steps on the same rows keep improving them.
    monkeypatch.setattr(baseline, "both_q", peaked_q)
    state = state_of("dipo", dipo_action_steps=5, dipo_action_lr=0.03)
    column = jnp.full((10, D), -0.5)
    state = state.replace(improved=column)
    rows = jnp.array([1, 4, 7])
    data = algorithms.ActorRows(rows=rows, obs=jnp.ones((3, OBS)))
    s1, m1 = dipo.actor_step(state, data, jax.random.PRNGKey(0))
    moved = np.asarray(s1.improved)
    np.testing.assert_allclose(moved[rows], -0.5 + 0.15, atol=2e-3)  # 5 steps of eta
    np.testing.assert_array_equal(np.delete(moved, rows, axis=0), -0.5)
    s2, _ = dipo.actor_step(s1, data, jax.random.PRNGKey(1))
    np.testing.assert_allclose(np.asarray(s2.improved)[rows], -0.5 + 0.3, atol=4e-3)
    assert float(m1["actor/action_shift"]) == pytest.approx(0.15 * math.sqrt(D), abs=5e-3)
    assert max_diff(s1.actor_params, state.actor_params) > 0
    assert max_diff(s1.actor_target_params, state.actor_target_params) > 0  # Polyak, tau
    assert int(s2.actor_updates) == 2


def test_dipo_buffer_rows_start_at_the_action_taken():
    from qvpo_mjx import replay
    buf = replay.init(4, OBS, D, improved=True)
    items = batch(B=3)
    buf = replay.add(buf, items)
    np.testing.assert_array_equal(buf.improved[:3], items.action)
    buf = buf.replace(improved=buf.improved.at[0].set(0.9))
    buf = replay.add(buf, batch(B=2, seed=5))  # rows 3 and 0: row 0's improvement is gone
    np.testing.assert_array_equal(buf.improved[0], batch(B=2, seed=5).action[1])
    assert replay.init(4, OBS, D).improved is None  # only DIPO's buffer has the column

