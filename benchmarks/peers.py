"""Brax's own SAC and PPO on our MJX tasks, for wall-clock comparisons with QVPO.

    python benchmarks/peers.py --tiny     # CI smoke test: SAC, inverted_pendulum, N=4 (~1 min)
    python benchmarks/peers.py --quick    # SAC and PPO steps/s at N=16 -> results/peers_quick.json
    python benchmarks/peers.py --algo sac --env inverted_pendulum --num-envs 16 \\
        --timesteps 30000 --seeds 0 1 2 --threshold 900 --out-dir runs/peers
    python benchmarks/peers.py --algo sac --settings playground --env CartpoleSwingup \\
        --num-envs 128 --timesteps 100000 --eval-every 10000 --seeds 0 1 2 --out-dir runs/pg

``--settings playground`` (SAC on a MuJoCo Playground DM Control task): MuJoCo Playground's own
published SAC settings for that task (``mujoco_playground.config.dm_control_suite_params.
brax_sac_config``; :func:`playground_sac`) instead of :func:`sac_defaults`, as far as brax's SAC
trainer takes them; ``--set`` still overrides, and what could not be applied is recorded in the
run's ``config.json`` (``settings_not_applied``).

Time-to-return runs write one run directory per (algo, seed) in the format of ``qvpo_mjx.train``
(``curve.npz`` + ``config.json``, atomically, after every evaluation), so
``python -m qvpo_mjx.plot runs/peers/* runs/qvpo_*`` overlays them with QVPO runs.

Clock: ``wall_time_s`` counts from just before ``brax...train()`` is called, so it includes all of
Brax's compilation, its replay prefill and its evaluations (our env object is built, and cached by
``envs.make``, before the clock starts, as in ``qvpo_mjx.train``). Brax evaluates once before any
training (env_steps 0) and then after every training epoch; ``eval_every`` sets the epoch size.

Importable: ``run_brax``, ``throughput``, ``sac_defaults``, ``ppo_defaults``, ``playground_sac``,
``brax_compat``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator


sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import machine_info, write_result  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from qvpo_mjx.rundir import CURVE_KEYS, package_versions, save_curve, save_json  # noqa: E402

ALGOS = ("sac", "ppo")
EPISODE_LENGTH = 1000


# ------------------------------------------------------------------------------------------
# Compatibility: brax 0.14.2 calls jax.device_put_replicated, which this JAX (0.10) removed.


def _device_put_replicated(x: Any, devices, axis_name: str | None = None) -> Any:
    """What ``jax.device_put_replicated`` did: every leaf stacked ``len(devices)`` times along a
    new leading axis, one slice on each device, laid out as brax's pmapped functions lay out
    their outputs.

    The layout matters. This JAX runs pmap through jit on a mesh named after the pmap's
    ``axis_name`` and keys its compilation caches on the input shardings, meshes included. A
    state placed with a plain ``jax.device_put`` (SingleDeviceSharding), or on a mesh with another
    axis name, makes brax compile ``training_epoch`` once for the first call and again for the
    second (fed the first's outputs), and its jitted evaluation once per evaluation (the policy
    parameters it gets carry the mesh of whichever array they came from). So the stacked tree goes
    through an identity pmap with brax's axis name: its outputs have exactly the sharding brax's
    own pmaps produce. Python scalars become arrays of their default (weak) type, as before.
    """
    devices = list(devices)
    if not devices:
        raise ValueError("device_put_replicated needs a non-empty sequence of devices")
    n = len(devices)
    stacked = jax.tree_util.tree_map(lambda leaf: jnp.stack([jnp.asarray(leaf)] * n), x)
    return _identity_pmap(tuple(devices), axis_name)(stacked)


@functools.lru_cache(maxsize=None)
def _identity_pmap(devices: tuple, axis_name: str | None) -> Any:
    return jax.pmap(lambda tree: tree, axis_name=axis_name, devices=list(devices))


@contextlib.contextmanager
def brax_compat(axis_name: str = "i") -> Iterator[None]:
    """Installs ``jax.device_put_replicated`` for the duration when JAX lacks it (brax's sac, ppo
    and apg trainers and ``brax.training.pmap.bcast_local_devices`` call it); removes it after.
    ``axis_name``: the trainer's pmap axis name (``_PMAP_AXIS_NAME``, "i" in sac, ppo and apg).
    Nothing in the venv is patched."""
    if hasattr(jax, "device_put_replicated"):
        yield
        return
    jax.device_put_replicated = functools.partial(_device_put_replicated, axis_name=axis_name)
    try:
        yield
    finally:
        with contextlib.suppress(AttributeError):
            del jax.device_put_replicated


# ------------------------------------------------------------------------------------------
# Hyper-parameters


PENDULUMS = ("inverted_pendulum", "inverted_double_pendulum")


def sac_defaults(env_name: str, num_envs: int, num_timesteps: int) -> dict[str, Any]:
    """SAC in the QVPO paper's regime: one gradient update per environment step, batch 256.

    Brax SAC's loop: one "actor step" steps all ``num_envs`` envs once (``num_envs *
    action_repeat`` transitions into the replay buffer), then samples ``batch_size *
    grad_updates_per_step`` transitions and runs ``grad_updates_per_step`` SGD steps of
    ``batch_size`` each. So ``grad_updates_per_step = num_envs`` is one update per env step.
    """
    return dict(
        learning_rate=3e-4,  # SAC paper / QVPO reference (brax's MuJoCo colab: 6e-4 at UTD 0.5)
        discounting=0.99,  # QVPO's gamma
        batch_size=256,
        grad_updates_per_step=num_envs,  # update-to-data ratio 1
        reward_scaling=1.0,  # alpha is auto-tuned; brax's colab uses 5-30 on hopper/walker2d
        tau=0.005,
        min_replay_size=1000,  # as QVPO's cpu preset start_steps (brax prefills with its policy)
        max_replay_size=min(num_timesteps, 1_000_000),
        normalize_observations=False,  # QVPO does not normalise observations
        num_eval_envs=16,
        deterministic_eval=False,  # as QVPO's default
        action_repeat=1,
    )


def ppo_defaults(env_name: str, num_envs: int, num_timesteps: int) -> dict[str, Any]:
    """Brax's own MuJoCo settings (its training colab), with the batch scaled down to ``num_envs``.

    Each PPO update collects ``batch_size * num_minibatches / num_envs`` unrolls of
    ``unroll_length`` steps per env (brax asserts ``batch_size * num_minibatches % num_envs ==
    0``); we keep brax's unrolls per env per update (16 for the pendulums, 8 for locomotion) and 8
    minibatches, so ``batch_size = num_envs * unrolls / 8``.
    """
    if env_name in PENDULUMS:  # brax colab: inverted_pendulum / inverted_double_pendulum
        cfg = dict(reward_scaling=10.0, unroll_length=5, num_updates_per_batch=4,
                   discounting=0.97, learning_rate=3e-4, entropy_cost=1e-2)
        unrolls_per_env = 16  # colab: 1024 * 32 / 2048
    else:  # brax colab: halfcheetah
        cfg = dict(reward_scaling=1.0, unroll_length=20, num_updates_per_batch=8,
                   discounting=0.95, learning_rate=3e-4, entropy_cost=1e-3)
        unrolls_per_env = 8  # colab: 512 * 32 / 2048
    num_minibatches = 8
    sequences = num_envs * unrolls_per_env
    if sequences % num_minibatches:
        num_minibatches = math.gcd(sequences, num_minibatches)
    cfg.update(batch_size=sequences // num_minibatches, num_minibatches=num_minibatches,
               normalize_observations=True, num_eval_envs=16, deterministic_eval=False,
               action_repeat=1)
    return cfg


def playground_sac(env_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """MuJoCo Playground's published Brax SAC settings for the DM Control task ``env_name``
    (``dm_control_suite_params.brax_sac_config``), as (hyper, not_applied).

    ``hyper``: every setting that brax's SAC ``train`` in this install accepts, its
    ``network_factory`` options flattened to ``make_sac_networks`` keyword arguments (e.g.
    ``q_network_layer_norm``) for :func:`_network_factory`, plus ``num_envs`` (Playground's 128).
    ``not_applied``: {key: (value, why)} for the rest (``num_timesteps`` and ``num_evals`` are
    the run's budget and evaluation count, set by the caller; keys ``train`` lacks, such as
    ``num_resets_per_eval``, are reported, not passed). Playground does not set
    ``num_eval_envs``, so brax's default (128) would apply; :func:`run_brax` keeps
    ``sac_defaults``' 16 unless overridden.
    """
    import inspect

    from brax.training.agents.sac import networks as sac_networks
    from brax.training.agents.sac import train as brax_train
    from mujoco_playground.config import dm_control_suite_params

    published = dm_control_suite_params.brax_sac_config(env_name).to_dict()
    accepted = set(inspect.signature(brax_train.train).parameters)
    net_accepted = set(inspect.signature(sac_networks.make_sac_networks).parameters)
    hyper: dict[str, Any] = {}
    not_applied: dict[str, Any] = {}
    for key, value in published.items():
        if key in ("num_timesteps", "num_evals"):
            not_applied[key] = (value, "the run's budget / evaluation count is set by the caller")
        elif key == "network_factory":
            for k, v in dict(value).items():
                if k in net_accepted:
                    hyper[k] = list(v) if isinstance(v, tuple) else v
                else:
                    not_applied[f"network_factory.{k}"] = (v, "not a make_sac_networks argument")
        elif key in accepted:
            hyper[key] = value
        else:
            not_applied[key] = (value, "not an argument of brax.training.agents.sac.train")
    return hyper, not_applied


SETTINGS = ("default", "playground")


def _num_evals(algo: str, hyper: dict, num_envs: int, num_timesteps: int,
               eval_every: int | None) -> int:
    """Brax's ``num_evals``: 1 eval before training + one per epoch of ~``eval_every`` steps."""
    if algo == "sac":
        prefill = -(-hyper["min_replay_size"] // num_envs) * num_envs * hyper["action_repeat"]
        train_steps = num_timesteps - prefill
        chunk = num_envs * hyper["action_repeat"]  # env steps per actor step
    else:
        train_steps = num_timesteps
        chunk = (hyper["batch_size"] * hyper["num_minibatches"] * hyper["unroll_length"]
                 * hyper["action_repeat"])  # env steps per PPO update
    max_epochs = max(1, train_steps // chunk)
    epochs = 1 if eval_every is None else max(1, round(train_steps / eval_every))
    return 1 + min(epochs, max_epochs)


# make_sac_networks options that travel as plain JSON-friendly keys (Playground's SAC settings).
SAC_NETWORK_OPTIONS = ("policy_network_layer_norm", "q_network_layer_norm")
# ``activation`` travels by name, so config.json stays JSON; "mish" is this project's Mish, for
# running Brax SAC with this loop's network shape (the halfcheetah fairness check).
ACTIVATIONS = ("relu", "mish", "swish", "tanh")


def _activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r}: known are {', '.join(ACTIVATIONS)}")
    if name == "mish":
        from qvpo_mjx.networks import mish
        return mish
    import flax.linen as linen
    return getattr(linen, name)


# ``kernel_init`` travels by name too: Brax's own (LeCun uniform, variance 1 / fan_in) or this
# loop's ("qvpo": the reference's normal(0, 1 / (2 sqrt(fan_in))), a quarter of that variance,
# biases 0 in both), for the halfcheetah fairness check's initialisation suspect.
KERNEL_INITS = ("lecun_uniform", "qvpo")


def _kernel_init_fn(name: str):
    """A ``make_sac_networks`` ``*_kernel_init_fn``: Brax calls the policy's with its kwargs
    dict as one positional argument and the critic's with them unpacked, so take either."""
    if name not in KERNEL_INITS:
        raise ValueError(f"kernel_init {name!r}: known are {', '.join(KERNEL_INITS)}")
    if name == "qvpo":
        from qvpo_mjx.networks import linear_init
        return lambda *args, **kwargs: linear_init
    import jax
    return lambda *args, **kwargs: jax.nn.initializers.lecun_uniform()


def _network_factory(algo: str, hyper: dict) -> None:
    """Turns the JSON-friendly network keys (sizes; for SAC also ``SAC_NETWORK_OPTIONS``,
    ``activation``, a name in ``ACTIVATIONS``, and ``kernel_init``, one of ``KERNEL_INITS``) into
    brax's ``network_factory``."""
    if algo == "sac":
        kw = {k: hyper.pop(k) for k in SAC_NETWORK_OPTIONS if k in hyper}
        sizes = hyper.pop("hidden_layer_sizes", None)
        if sizes is not None:
            kw["hidden_layer_sizes"] = tuple(sizes)
        if "activation" in hyper:
            kw["activation"] = _activation(hyper.pop("activation"))
        if "kernel_init" in hyper:
            fn = _kernel_init_fn(hyper.pop("kernel_init"))
            kw["policy_network_kernel_init_fn"] = kw["q_network_kernel_init_fn"] = fn
        if kw:
            from brax.training.agents.sac import networks as sac_networks
            hyper["network_factory"] = functools.partial(sac_networks.make_sac_networks, **kw)
    else:
        kw = {k: tuple(hyper.pop(k)) for k in ("policy_hidden_layer_sizes",
                                               "value_hidden_layer_sizes") if k in hyper}
        if kw:
            from brax.training.agents.ppo import networks as ppo_networks
            hyper["network_factory"] = functools.partial(ppo_networks.make_ppo_networks, **kw)


# ------------------------------------------------------------------------------------------
# Runs


class _StopTraining(Exception):
    pass


def run_brax(algo: str, env_name: str, num_envs: int, num_timesteps: int, seed: int = 0,
             out_dir: str | os.PathLike | None = None, *, eval_every: int | None = None,
             env_options: dict | None = None, overwrite: bool = False, verbose: bool = False,
             stop_at: float | None = None, settings: str = "default", **hyper: Any) -> dict:
    """Train brax's ``algo`` ("sac" or "ppo") on our env ``env_name``; returns

    ``{"rows": [{env_steps, wall_time_s, eval_return_mean, eval_return_std, ...}], "env_steps",
    "eval_return_mean", ... columns as lists, "compile_or_first_eval_s", "first_train_eval_s",
    "total_wall_s", "config"}``. ``hyper`` overrides :func:`sac_defaults` / :func:`ppo_defaults`
    and goes to brax's ``train`` (plus ``hidden_layer_sizes`` for SAC and
    ``policy_hidden_layer_sizes`` / ``value_hidden_layer_sizes`` for PPO). With ``out_dir``,
    writes ``config.json`` first and ``curve.npz`` after every evaluation. ``settings``:
    "default" (the functions above) or "playground" (SAC only: :func:`playground_sac`'s settings
    over :func:`sac_defaults`; ``num_envs`` stays the caller's).
    """
    import envs

    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
    if settings not in SETTINGS:
        raise ValueError(f"settings must be one of {SETTINGS}, got {settings!r}")
    defaults = (sac_defaults if algo == "sac" else ppo_defaults)(env_name, num_envs,
                                                                  num_timesteps)
    not_applied = None
    if settings == "playground":
        if algo != "sac":
            raise ValueError("settings='playground' is for SAC (Playground's brax_sac_config)")
        published, not_applied = playground_sac(env_name)
        published.pop("num_envs", None)  # the caller's num_envs (Playground's: 128)
        max_replay = published.get("max_replay_size")
        if max_replay is not None and max_replay > num_timesteps:
            # brax allocates the whole buffer up front; one larger than the run stores nothing more
            not_applied["max_replay_size"] = (max_replay, f"capped at the run's {num_timesteps} "
                                              f"env steps (a larger buffer holds nothing more)")
            published["max_replay_size"] = num_timesteps
        defaults = {**defaults, **published}
    cfg = {**defaults, **hyper}
    if eval_every is None:
        eval_every = max(num_timesteps // 10, 1)
    cfg.setdefault("num_evals", _num_evals(algo, cfg, num_envs, num_timesteps, eval_every))
    cfg.update(num_envs=num_envs, num_timesteps=num_timesteps, seed=seed,
               episode_length=cfg.get("episode_length", EPISODE_LENGTH))
    if algo == "ppo" and (cfg["batch_size"] * cfg["num_minibatches"]) % num_envs:
        raise ValueError(f"ppo: batch_size * num_minibatches ({cfg['batch_size']} * "
                         f"{cfg['num_minibatches']}) must be divisible by num_envs ({num_envs})")
    algorithm = f"brax_{algo}"
    meta = {"env": env_name, "env_options": dict(env_options or {}), "seed": seed,
            "algorithm": algorithm, "preset": "peers", "eval_every": eval_every,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
            "versions": package_versions(), "backend": jax.default_backend()}
    if settings != "default":
        meta["preset"] = f"peers_{settings}"
        meta["settings_not_applied"] = {k: {"value": v, "why": why}
                                        for k, (v, why) in (not_applied or {}).items()}

    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise ValueError(f"output directory {out} exists and is not empty "
                             f"(pass overwrite=True / --overwrite to replace it)")
        out.mkdir(parents=True, exist_ok=True)
        (out / "curve.npz").unlink(missing_ok=True)
        save_json(out / "config.json", meta)

    if algo == "sac":
        from brax.training.agents.sac import train as brax_train
    else:
        from brax.training.agents.ppo import train as brax_train
    train_kwargs = dict(cfg)
    _network_factory(algo, train_kwargs)
    environment = envs.make(env_name, **(env_options or {}))

    rows: list[dict] = []
    times: list[float] = []

    def progress_fn(step: int, metrics: dict) -> None:
        now = time.perf_counter() - t0
        row = {"env_steps": float(step), "wall_time_s": now,
               "eval_return_mean": float(metrics["eval/episode_reward"]),
               "eval_return_std": float(metrics["eval/episode_reward_std"]),
               # brax's own clocks: training time (no evals; SAC's includes its prefill) and eval
               "brax_training_walltime_s": float(metrics.get("training/walltime", 0.0)),
               "brax_eval_walltime_s": float(metrics.get("eval/walltime", 0.0))}
        rows.append(row)
        times.append(now)
        if out is not None:
            save_curve(out / "curve.npz", rows)
        if stop_at is not None and row["eval_return_mean"] >= stop_at:
            raise _StopTraining  # time-to-return runs end at the threshold
        if verbose:
            print(f"  {algorithm} {env_name} N={num_envs} s{seed}: step {step:>9,} "
                  f"t {now:7.1f}s return {row['eval_return_mean']:9.2f}", file=sys.stderr)

    with brax_compat(getattr(brax_train, "_PMAP_AXIS_NAME", "i")):
        t0 = time.perf_counter()
        try:
            brax_train.train(environment=environment, progress_fn=progress_fn, **train_kwargs)
        except _StopTraining:
            pass
        total = time.perf_counter() - t0

    result = {"algorithm": algorithm, "env": env_name, "num_envs": num_envs, "seed": seed,
              "num_timesteps": num_timesteps, "rows": rows,
              **{k: [r[k] for r in rows] for k in CURVE_KEYS},
              "compile_or_first_eval_s": times[0] if times else None,
              "first_train_eval_s": times[1] if len(times) > 1 else None,
              "total_wall_s": total, "config": meta["config"]}
    return result


def throughput(algo: str, env_name: str, num_envs: int, num_timesteps: int, seed: int = 0,
               *, eval_every: int | None = None, **hyper: Any) -> dict:
    """Training env steps per second, compilation excluded, from one short :func:`run_brax`.

    Brax reports at env_steps 0 (before any training is compiled), then after each epoch. The
    first epoch carries the compilation (and SAC's prefill), so the rate is measured from the
    second report to the last: ``steps_per_s`` on the wall clock (evaluations included) and
    ``train_steps_per_s`` on brax's training clock (evaluations excluded). Needs >= 2 epochs
    after the first; ``eval_every`` defaults to a quarter of the budget (4 epochs).
    ``startup_s`` = wall time to the first post-training report minus what its steps take at the
    steady wall rate: compilation, prefill and first evaluations.
    """
    if eval_every is None:
        eval_every = max(num_timesteps // 4, 1)
    r = run_brax(algo, env_name, num_envs, num_timesteps, seed, eval_every=eval_every, **hyper)
    rows = r["rows"]
    if len(rows) < 4:
        raise ValueError(f"throughput needs >= 3 training epochs, got {len(rows) - 1}: "
                         f"raise num_timesteps or lower eval_every")
    a, b = rows[1], rows[-1]
    steps = b["env_steps"] - a["env_steps"]
    sps = steps / (b["wall_time_s"] - a["wall_time_s"])
    train_dt = b["brax_training_walltime_s"] - a["brax_training_walltime_s"]
    return {"algo": algo, "env": env_name, "num_envs": num_envs, "num_timesteps": num_timesteps,
            "env_steps_done": int(b["env_steps"]), "steps_per_s": sps,
            "train_steps_per_s": steps / train_dt if train_dt > 0 else None,
            "startup_s": a["wall_time_s"] - a["env_steps"] / sps,
            "compile_or_first_eval_s": r["compile_or_first_eval_s"],
            "first_train_eval_s": r["first_train_eval_s"], "total_wall_s": r["total_wall_s"],
            "last_eval_return": b["eval_return_mean"], "config": r["config"]}


def in_fresh_process(fn, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a new Python process (spawned, so nothing compiled is shared)."""
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def first_crossing(result: dict, threshold: float) -> dict | None:
    """First evaluation with mean return >= threshold: {env_steps, wall_time_s}, or None."""
    for row in result["rows"]:
        if row["eval_return_mean"] >= threshold:
            return {"env_steps": int(row["env_steps"]), "wall_time_s": row["wall_time_s"]}
    return None


# ------------------------------------------------------------------------------------------
# Command line


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_throughput_table(rows: list[dict]) -> None:
    print(f"{'algo':<5} {'env':<26} {'N':>5} {'steps/s':>9} {'train steps/s':>14} "
          f"{'compile s':>10} {'first eval s':>13} {'total s':>8}")
    for r in rows:
        print(f"{r['algo']:<5} {r['env']:<26} {r['num_envs']:>5} {r['steps_per_s']:>9.0f} "
              f"{_fmt(r['train_steps_per_s'], '14.0f')} {r['startup_s']:>10.1f} "
              f"{r['compile_or_first_eval_s']:>13.1f} {r['total_wall_s']:>8.1f}")


def _parse_set(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


def cmd_quick(args) -> int:
    """SAC and PPO throughput on --env (inverted_pendulum) at --num-envs (16), small budgets."""
    env, n = args.env, args.num_envs
    sac_epoch = max(2048, 8 * n)  # at least 8 actor steps of N envs per epoch
    ppo = ppo_defaults(env, n, 0)
    ppo_update = ppo["batch_size"] * ppo["num_minibatches"] * ppo["unroll_length"]
    plans = [
        # SAC: prefill ~1000 steps, then 4 epochs (at N=16: 128 actor steps, 2048 env steps and
        # as many updates each).
        ("sac", dict(num_timesteps=1008 + 4 * sac_epoch, eval_every=sac_epoch)),
        # PPO: at N=16 on the pendulums 1280 env steps per update; 4 epochs of 16 updates.
        ("ppo", dict(num_timesteps=4 * 16 * ppo_update, eval_every=16 * ppo_update)),
    ]
    table = []
    for algo, plan in plans:
        t = time.perf_counter()
        # Each in a fresh process: a second brax run in one process reuses some of the first's
        # compiled env functions, which would flatter its compile time.
        table.append(in_fresh_process(throughput, algo, env, n, plan["num_timesteps"],
                                      seed=args.seed, eval_every=plan["eval_every"],
                                      **_parse_set(args.set)))
        print(f"[{algo}: {time.perf_counter() - t:.0f} s]", file=sys.stderr)
    print_throughput_table(table)
    name = ("peers_quick.json" if (env, n) == ("inverted_pendulum", 16)
            else f"peers_quick_{env}_{n}.json")
    write_result(Path(__file__).resolve().parent / "results" / name,
                 {"machine": machine_info(), "rows": table,
                  "notes": "steps_per_s: wall clock from the first post-training report to the "
                           "last (evaluations included); train_steps_per_s: brax's training "
                           "clock (evaluations excluded); compile (startup_s): compilation, "
                           "prefill and first evaluations."})
    return 0


def cmd_tiny(args) -> int:
    """SAC on inverted_pendulum, N=4, 2k steps; checks the run directory loads in our plotter."""
    import tempfile

    from qvpo_mjx import plot

    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "tiny"
        r = run_brax("sac", "inverted_pendulum", 4, 2000, seed=args.seed, out_dir=run_dir,
                     eval_every=2000, min_replay_size=500, batch_size=64, num_eval_envs=4,
                     verbose=True)
        loaded = plot.load_run(run_dir)
        assert len(loaded["y"]) == len(r["rows"]) and loaded["label"].find("brax_sac") >= 0, loaded
    print(f"{'algo':<9} {'env':<18} {'N':>3} {'evals':>5} {'last step':>9} {'return':>8} "
          f"{'first eval s':>12} {'total s':>8}")
    print(f"{'brax_sac':<9} {'inverted_pendulum':<18} {4:>3} {len(r['rows']):>5} "
          f"{int(r['env_steps'][-1]):>9} {r['eval_return_mean'][-1]:>8.1f} "
          f"{r['compile_or_first_eval_s']:>12.1f} {r['total_wall_s']:>8.1f}")
    print(f"plot label: {loaded['label']!r}; tiny done in {time.perf_counter() - t:.0f} s")
    return 0


def cmd_runs(args) -> int:
    hyper = _parse_set(args.set)
    summary = []
    for algo in args.algo:
        for seed in args.seeds:
            out = None
            if args.out_dir:
                out = Path(args.out_dir) / f"{args.env}__brax_{algo}__N{args.num_envs}__s{seed}"
            # A fresh process per run, so no run inherits another's compiled functions.
            r = in_fresh_process(run_brax, algo, args.env, args.num_envs, args.timesteps, seed,
                                 out, eval_every=args.eval_every, overwrite=args.overwrite,
                                 verbose=True, settings=args.settings, **hyper)
            entry = {"algo": algo, "seed": seed, "out_dir": str(out) if out else None,
                     "total_wall_s": r["total_wall_s"],
                     "compile_or_first_eval_s": r["compile_or_first_eval_s"],
                     "final_return": r["eval_return_mean"][-1],
                     "best_return": max(r["eval_return_mean"]), "config": r["config"]}
            if args.threshold is not None:
                entry["threshold"] = args.threshold
                entry["first_crossing"] = first_crossing(r, args.threshold)
            summary.append(entry)
    print(f"{'algo':<5} {'seed':>4} {'final':>9} {'best':>9} {'total s':>8}"
          + (f" {'steps to R':>11} {'s to R':>8}" if args.threshold is not None else ""))
    for e in summary:
        line = (f"{e['algo']:<5} {e['seed']:>4} {e['final_return']:>9.1f} "
                f"{e['best_return']:>9.1f} {e['total_wall_s']:>8.1f}")
        if args.threshold is not None:
            c = e["first_crossing"]
            line += (f" {c['env_steps']:>11,} {c['wall_time_s']:>8.1f}" if c
                     else f" {'never':>11} {'-':>8}")
        print(line)
    if args.out_dir:
        write_result(Path(args.out_dir) / "peers_summary.json",
                     {"machine": machine_info(), "env": args.env, "num_envs": args.num_envs,
                      "timesteps": args.timesteps, "runs": summary})
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="SAC and PPO steps/s on inverted_pendulum, N=16; writes "
                           "results/peers_quick.json")
    mode.add_argument("--tiny", action="store_true",
                      help="smoke test: SAC, inverted_pendulum, N=4, 2k steps (~1 min)")
    p.add_argument("--algo", nargs="+", choices=ALGOS, default=["sac"])
    p.add_argument("--settings", choices=SETTINGS, default="default",
                   help="default: sac_defaults / ppo_defaults; playground: MuJoCo Playground's "
                        "published SAC settings for the DM Control task --env")
    p.add_argument("--env", default="inverted_pendulum")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--timesteps", type=int, default=20_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--seed", type=int, default=0, help="seed for --quick / --tiny")
    p.add_argument("--eval-every", type=int, default=2_000,
                   help="env steps between evaluations (brax rounds to whole epochs)")
    p.add_argument("--threshold", type=float, default=None, metavar="R",
                   help="report the first env step and wall second with eval return >= R")
    p.add_argument("--out-dir", default=None,
                   help="write one run directory per (algo, seed) here, plus peers_summary.json")
    p.add_argument("--overwrite", action="store_true", help="replace non-empty run directories")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a brax hyper-parameter, e.g. --set learning_rate=1e-3 "
                        "--set hidden_layer_sizes=[64,64] (repeatable)")
    p.add_argument("--compile-cache", default="none",
                   help="persistent XLA compilation cache dir ('none': off, so compile time "
                        "is always paid and measured)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.compile_cache.lower() != "none":
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    try:
        if args.tiny:
            return cmd_tiny(args)
        if args.quick:
            return cmd_quick(args)
        return cmd_runs(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
