#!/usr/bin/env bash
# A rehearsal of a GPU node's run, here on the CPU: green here should mean that only CUDA differs
# there.
#
#   bash benchmarks/gpu_rehearsal.sh            # in a temporary folder, removed at the end
#   bash benchmarks/gpu_rehearsal.sh WORKDIR    # in WORKDIR, kept (venv reused on a rerun)
#
# A lent GPU node has no internet; its Python 3.12 holds jax 0.11.2 (+ CUDA 13), flax, optax, chex,
# numpy 2.5, matplotlib, scipy, lxml, tqdm, ... and none of brax, mujoco, mujoco-mjx, playground.
# What reaches it is the repository (tracked and untracked-but-not-ignored files) plus .whl/, the
# bundle of benchmarks/offline_wheels.sh. So this script:
#   1. makes a fresh venv (Python 3.12 when there is one, else python3) holding only packages the
#      node has, the ones our code path imports (listed below with why);
#   2. builds the bundle for that interpreter with benchmarks/offline_wheels.sh;
#   3. copies what travels (the files git would carry, plus the bundle as .whl/) to WORKDIR/repo and
#      checks it stays under 64 MiB;
#   4. runs `bash benchmarks/gpu.sh OUT --tiny` there, which installs .whl/ with
#      `pip install --no-index --no-deps --target` and sets PYTHONPATH, as on the node;
#   5. checks every part of the suite exited 0, that brax, mujoco, MJX and Playground came from the
#      bundle's target folder, and builds and steps the tasks the tiny suite does not touch
#      (halfcheetah, a Brax task; CartpoleSwingup, a Playground task).
# It prints the time of each step and in all, and exits non-zero if anything failed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
t_start=$(date +%s)
elapsed() { echo $(( $(date +%s) - $1 )); }

# ---- the work folder: given (kept, so a failure can be looked at) or temporary (removed).
if [ $# -gt 1 ] || [[ "${1:-}" == -* ]]; then
  echo "usage: $0 [WORKDIR]" >&2; exit 2
fi
if [ $# -eq 1 ]; then
  work=$1
  mkdir -p "$work"
  work=$(cd "$work" && pwd)
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_rehearsal.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
echo "rehearsal work folder: $work"

# Nothing from the caller's Python setup may leak in: the node has none of it.
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV PYTHONSTARTUP PYTHONUSERBASE
export PIP_DISABLE_PIP_VERSION_CHECK=1

# ---- the interpreter: the node's Python is 3.12 (PYTHON=... forces another). A pyenv shim named
# python3.12 can exist and still refuse to run (that version is not selected), so each candidate
# is tried, not just found.
pick_python() {
  local c
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for c in python3.12 "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/3.12*/bin/python3.12; do
    if "$c" -c 'import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
      echo "$c"; return
    fi
  done
  echo "no Python 3.12 found: rehearsing with python3 ($(python3 -V 2>&1)); the node runs 3.12" >&2
  echo python3
}
py=$(pick_python)
pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
echo "interpreter: $py (Python $pyver)"

# ---- 1. the venv: only what a node has, and of that only what our code path imports.
# The node's versions where we know them (jax/jaxlib 0.11.2, numpy 2.5); the rest as PyPI serves
# them today. Every line is a package the node has; none is a package it lacks.
# jax 0.11 and numpy 2.5 need Python >= 3.12: on an older interpreter the newest releases below
# them are taken instead, and the rehearsal says it is not the node's JAX.
if [ "$pyver" = "3.12" ]; then
  core=("jax==0.11.2" "jaxlib==0.11.2" "numpy==2.5.*")
else
  core=("jax<=0.11.2" "jaxlib<=0.11.2" "numpy<2.6")
  echo "NOTE: Python $pyver: jax 0.11.2 (the node's) needs 3.12; this rehearsal uses an older JAX" >&2
fi
node_packages=(
  "${core[@]}"                    # the node's JAX (CPU wheels here; the node adds the CUDA 13 plugin), numpy
  flax optax chex                 # the agent (networks, optimisers)
  matplotlib                      # qvpo_mjx.plot (curves)
  orbax-checkpoint                # qvpo_mjx.checkpoint (also a flax dependency)
  scipy                           # mujoco.mjx, brax and jaxopt import it (also a jax dependency)
  absl-py etils                   # mujoco.mjx, brax and playground import them
  pyyaml                          # ml_collections (from the bundle) imports yaml
  lxml tqdm                       # mujoco_playground imports both (mjx_env, its task XML editing)
)
venv=$work/venv
stamp="$pyver ${node_packages[*]}"
t0=$(date +%s)
# Reused only when it was completed for this very interpreter and list (a rerun is idempotent and
# quick); anything else is rebuilt from scratch.
if [ "$(cat "$venv/.rehearsal_stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "${node_packages[@]}"
  echo "$stamp" > "$venv/.rehearsal_stamp"
  echo "venv built in $(elapsed "$t0") s"
else
  echo "venv reused ($venv)"
fi
t_venv=$(elapsed "$t0")
# The rehearsal is void if the venv already has what the bundle must bring.
for m in brax mujoco mujoco_playground; do
  if "$venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$m') is None)"; then
    echo "ERROR: the venv already has $m; a node has not" >&2; exit 1
  fi
done
"$venv/bin/python" -c 'import jax; print("venv: jax", jax.__version__, "on", jax.default_backend())'

# ---- 2 and 3. what travels: the files git would carry (tracked, and untracked ones not ignored,
# as they are in this working tree) and the bundle as .whl/.
t0=$(date +%s)
rm -rf "$work/repo" "$work/site" "$work/out"
mkdir -p "$work/repo"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
   | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$work/repo"
bash "$repo/benchmarks/offline_wheels.sh" "$work/repo/.whl" --python-version "$pyver"
t_bundle=$(elapsed "$t0")
travel=$(du -sb "$work/repo" | cut -f1)
awk -v s="$travel" 'BEGIN { printf "what travels (repository + .whl/): %.1f MiB (limit 64 MiB)\n", s / 1048576 }'
if [ "$travel" -ge $((64 * 1048576)) ]; then
  echo "ERROR: over 64 MiB: it would not reach a GPU node" >&2; exit 1
fi

# ---- 4. the suite, as the node runs it: python3 is the venv's, the bundle goes to a target folder.
t0=$(date +%s)
export PATH="$venv/bin:$PATH"
export QVPO_SITE="$work/site"
failed=0
if ! (cd "$work/repo" && bash benchmarks/gpu.sh "$work/out" --tiny); then
  echo "FAIL: gpu.sh exited non-zero" >&2; failed=1
fi
t_suite=$(elapsed "$t0")

# gpu.sh goes on past a failed part (on a GPU every minute counts) and so exits 0 even then; here
# any part that did not exit 0 fails the rehearsal.
log=$work/out/suite.log
grep -q "^bundle: .* installed into $work/site" "$log" \
  || { echo "FAIL: gpu.sh did not install the bundle into $work/site" >&2; failed=1; }
parts=$(grep -c "^=== part .*: exit " "$log" || true)
bad=$(grep "^=== part .*: exit " "$log" | grep -v ": exit 0 after" || true)
if [ "$parts" -eq 0 ] || [ -n "$bad" ]; then
  echo "FAIL: suite parts that did not exit 0 (of $parts):" >&2; echo "${bad:-none ran}" >&2; failed=1
fi
grep -q "bundle install failed" "$log" && { echo "FAIL: bundle install failed" >&2; failed=1; }

# ---- 5. the parts of a node's path the tiny suite does not reach, with the same PYTHONPATH.
t0=$(date +%s)
echo "=== checks: packages from the bundle; halfcheetah (Brax) and CartpoleSwingup (Playground) step"
if ! (cd "$work/repo" && PYTHONPATH="$work/site:$work/repo" python3 - "$work/site" <<'EOF'
import sys
site = sys.argv[1]
import jax, jax.numpy as jnp
import envs, qvpo_mjx.loop  # noqa: F401
import brax, mujoco, mujoco_playground
from mujoco import mjx
for mod in (brax, mujoco, mjx, mujoco_playground):
    assert mod.__file__.startswith(site), f"{mod.__name__} came from {mod.__file__}, not {site}"
for name in ("halfcheetah", "CartpoleSwingup"):
    env = envs.make(name)
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    state = jax.jit(env.step)(state, jnp.zeros(env.action_size))
    assert jnp.isfinite(state.reward), name
    print(f"  {name}: obs {state.obs.shape}, reward {float(state.reward):.4f}")
print("  brax, mujoco, mujoco.mjx, mujoco_playground all from", site)
EOF
); then
  echo "FAIL: checks" >&2; failed=1
fi
t_checks=$(elapsed "$t0")

echo "=== rehearsal times (s): venv $t_venv, bundle download and repository copy $t_bundle," \
  "gpu.sh --tiny $t_suite, checks $t_checks; total $(elapsed "$t_start")"
if [ "$failed" -ne 0 ]; then
  echo "=== rehearsal FAILED (Python $pyver, files in $work/out)" >&2
  exit 1
fi
if [ "$pyver" = "3.12" ]; then
  echo "=== rehearsal passed (Python 3.12, the node's JAX): on a node only CUDA should differ"
else
  echo "=== rehearsal passed, but on Python $pyver with an older JAX than the node's: rerun with 3.12"
fi
