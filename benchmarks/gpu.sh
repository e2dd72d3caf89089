#!/usr/bin/env bash
# The GPU suite, one command, for whenever a GPU is lent (about 10 minutes on one H100):
# halfcheetah, ant and humanoid at 1024 and 4096 envs: physics ceiling, QVPO acting, the full QVPO
# loop at the gpu preset, and Brax SAC / PPO throughput at the same N.
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
for env in halfcheetah ant humanoid; do
  python3 benchmarks/throughput.py --quick --preset gpu --env "$env" --num-envs 1024 4096 \
    --out "benchmarks/results/gpu_throughput_${env}.json" || echo "throughput $env failed"
done
# Seeds batched vs sequential where batching should pay: a small-N run leaves most of a GPU idle.
python3 benchmarks/scale_out.py --part seeds --out benchmarks/results/gpu_scale_out.json \
  || echo "scale_out failed"
