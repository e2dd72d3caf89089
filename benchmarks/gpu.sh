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
python3 benchmarks/loop_speed.py --quick --preset gpu --envs halfcheetah ant humanoid \
  --num-envs 1024 4096 --out benchmarks/results/gpu_loop_speed.json
if [ -f benchmarks/peers.py ]; then
  for env in halfcheetah ant humanoid; do
    for n in 1024 4096; do
      python3 benchmarks/peers.py --quick --env "$env" --num-envs "$n" \
        --out benchmarks/results/gpu_peers_${env}_${n}.json || echo "peers $env $n failed"
    done
  done
fi
