"""The command line (``python -m qvpo_mjx.train``, ``python -m qvpo_mjx``, ``qvpo-train``):
flags -> a resolved run -> :func:`qvpo_mjx.driver.train`.

Every ``QVPOConfig`` field is a flag named after it; presets (:mod:`qvpo_mjx.presets`) give the
defaults. Bad input is one ``error:`` line and exit code 2, before anything compiles or is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from qvpo_mjx import rundir
from qvpo_mjx.config import QVPOConfig
from qvpo_mjx.presets import PRESETS, preset_values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qvpo_mjx.train",
        description="Train QVPO (a diffusion policy) on an MJX task as one compiled JAX loop.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run = parser.add_argument_group("run")
    run.add_argument("--preset", choices=sorted(PRESETS), default=None,
                     help="named settings; default: 'gpu' on a GPU, else 'cpu'")
    run.add_argument("--env", default=None,
                     help="task name (default: the preset's); any name in envs.names()")
    run.add_argument("--seed", type=int, default=0, help="random seed")
    run.add_argument("--out", default=None,
                     help="output directory (default: runs/ENV__PRESET__sSEED__TIME)")
    run.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    run.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    run.add_argument("--checkpoint-every", type=float, default=None, metavar="MINUTES",
                     help="wall-clock minutes between checkpoints of the whole training state "
                     "(0: after every chunk); the last chunk is always saved and the curve after "
                     "every chunk (default: the preset's: cpu 0, gpu and paper 5)")
    run.add_argument("--tensorboard", action="store_true",
                     help="also write every curve column as TensorBoard scalars under "
                     "OUT/tensorboard (needs tensorboardX); curve.npz stays the record")
    run.add_argument("--no-progress", action="store_true", help="no progress line")
    run.add_argument("--compile-cache", default=os.environ.get(
                         "JAX_COMPILATION_CACHE_DIR", str(Path.home() / ".cache" / "qvpo-mjx" / "xla")),
                     help="persistent XLA compilation cache ('none' to disable): a repeated run "
                     "loads its compiled chunk instead of compiling it again (default: "
                     "$JAX_COMPILATION_CACHE_DIR, else ~/.cache/qvpo-mjx/xla)")
    run.add_argument("--distributed", action="store_true",
                     help="several hosts: call jax.distributed.initialize() first (cluster read "
                     "from SLURM / Open MPI / TPU, or from the three flags below)")
    run.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                     help="with --distributed: process 0's address")
    run.add_argument("--num-processes", type=int, default=None, help="with --distributed")
    run.add_argument("--process-id", type=int, default=None, help="with --distributed")
    run.add_argument("--iterations", type=int, default=None,
                     help="MJX solver iterations (default: the env's; Brax tasks only, "
                     "Playground tasks keep what they ship)")
    run.add_argument("--ls-iterations", type=int, default=None,
                     help="MJX solver line-search iterations (default: the env's; Brax tasks "
                     "only)")
    group = parser.add_argument_group("config (every QVPOConfig field; default: the preset's)")
    docs, kinds = QVPOConfig.field_docs(), QVPOConfig.field_types()
    for f in dataclasses.fields(QVPOConfig):
        flag = "--" + f.name.replace("_", "-")
        if kinds[f.name] is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               help=docs[f.name] + f" (reference: {f.default})")
        else:
            group.add_argument(flag, type=kinds[f.name], default=None,
                               help=docs[f.name] + f" (reference: {f.default})")
    return parser


def config_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(QVPOConfig)
            if getattr(args, f.name) is not None}


def resolve(args: argparse.Namespace) -> tuple[QVPOConfig, str, str, dict[str, Any], str]:
    """(config, env, preset name, env options, what N implied) from parsed flags; ValueError on
    bad input."""
    import jax

    import envs

    preset = args.preset or ("gpu" if jax.default_backend() == "gpu" else "cpu")
    values, implied = preset_values(preset, config_flags(args))
    config = QVPOConfig.from_dict(values)
    env = args.env or PRESETS[preset]["env"]
    envs.spec(env)
    env_options = {k: getattr(args, k) for k in ("iterations", "ls_iterations")
                   if getattr(args, k) is not None}
    return config, env, preset, env_options, implied


def resolve_resume(args: argparse.Namespace, out: Path):
    """The saved run in ``out`` (config, env, seed, env options, preset). Flags given with
    ``--resume`` must agree with it (a resumed run is the same run), with one exception: a
    larger ``--total-steps`` extends the run. The entropy weight's decay horizon then stays
    where the run began (``entropy_decay_steps`` is set to the old total), so the extension
    continues the schedule the run was trained under instead of raising the weight again;
    ``--entropy-decay-steps`` given with the extension sets another horizon. The novelty
    bonus's fall (``novelty_decay_steps``, which the cpu and gpu presets set to the run's first
    total) stays where it was too: the extension runs without the bonus."""
    saved = rundir.read_meta(out)
    config = QVPOConfig.from_dict(saved["config"])
    given = config_flags(args)
    extend = {}
    if given.get("total_steps", config.total_steps) > config.total_steps:
        extend["total_steps"] = given.pop("total_steps")
        extend["entropy_decay_steps"] = given.pop("entropy_decay_steps", None) or (
            config.entropy_decay_steps or config.total_steps)
    given.update({k: v for k, v in (("env", args.env), ("preset", args.preset)) if v is not None})
    have = {**config.to_dict(), "env": saved["env"], "preset": saved.get("preset")}
    for name, value in given.items():
        if have[name] != value:
            why = ("a run can be extended, not shortened" if name == "total_steps" else
                   "a resumed run keeps its settings (only a larger --total-steps, with "
                   "--entropy-decay-steps, may change)")
            raise ValueError(f"--resume: {out} was run with {name} = {have[name]!r}, not "
                             f"{value!r}; {why}")
    return (config.replace(**extend), saved["env"], saved["seed"], saved["env_options"],
            saved.get("preset"))


def main(argv: list[str] | None = None) -> int:
    from qvpo_mjx.driver import NonFiniteError, train

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.distributed:
        import jax
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts too
        try:
            jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        except (ValueError, RuntimeError) as e:
            print(f"error: --distributed: {e}", file=sys.stderr)
            return 2
    try:
        import jax
        if args.resume:
            out = Path(args.resume)
            config, env, seed, env_options, preset = resolve_resume(args, out)
            implied = ""
        else:
            config, env, preset, env_options, implied = resolve(args)
            seed = args.seed
            out = Path(args.out) if args.out else Path("runs") / (
                f"{env}__{preset}__s{seed}__{time.strftime('%Y%m%d-%H%M%S')}")
        minutes = args.checkpoint_every
        if minutes is None:
            minutes = PRESETS.get(preset or "", {}).get("checkpoint_minutes", 0.0)
        if not (math.isfinite(minutes) and minutes >= 0):
            raise ValueError(f"--checkpoint-every must be a non-negative number of minutes, "
                             f"got {minutes}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.compile_cache.lower() != "none":
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    def announce(trainer) -> None:
        """The run's first line: what it will do, from the settings the trainer resolved."""
        cfg = trainer.config
        real, chunk = cfg.run_env_steps, cfg.chunk_env_steps
        total = (f"{cfg.total_steps:,} steps" if real == cfg.total_steps else
                 f"{real:,} steps (total_steps {cfg.total_steps:,} rounded up to whole "
                 f"evaluation intervals of {chunk:,})")
        print(f"qvpo-mjx: env {env}, preset {preset}, {cfg.num_envs} envs, {total}, seed {seed}, "
              f"{cfg.num_devices} device(s)"
              + "".join(f"; {n}" for n in ([implied] if implied else []) + trainer.fit_notes)
              + f"; checkpoints {'every chunk' if minutes == 0 else f'every {minutes:g} min'} "
              f"-> {out}", file=sys.stderr)

    try:
        rows = train(config, env, seed, out, env_options=env_options,
                     resume=bool(args.resume), overwrite=args.overwrite,
                     progress=not args.no_progress, checkpoint_minutes=minutes,
                     tensorboard=args.tensorboard, on_start=announce,
                     extra_meta={"preset": preset})
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        # A first Ctrl-C lets the chunk in flight finish and be saved; a second aborts it.
        print(f"\ninterrupted: the last completed chunk is saved in {out}; continue with "
              f"--resume {out}", file=sys.stderr)
        return 130
    if rows:
        last = np.atleast_1d(rows[-1]["eval_return_mean"])
        best = np.max([r["eval_return_mean"] for r in rows], axis=0)
        over = f" (mean of {len(last)} seeds)" if len(last) > 1 else ""
        print(f"done: {int(rows[-1]['env_steps']):,} steps in {rows[-1]['wall_time_s']:.0f} s; "
              f"last eval return {np.mean(last):.2f}, best {np.mean(best):.2f}{over}; "
              f"curve in {out / rundir.CURVE_FILE}", file=sys.stderr)
    return 0
