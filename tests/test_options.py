"""Options beyond the reference, each against a closed form: n-step returns, observation
normalisation, the LayerNorm / wider critic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qvpo_mjx import agent, replay
from test_agent import ACT, OBS, SMALL, critic_losses_on_a_fixed_batch, make_batch

GAMMA = 0.5


def fill(buffer, steps, stride=2):
    """Write ``steps`` vector steps of ``stride`` envs; step t, env i: reward r[t][i],
    terminated term[t][i], truncated trunc[t][i], next_obs = 100 t + i (a tag)."""
    for t, (rewards, term, trunc) in enumerate(steps):
        tag = jnp.asarray([100.0 * t + i for i in range(stride)])
        items = agent.Transition(obs=jnp.tile(tag[:, None] - 0.5, (1, 2)),
                                 action=jnp.zeros((stride, 1)), reward=jnp.asarray(rewards, float),
                                 next_obs=jnp.tile(tag[:, None], (1, 2)),
                                 terminated=jnp.asarray(term, float))
        buffer = replay.add(buffer, items, ends=jnp.maximum(jnp.asarray(term, float),
                                                            jnp.asarray(trunc, float)))
    return buffer


def window(buffer, rows, n=3):
    got = replay.n_step_rows(buffer, jnp.asarray(rows), n, jnp.float32(GAMMA), 2)
    return (np.asarray(got.reward), np.asarray(got.reward_steps), np.asarray(got.terminated),
            np.asarray(got.next_obs[:, 0]))


def test_n_step_returns_stop_at_terminals_and_time_limits_and_bootstrap_from_the_true_state():
    # env 0: rewards 1..5, terminal at its third step; env 1: rewards 10..50, its second step
    # ends by the time limit (truncated, not terminal).
    steps = [([1, 10], [0, 0], [0, 0]), ([2, 20], [0, 0], [0, 1]), ([3, 30], [1, 0], [0, 0]),
             ([4, 40], [0, 0], [0, 0]), ([5, 50], [0, 0], [0, 0])]
    buf = fill(replay.init(12, 2, 1), steps)
    reward, horizon, term, nxt = window(buf, [0, 2, 6, 1, 9])
    np.testing.assert_allclose(reward, [1 + .5 * 2 + .25 * 3,  # three steps, the last terminal
                                        2 + .5 * 3,            # two: the terminal ends it
                                        4 + .5 * 5,            # two: no newer data
                                        10 + .5 * 20,          # two: the time limit ends it
                                        50])                   # the newest transition
    np.testing.assert_array_equal(horizon, [3, 2, 2, 2, 1])
    np.testing.assert_array_equal(term, [1, 1, 0, 0, 0])  # truncation bootstraps ...
    np.testing.assert_array_equal(nxt, [200, 200, 400, 101, 401])  # ... from its true s'
    # The TD target discounts the bootstrap by gamma^horizon: y = R + 0.5^2 * Q' for row 1.
    state = agent.init(jax.random.PRNGKey(0), 2, 1, SMALL.replace(gamma=GAMMA))
    batch = replay.n_step_rows(buf, jnp.asarray([1]), 3, jnp.float32(GAMMA), 2)
    assert float(agent.td_target(state, batch, jnp.asarray([8.0]))[0]) == pytest.approx(20 + 2.0)
    # reward_scale scales the window's reward sum, not the bootstrap: 0.1 * 20 + 0.25 * 8.
    scaled = agent.init(jax.random.PRNGKey(0), 2, 1, SMALL.replace(gamma=GAMMA, reward_scale=0.1))
    assert float(agent.td_target(scaled, batch, jnp.asarray([8.0]))[0]) == pytest.approx(2 + 2.0)


def test_n_step_windows_never_run_past_the_newest_row_of_the_ring():
    # 7 vector steps into 12 rows: step 6 overwrote steps 0's rows (0, 1); rows 2, 3 hold the
    # oldest data (step 1). Env 0's newest transition (row 0) must not continue into row 2.
    steps = [([t + 1, 10 * (t + 1)], [0, 0], [0, 0]) for t in range(7)]
    buf = fill(replay.init(12, 2, 1), steps)
    reward, horizon, _, nxt = window(buf, [0, 10, 8, 2])
    np.testing.assert_allclose(reward, [7, 6 + .5 * 7, 5 + .5 * 6 + .25 * 7, 2 + .5 * 3 + .25 * 4])
    np.testing.assert_array_equal(horizon, [1, 2, 3, 3])
    np.testing.assert_array_equal(nxt, [600, 600, 600, 300])
    # n = 1 is the stored transition itself.
    one = replay.n_step_rows(buf, jnp.arange(12), 1, jnp.float32(GAMMA), 2)
    np.testing.assert_array_equal(one.reward, buf.data.reward)
    np.testing.assert_array_equal(one.reward_steps, np.ones(12))


def test_observation_statistics_equal_numpy_over_the_same_data():
    cfg = SMALL.replace(obs_normalization=True)
    state = agent.init(jax.random.PRNGKey(0), OBS, ACT, cfg)
    chunks = [jax.random.normal(jax.random.PRNGKey(i), (16, OBS)) * (i + 1) + i for i in range(4)]
    for c in chunks:
        state = jax.jit(agent.update_obs_stats)(state, c)
    data = np.concatenate([np.asarray(c) for c in chunks])
    np.testing.assert_allclose(state.obs_stats.mean, data.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state.obs_stats.var, data.var(0), rtol=1e-4)
    assert float(state.obs_stats.count) == 64
    x = data[:5]
    expected = np.clip((x - data.mean(0)) / np.sqrt(data.var(0) + 1e-8), -10, 10)
    np.testing.assert_allclose(agent.normalize_obs(state, jnp.asarray(x)), expected, rtol=1e-4,
                               atol=1e-5)
    # Two devices holding half of each batch pool to the same statistics.
    halves = [c.reshape(2, 8, OBS) for c in chunks]
    pooled = agent.init(jax.random.PRNGKey(0), OBS, ACT, cfg)
    for h in halves:
        pooled = jax.vmap(lambda o: agent.update_obs_stats(pooled, o, "d"), axis_name="d")(h)
        pooled = jax.tree.map(lambda v: v[0], pooled)
    np.testing.assert_allclose(pooled.obs_stats.mean, data.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled.obs_stats.var, data.var(0), rtol=1e-4)
    # Off (the reference): observations pass through untouched, statistics never move.
    plain = agent.init(jax.random.PRNGKey(0), OBS, ACT, SMALL)
    assert agent.update_obs_stats(plain, chunks[0]) is plain
    np.testing.assert_array_equal(agent.normalize_obs(plain, chunks[1]), chunks[1])


def test_observation_statistics_hold_at_large_mean_over_std_and_many_samples():
    """|mean| / std = 1e3, as an MJX observation can have (a position far from the origin):
    per-batch moments about their own mean keep the variance right where E[x^2] - E[x]^2
    in float32 loses it, over many batches, against numpy's float64 statistics."""
    cfg = SMALL.replace(obs_normalization=True)
    state = agent.init(jax.random.PRNGKey(0), OBS, ACT, cfg)
    scale = jnp.asarray([1.0, 0.5, 2.0, 1.0, 0.1])
    offset = 1e3 * scale * jnp.asarray([1.0, -1.0, 1.0, -1.0, 1.0])
    batches = jax.random.normal(jax.random.PRNGKey(1), (200, 64, OBS)) * scale + offset
    merge = jax.jit(agent.update_obs_stats)
    first = merge(state, batches[0])  # one batch: no averaging over batches hides an error
    np.testing.assert_allclose(first.obs_stats.var, np.asarray(batches[0], np.float64).var(0),
                               rtol=1e-3)
    state = jax.jit(lambda s, xs: jax.lax.scan(
        lambda s, x: (agent.update_obs_stats(s, x), None), s, xs)[0])(state, batches)
    data = np.asarray(batches, np.float64).reshape(-1, OBS)
    np.testing.assert_allclose(state.obs_stats.mean, data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(state.obs_stats.var, data.var(0), rtol=1e-3)
    assert float(state.obs_stats.count) == 200 * 64


def test_observation_count_is_exact_past_float32_and_int32():
    """The count keeps growing past 2^24 (float32's last exact integer for + 1) and 2^31
    (int32's range): 1e10 observations in batches of 16 are counted exactly."""
    from qvpo_mjx.agent import COUNT_BASE
    cfg = SMALL.replace(obs_normalization=True)
    state = agent.init(jax.random.PRNGKey(0), OBS, ACT, cfg)
    start = 10**10 - 16 * 3
    state = state.replace(obs_stats=state.obs_stats.replace(
        seen=jnp.asarray([start // COUNT_BASE, start % COUNT_BASE], jnp.int32)))
    for _ in range(3):
        state = agent.update_obs_stats(state, jnp.ones((16, OBS)))
    high, low = (int(v) for v in state.obs_stats.seen)
    assert high * COUNT_BASE + low == 10**10
    assert float(state.obs_stats.count) == pytest.approx(1e10, rel=1e-7)


def test_normalisation_reaches_actor_and_critic():
    """With obs_normalization, every reader of observations (act, eval_act, the critic's and
    the actor's updates) sees them normalised: scaling the raw observations and the statistics
    alike changes nothing. Dropping the normalisation from any one of the four fails here."""
    cfg = SMALL.replace(obs_normalization=True)
    state = agent.init(jax.random.PRNGKey(0), OBS, ACT, cfg)
    raw = jax.random.normal(jax.random.PRNGKey(1), (64, OBS)) * 3.0 + 2.0
    a = agent.update_obs_stats(state, raw)
    b = agent.update_obs_stats(state, raw * 7.0 - 1.0)
    key = jax.random.PRNGKey(3)
    np.testing.assert_allclose(agent.act(a, raw[:8], key), agent.act(b, raw[:8] * 7.0 - 1.0, key),
                               atol=1e-4)
    batch = make_batch(jax.random.PRNGKey(2))
    scaled = batch.replace(obs=batch.obs * 7.0 - 1.0, next_obs=batch.next_obs * 7.0 - 1.0)
    ma = jax.jit(agent.critic_update)(a, batch, key)[1]
    mb = jax.jit(agent.critic_update)(b, scaled, key)[1]
    # The loss is mostly the rewards' (the critic starts near 0); its gradient and values are
    # the inputs' own: those tell a critic fed raw observations apart by far more.
    for name in ("critic/grad_norm", "critic/q_mean", "critic/loss"):
        assert float(ma[name]) == pytest.approx(float(mb[name]), rel=1e-3, abs=1e-7), name
    np.testing.assert_allclose(agent.eval_act(a, raw[:8], key),
                               agent.eval_act(b, raw[:8] * 7.0 - 1.0, key), atol=1e-4)
    na, ma = jax.jit(agent.actor_update)(a, raw[:16], key)
    nb, mb = jax.jit(agent.actor_update)(b, raw[:16] * 7.0 - 1.0, key)
    assert float(ma["actor/loss"]) == pytest.approx(float(mb["actor/loss"]), rel=1e-3)
    assert float(ma["actor/q_candidates"]) == pytest.approx(float(mb["actor/q_candidates"]),
                                                           rel=1e-3, abs=1e-5)
    # The check can fail: without the statistics, the scaled observations are other inputs.
    plain = agent.init(jax.random.PRNGKey(0), OBS, ACT, SMALL)
    assert not np.allclose(agent.act(plain, raw[:8], key),
                           agent.act(plain, raw[:8] * 7.0 - 1.0, key), atol=1e-4)


def test_layer_norm_critic_of_its_own_width_learns_a_fixed_batch():
    cfg = SMALL.replace(critic_hidden_size=48, critic_layer_norm=True)
    state = agent.init(jax.random.PRNGKey(0), OBS, ACT, cfg)
    q1 = state.critic_params["params"]["q1"]
    assert q1["Dense_0"]["kernel"].shape == (OBS + ACT, 48)  # the critic's own width
    assert q1["LayerNorm_0"]["scale"].shape == (48,) and "LayerNorm_2" in q1
    assert state.actor_params["params"]["hidden2"]["kernel"].shape == (32, 32)  # actor unchanged
    losses = critic_losses_on_a_fixed_batch(state, 200)
    assert float(losses[-10:].mean()) < 0.2 * float(losses[:10].mean())


def test_reward_scale_auto_fixes_the_scale_at_the_first_update_from_the_buffer():
    # A buffer of 20 rows with |r| averaging 9 (rewards 9 and -9: the magnitude, not the mean):
    # the first update sets reward_scale to 1/9; later buffers do not move it. A buffer whose
    # rewards are at most 1 in size keeps the scale at 1.
    from qvpo_mjx.loop import Trainer
    from test_loop import TINY, TINY_ENV

    tr = Trainer(TINY.replace(reward_scale_auto=True), TINY_ENV)
    state = tr.init(jax.random.PRNGKey(0))

    def buffer_of(rewards):
        n = len(rewards)
        return replay.add(replay.init(64, tr.vec.observation_size, tr.vec.action_size),
                          agent.Transition(obs=jnp.zeros((n, tr.vec.observation_size)),
                                           action=jnp.zeros((n, tr.vec.action_size)),
                                           reward=jnp.asarray(rewards, jnp.float32),
                                           next_obs=jnp.zeros((n, tr.vec.observation_size)),
                                           terminated=jnp.zeros((n,))))

    updates = jax.jit(lambda a, b, k: tr._updates(a, b, k, k, None))
    key = jax.random.PRNGKey(1)
    big = buffer_of([9.0, -9.0] * 10)
    assert float(replay.mean_abs_reward(big)) == pytest.approx(9.0)
    (agent_state, _), metrics = updates(state.agent, big, key)
    assert float(agent_state.hparams["reward_scale"]) == pytest.approx(1 / 9)
    assert float(metrics["critic"]["critic/reward_scale"]) == pytest.approx(1 / 9)
    (agent_state, _), _ = updates(agent_state, buffer_of([2.0] * 20), key)
    assert float(agent_state.hparams["reward_scale"]) == pytest.approx(1 / 9)  # fixed once
    (small, _), _ = updates(state.agent, buffer_of([0.5, -1.0] * 10), key)
    assert float(small.hparams["reward_scale"]) == 1.0


def test_an_explicit_reward_scale_wins_over_the_wide_regimes_auto_scale():
    from qvpo_mjx.config import QVPOConfig
    from qvpo_mjx.presets import preset_values
    assert preset_values("cpu", {"num_envs": 4096})[0]["reward_scale_auto"] is True
    flagged = preset_values("cpu", {"num_envs": 4096, "reward_scale": 0.5})[0]
    assert (flagged["reward_scale"], flagged["reward_scale_auto"]) == (0.5, False)
    dacer = preset_values("gpu", {"num_envs": 4096, "algo": "dacer"})[0]  # its code's 0.2
    assert (dacer["reward_scale"], dacer["reward_scale_auto"]) == (0.2, False)
    # The auto scale asked for by a flag wins over the algorithm's fixed one (scaling.py's wide
    # rows run every algorithm with --set reward_scale_auto=true).
    dacer = preset_values("cpu", {"num_envs": 16, "algo": "dacer", "reward_scale_auto": True})[0]
    assert (dacer["reward_scale"], dacer["reward_scale_auto"]) == (1.0, True)
    with pytest.raises(ValueError, match="reward_scale_auto"):
        QVPOConfig.from_dict(preset_values("cpu", {"num_envs": 4096, "reward_scale": 0.5,
                                                   "reward_scale_auto": True})[0])
