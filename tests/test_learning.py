"""End-to-end learning: QVPO must clearly beat the random policy on a cheap task.

Threshold: a uniform random policy keeps Brax's inverted pendulum up for 6.3 steps on average
(64 episodes, best 16), so its return is about 6. We require an evaluation return of at least
300 (balancing for 300 of the 1000 steps, 20x the best random episode) within 14k env steps of the
CPU preset; seed 0 reached 500 at 8k and 1000 at 10k steps when the preset was set.
"""

import pytest

from qvpo_mjx.config import QVPOConfig
from qvpo_mjx.train import PRESETS, train

THRESHOLD = 300.0


def test_cpu_preset_learns_inverted_pendulum():
    cfg = QVPOConfig(**{**PRESETS["cpu"]["config"], "total_steps": 14_000})
    rows = train(cfg, "inverted_pendulum", seed=0, progress=False)
    returns = [r["eval_return_mean"] for r in rows]
    assert rows[0]["eval_return_mean"] < 100, returns  # the untrained policy does not balance
    assert max(returns) >= THRESHOLD, returns


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cpu_preset_reaches_the_maximum(seed):
    rows = train(QVPOConfig(**PRESETS["cpu"]["config"]), "inverted_pendulum", seed=seed,
                 progress=False)
    assert max(r["eval_return_mean"] for r in rows) >= 1000.0
