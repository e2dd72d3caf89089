"""The distributional critic (critic_bins > 0): the HL-Gauss target, Q as the histogram's mean,
the cross-entropy loss, and that it fits returns."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qvpo_mjx import agent
from qvpo_mjx.config import QVPOConfig

OBS, ACT, BINS, V = 5, 2, 21, 10.0
DIST = QVPOConfig(hidden_size=32, diffusion_steps=3, batch_size=16, train_samples=4,
                  behavior_samples=2, target_samples=2, eval_samples=2, entropy_samples=2,
                  critic_bins=BINS, critic_v_min=-V, critic_v_max=V)


def normal_mass(y, lo, hi, sigma):
    """P(lo < Y < hi), Y ~ N(y, sigma^2), by math.erf."""
    return 0.5 * (math.erf((hi - y) / (sigma * math.sqrt(2))) -
                  math.erf((lo - y) / (sigma * math.sqrt(2))))


def test_hl_gauss_target_is_the_normals_mass_in_each_bin():
    width = 2 * V / BINS
    edges = -V + width * np.arange(BINS + 1)
    ys = np.array([0.0, 1.234, -9.9, 9.5, 25.0, -40.0])
    got = np.asarray(agent.hl_gauss_target(jnp.asarray(ys, jnp.float32), -V, V, BINS))
    for y, row in zip(ys, got):
        c = min(max(y, -V), V)  # targets outside the support are clipped into it
        mass = np.array([normal_mass(c, lo, hi, 0.75 * width) for lo, hi in zip(edges[:-1],
                                                                                  edges[1:])])
        np.testing.assert_allclose(row, mass / mass.sum(), atol=2e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-6)
    # A bin's centre well inside the support: the histogram is symmetric about it, so its mean is
    # the target itself.
    centres = np.asarray(agent.bin_centres(-V, V, BINS))
    np.testing.assert_allclose(got[0] @ centres, 0.0, atol=1e-5)
    assert abs(float(got[1] @ centres) - 1.234) < 0.01 * width


@pytest.fixture(scope="module")
def state():
    return agent.init(jax.random.PRNGKey(0), OBS, ACT, DIST)


def batch(key, terminal=1.0, B=16):
    k = jax.random.split(key, 4)
    return agent.Transition(
        obs=jax.random.normal(k[0], (B, OBS)),
        action=jax.random.uniform(k[1], (B, ACT), minval=-1, maxval=1),
        reward=jax.random.uniform(k[2], (B,), minval=-3.0, maxval=3.0),
        next_obs=jax.random.normal(k[3], (B, OBS)),
        terminated=jnp.full((B,), terminal))


def test_q_is_the_histograms_mean_wherever_q_is_read(state):
    b = batch(jax.random.PRNGKey(1))
    logits = np.asarray(state.critic.apply(state.critic_params, b.obs, b.action))
    assert logits.shape == (2, 16, BINS)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    want = probs @ np.asarray(agent.bin_centres(-V, V, BINS))  # (2, B)
    q, _ = agent.critic_q(state, state.critic_params, b.obs, b.action)
    np.testing.assert_allclose(np.asarray(q), want, rtol=1e-5, atol=1e-5)
    # min_q, which the behaviour, TD-target and evaluation selections and the Q-weights read.
    mq = agent.min_q(state, state.critic_params, b.obs, b.action[:, None, :])[:, 0]
    np.testing.assert_allclose(np.asarray(mq), want.min(0), rtol=1e-5, atol=1e-5)


def test_critic_loss_is_both_critics_cross_entropy_to_the_target_histogram(state):
    b = batch(jax.random.PRNGKey(2))  # every row terminal: y = r, whatever the target actor does
    _, metrics = jax.jit(agent.critic_update)(state, b, jax.random.PRNGKey(3))
    logits = np.asarray(state.critic.apply(state.critic_params, b.obs, b.action), np.float64)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    target = np.asarray(agent.hl_gauss_target(b.reward, -V, V, BINS), np.float64)  # (B, K)
    want = -np.sum(np.mean(np.sum(target * log_p, -1), -1))
    assert float(metrics["critic/loss"]) == pytest.approx(want, rel=1e-5)
    assert float(metrics["critic/q_target"]) == pytest.approx(float(np.mean(b.reward)), rel=1e-5)


def test_distributional_critic_fits_the_returns_of_a_fixed_batch(state):
    """300 critic steps on terminal transitions: each critic's mean moves to its row's reward."""
    b = batch(jax.random.PRNGKey(4))
    st = state.replace(hparams={**state.hparams, "critic_lr": jnp.float32(3e-3)})

    def run(st, key):
        def body(st, k):
            return agent.critic_update(st, b, k)[0], None
        return jax.lax.scan(body, st, jax.random.split(key, 300))[0]

    before, _ = agent.critic_q(st, st.critic_params, b.obs, b.action)
    st = jax.jit(run)(st, jax.random.PRNGKey(5))
    after, _ = agent.critic_q(st, st.critic_params, b.obs, b.action)
    r = np.asarray(b.reward)
    err_before = np.abs(np.asarray(before) - r).max()
    err_after = np.abs(np.asarray(after) - r).max()
    assert err_before > 1.0 and err_after < 0.25, (err_before, err_after)


def test_support_and_bins_are_checked():
    with pytest.raises(ValueError, match="critic_bins"):
        QVPOConfig(critic_bins=1)
    with pytest.raises(ValueError, match="critic_bins"):
        QVPOConfig(critic_bins=-3)
    with pytest.raises(ValueError, match="critic_v_min"):
        QVPOConfig(critic_bins=51, critic_v_min=5.0, critic_v_max=5.0)
