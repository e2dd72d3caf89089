"""What every benchmark records beside its numbers: the machine, the versions, the command."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import jax


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    try:
        from qvpo_mjx.rundir import package_versions
    except ImportError:  # an older tree, run for a before/after comparison
        from qvpo_mjx.train import package_versions

    versions = package_versions()
    devices = jax.devices()
    return {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in devices],
        "python": platform.python_version(),
        "versions": versions,
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """This machine's speed today: a float32 size x size matmul in GFLOP/s (numpy, all cores).
    The 2-core CPUs this project runs on vary 2-4x from day to day; a wall-clock figure means
    something only beside this reading."""
    import numpy as np
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    a @ a
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return round(2 * size ** 3 * repeats / (time.perf_counter() - t0) / 1e9, 1)


def write_result(path: str | os.PathLike, result: dict) -> None:
    """Write JSON atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")


def random_policy_returns(task: str, episodes: int = 64, episode_length: int = 1000,
                          seed: int = 0):
    """Returns (episodes,) of uniform random actions in [-1, 1] on ``task``, one episode per env,
    all run in parallel; an episode that ends early stops counting reward (no auto-reset)."""
    import jax.numpy as jnp
    import numpy as np

    import envs
    vec = envs.VecEnv(envs.make(task), episodes, episode_length)

    @jax.jit
    def run(key):
        k_reset, k_steps = jax.random.split(key)
        state = vec.reset(k_reset)

        def body(carry, k):
            state, total, alive = carry
            action = jax.random.uniform(k, (episodes, vec.action_size), minval=-1, maxval=1)
            state, r = vec.step(state, action, auto_reset=False)
            return (state, total + alive * r.reward, alive * (1 - r.done)), None

        (_, total, _), _ = jax.lax.scan(body, (state, jnp.zeros(episodes), jnp.ones(episodes)),
                                        jax.random.split(k_steps, episode_length))
        return total

    return np.asarray(run(jax.random.PRNGKey(seed)))
