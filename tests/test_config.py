import pytest

from qvpo_mjx.config import QVPOConfig


def test_reference_defaults():
    c = QVPOConfig()
    assert (c.diffusion_steps, c.beta_schedule, c.hidden_size, c.time_embed_size) == (
        20, "cosine", 256, 32)
    assert (c.actor_lr, c.critic_lr, c.adam_eps, c.grad_clip) == (1e-4, 3e-4, 1e-5, 2.0)
    assert (c.gamma, c.tau, c.batch_size) == (0.99, 0.005, 256)
    assert (c.behavior_samples, c.target_samples, c.eval_samples, c.train_samples, c.chosen) == (
        4, 4, 32, 64, 1)
    assert (c.q_transform, c.entropy_weight, c.entropy_weight_final, c.entropy_samples) == (
        "qadv", 0.02, 0.002, 10)
    assert (c.noise_ratio, c.deterministic_eval) == (1.0, False)
    assert (c.start_steps, c.replay_size, c.total_steps, c.eval_interval) == (
        10_000, 1_000_000, 1_000_000, 10_000)


@pytest.mark.parametrize("changes, field", [
    ({"chosen": 65}, "chosen"),
    ({"train_samples": 0}, "train_samples"),
    ({"batch_size": -1}, "batch_size"),
    ({"actor_lr": 0.0}, "actor_lr"),
    ({"critic_lr": float("nan")}, "critic_lr"),
    ({"gamma": 1.5}, "gamma"),
    ({"tau": 0.0}, "tau"),
    ({"entropy_weight_final": 0.5}, "entropy_weight_final"),
    ({"noise_ratio": -1.0}, "noise_ratio"),
    ({"time_embed_size": 33}, "time_embed_size"),
    ({"diffusion_steps": 2.5}, "diffusion_steps"),
    ({"start_steps": -3}, "start_steps"),
    ({"replay_size": 8, "num_envs": 16}, "replay_size"),
    ({"critic_updates_per_actor": 0}, "critic_updates_per_actor"),
    ({"entropy_decay_steps": -1}, "entropy_decay_steps"),
])
def test_validation_names_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        QVPOConfig(**changes)


def test_unknown_names_list_known_ones():
    with pytest.raises(ValueError, match="cosine, linear, vp"):
        QVPOConfig(beta_schedule="quadratic")
    with pytest.raises(ValueError, match="qadv, qcut, qrelu, qexpn"):
        QVPOConfig(q_transform="qsoft")
    with pytest.raises(ValueError, match="unknown config field.*batch_sizes"):
        QVPOConfig().replace(batch_sizes=3)


def test_agent_structure_holds_structural_fields_only():
    # Two configs that differ only in traced values share one agent structure (one compile),
    # and no traced hyper-parameter can be read from it (it is not there to go stale).
    import dataclasses

    from qvpo_mjx.agent import AgentStructure
    a = QVPOConfig(gamma=0.9, actor_lr=1e-3)
    b = QVPOConfig()
    assert AgentStructure.of(a, 3, 1) == AgentStructure.of(b, 3, 1)
    assert hash(AgentStructure.of(a, 3, 1)) == hash(AgentStructure.of(b, 3, 1))
    assert AgentStructure.of(QVPOConfig(train_samples=8), 3, 1) != AgentStructure.of(b, 3, 1)
    traced = set(QVPOConfig.traced_fields())
    assert not traced & {f.name for f in dataclasses.fields(AgentStructure)}
    with pytest.raises(AttributeError):
        AgentStructure.of(a, 3, 1).gamma


def test_dict_round_trip():
    c = QVPOConfig(q_transform="qexpn", train_samples=16)
    assert QVPOConfig.from_dict(c.to_dict()) == c


def test_field_types_are_the_defaults_types():
    """The CLI and the study's --set parse text with these: a wrong type would turn '0.5' into
    an error or 'false' into True."""
    kinds = QVPOConfig.field_types()
    assert kinds["train_samples"] is int and kinds["tau"] is float
    assert kinds["q_transform"] is str and kinds["obs_normalization"] is bool
    for name, value in QVPOConfig().to_dict().items():
        assert type(value) is kinds[name], name


def test_fit_to_devices_rounds_what_can_be_rounded_and_refuses_the_rest():
    # The README's `--num-envs 4096 --num-devices 8` with the gpu preset's 10 eval episodes.
    cfg = QVPOConfig(num_envs=4096, num_eval_envs=10, replay_size=1_000_001, num_devices=8)
    fitted, notes = cfg.fit_to_devices(8)
    assert (fitted.num_eval_envs, fitted.replay_size, fitted.num_devices) == (16, 1_000_008, 8)
    assert notes == ["num_eval_envs 10 -> 16 (a multiple of 8 devices)",
                     "replay_size 1000001 -> 1000008 (a multiple of 8 devices)"]
    assert fitted.fit_to_devices(8) == (fitted, [])
    # "All devices" (0) becomes the number, so a resumed run asks for the same.
    assert QVPOConfig().fit_to_devices(1) == (QVPOConfig(num_devices=1), [])
    with pytest.raises(ValueError, match=r"batch_size \(100\) must be a multiple of num_devices \(8\)"):
        QVPOConfig(num_envs=8, batch_size=100).fit_to_devices(8)
    with pytest.raises(ValueError, match=r"num_envs \(6\) must be a multiple"):
        QVPOConfig(num_envs=6, batch_size=8, replay_size=64).fit_to_devices(4)
