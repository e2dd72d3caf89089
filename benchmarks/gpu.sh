#!/usr/bin/env bash
# The GPU suite, one command, for whenever a GPU is lent (about 12 minutes on one H100, not yet
# run: no GPU was lent so far): physics ceiling, QVPO acting, the full QVPO loop at the gpu preset
# and Brax SAC / PPO throughput at 4096 envs, then a short gpu-preset learning run.
#
# On a machine without internet, carry the wheels that are missing there (brax, mujoco,
# mujoco-mjx, flax, optax, ...) in .whl/ at the repository root; they are installed to /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
python3 -c "import jax; print('backend', jax.default_backend(), jax.devices())"
# The issue 7 check: halfcheetah and ant at 4096 envs, the gpu preset (4096 critic and 2048 actor
# updates per vector step, the paper's networks) against Brax SAC and PPO at the same N.
for env in halfcheetah ant; do
  python3 benchmarks/throughput.py --quick --preset gpu --env "$env" --num-envs 4096 \
    --out "benchmarks/results/gpu_throughput_${env}.json" || echo "throughput $env failed"
done
# A learning run on the gpu preset, cut off after 5 minutes; its curve is saved every chunk.
timeout 300 python3 -m qvpo_mjx.train --preset gpu --env halfcheetah --total-steps 1000000 \
  --out benchmarks/results/runs/gpu_halfcheetah_4096 --overwrite --no-progress \
  || echo "gpu learning run stopped (rc $?)"
# Seeds batched vs sequential where batching should pay: a small-N run leaves most of a GPU idle.
python3 benchmarks/scale_out.py --part seeds --out benchmarks/results/gpu_scale_out.json \
  || echo "scale_out failed"
