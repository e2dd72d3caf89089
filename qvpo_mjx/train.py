"""Train QVPO on an MJX task: ``python -m qvpo_mjx.train --env ENV --num-envs N ...``.

Writes to ``--out DIR``: ``config.json`` (resolved config, env, seed, versions), ``curve.npz`` (one
row per chunk = evaluation interval) and ``checkpoint.npz`` (the whole training state), both
written atomically after every chunk, so a crash loses at most one interval; ``--resume DIR``
continues a run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from qvpo_mjx.config import QVPOConfig

CURVE_KEYS = ("env_steps", "wall_time_s", "eval_return_mean", "eval_return_std")

# Named settings. Each is a set of config overrides plus a default env; flags override presets.
PRESETS: dict[str, dict[str, Any]] = {
    # The reference regime: one env, one update per env step, batch 256, every ALGORITHM.md default.
    # One env cannot be split over devices, so it runs on one whatever the machine has.
    "paper": {"env": "halfcheetah", "config": {"num_devices": 1}},
    # Thousands of envs on one GPU, set by the scaling study (benchmarks/README.md): the paper's
    # networks and hyper-parameters, with the reference's one critic update of batch 256 per env
    # step (update_to_data x N per vector step; updates_per_step follows --num-envs, see
    # preset_config) and one actor update per two critic ones. Fewer critic updates per env
    # step (naive scaling, or half as many) lost return; larger batches did not make up for it.
    "gpu": {"env": "halfcheetah", "update_to_data": 1.0, "config": dict(
        num_envs=4096, critic_updates_per_actor=2, eval_interval=81_920,
        total_steps=1_000_000, replay_size=1_000_000)},
    # Learns a cheap task in a few minutes on a 2-core CPU (see README for the timing).
    # Smaller networks and chains for CPU speed; tau 0.02 because value propagation through the
    # target network was the bottleneck (tau 0.005: eval return ~70 after 16k steps; 0.02: 1000
    # at 10k steps; see the note on issue 3).
    "cpu": {"env": "inverted_pendulum", "config": dict(
        num_envs=16, batch_size=128, updates_per_step=8, start_steps=1_000,
        eval_interval=2_000, num_eval_envs=4, total_steps=20_000, replay_size=100_000,
        hidden_size=64, diffusion_steps=5, train_samples=16, eval_samples=8,
        actor_lr=3e-4, critic_lr=1e-3, tau=0.02)},
}


def package_versions() -> dict[str, str | None]:
    out = {}
    for pkg in ("qvpo-mjx", "jax", "jaxlib", "flax", "optax", "brax", "mujoco", "mujoco-mjx"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


# ------------------------------------------------------------------------------------------
# Files, written atomically: a crash mid-write leaves the previous good file.


def atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ChunkInterrupts:
    """Ctrl-C during training: the first stops the run at the end of the chunk in flight, once
    it is saved (nothing is lost); a second aborts at once, unless curve and checkpoint are being
    written, which finish first. The handler only sets a flag, so no library code between the
    signal and the chunk's end can swallow the stop."""

    def __init__(self) -> None:
        self.requested = 0
        self._saving = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        self.requested += 1
        if self.requested == 1:
            print("\nstopping after this chunk (Ctrl-C again to abort now)", file=sys.stderr)
        elif not self._saving:
            raise KeyboardInterrupt

    def __enter__(self) -> "ChunkInterrupts":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    @contextlib.contextmanager
    def saving(self):
        """Curve and checkpoint are written as a pair, even through a second Ctrl-C."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False
        if self.requested > 1:
            raise KeyboardInterrupt


def save_json(path: Path, obj: dict) -> None:
    atomic_write_bytes(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    atomic_write_bytes(path, lambda f: np.savez(f, **arrays))


def curve_key(metric: str) -> str:
    return metric.replace("/", "_")


def save_curve(path: Path, rows: list[dict[str, float]]) -> None:
    keys = list(rows[0]) if rows else list(CURVE_KEYS)
    save_npz(path, {k: np.asarray([r[k] for r in rows], np.float64) for k in keys})


def load_curve(path: Path) -> list[dict[str, Any]]:
    """Rows as :func:`train` returns them: floats, or (S,) arrays for per-seed columns."""
    with np.load(path) as data:
        keys = list(data.files)
        columns = {k: data[k] for k in keys}
    n = len(columns["env_steps"])
    cell = lambda x: float(x) if np.ndim(x) == 0 else np.asarray(x)  # noqa: E731
    return [{k: cell(columns[k][i]) for k in keys} for i in range(n)]


def to_host(tree):
    """Device arrays as host numpy. Across several processes every process must call it (it
    gathers the shards the others hold) and gets the whole value."""
    import jax
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)


def save_checkpoint(path: Path, state) -> None:
    import jax
    leaves = jax.device_get(jax.tree.leaves(state))
    save_npz(path, {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)})


def load_checkpoint(path: Path, template):
    """Leaves saved by :func:`save_checkpoint` poured into ``template``'s structure."""
    import jax
    t_leaves, treedef = jax.tree.flatten(template)
    with np.load(path) as data:
        leaves = [data[f"leaf_{i:05d}"] for i in range(len(data.files))]
    if len(leaves) != len(t_leaves) or any(
            a.shape != b.shape or a.dtype != b.dtype for a, b in zip(leaves, t_leaves)):
        raise ValueError(f"{path} does not match this run's state (different env or config)")
    return jax.tree.unflatten(treedef, [jax.device_put(x) for x in leaves])


# ------------------------------------------------------------------------------------------
# Progress


class Progress:
    """One status line: env steps, steps per second, last eval return, time left."""

    def __init__(self, total: int, enabled: bool = True, stream=sys.stderr):
        self.total, self.enabled, self.stream = total, enabled, stream
        self.tty = stream.isatty()

    def update(self, env_steps: int, sps: float, eval_return: float, elapsed: float) -> None:
        if not self.enabled:
            return
        frac = min(1.0, env_steps / self.total)
        left = (self.total - env_steps) / sps if sps > 0 else float("nan")
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        line = (f"[{bar}] {env_steps:>10,}/{self.total:,} steps | {sps:8.0f} steps/s | "
                f"eval return {eval_return:9.2f} | {elapsed:6.0f}s elapsed, "
                f"{_fmt_seconds(left)} left")
        if self.tty:
            self.stream.write("\r" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")


def _fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    return f"{int(s // 60)}m{int(s % 60):02d}s"


# ------------------------------------------------------------------------------------------
# The run


def first(x) -> int:
    """The value of a counter that every seed shares (() or (S,) array) as an int."""
    return int(np.asarray(x).reshape(-1)[0])


class NonFiniteError(RuntimeError):
    """A loss, Q value or parameter went non-finite; the last good checkpoint is kept."""


def train(config: QVPOConfig, env_name: str, seed: int = 0, out_dir: str | Path | None = None,
          *, env_options: dict[str, Any] | None = None, resume: bool = False,
          overwrite: bool = False, progress: bool = True,
          progress_fn: Callable[[int, dict[str, float]], None] | None = None,
          extra_meta: dict[str, Any] | None = None) -> list[dict[str, float]]:
    """Train and return the curve (one dict of floats per chunk).

    With ``out_dir``, writes config.json, curve.npz and checkpoint.npz there after every chunk.
    ``resume=True`` continues the run saved in ``out_dir``. ``progress_fn(env_steps, row)`` is called
    after each chunk.
    """
    import jax

    from qvpo_mjx.loop import FAULT_NAMES, Trainer

    if config.num_devices == 0:  # record what "all devices" meant, so a resume means the same
        config.check_divisible(len(jax.devices()))
        config = config.replace(num_devices=len(jax.devices()))
    trainer = Trainer(config, env_name, env_options)
    S = config.num_seeds
    seeds = [seed + i for i in range(S)]
    out = Path(out_dir) if out_dir is not None else None
    meta = {"env": env_name, "env_options": dict(env_options or {}), "seed": seed,
            "seeds": seeds, "config": config.to_dict(), "versions": package_versions(),
            "backend": jax.default_backend(),
            "devices": [str(d) for d in trainer.devices], **(extra_meta or {})}
    writer = jax.process_index() == 0  # on several hosts, one writes; all compute
    if out is not None and writer:
        prepare_out_dir(out, meta, resume=resume, overwrite=overwrite)

    state = trainer.init_seeds(seeds)
    rows: list[dict[str, Any]] = []
    wall_offset = 0.0
    if resume and out is not None and (out / "checkpoint.npz").exists():
        loaded = load_checkpoint(out / "checkpoint.npz", state)
        state = jax.tree.map(lambda x, t: jax.device_put(x, t.sharding), loaded, state)
        rows = load_curve(out / "curve.npz")
        done_chunks = first(state.chunks)
        if len(rows) < done_chunks:
            raise ValueError(f"--resume: {out / 'curve.npz'} has {len(rows)} rows but the "
                             f"checkpoint is at chunk {done_chunks}; the curve was damaged")
        rows = rows[:done_chunks]  # drop a row written just before a crash hit its checkpoint
        wall_offset = rows[-1]["wall_time_s"] if rows else 0.0

    run_chunk = trainer.compile_chunk(state, S)
    bar = Progress(trainer.num_chunks * trainer.chunk_env_steps, enabled=progress)
    start = time.perf_counter()
    last_steps, last_time = first(state.env_steps), start
    # One value per seed: a float for one seed, an (S,) array for several.
    per_seed = (lambda v: float(v)) if S == 1 else (lambda v: np.asarray(v, np.float64))
    with ChunkInterrupts() as interrupts:
        for _ in range(first(state.chunks), trainer.num_chunks):
            state, metrics = run_chunk(state)
            metrics = {k: np.asarray(v) for k, v in to_host(metrics).items()}
            fault = metrics.pop("fault").reshape(-1)
            fault_step = metrics.pop("fault_step").reshape(-1)
            if fault.any():
                bar.close()
                i = int(np.argmax(fault > 0))
                raise NonFiniteError(
                    f"non-finite {FAULT_NAMES[int(fault[i]) - 1]} at env step {int(fault_step[i]):,}"
                    + (f" in seed {seeds[i]}" if S > 1 else "") + "; "
                    + (f"the last good checkpoint ({int(rows[-1]['env_steps']):,} steps) is kept in "
                       f"{out}" if out is not None and rows else "nothing was saved"))
            now = time.perf_counter()
            row = {"env_steps": float(metrics.pop("env_steps").reshape(-1)[0]),
                   "wall_time_s": wall_offset + now - start,
                   "eval_return_mean": per_seed(metrics.pop("eval_return_mean")),
                   "eval_return_std": per_seed(metrics.pop("eval_return_std"))}
            row.update({curve_key(k): per_seed(v) for k, v in sorted(metrics.items())})
            rows.append(row)
            if out is not None:
                host_state = to_host(state)
            if out is not None and writer:
                # Curve first: a crash between the two leaves the curve one row ahead of the
                # checkpoint, which resume trims (the chunk reruns bit for bit). The other order
                # could lose a row for good, or leave a checkpoint with no curve at all.
                with interrupts.saving():
                    save_curve(out / "curve.npz", rows)
                    save_checkpoint(out / "checkpoint.npz", host_state)
            sps = (row["env_steps"] - last_steps) / max(now - last_time, 1e-9)
            last_steps, last_time = row["env_steps"], now
            bar.update(int(row["env_steps"]), sps, float(np.mean(row["eval_return_mean"])),
                       row["wall_time_s"])
            if progress_fn is not None:
                progress_fn(int(row["env_steps"]), row)
            if interrupts.requested:
                bar.close()
                raise KeyboardInterrupt  # after the chunk and its files: nothing in flight is lost
    bar.close()
    return rows


def prepare_out_dir(out: Path, meta: dict, *, resume: bool, overwrite: bool) -> None:
    if resume:
        cfg_path = out / "config.json"
        if not cfg_path.exists():
            raise ValueError(f"--resume: {cfg_path} does not exist")
        saved = json.loads(cfg_path.read_text())
        for key in ("env", "env_options", "seed", "config"):
            if saved.get(key) != meta[key]:
                raise ValueError(f"--resume: {out} was run with a different {key} "
                                 f"({saved.get(key)!r} vs {meta[key]!r})")
        return
    if out.exists() and not out.is_dir():
        raise ValueError(f"output path {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"output directory {out} exists and is not empty; pass --resume to "
                         f"continue it or --overwrite to replace it")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"output directory {out} is not writable ({e.strerror})") from e
    for name in ("checkpoint.npz", "curve.npz"):
        (out / name).unlink(missing_ok=True)
    save_json(out / "config.json", meta)


# ------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qvpo_mjx.train", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run = parser.add_argument_group("run")
    run.add_argument("--preset", choices=sorted(PRESETS), default=None,
                     help="named settings; default: 'gpu' on a GPU, else 'cpu'")
    run.add_argument("--env", default=None, help="task name (default: the preset's)")
    run.add_argument("--seed", type=int, default=0, help="random seed")
    run.add_argument("--out", default=None,
                     help="output directory (default: runs/ENV__PRESET__sSEED__TIME)")
    run.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    run.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    run.add_argument("--no-progress", action="store_true", help="no progress line")
    run.add_argument("--compile-cache", default=str(Path.home() / ".cache" / "qvpo-mjx" / "xla"),
                     help="persistent XLA compilation cache ('none' to disable): a repeated run "
                     "loads its compiled chunk instead of compiling it again")
    run.add_argument("--distributed", action="store_true",
                     help="several hosts: call jax.distributed.initialize() first (cluster read "
                     "from SLURM / Open MPI / TPU, or from the three flags below)")
    run.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                     help="with --distributed: process 0's address")
    run.add_argument("--num-processes", type=int, default=None, help="with --distributed")
    run.add_argument("--process-id", type=int, default=None, help="with --distributed")
    run.add_argument("--iterations", type=int, default=None,
                     help="MJX solver iterations (default: the env's)")
    run.add_argument("--ls-iterations", type=int, default=None,
                     help="MJX solver line-search iterations (default: the env's)")
    group = parser.add_argument_group("config (every QVPOConfig field; default: the preset's)")
    docs = QVPOConfig.field_docs()
    for f in dataclasses.fields(QVPOConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               help=docs[f.name] + f" (reference: {f.default})")
        else:
            kind = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str)
                                                            else f.type.__name__]
            group.add_argument(flag, type=kind, default=None,
                               help=docs[f.name] + f" (reference: {f.default})")
    return parser


def preset_config(name: str, overrides: dict[str, Any] | None = None) -> QVPOConfig:
    """The preset's config with ``overrides`` on top. A preset with an ``update_to_data`` ratio
    derives ``updates_per_step`` from ``num_envs`` (ratio x N, a multiple of
    ``critic_updates_per_actor``) unless ``overrides`` sets it, so ``--num-envs`` alone keeps
    the ratio the scaling study found."""
    overrides = dict(overrides or {})
    values = {**PRESETS[name]["config"], **overrides}
    ratio = PRESETS[name].get("update_to_data")
    if ratio is not None and "updates_per_step" not in overrides:
        d = values.get("critic_updates_per_actor", 1)
        values["updates_per_step"] = max(d, round(ratio * values["num_envs"] / d) * d)
    return QVPOConfig.from_dict(values)


def resolve(args: argparse.Namespace) -> tuple[QVPOConfig, str, str, dict[str, Any]]:
    """(config, env, preset name, env options) from parsed flags; ValueError on bad input."""
    import jax

    import envs

    preset = args.preset or ("gpu" if jax.default_backend() == "gpu" else "cpu")
    config = preset_config(preset, {f.name: getattr(args, f.name)
                                    for f in dataclasses.fields(QVPOConfig)
                                    if getattr(args, f.name) is not None})
    env = args.env or PRESETS[preset]["env"]
    envs.spec(env)
    env_options = {k: getattr(args, k) for k in ("iterations", "ls_iterations")
                   if getattr(args, k) is not None}
    return config, env, preset, env_options


def main(argv: list[str] | None = None) -> int:
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
        if args.resume:
            out = Path(args.resume)
            cfg_path = out / "config.json"
            if not cfg_path.exists():
                raise ValueError(f"--resume: {cfg_path} does not exist")
            saved = json.loads(cfg_path.read_text())
            config = QVPOConfig.from_dict(saved["config"])
            env, seed, env_options = saved["env"], saved["seed"], saved["env_options"]
            preset = saved.get("preset")
            # Flags given with --resume must agree with the run: a resumed run is the same run.
            given = {f.name: getattr(args, f.name) for f in dataclasses.fields(QVPOConfig)
                     if getattr(args, f.name) is not None}
            given.update({k: v for k, v in (("env", args.env), ("preset", args.preset))
                          if v is not None})
            have = {**config.to_dict(), "env": env, "preset": preset}
            for name, value in given.items():
                if have[name] != value:
                    raise ValueError(f"--resume: {out} was run with {name} = {have[name]!r}, "
                                     f"not {value!r}; a resumed run keeps its settings")
        else:
            config, env, preset, env_options = resolve(args)
            seed = args.seed
            out = Path(args.out) if args.out else Path("runs") / (
                f"{env}__{preset}__s{seed}__{time.strftime('%Y%m%d-%H%M%S')}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.compile_cache.lower() != "none":
        import jax
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    print(f"qvpo-mjx: env {env}, preset {preset}, {config.num_envs} envs, "
          f"{config.total_steps:,} steps, seed {seed} -> {out}", file=sys.stderr)
    try:
        rows = train(config, env, seed, out, env_options=env_options,
                     resume=bool(args.resume), overwrite=args.overwrite,
                     progress=not args.no_progress, extra_meta={"preset": preset})
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
              f"curve in {out / 'curve.npz'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
