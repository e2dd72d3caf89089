"""What a run needs on the device: XLA's memory analysis of the compiled training chunk.

    python benchmarks/memory.py                  # halfcheetah and humanoid, every preset, N = 4096
    python benchmarks/memory.py --quick          # inverted_pendulum, the cpu and gpu presets
    python benchmarks/memory.py --env humanoid --presets gpu_wide --batch-size 4096 16384
    python benchmarks/memory.py --label before   # in an older tree, for a before/after pair

Nothing is executed: each row compiles one chunk (``Trainer.compile_chunk``, lowered on the
state's shapes) and reads ``compiled.memory_analysis()``, which XLA's CPU backend answers as a GPU
one would, up to its own buffer assignment. "Arguments" is the training state (donated, so the
outputs alias it: it is held once), "temporaries" what the chunk allocates on top: the peak a
run needs is about their sum. Each row records the preset's config as the run would get it
(``presets.preset_config`` with ``--num-envs`` and, where given, ``--batch-size``), the compile
time and the machine. Rows go to ``benchmarks/results/memory.json``, keyed by label, env,
preset, N and batch: a rerun replaces its rows and keeps the others.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

GIB = 2 ** 30
KEY = ("label", "env", "preset", "num_envs", "batch_size")


def analyse(env: str, preset: str, num_envs: int, batch_size: int | None = None,
            overrides: dict | None = None) -> dict:
    """One compiled chunk's memory: {arguments, outputs, aliased, temporaries, code} in bytes
    and GiB, the compile's seconds and the config's sizes that drive them."""
    from qvpo_mjx.loop import Trainer
    from qvpo_mjx.presets import preset_config

    changes = {"num_envs": num_envs, **(overrides or {})}
    if batch_size is not None:
        changes["batch_size"] = batch_size
    cfg = preset_config(preset, changes)
    trainer = Trainer(cfg, env)
    shapes = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
    t0 = time.perf_counter()
    compiled = trainer.compile_chunk(shapes).lower(shapes).compile()
    seconds = time.perf_counter() - t0
    stats = compiled.memory_analysis()
    sizes = {"arguments": stats.argument_size_in_bytes, "outputs": stats.output_size_in_bytes,
             "aliased": stats.alias_size_in_bytes, "temporaries": stats.temp_size_in_bytes,
             "code": stats.generated_code_size_in_bytes}
    return {"env": env, "preset": preset, "num_envs": num_envs, "batch_size": cfg.batch_size,
            "updates_per_step": cfg.updates_per_step,
            "critic_updates_per_actor": cfg.critic_updates_per_actor,
            "replay_size": cfg.replay_size, "hidden_size": cfg.hidden_size,
            # (an older tree, --label before, may lack the derived property or the option)
            "chunk_vector_steps": getattr(cfg, "chunk_vector_steps",
                                          -(-cfg.eval_interval // cfg.num_envs)),
            "n_step": getattr(cfg, "n_step", 1),
            "bytes": sizes, "gib": {k: round(v / GIB, 3) for k, v in sizes.items()},
            # The state is donated, so it is held once: arguments plus temporaries is the peak.
            "peak_gib": round((sizes["arguments"] + sizes["temporaries"]) / GIB, 3),
            "compile_s": round(seconds, 1)}


def merge(path: Path, rows: list[dict], machine: dict) -> dict:
    """The file's rows with ``rows`` replacing those of the same key."""
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    new = {tuple(r[k] for k in KEY) for r in rows}
    kept = [r for r in old if tuple(r.get(k) for k in KEY) not in new]
    return {"machine": machine, "rows": kept + rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", nargs="+", default=["halfcheetah", "humanoid"])
    p.add_argument("--presets", nargs="+", default=["paper", "gpu", "gpu_wide", "cpu"])
    p.add_argument("--num-envs", type=int, nargs="+", default=[4096])
    p.add_argument("--batch-size", type=int, nargs="+", default=[None],
                   help="batch sizes to analyse (default: each preset's own)")
    p.add_argument("--label", default="after",
                   help="what tree this is (a before/after pair keeps both)")
    p.add_argument("--quick", action="store_true",
                   help="inverted_pendulum, the cpu and gpu presets at N = 256")
    p.add_argument("--out", default=str(HERE / "results" / "memory.json"))
    args = p.parse_args()
    if args.quick:
        args.env, args.presets, args.num_envs = ["inverted_pendulum"], ["cpu", "gpu"], [256]
    out = Path(args.out)
    machine = common.machine_info()
    for env in args.env:
        for preset in args.presets:
            for n in args.num_envs:
                for batch in args.batch_size:
                    row = {"label": args.label, **analyse(env, preset, n, batch)}
                    print(json.dumps(row), flush=True)
                    # After every row: a compile of minutes is never lost to a later one.
                    common.write_result(out, merge(out, [row], machine))


if __name__ == "__main__":
    main()
