#!/usr/bin/env bash
# The GPU suite: one command for the minutes a GPU is lent.
#
#   bash benchmarks/gpu.sh OUTDIR            # on the GPU: at most about 8 minutes in all
#   bash benchmarks/gpu.sh OUTDIR --tiny     # the same parts, CPU-sized (benchmarks/gpu_rehearsal.sh)
#
# GPU nodes are often offline: when .whl/ (benchmarks/offline_wheels.sh) is beside the repository,
# its wheels are installed into a target directory first, exactly as benchmarks/gpu_rehearsal.sh
# rehearses it. Every part has its own time cap, and a part that fails or runs out of time does
# not stop the next; the most valuable numbers come first:
#
#   part                                          cap (s)  writes (flat, in OUTDIR)
#   1. device, one critic / actor update at the     150    cost_model.json
#      paper config for B 256 1024 4096 16384,
#      Kt 16 (the gpu preset's wide regime) and 64
#      (compile times apart; needs no physics)
#   2. physics and QVPO acting steps/s, N 1024      150    env_speed.json
#      and 4096, halfcheetah and ant
#   3. the gpu preset learning on halfcheetah at    150    learning_curve.npz, learning_config.json
#      N = 4096 (the wide regime its rule picks),
#      an evaluation every 100 vector steps, cut
#      at its cap, curve saved every chunk
#   and suite.log (everything printed). Caps add to 450 s; installing the bundle takes ~10 s.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: benchmarks/gpu.sh OUTDIR [--tiny]}
tiny=${2:-}
mkdir -p "$out"
out=$(cd "$out" && pwd)
exec > >(tee "$out/suite.log") 2>&1

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  site=${QVPO_SITE:-/tmp/qvpo-site}
  t0=$SECONDS
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .whl/*.whl || echo "bundle install failed"
  export PYTHONPATH="$site"
  echo "bundle: $(ls .whl/*.whl | wc -l) wheels installed into $site in $((SECONDS - t0)) s"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
python3 -c "import jax; print('backend', jax.default_backend(), jax.devices())" || true
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi

if [ "$tiny" = "--tiny" ]; then
  caps=(240 240 120)
  updates=(--batch-sizes 16 64 --train-samples 4 --diffusion-steps 3 --hidden-size 32 --scan 2 --repeats 1)
  speed=(--envs pendulum_swingup --num-envs 4 8 --env-preset cpu --repeats 1 --quick)
  learn=(--preset cpu --env pendulum_swingup --num-envs 4 --total-steps 256 --eval-interval 64
         --start-steps 64 --batch-size 32 --num-eval-envs 2 --episode-length 50)
else
  caps=(150 150 150)
  updates=(--batch-sizes 256 1024 4096 16384 --train-samples 16 64 --diffusion-steps 20
           --repeats 3 --budget 110)
  speed=(--envs halfcheetah ant --num-envs 1024 4096 --repeats 3)
  learn=(--preset gpu --env halfcheetah --num-envs 4096 --eval-interval 409600)
fi

part() {  # part NAME CAP COMMAND...: run with a cap; report and go on whatever happens
  local name=$1 cap=$2; shift 2
  local t0=$SECONDS
  echo "=== part $name (cap ${cap} s)"
  timeout --signal=TERM --kill-after=10 "$cap" "$@"
  local rc=$?
  echo "=== part $name: exit $rc after $((SECONDS - t0)) s$([ $rc = 124 ] && echo ' (cap reached)')"
}

part "1 updates" "${caps[0]}" python3 benchmarks/cost_model.py --part updates "${updates[@]}" \
  --out "$out/cost_model.json"
part "2 env speed" "${caps[1]}" python3 benchmarks/cost_model.py --part env "${speed[@]}" \
  --out "$out/env_speed.json"
run=$(mktemp -d)
part "3 learning" "${caps[2]}" python3 -m qvpo_mjx.train "${learn[@]}" --out "$run/run" \
  --checkpoint-every 1000 --no-progress --compile-cache none
# The run's curve is rewritten after every chunk, so what the cap cut off is only the chunk in
# flight; OUTDIR stays flat (no checkpoint folders).
cp "$run/run/curve.npz" "$out/learning_curve.npz" 2>/dev/null || echo "no learning curve saved"
cp "$run/run/config.json" "$out/learning_config.json" 2>/dev/null || true
rm -rf "$run"
echo "=== suite done in $SECONDS s; files in $out:"
ls -la "$out"
