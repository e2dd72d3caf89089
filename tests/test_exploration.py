"""Exploration options: correlated latent noise (behavior_noise), the optimistic score
(behavior_optimism), the novelty bonus (novelty_weight), and the coverage metric of the curve."""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qvpo_mjx import agent, behavior_noise, checkpoint, replay
from qvpo_mjx.config import QVPOConfig
from qvpo_mjx.loop import Trainer
from test_loop import TINY, TINY_ENV


def run_process(kind, tau, steps=60, envs=4000, J=None, restart=None):
    """The summed draw x_T of ``envs`` one-candidate, one-dim streams over ``steps`` steps:
    (steps, envs)."""
    J = J or behavior_noise.num_components(kind, 1000)
    rho, weights = behavior_noise.coefficients(kind, tau, J)
    noise = behavior_noise.init(jax.random.PRNGKey(0), envs, 1, 1, 1, J)
    restart = jnp.zeros((envs,)) if restart is None else restart

    def body(noise, key):
        x_T, _ = behavior_noise.draws(noise, weights)
        return behavior_noise.advance(noise, key, rho, restart), x_T[:, 0, 0]

    return np.asarray(jax.lax.scan(body, noise, jax.random.split(jax.random.PRNGKey(1),
                                                                 steps))[1])


@pytest.mark.parametrize("kind,tau", [("ar1", 5.0), ("pink", 1.0)])
def test_latent_noise_is_standard_normal_at_every_step_with_the_closed_form_lag1_correlation(
        kind, tau):
    x = run_process(kind, tau)  # (60, 4000)
    # Every step, over envs: mean 0 and variance 1 (4,000 draws: s.e. 0.016 and 0.022).
    assert np.abs(x.mean(1)).max() < 0.07
    assert np.abs(x.var(1) - 1).max() < 0.1
    assert abs(x.mean()) < 0.02 and abs(x.var() - 1) < 0.03
    # Lag-1 correlation: rho = exp(-1/tau) for ar1; the mean of exp(-1/2^j) over the J = 10
    # octaves of episode length 1000 for pink.
    want = math.exp(-1 / tau) if kind == "ar1" else np.mean([math.exp(-1 / 2 ** j)
                                                             for j in range(10)])
    lag1 = np.mean(x[1:] * x[:-1])
    assert abs(lag1 - want) < 0.015, (lag1, want)
    # And white noise it is not: the reference's draws are independent.
    assert want > 0.5


def test_pink_noise_spectrum_falls_as_one_over_f():
    x = run_process("pink", 1.0, steps=1024, envs=256)  # (1024, 256)
    power = np.mean(np.abs(np.fft.rfft(x, axis=0)) ** 2, axis=1)
    f = np.fft.rfftfreq(1024)
    band = (f > 1 / 256) & (f < 1 / 4)  # inside the octaves' range, away from both ends
    slope = np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0]
    assert -1.3 < slope < -0.7, slope  # white: 0, ar1 well below its knee: -2


def test_an_episode_end_restarts_the_stream():
    envs = 4000
    restart = (jnp.arange(envs) % 2).astype(jnp.float32)  # odd envs end their episode every step
    x = run_process("ar1", 20.0, steps=30, envs=envs, restart=restart)
    kept, restarted = x[:, 0::2], x[:, 1::2]
    assert abs(np.mean(kept[1:] * kept[:-1]) - math.exp(-1 / 20)) < 0.02
    assert abs(np.mean(restarted[1:] * restarted[:-1])) < 0.03  # a fresh draw: independent
    assert abs(restarted.var() - 1) < 0.05


def test_the_loop_advances_the_noise_and_restarts_it_where_an_episode_ended():
    """tau 1e9 makes rho 1 in float32: a stream changes only where its env's episode ended."""
    def components_after_a_chunk(episode_length):
        cfg = TINY.replace(behavior_noise="ar1", behavior_noise_tau=1e9,
                           episode_length=episode_length)
        tr = Trainer(cfg, TINY_ENV)
        state = jax.jit(tr.init)(jax.random.PRNGKey(0))
        before = np.asarray(state.noise.components)
        assert before.shape == (4, cfg.behavior_samples, cfg.diffusion_steps + 1, 1, 1)
        state, _ = jax.jit(tr.run_chunk)(state)
        names = checkpoint.named_leaves(state)
        assert any(n.startswith("noise/") for n in names)  # saved with the run, and resumed
        return before, np.asarray(state.noise.components)

    before, after = components_after_a_chunk(1000)  # no episode ends in 4 vector steps
    np.testing.assert_array_equal(before, after)
    before, after = components_after_a_chunk(3)  # every env ends an episode: every stream anew
    assert np.all(np.abs(before - after).reshape(4, -1).max(1) > 1e-3)
    # White noise keeps no state.
    assert jax.jit(Trainer(TINY, TINY_ENV).init)(jax.random.PRNGKey(0)).noise is None


SMALL = QVPOConfig(hidden_size=32, diffusion_steps=4, batch_size=16, train_samples=8,
                   behavior_samples=5, target_samples=4, eval_samples=8, entropy_samples=3)


def test_acting_with_given_draws_is_the_chain_of_those_draws():
    st = agent.init(jax.random.PRNGKey(0), 3, 2, SMALL.replace(behavior_epsilon=1.0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (6, 3))
    x_T = jax.random.normal(jax.random.PRNGKey(2), (6, 5, 2))
    z = jax.random.normal(jax.random.PRNGKey(3), (4, 6, 5, 2))
    # behavior_epsilon 1: every env acts with candidate 0, the chain of stream 0's draws.
    action, _ = agent.act_with_stats(st, obs, jax.random.PRNGKey(4), (x_T, z))
    want = agent.denoise(st, st.actor_params, obs, x_T, z, 1.0)[:, 0]
    np.testing.assert_allclose(np.asarray(action), np.asarray(want), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kappa", [0.0, 1.0, 3.0])
def test_the_optimistic_score_is_min_plus_kappa_half_the_critics_gap(kappa):
    st = agent.init(jax.random.PRNGKey(0), 3, 2, SMALL.replace(behavior_optimism=kappa))
    obs = jax.random.normal(jax.random.PRNGKey(1), (6, 3))
    cands = jax.random.uniform(jax.random.PRNGKey(2), (6, 5, 2), minval=-1, maxval=1)
    q = np.asarray(st.critic.apply(st.critic_params, jnp.repeat(obs[:, None], 5, 1), cands))
    want = np.minimum(q[0], q[1]) + kappa * np.abs(q[0] - q[1]) / 2  # by hand
    got = np.asarray(agent.behavior_scores(st, obs, cands))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if kappa == 0:  # the reference's min(Q1, Q2), exactly as the TD target and Q-weights read it
        np.testing.assert_array_equal(got, np.asarray(agent.min_q(st, st.critic_params, obs,
                                                                  cands)))
    if kappa == 3:  # above 1 it favours where the critics disagree: the max and beyond
        assert np.all(got >= np.maximum(q[0], q[1]) - 1e-6)


def test_coverage_is_numpys_spread_of_the_filled_rows():
    buf = replay.init(64, 3, 1)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(40, 3)) * np.array([1.0, 5.0, 0.1]) + np.array([100.0, -3.0, 0.0])
    buf = replay.add(buf, agent.Transition(
        obs=jnp.asarray(obs, jnp.float32), action=jnp.zeros((40, 1)), reward=jnp.zeros(40),
        next_obs=jnp.zeros((40, 3)), terminated=jnp.zeros(40)))
    got = float(replay.obs_spread(buf))
    assert got == pytest.approx(float(np.mean(obs.std(axis=0))), rel=1e-4)  # 24 rows unfilled
    assert float(replay.obs_spread(replay.init(8, 3, 1))) == 0.0
    # A buffer larger than COVERAGE_ROWS: evenly spaced filled rows stand for all of them.
    n, cap = 3 * replay.COVERAGE_ROWS, 4 * replay.COVERAGE_ROWS
    big = rng.normal(size=(n, 2)) * np.array([2.0, 0.5]) + 10.0
    buf = replay.add(replay.init(cap, 2, 1), agent.Transition(
        obs=jnp.asarray(big, jnp.float32), action=jnp.zeros((n, 1)), reward=jnp.zeros(n),
        next_obs=jnp.zeros((n, 2)), terminated=jnp.zeros(n)))
    assert float(replay.obs_spread(buf)) == pytest.approx(float(np.mean(big.std(axis=0))),
                                                          rel=0.02)


def test_bad_exploration_settings_are_refused():
    with pytest.raises(ValueError, match="behavior_noise must be one of"):
        QVPOConfig(behavior_noise="brown")
    with pytest.raises(ValueError, match="behavior_noise_tau"):
        QVPOConfig(behavior_noise="ar1", behavior_noise_tau=0.0)
    with pytest.raises(ValueError, match="behavior_optimism"):
        QVPOConfig(behavior_optimism=-1.0)
    with pytest.raises(ValueError, match="novelty_weight"):
        QVPOConfig(novelty_weight=-0.5)
    with pytest.raises(ValueError, match="behavior_optimism .* option of qvpo"):
        QVPOConfig(algo="sac", behavior_optimism=1.0)
    QVPOConfig(algo="sac", novelty_weight=1.0)  # the loop's bonus serves every algorithm
    with pytest.raises(ValueError, match="novelty_decay_steps"):
        QVPOConfig(novelty_weight=0.5, novelty_decay_steps=-1.0)
    with pytest.raises(ValueError, match="novelty_decay_steps .* which is off"):
        QVPOConfig(novelty_decay_steps=1000.0)
    with pytest.raises(ValueError, match="novelty_reward_gate .* which is off"):
        QVPOConfig(novelty_reward_gate=True)


def test_the_novelty_bonus_averages_its_weight_and_favours_states_not_yet_learnt():
    from qvpo_mjx.agent import novelty
    tx = agent.optimizer(jnp.float32(1e-3), jnp.float32(1e-8), jnp.float32(10.0))
    state = novelty.init(jax.random.PRNGKey(0), 3, 32, tx)
    familiar = jax.random.normal(jax.random.PRNGKey(1), (64, 3))
    far = familiar + 4.0
    step = jax.jit(lambda s, obs, first: novelty.bonus_and_step(s, obs, first, jnp.float32(0.5),
                                                                32, tx))
    bonus, state, raw = step(state, familiar, jnp.bool_(True))
    # The first batch starts the running mean at its own mean novelty: its mean bonus is the
    # weight exactly.
    assert float(jnp.mean(bonus)) == pytest.approx(0.5, rel=1e-5)
    assert float(state.mean_novelty) == pytest.approx(float(raw), rel=1e-6)
    target = state.target_params
    means = [float(state.mean_novelty)]
    for _ in range(300):
        m_before = state.mean_novelty
        bonus, state, raw = step(state, familiar, jnp.bool_(False))
        # m' = (1 - rate) m + rate x the batch's mean novelty before the predictor's step
        assert float(state.mean_novelty) == pytest.approx(
            float((1 - novelty.RATE) * m_before + novelty.RATE * raw), rel=1e-5)
        means.append(float(state.mean_novelty))
    jax.tree.map(np.testing.assert_array_equal, state.target_params, target)  # never trained
    assert means[-1] < 0.5 * means[0]  # the predictor learnt the familiar states ...
    familiar_bonus = float(jnp.mean(bonus))
    far_bonus = float(jnp.mean(
        0.5 * novelty.raw_novelty(state, state.predictor_params, far, 32) / state.mean_novelty))
    assert far_bonus > 5 * familiar_bonus  # ... and states never seen are worth more


def unit_reward_batch(key, B=16):
    """B transitions of reward 1 between random 3-dim states, 2-dim actions 0."""
    from qvpo_mjx.agent.state import Transition
    return Transition(obs=jax.random.normal(key, (B, 3)), action=jnp.zeros((B, 2)),
                      reward=jnp.ones(B), next_obs=jax.random.normal(jax.random.PRNGKey(4),
                                                                     (B, 3)),
                      terminated=jnp.zeros(B))


def _init_and_critic_step(algo):
    """(init, critic step) of ``algo``: QVPO's agent or a baseline's module."""
    if algo == "qvpo":
        return agent.init, agent.critic_update
    from qvpo_mjx.algorithms import baseline
    module = importlib.import_module(f"qvpo_mjx.algorithms.{algo}")
    return baseline.init, module.critic_step


@pytest.mark.parametrize("algo", ["qvpo", "sac", "td3", "qsm", "dacer", "dipo"])
def test_the_novelty_bonus_enters_the_td_target_of_the_same_critic(algo):
    """With the bonus's networks drawn from a key of their own, a run with novelty_weight w
    starts from the critic of a run without it, and at the first update its TD target is that
    run's plus the bonus, whose mean is w: for QVPO and for every baseline (the bonus is the
    loop's, in the TD target all of them share)."""
    init, critic_step = _init_and_critic_step(algo)
    config = SMALL.replace(algo=algo)
    k = jax.random.PRNGKey(3)
    batch = unit_reward_batch(k)
    plain = init(jax.random.PRNGKey(0), 3, 2, config)
    bonus = init(jax.random.PRNGKey(0), 3, 2, config.replace(novelty_weight=0.7))
    jax.tree.map(np.testing.assert_array_equal, plain.critic_params, bonus.critic_params)
    jax.tree.map(np.testing.assert_array_equal, plain.actor_params, bonus.actor_params)
    assert plain.novelty is None
    _, m_plain = jax.jit(critic_step)(plain, batch, k)
    after, m_bonus = jax.jit(critic_step)(bonus, batch, k)
    assert float(m_bonus["critic/q_target"] - m_plain["critic/q_target"]) == pytest.approx(
        0.7, abs=1e-4)
    assert float(m_bonus["critic/novelty_bonus"]) == pytest.approx(0.7, rel=1e-5)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                         after.novelty.predictor_params, bonus.novelty.predictor_params)
    assert max(jax.tree.leaves(moved)) > 0  # the predictor took its step


@pytest.mark.parametrize("env_steps,weight", [(0, 0.8), (250, 0.6), (1000, 0.0), (5000, 0.0)])
def test_the_novelty_bonus_decays_linearly_over_its_env_steps(env_steps, weight):
    """novelty_decay_steps 1000: the first update's bonus (whose batch mean is the weight
    exactly) is 0.8 (1 - env_steps / 1000), never below 0; the TD target moves with it."""
    from qvpo_mjx.agent import novelty
    k = jax.random.PRNGKey(3)
    batch = unit_reward_batch(k)
    cfg = SMALL.replace(novelty_weight=0.8, novelty_decay_steps=1000.0)
    state = agent.init(jax.random.PRNGKey(0), 3, 2, cfg).replace(env_steps=jnp.int32(env_steps))
    _, metrics = jax.jit(agent.critic_update)(state, batch, k)
    assert float(metrics["critic/novelty_bonus"]) == pytest.approx(weight, abs=1e-6)
    plain = agent.init(jax.random.PRNGKey(0), 3, 2, SMALL).replace(
        env_steps=jnp.int32(env_steps))
    _, m_plain = jax.jit(agent.critic_update)(plain, batch, k)
    assert float(metrics["critic/q_target"] - m_plain["critic/q_target"]) == pytest.approx(
        weight, abs=1e-4)
    constant = novelty.scheduled_weight(jnp.float32(0.8), jnp.float32(0.0), jnp.int32(env_steps))
    assert float(constant) == pytest.approx(0.8)  # 0: no schedule


@pytest.mark.parametrize("rewarded,gate", [(0, 1.0), (4, 0.75), (16, 0.0)])
def test_the_reward_gate_scales_the_bonus_by_the_share_of_unrewarded_transitions(rewarded,
                                                                                   gate):
    """novelty_reward_gate: a batch of 16 with ``rewarded`` nonzero rewards (of either sign)
    gets the bonus times 1 - rewarded / 16, in its mean and in the TD target; without the gate
    the same batch gets the whole bonus."""
    from qvpo_mjx.agent import novelty
    k = jax.random.PRNGKey(3)
    reward = jnp.zeros(16).at[:rewarded].set(jnp.where(jnp.arange(rewarded) % 2, 2.0, -0.5))
    batch = unit_reward_batch(k).replace(reward=reward)
    cfg = SMALL.replace(novelty_weight=0.8)
    m = {}
    for name, c in (("plain", SMALL), ("ungated", cfg),
                    ("gated", cfg.replace(novelty_reward_gate=True))):
        _, m[name] = jax.jit(agent.critic_update)(agent.init(jax.random.PRNGKey(0), 3, 2, c),
                                                  batch, k)
    assert float(m["ungated"]["critic/novelty_bonus"]) == pytest.approx(0.8, rel=1e-5)
    assert float(m["gated"]["critic/novelty_bonus"]) == pytest.approx(0.8 * gate, abs=1e-6)
    assert float(m["gated"]["critic/q_target"] - m["plain"]["critic/q_target"]) == \
        pytest.approx(0.8 * gate, abs=1e-4)
    assert float(novelty.reward_gate(reward, jnp.float32(0.0))) == 1.0  # gate off: no scaling


def test_the_novelty_bonus_runs_in_the_loop_and_is_saved_with_the_run():
    tr = Trainer(TINY.replace(novelty_weight=1.0), TINY_ENV)
    state = jax.jit(tr.init)(jax.random.PRNGKey(0))
    state, metrics = jax.jit(tr.run_chunk)(state)
    bonus = np.asarray(metrics["critic/novelty_bonus"])
    assert np.all(np.isfinite(bonus)) and bonus.max() > 0
    assert any(n.startswith("agent/novelty/") or "/novelty/" in n
               for n in checkpoint.named_leaves(state))
