import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qvpo_mjx import networks


def test_mish_matches_definition_and_gradient():
    x = jnp.linspace(-60.0, 60.0, 4001)
    reference = x * jnp.tanh(jax.nn.softplus(x))
    np.testing.assert_allclose(networks.mish(x), reference, rtol=1e-5, atol=1e-6)
    g = jax.vmap(jax.grad(networks.mish))(x)
    g_ref = jax.vmap(jax.grad(lambda v: v * jnp.tanh(jax.nn.softplus(v))))(x)
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5)
    assert bool(jnp.all(jnp.isfinite(g)))


def test_linear_init_is_plain_normal_with_reference_sigma():
    # The reference's weights are untruncated normal draws (its truncation loop never writes
    # back): std sigma, and 4.55% of them beyond 2 sigma (a truncated normal has none).
    w = networks.linear_init(jax.random.PRNGKey(0), (256, 512))
    sigma = 1 / (2 * math.sqrt(256))
    assert float(w.std()) == pytest.approx(sigma, rel=0.01)
    assert float(jnp.mean(jnp.abs(w) > 2 * sigma)) == pytest.approx(0.0455, abs=0.003)
    assert abs(float(w.mean())) < 0.01 * sigma


def test_timestep_embedding_hand_computed():
    emb = networks.timestep_embedding(jnp.array([0.0, 3.0]), 32)
    freqs = np.exp(-np.arange(16) * np.log(10000.0) / 15)
    np.testing.assert_allclose(emb[0], np.r_[np.zeros(16), np.ones(16)], atol=1e-7)
    np.testing.assert_allclose(emb[1], np.r_[np.sin(3 * freqs), np.cos(3 * freqs)], rtol=1e-5,
                               atol=1e-6)


def test_noise_net_split_first_layer_equals_concat_linear():
    net = networks.NoiseNet(action_size=3, obs_size=5, hidden_size=16, time_embed_size=8)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros(3), jnp.zeros(()), jnp.zeros(5))
    p = params["params"]
    assert p["first_kernel"].shape == (3 + 8 + 5, 16)
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    x, s = jax.random.normal(k[0], (7, 3)), jax.random.normal(k[1], (7, 5))
    t = jnp.arange(7.0)
    emb = networks.timestep_embedding(t, 8)
    temb = networks.mish(emb @ p["time_in"]["kernel"] + p["time_in"]["bias"])
    temb = temb @ p["time_out"]["kernel"] + p["time_out"]["bias"]
    h = networks.mish(jnp.concatenate([x, temb, s], -1) @ p["first_kernel"] + p["first_bias"])
    for name in ("hidden2", "hidden3"):
        h = networks.mish(h @ p[name]["kernel"] + p[name]["bias"])
    expected = h @ p["out"]["kernel"] + p["out"]["bias"]
    np.testing.assert_allclose(net.apply(params, x, t, s), expected, rtol=1e-5, atol=1e-6)


def test_twin_critic_heads_are_independent():
    critic = networks.TwinCritic(hidden_size=32)
    params = critic.init(jax.random.PRNGKey(0), jnp.zeros(4), jnp.zeros(2))
    q = critic.apply(params, jnp.ones((6, 4)), jnp.ones((6, 2)) * 0.3)
    assert q.shape == (2, 6)
    assert float(jnp.abs(q[0] - q[1]).max()) > 1e-4
