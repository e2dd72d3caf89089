import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from qvpo_mjx import agent
from qvpo_mjx.config import QVPOConfig

OBS, ACT = 5, 2
SMALL = QVPOConfig(hidden_size=32, diffusion_steps=5, batch_size=16, train_samples=8,
                   behavior_samples=4, target_samples=4, eval_samples=8, entropy_samples=3)


def make_batch(key, B=16, obs=OBS, act=ACT):
    k = jax.random.split(key, 4)
    return agent.Transition(
        obs=jax.random.normal(k[0], (B, obs)),
        action=jax.random.uniform(k[1], (B, act), minval=-1, maxval=1),
        reward=jax.random.normal(k[2], (B,)),
        next_obs=jax.random.normal(k[3], (B, obs)),
        terminated=(jnp.arange(B) % 5 == 0).astype(jnp.float32))


@pytest.fixture(scope="module")
def state():
    return agent.init(jax.random.PRNGKey(0), OBS, ACT, SMALL)


def leaves_close(a, b, **kw):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, **kw)


# ---------------------------------------------------------------- Q transforms and schedule

def test_q_transforms_hand_computed():
    q = jnp.array([[3.0], [-2.0], [0.5]])
    v = jnp.array([[1.0], [-1.0], [0.5]])
    hp = {"q_cut": jnp.float32(1.0), "q_neg": jnp.float32(1.5), "q_beta": jnp.float32(2.0)}
    f = agent.Q_TRANSFORM_FNS
    np.testing.assert_allclose(f["qadv"](q, v, 0.0, 1.0, hp), [[2.0], [0.0], [0.0]])
    np.testing.assert_allclose(f["qcut"](q, v, 0.0, 1.0, hp), [[3.0], [1.0], [1.0]])
    np.testing.assert_allclose(f["qrelu"](q, v, 0.0, 1.0, hp), [[4.5], [0.0], [2.0]])
    # exp(beta * clip((q - m) / sd, -8, 8)) with m = 0.5, sd = 0.25: z = 10 -> 8, -10 -> -8, 0
    np.testing.assert_allclose(f["qexpn"](q, v, 0.5, 0.25, hp),
                               [[np.exp(16.0)], [np.exp(-16.0)], [1.0]], rtol=1e-5)
    assert set(f) == {"qadv", "qcut", "qrelu", "qexpn"}


def test_entropy_weight_schedule_from_traced_steps():
    hp = {k: jnp.float32(v) for k, v in QVPOConfig(total_steps=1000).hyperparams().items()}
    w = jax.jit(agent.entropy_weight)
    assert float(w(hp, jnp.int32(0))) == pytest.approx(0.02)
    assert float(w(hp, jnp.int32(500))) == pytest.approx(0.01)
    assert float(w(hp, jnp.int32(950))) == pytest.approx(0.002)  # floor
    fixed = {**hp, "entropy_weight": jnp.float32(0.01), "entropy_weight_final": jnp.float32(0.01)}
    assert float(w(fixed, jnp.int32(0))) == pytest.approx(0.01)
    assert float(w(fixed, jnp.int32(900))) == pytest.approx(0.01)


# ---------------------------------------------------------------- action selection

def picked(actions, candidates):
    """Which candidate each action is: the index of the nearest one, (B, d), (B, K, d) -> (B,).
    Tests compare this discrete choice exactly and the values within a tolerance: two compiled
    programs (jitted and eager, or two fusions) may round the same sum differently."""
    dist = np.abs(np.asarray(candidates) - np.asarray(actions)[:, None]).max(-1)
    return np.argmin(dist, axis=1)


def assert_same_pick(actions, candidates, expected_index):
    """actions are candidates[expected_index], state by state, up to float rounding."""
    idx = np.asarray(expected_index)
    np.testing.assert_array_equal(picked(actions, candidates), idx)
    np.testing.assert_allclose(actions, np.asarray(candidates)[np.arange(len(idx)), idx],
                               atol=1e-5)


def test_best_of_k_returns_argmax_candidate(state):
    obs = jax.random.normal(jax.random.PRNGKey(1), (6, OBS))
    key = jax.random.PRNGKey(2)
    action, q = agent.select_action(state, state.actor_params, state.critic_params, obs, key, 7, 1.0)
    cands = agent.sample_candidates(state, state.actor_params, obs, key, 7, 1.0)
    scores = agent.min_q(state, state.critic_params, obs, cands)
    q12 = state.critic.apply(state.critic_params, jnp.repeat(obs[:, None], 7, 1), cands)
    np.testing.assert_allclose(scores, jnp.minimum(q12[0], q12[1]), rtol=1e-6)
    assert_same_pick(action, cands, np.argmax(np.asarray(scores), axis=1))
    np.testing.assert_allclose(q, np.asarray(scores).max(1), rtol=1e-6)
    assert cands.shape == (6, 7, ACT) and float(jnp.abs(cands).max()) <= 1.0


def test_sampling_is_the_plain_network_chain(state):
    """The split first layer used by the sampler gives the same chain as the plain network."""
    from qvpo_mjx import diffusion
    obs = jax.random.normal(jax.random.PRNGKey(1), (3, OBS))
    key = jax.random.PRNGKey(4)
    fast = agent.sample_candidates(state, state.actor_params, obs, key, 5, 1.0)
    k_start, k_noise = jax.random.split(key)
    x_T = jax.random.normal(k_start, (3, 5, ACT))
    noise = jax.random.normal(k_noise, (SMALL.diffusion_steps, 3, 5, ACT))
    obs_k = jnp.repeat(obs[:, None], 5, 1)

    def eps_fn(x, t):
        return state.actor.apply(state.actor_params, x, jnp.full(x.shape[:-1], t), obs_k)

    plain = diffusion.sample(eps_fn, state.schedule, x_T, noise, 1.0)
    np.testing.assert_allclose(fast, plain, atol=2e-5)


def test_act_and_eval_act_use_their_own_sample_counts(state):
    """Behaviour: best of behavior_samples; evaluation: best of eval_samples (noise 0 with
    deterministic_eval). Each is compared with best-of-K of the same draws, and must differ
    from another K's pick."""
    cfg = SMALL.replace(behavior_samples=3, eval_samples=9, target_samples=5)
    st = agent.init(jax.random.PRNGKey(3), OBS, ACT, cfg)
    obs = jax.random.normal(jax.random.PRNGKey(1), (32, OBS))
    key = jax.random.PRNGKey(0)

    def best_of(k, noise_ratio=1.0, key=key):
        """best-of-k of the same draws: (the actions, their candidates, the argmax index)."""
        cands = agent.sample_candidates(st, st.actor_params, obs, key, k, noise_ratio)
        scores = agent.min_q(st, st.critic_params, obs, cands)
        return agent.best_candidate(cands, scores)[0], cands, np.argmax(np.asarray(scores), 1)

    def differs(a, b):  # another pick on some states, beyond any rounding
        return not np.allclose(a, b, atol=1e-3)

    k_candidates = jax.random.split(key)[0]  # act draws its candidates from this half
    a = jax.jit(agent.act)(st, obs, key)
    assert a.shape == (32, ACT) and float(jnp.abs(a).max()) <= 1.0
    _, cands, best = best_of(3, key=k_candidates)
    assert_same_pick(a, cands, best)
    assert differs(a, best_of(9, key=k_candidates)[0])
    assert differs(a, best_of(1, key=k_candidates)[0])
    e = jax.jit(agent.eval_act)(st, obs, key)
    _, cands, best = best_of(9)
    assert_same_pick(e, cands, best)
    assert differs(e, best_of(3)[0])
    det = st.replace(structure=st.structure.replace(deterministic_eval=True))
    d = jax.jit(agent.eval_act)(det, obs, key)
    _, cands, best = best_of(9, noise_ratio=0.0)
    assert_same_pick(d, cands, best)
    assert differs(d, e)  # noise_ratio 0 is another chain than noise_ratio 1


def test_behavior_epsilon_acts_with_a_plain_sample_that_often(state):
    """The reference's --epsilon: with probability behavior_epsilon a state's action is one
    plain sample of the policy (candidate 0), not the best of behavior_samples."""
    obs = jax.random.normal(jax.random.PRNGKey(1), (512, OBS))
    key = jax.random.PRNGKey(0)
    @jax.jit
    def reference(k):  # jitted like act, so the float rounding is the same
        cands = agent.sample_candidates(state, state.actor_params, obs, k,
                                        SMALL.behavior_samples, 1.0)
        return cands[:, 0], agent.best_candidate(cands, agent.min_q(state, state.critic_params, obs,
                                                           cands))[0]

    first, best = (np.asarray(x) for x in reference(jax.random.split(key)[0]))

    def act(eps):
        st = state.replace(hparams={**state.hparams, "behavior_epsilon": jnp.float32(eps)})
        return np.asarray(jax.jit(agent.act)(st, obs, key))

    np.testing.assert_allclose(act(0.0), best, atol=1e-5)
    np.testing.assert_allclose(act(1.0), first, atol=1e-5)
    half = act(0.5)
    plain = np.all(np.isclose(half, first, atol=1e-5), axis=1)
    greedy = np.all(np.isclose(half, best, atol=1e-5), axis=1)
    assert np.all(plain | greedy)
    differ = ~np.all(np.isclose(best, first, atol=1e-5), axis=1)  # tell-apart states
    assert 0.4 < plain[differ].mean() < 0.6


# ---------------------------------------------------------------- the critic's target


def constant_critic(params, value):
    """Critic parameters whose two heads output ``value`` everywhere (last layer zero)."""
    def fix(path, x):
        names = [getattr(k, "key", "") for k in path]
        if "Dense_3" in names:
            return jnp.full_like(x, value) if names[-1] == "bias" else jnp.zeros_like(x)
        return x
    return jax.tree_util.tree_map_with_path(fix, params)


def test_td_target_uses_the_target_networks_and_stops_at_terminals(state):
    """With a target critic that outputs 7 everywhere, y = r + 0.99 (1 - terminated) 7 exactly,
    whatever the target actor proposes; the online critic (not constant) must not enter, and
    terminal rows must not bootstrap. Checked on the loss, a closed form of the whole y."""
    st = state.replace(critic_target_params=constant_critic(state.critic_target_params, 7.0))
    batch = make_batch(jax.random.PRNGKey(1))  # rows 0, 5, 10, 15 terminal
    new, metrics = jax.jit(agent.critic_update)(st, batch, jax.random.PRNGKey(2))
    y = np.asarray(batch.reward) + 0.99 * (1 - np.asarray(batch.terminated)) * 7.0
    q = np.asarray(st.critic.apply(st.critic_params, batch.obs, batch.action))
    assert float(metrics["critic/q_target"]) == pytest.approx(y.mean(), rel=1e-5)
    assert float(metrics["critic/loss"]) == pytest.approx(
        float(np.sum(np.mean((q - y) ** 2, axis=-1))), rel=1e-5)
    # The online critic's own values at s' are far from 7: using it would move the target.
    next_q = np.asarray(jnp.min(st.critic.apply(st.critic_params, batch.next_obs,
                                                batch.action), axis=0))
    assert np.abs(next_q - 7.0).min() > 1.0


def test_update_scores_the_actor_with_the_updated_critic(state):
    batch, key = make_batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(2)
    st = state.replace(hparams={**state.hparams, "critic_lr": jnp.float32(3e-2)})
    new, _ = jax.jit(agent.update)(st, batch, key)
    k_critic, k_actor = jax.random.split(key)
    mid, _ = jax.jit(agent.critic_step)(st, batch, k_critic)
    actor_step = jax.jit(agent.actor_step)  # one compile for both orders
    after, _ = actor_step(mid, batch.obs, k_actor)
    stale, _ = actor_step(st, batch.obs, k_actor)  # scored by the critic before its step
    leaves_close(new.actor_params, after.actor_params, rtol=1e-5, atol=1e-7)
    gap = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(after.actor_params),
                                                          jax.tree.leaves(stale.actor_params)))
    assert gap > 1e-6  # the two orders give different actors: the check can tell them apart


def test_qexpn_running_statistics_and_weights_follow_the_reference():
    """running mean/std: EMAs (rate 0.001) of the batch's mean and unbiased std of all
    B x Kt scores, updated BEFORE the transform, which then uses the updated values."""
    cfg = SMALL.replace(q_transform="qexpn", q_beta=2.0, q_stats_rate=0.25)
    st = agent.init(jax.random.PRNGKey(5), OBS, ACT, cfg)
    st = st.replace(q_mean=jnp.float32(0.3), q_std=jnp.float32(0.7))
    obs = jax.random.normal(jax.random.PRNGKey(1), (16, OBS))
    key = jax.random.PRNGKey(4)
    new, metrics = jax.jit(agent.actor_update)(st, obs, key)
    k_candidates, _ = jax.random.split(key)
    cands = agent.sample_candidates(st, st.actor_params, obs, k_candidates, cfg.train_samples, 1.0)
    scores = np.asarray(agent.min_q(st, st.critic_params, obs, cands), np.float64)
    mean = 0.75 * 0.3 + 0.25 * scores.mean()
    std = 0.75 * 0.7 + 0.25 * scores.std(ddof=1)
    assert float(new.q_mean) == pytest.approx(mean, rel=1e-5)
    assert float(new.q_std) == pytest.approx(std, rel=1e-5)
    top = scores.max(axis=1)
    w = np.exp(2.0 * np.clip((top - mean) / std, -8, 8))
    assert float(metrics["actor/weight_mean"]) == pytest.approx(w.mean(), rel=1e-4)


# ---------------------------------------------------------------- the loss

def test_loss_samples_uniform_entropy_actions_and_weights():
    B, c, E = 64, 2, 10
    actions = jnp.full((B, c, ACT), 0.25)
    weights = jnp.arange(B * c, dtype=jnp.float32).reshape(B, c)
    x0, w, t, eps = agent.loss_samples(jax.random.PRNGKey(0), actions, weights, 0.05, E, 20)
    assert x0.shape == (B, c, 1 + E, ACT) and w.shape == t.shape == (B, c, 1 + E)
    np.testing.assert_array_equal(x0[:, :, 0], actions)
    ent = np.asarray(x0[:, :, 1:])
    # Uniform on [-1, 1]: both halves used, mean 0, variance 1/3.
    assert ent.min() >= -1 and ent.max() <= 1 and ent.min() < -0.95 and ent.max() > 0.95
    assert abs(ent.mean()) < 0.03 and ent.var() == pytest.approx(1 / 3, rel=0.05)
    np.testing.assert_allclose(w[:, :, 0], weights)
    np.testing.assert_allclose(w[:, :, 1:], 0.05 * np.asarray(weights)[:, :, None] * np.ones(E),
                               rtol=1e-6)
    assert int(t.min()) == 0 and int(t.max()) == 19


def test_actor_loss_is_weighted_per_state_with_entropy_term(state):
    """For entropy weight a > 0: L(w, a) = sum_i w_i (A_i + a U_i), linear in each state's
    Q-weight, the entropy part entering with weight a x that state's Q-weight. At a = 0 the
    entropy samples leave the loss (the reference adds them only for a > 0), so the mean is over
    the chosen samples alone: L(w, 0) = (1 + E) sum_i w_i A_i."""
    B, E = 4, SMALL.entropy_samples
    obs = jax.random.normal(jax.random.PRNGKey(1), (B, OBS))
    actions = jax.random.uniform(jax.random.PRNGKey(2), (B, 1, ACT), minval=-1, maxval=1)
    key = jax.random.PRNGKey(3)

    def L(w, a):
        return float(agent.actor_loss(state, state.actor_params, obs, actions,
                                      jnp.asarray(w, jnp.float32)[:, None], jnp.float32(a), key))

    eye = np.eye(B)
    at1, at2 = np.array([L(eye[i], 1.0) for i in range(B)]), np.array([L(eye[i], 2.0) for i in range(B)])
    U = at2 - at1
    A = at1 - U
    assert np.all(A > 0) and np.all(U > 0)
    w = np.array([0.5, 0.0, 2.0, 1.25])
    assert L(w, 0.3) == pytest.approx(float(np.sum(w * (A + 0.3 * U))), rel=1e-5)
    assert L(w, 0.0) == pytest.approx((1 + E) * float(np.sum(w * A)), rel=1e-5)
    assert L(np.zeros(B), 0.3) == 0.0


# ---------------------------------------------------------------- the update

def test_one_update_steps_each_optimiser_once_and_targets_move_by_tau(state):
    new, metrics = jax.jit(agent.update)(state, make_batch(jax.random.PRNGKey(1)),
                                         jax.random.PRNGKey(2))
    assert int(new.critic_updates) == 1
    assert int(new.actor_opt_state[1].count) == 1 and int(new.critic_opt_state[1].count) == 1
    tau = SMALL.tau
    for online_old, online_new, target_new in [
        (state.actor_params, new.actor_params, new.actor_target_params),
        (state.critic_params, new.critic_params, new.critic_target_params),
    ]:
        expected = jax.tree.map(lambda o, n: o + tau * (n - o), online_old, online_new)
        leaves_close(target_new, expected, rtol=1e-5, atol=1e-8)
        moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), online_old, online_new)
        assert max(jax.tree.leaves(moved)) > 0
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert float(metrics["actor/entropy_weight"]) == pytest.approx(0.02)


def stack(*batches):
    return jax.tree.map(lambda *x: jnp.stack(x), *batches)


def test_delayed_update_with_one_critic_update_is_the_reference_update(state):
    batch, key = make_batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(2)
    ref, ref_metrics = jax.jit(agent.update)(state, batch, key)
    new, metrics = jax.jit(agent.delayed_update)(state, stack(batch), key)
    # Two programs (a scan of one step and the step itself): equal up to float rounding.
    leaves_close(ref, new, rtol=1e-5, atol=1e-7)
    assert metrics.keys() == ref_metrics.keys()
    for k in metrics:
        np.testing.assert_allclose(metrics[k], ref_metrics[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_delayed_update_steps_the_critic_d_times_and_the_actor_once(state):
    d, tau = 3, SMALL.tau
    batches = stack(*(make_batch(k) for k in jax.random.split(jax.random.PRNGKey(3), d)))
    new, metrics = jax.jit(agent.delayed_update)(state, batches, jax.random.PRNGKey(4))
    assert int(new.critic_updates) == d
    assert int(new.critic_opt_state[1].count) == d and int(new.actor_opt_state[1].count) == 1
    # The actor target takes one Polyak step, towards the actor after its one update.
    expected = jax.tree.map(lambda o, n: o + tau * (n - o), state.actor_params, new.actor_params)
    leaves_close(new.actor_target_params, expected, rtol=1e-5, atol=1e-8)
    # The critic target took d steps: it is no longer one step from the start towards the end.
    one_step = jax.tree.map(lambda o, n: o + tau * (n - o), state.critic_params,
                            new.critic_params)
    gap = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new.critic_target_params,
                       one_step)
    assert max(jax.tree.leaves(gap)) > 1e-6
    # The same d critic steps alone (critic_update + its Polyak step) give the same critic.
    st = state
    for i, k in enumerate(jax.random.split(jax.random.PRNGKey(4), d + 1)[:d]):
        st, _ = agent.critic_update(st, jax.tree.map(lambda x: x[i], batches), k)
        st = st.replace(critic_target_params=jax.tree.map(
            lambda t, o: t + tau * (o - t), st.critic_target_params, st.critic_params))
    leaves_close(new.critic_params, st.critic_params, rtol=1e-5, atol=1e-6)
    leaves_close(new.critic_target_params, st.critic_target_params, rtol=1e-5, atol=1e-6)
    assert all(np.isfinite(float(v)) for v in metrics.values())


def critic_losses_on_a_fixed_batch(state, updates: int) -> np.ndarray:
    """The critic loss of ``updates`` full updates (critic lr 1e-3) on one fixed batch."""
    batch = make_batch(jax.random.PRNGKey(5))
    st = state.replace(hparams={**state.hparams, "critic_lr": jnp.float32(1e-3)})

    def run(st, key):
        def body(st, k):
            st, m = agent.update(st, batch, k)
            return st, m["critic/loss"]
        return jax.lax.scan(body, st, jax.random.split(key, updates))[1]

    return np.asarray(jax.jit(run)(st, jax.random.PRNGKey(6)))


def test_critic_td_error_falls_on_a_fixed_batch(state):
    losses = critic_losses_on_a_fixed_batch(state, 300)
    first, last = float(losses[:10].mean()), float(losses[-10:].mean())
    assert last < 0.2 * first, (first, last)


def test_same_key_gives_identical_parameters(state):
    batch = make_batch(jax.random.PRNGKey(1))

    def run(key):
        st = agent.init(key, OBS, ACT, SMALL)
        for k in jax.random.split(jax.random.PRNGKey(9), 3):
            st, _ = jax.jit(agent.update)(st, batch, k)
        return st

    a, b = run(jax.random.PRNGKey(7)), run(jax.random.PRNGKey(7))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    c = run(jax.random.PRNGKey(8))
    assert float(jnp.abs(c.actor_params["params"]["out"]["kernel"]
                         - a.actor_params["params"]["out"]["kernel"]).max()) > 0


def test_update_compiles_once_across_steps_and_hyperparameter_values():
    traces = []

    def counted(st, batch, key):
        traces.append(1)
        return agent.update(st, batch, key)

    update = jax.jit(counted)
    batch = make_batch(jax.random.PRNGKey(1))
    st = agent.init(jax.random.PRNGKey(0), OBS, ACT, SMALL)
    for k in jax.random.split(jax.random.PRNGKey(2), 3):
        st, _ = update(st, batch, k)
    other = agent.init(jax.random.PRNGKey(0), OBS, ACT,
                       SMALL.replace(actor_lr=1e-3, critic_lr=1e-3, gamma=0.9, tau=0.1,
                                     entropy_weight=0.05, noise_ratio=0.5))
    update(other, batch, jax.random.PRNGKey(3))
    assert len(traces) == 1


def test_state_vmaps_over_seeds_and_seeds_are_independent():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    states = jax.vmap(lambda k: agent.init(k, OBS, ACT, SMALL))(keys)
    batch = make_batch(jax.random.PRNGKey(1))
    update_keys = jax.random.split(jax.random.PRNGKey(2), 3)
    batched, _ = jax.jit(jax.vmap(agent.update, in_axes=(0, None, 0)))(states, batch, update_keys)
    k0 = batched.actor_params["params"]["first_kernel"]
    assert float(jnp.abs(k0[0] - k0[1]).max()) > 1e-3
    single, _ = jax.jit(agent.update)(agent.init(keys[1], OBS, ACT, SMALL), batch, update_keys[1])
    leaves_close(jax.tree.map(lambda x: x[1], batched.actor_params), single.actor_params,
                 rtol=1e-4, atol=1e-6)


def test_policy_improvement_moves_samples_to_the_better_mode():
    """A critic fitted to a two-peak Q (a = -0.6 worth 0.6, a = +0.6 worth 1.0); actor updates
    alone must move most sampled actions to the better peak."""
    cfg = QVPOConfig(hidden_size=64, diffusion_steps=5, batch_size=64, train_samples=16,
                     actor_lr=1e-3, entropy_weight=0.0, entropy_weight_final=0.0)
    obs_size, act_size = 1, 1
    st = agent.init(jax.random.PRNGKey(0), obs_size, act_size, cfg)

    def true_q(a):
        return (0.6 * jnp.exp(-((a + 0.6) ** 2) / 0.02) + 1.0 * jnp.exp(-((a - 0.6) ** 2) / 0.02))

    grid = jnp.linspace(-1, 1, 256)[:, None]
    obs_grid = jnp.zeros((256, obs_size))
    tx = optax.adam(3e-3)

    def fit(params, _):
        def loss(p):
            q = st.critic.apply(p, obs_grid, grid)
            return jnp.mean(jnp.square(q - true_q(grid[:, 0])))
        l, g = jax.value_and_grad(loss)(params[0])
        upd, opt = tx.update(g, params[1], params[0])
        return (optax.apply_updates(params[0], upd), opt), l

    (critic_params, _), fit_losses = jax.jit(
        lambda p: jax.lax.scan(fit, (p, tx.init(p)), None, length=1500))(st.critic_params)
    assert float(fit_losses[-1]) < 2e-3
    st = st.replace(critic_params=critic_params)
    obs = jnp.zeros((cfg.batch_size, obs_size))

    def frac_good(st, key):
        a = agent.sample_candidates(st, st.actor_params, obs, key, 16, 1.0)
        return float(jnp.mean(jnp.abs(a - 0.6) < 0.25))

    before = frac_good(st, jax.random.PRNGKey(1))

    def body(st, k):
        st, _ = agent.actor_update(st, obs, k)
        return st, None

    st, _ = jax.jit(lambda st, k: jax.lax.scan(body, st, jax.random.split(k, 300)))(
        st, jax.random.PRNGKey(2))
    after = frac_good(st, jax.random.PRNGKey(3))
    print("good-mode fraction", before, after)
    assert before < 0.4 and after > 0.75, (before, after)


def test_exploration_metrics(state):
    # Spread: std over the K candidates, averaged over states and action dims.
    c = jnp.array([[[0.0, 1.0], [2.0, 1.0]], [[-1.0, 0.5], [1.0, 0.5]]])  # (B 2, K 2, d 2)
    assert float(agent.candidate_spread(c)) == pytest.approx(0.5)
    # The behaviour policy's own: its action is the pick of act, its spread that of the same
    # draws, and at_bounds the share of action components at +-1.
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, OBS))
    key = jax.random.PRNGKey(2)
    action, stats = agent.act_with_stats(state, obs, key)
    np.testing.assert_array_equal(action, agent.act(state, obs, key))
    cands = agent.sample_candidates(state, state.actor_params, obs, jax.random.split(key)[0],
                                    SMALL.behavior_samples, 1.0)
    assert float(stats["behavior/spread"]) == pytest.approx(
        float(np.asarray(cands).std(axis=1).mean()), rel=1e-5)
    assert float(stats["behavior/at_bounds"]) == pytest.approx(
        float(np.mean(np.abs(np.asarray(action)) >= 1 - 1e-6)))
    # The actor update reports the spread of its Kt training candidates and of their scores.
    _, m = jax.jit(agent.actor_update)(state, obs, key)
    k_candidates, _ = jax.random.split(key)
    train = agent.sample_candidates(state, state.actor_params, obs, k_candidates,
                                    SMALL.train_samples, 1.0)
    assert float(m["actor/train_spread"]) == pytest.approx(
        float(np.asarray(train).std(axis=1).mean()), rel=1e-5)
    scores = np.asarray(agent.min_q(state, state.critic_params, obs, train))
    assert float(m["actor/score_spread"]) == pytest.approx(scores.std(axis=1).mean(), rel=1e-4)


def test_adaptive_entropy_weight_holds_the_candidate_spread_at_its_target():
    """entropy_target_spread > 0: the weight used is exp(log w), and log w moves by
    rate x (target - spread) / target per actor update, within its bounds; 0 keeps the
    reference schedule and leaves log w alone."""
    obs = jax.random.normal(jax.random.PRNGKey(1), (16, OBS))
    key = jax.random.PRNGKey(2)
    for target in (0.05, 2.0):  # below and above any spread of candidates in [-1, 1]
        cfg = SMALL.replace(entropy_target_spread=target, entropy_adapt_rate=0.02,
                            entropy_weight=0.03)
        st = agent.init(jax.random.PRNGKey(0), OBS, ACT, cfg)
        new, m = jax.jit(agent.actor_update)(st, obs, key)
        assert float(m["actor/entropy_weight"]) == pytest.approx(0.03, rel=1e-6)
        spread = float(m["actor/train_spread"])
        expected = np.log(0.03) + 0.02 * (target - spread) / target
        assert float(new.log_entropy_weight) == pytest.approx(expected, rel=1e-5)
        assert (float(new.log_entropy_weight) > np.log(0.03)) == (target > spread)
    # Bounded: a huge rate cannot push it past 10 or below 1e-4.
    st = agent.init(jax.random.PRNGKey(0), OBS, ACT, SMALL.replace(
        entropy_target_spread=2.0, entropy_adapt_rate=1e3))
    assert float(jax.jit(agent.actor_update)(st, obs, key)[0].log_entropy_weight) == \
        pytest.approx(np.log(10.0))
    # Off (the reference): the schedule's weight, log w untouched.
    st = agent.init(jax.random.PRNGKey(0), OBS, ACT, SMALL.replace(total_steps=100))
    st = st.replace(env_steps=jnp.int32(50))
    new, m = jax.jit(agent.actor_update)(st, obs, key)
    assert float(m["actor/entropy_weight"]) == pytest.approx(0.01)
    assert float(new.log_entropy_weight) == float(st.log_entropy_weight)
