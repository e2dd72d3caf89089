import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qvpo_mjx import diffusion

T = 20


def cosine_f(u, s=0.008):
    return np.cos((u + s) / (1 + s) * np.pi / 2) ** 2


def test_cosine_schedule_closed_form():
    sch = diffusion.make_schedule("cosine", T)
    k = np.arange(1, T + 1)
    abar_closed = cosine_f(k / T) / cosine_f(0.0)
    # f(1) = 0 makes the last beta 1, which the schedule clips to 0.999; all others are unclipped.
    np.testing.assert_allclose(sch.alphas_cumprod[:-1], abar_closed[:-1], rtol=1e-5)
    assert sch.betas[-1] == pytest.approx(0.999)
    np.testing.assert_allclose(sch.alphas_cumprod[-1], abar_closed[-2] * 0.001, rtol=1e-4)
    np.testing.assert_allclose(sch.alphas, 1 - np.asarray(sch.betas, np.float64), rtol=1e-4)


def test_linear_schedule_closed_form():
    sch = diffusion.make_schedule("linear", T)
    np.testing.assert_allclose(sch.betas, 1e-4 + (2e-2 - 1e-4) * np.arange(T) / (T - 1), rtol=1e-5)
    np.testing.assert_allclose(sch.alphas_cumprod, np.cumprod(1 - np.asarray(sch.betas)), rtol=1e-5)


def test_vp_schedule_closed_form():
    sch = diffusion.make_schedule("vp", T)
    t = np.arange(1, T + 1)
    # The per-step exponents sum to a closed form: sum_{i<=t} (2i - 1) = t^2.
    abar = np.exp(-0.1 * t / T - 0.5 * (10.0 - 0.1) * t**2 / T**2)
    np.testing.assert_allclose(sch.alphas_cumprod, abar, rtol=1e-5)


def test_unknown_schedule_lists_known_names():
    with pytest.raises(ValueError, match="cosine.*linear.*vp"):
        diffusion.make_schedule("sigmoid", T)


@pytest.mark.parametrize("kind", ["cosine", "linear", "vp"])
def test_posterior_identities(kind):
    s = diffusion.make_schedule(kind, T)
    np.testing.assert_allclose(s.alphas_cumprod_prev[0], 1.0)
    np.testing.assert_allclose(s.alphas_cumprod_prev[1:], s.alphas_cumprod[:-1], rtol=1e-6)
    # A noise-free x_t = sqrt(abar_t) x0 must have posterior mean sqrt(abar_{t-1}) x0.
    lhs = s.posterior_mean_coef1 + s.posterior_mean_coef2 * s.sqrt_alphas_cumprod
    np.testing.assert_allclose(lhs, np.sqrt(s.alphas_cumprod_prev), rtol=1e-4, atol=1e-6)
    betas = diffusion.betas_for(kind, T)  # float64
    abar = np.cumprod(1 - betas)
    abar_prev = np.r_[1.0, abar[:-1]]
    np.testing.assert_allclose(s.posterior_variance, betas * (1 - abar_prev) / (1 - abar),
                               rtol=1e-5, atol=1e-12)
    assert s.posterior_variance[0] == 0.0
    assert s.posterior_log_variance_clipped[0] == pytest.approx(np.log(1e-20), rel=1e-6)
    # At t = 0 the posterior mean is x0 itself: c1 = 1, c2 = 0.
    assert s.posterior_mean_coef1[0] == pytest.approx(1.0, abs=1e-5)
    assert s.posterior_mean_coef2[0] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(s.sqrt_recip_alphas_cumprod * s.sqrt_alphas_cumprod, 1.0, rtol=1e-5)


def test_forward_noising_moments():
    s = diffusion.make_schedule("cosine", T)
    x0 = jnp.full((200_000, 1), 0.7)
    t = jnp.full((200_000,), 7)
    eps = jax.random.normal(jax.random.PRNGKey(0), x0.shape)
    x = diffusion.q_sample(s, x0, t, eps)
    abar = float(s.alphas_cumprod[7])
    assert float(x.mean()) == pytest.approx(np.sqrt(abar) * 0.7, abs=0.01)
    assert float(x.var()) == pytest.approx(1 - abar, rel=0.02)
    np.testing.assert_allclose(diffusion.q_sample(s, x0[:2], t[:2], jnp.zeros((2, 1))),
                               np.sqrt(abar) * 0.7, rtol=1e-6)


def _noise(key, shape):
    k1, k2 = jax.random.split(key)
    return jax.random.normal(k1, shape), jax.random.normal(k2, (T, *shape))


def test_sampler_shape_range_and_no_noise_at_last_step():
    s = diffusion.make_schedule("cosine", T)
    x_T, noise = _noise(jax.random.PRNGKey(0), (8, 5, 3))
    eps_fn = lambda x, t: 0.3 * x  # noqa: E731
    out = diffusion.sample(eps_fn, s, x_T, noise)
    assert out.shape == (8, 5, 3)
    assert float(jnp.abs(out).max()) <= 1.0
    # Changing only the last iteration's (t = 0) noise must not change the result...
    out_last = diffusion.sample(eps_fn, s, x_T, noise.at[-1].set(100.0))
    np.testing.assert_array_equal(out, out_last)
    # ... while changing an earlier one does.
    out_first = diffusion.sample(eps_fn, s, x_T, noise.at[0].set(3.0))
    assert float(jnp.abs(out_first - out).max()) > 1e-3


def test_noise_ratio_zero_is_deterministic():
    s = diffusion.make_schedule("cosine", T)
    x_T, noise_a = _noise(jax.random.PRNGKey(0), (4, 2))
    _, noise_b = _noise(jax.random.PRNGKey(1), (4, 2))
    eps_fn = lambda x, t: jnp.sin(x) * (t + 1) / T  # noqa: E731
    a = diffusion.sample(eps_fn, s, x_T, noise_a, noise_ratio=0.0)
    b = diffusion.sample(eps_fn, s, x_T, noise_b, noise_ratio=0.0)
    np.testing.assert_array_equal(a, b)
    c = diffusion.sample(eps_fn, s, x_T, noise_b, noise_ratio=1.0)
    assert float(jnp.abs(a - c).max()) > 1e-3


@pytest.mark.parametrize("kind", ["cosine", "linear", "vp"])
def test_true_noise_model_recovers_target(kind):
    s = diffusion.make_schedule(kind, T)
    target = jnp.array([[0.5, -0.25, 0.9]])

    def eps_fn(x, t):
        return (x - s.sqrt_alphas_cumprod[t] * target) / s.sqrt_one_minus_alphas_cumprod[t]

    x_T, noise = _noise(jax.random.PRNGKey(3), (1, 3))
    out = diffusion.sample(eps_fn, s, x_T, noise)
    np.testing.assert_allclose(out, target, atol=1e-5)


def test_sampler_rejects_wrong_noise_shape():
    s = diffusion.make_schedule("cosine", T)
    with pytest.raises(ValueError, match="noise must have shape"):
        diffusion.sample(lambda x, t: x, s, jnp.zeros((2, 1)), jnp.zeros((T - 1, 2, 1)))


def test_weighted_denoising_loss_hand_computed():
    pred = jnp.array([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]])
    eps = jnp.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    w = jnp.array([0.5, 0.0, 2.0])
    # (0.5 * (1 + 4) + 0 * 2 + 2 * (4 + 4)) / (3 samples * 2 dims) = 18.5 / 6
    assert float(diffusion.weighted_denoising_loss(pred, eps, w)) == pytest.approx(18.5 / 6)
