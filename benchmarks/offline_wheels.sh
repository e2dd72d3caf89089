#!/usr/bin/env bash
# The offline wheel bundle for a lent GPU node: the wheels such a node lacks to run this project.
#
#   bash benchmarks/offline_wheels.sh DIR [--python-version 3.12]
#
# The GPU nodes have no internet. Their Python 3.12 already holds jax/jaxlib 0.11.2 with the CUDA 13
# plugin, flax, optax, chex, numpy, matplotlib, orbax-checkpoint, scipy, lxml, tqdm, absl-py,
# etils, pyyaml, ... but not brax, mujoco, mujoco-mjx or playground. This script downloads exactly
# the missing wheels into DIR (replacing any *.whl already there), one pinned version each, so that
# DIR can travel with the repository (as .whl/, which benchmarks/gpu.sh installs with
# `pip install --no-index --no-deps --target`). benchmarks/gpu_rehearsal.sh rehearses that install
# here on the CPU.
#
# --python-version picks the CPython the wheels are for: 3.12 (the default) for the GPU nodes;
# 3.11 (this machine's interpreter) gives the same versions for a local rehearsal. Wheels are
# manylinux x86_64 (or pure Python) only: --only-binary, so nothing is ever built from source.
#
# The set is the minimal one found by trying (install the bundle into a venv that holds only what a
# node has, then leave each wheel out in turn): each wheel below names what failed without it.
# Nothing here is a dependency resolver's guess: --no-deps everywhere, so a new dependency of a
# newer release shows up as an ImportError in the rehearsal, never as a silent download.
#
# Exit status: non-zero if a download fails or the bundle passes the size cap (60 MiB: what travels
# to a node, repository included, must stay under 64 MiB).
set -euo pipefail

usage() { echo "usage: $0 DIR [--python-version X.Y]   (default 3.12, the GPU nodes' Python)" >&2; exit 2; }

dir=""
pyver="3.12"
while [ $# -gt 0 ]; do
  case "$1" in
    --python-version) [ $# -ge 2 ] || usage; pyver=$2; shift 2 ;;
    --python-version=*) pyver=${1#*=}; shift ;;
    -h|--help) usage ;;
    -*) echo "unknown option: $1" >&2; usage ;;
    *) [ -z "$dir" ] || usage; dir=$1; shift ;;
  esac
done
[ -n "$dir" ] || usage
[[ "$pyver" =~ ^3\.[0-9]+$ ]] || { echo "--python-version must look like 3.12, got '$pyver'" >&2; exit 2; }

max_mib=60

# One version each: the versions the project's venv resolves today (pip list in .venv). The
# `mujoco` 4.x distribution is split in three: `mujoco` (a 100 KB metadata shell whose only file,
# mujoco/__init__.py, is the same file mujoco-core ships), `mujoco-core` (the bindings, libmujoco
# and everything `import mujoco` runs) and `mujoco-studio` (the 13 MB interactive viewer app).
wheels=(
  # `import mujoco` and MJX's model building (mj_* functions, MjModel): the C library and bindings.
  "mujoco-core==4.0.0"
  # Not needed to import or simulate (mujoco-core provides the package), but without it
  # importlib.metadata.version("mujoco") is None, and the run records and benchmark JSON
  # (qvpo_mjx.rundir.package_versions) would not name the MuJoCo version. 0.1 MB.
  "mujoco==4.0.0"
  # `from mujoco import mjx`: the physics on JAX. Its pure-JAX implementation needs no warp-lang
  # (it prints "Failed to import warp" at import, which envs/_quiet.py swallows).
  "mujoco-mjx==3.17.0"
  # mujoco.mjx._src.mesh imports trimesh at `import mujoco.mjx` (for every task, meshes or not).
  "trimesh==5.2.0"
  # brax.envs / brax.io.mjcf / brax.training: the env base classes, MJCF loading, the paper's
  # tasks (halfcheetah, ant, ...) and the SAC / PPO baselines in benchmarks/peers.py.
  "brax==0.14.2"
  # brax.generalized.constraint imports jaxopt, and `import brax.envs` reaches it.
  "jaxopt==0.8.5"
  # brax.training.checkpoint (the SAC / PPO baselines) and mujoco_playground's dm_control_suite
  # (every Playground task's config) import ml_collections.config_dict.
  "ml-collections==1.1.0"
  # mujoco_playground: the DM Control Suite tasks in envs/ (CartpoleSwingup, ...), run with
  # config_overrides={'impl': 'jax'}; it lists warp-lang and mediapy as dependencies but imports
  # neither on that path.
  "playground==0.2.0"
)
# Left out on purpose, each tried: mujoco-studio (viewer; 12.8 MB), glfw and pyopengl (rendering),
# websockets (mujoco-studio's), flask, flask-cors, werkzeug, itsdangerous, click, blinker (brax's
# web viewer), tensorboardx (brax's optional logging), mediapy (Playground's video helpers),
# warp-lang (MJX's Warp backend: we run MJX's JAX implementation).

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
abi="cp${pyver/./}"

# Download into a scratch folder and swap it in only when every download worked, so DIR never
# holds a half bundle or stale wheels of another version or interpreter. pip's HTTP cache makes a
# rerun cheap.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/offline_wheels.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The platform tags: the manylinux levels the pinned binary wheels use (mujoco-core:
# manylinux_2_27/2_28); pure-Python wheels (py3-none-any) match any of them.
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --implementation cp --python-version "$pyver" --abi "$abi" --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --dest "$tmp" "${wheels[@]}"

n=$(find "$tmp" -maxdepth 1 -name '*.whl' | wc -l)
if [ "$n" -ne "${#wheels[@]}" ]; then
  echo "expected ${#wheels[@]} wheels, pip downloaded $n:" >&2; ls "$tmp" >&2; exit 1
fi

rm -f "$dir"/*.whl
mv "$tmp"/*.whl "$dir"/

total=0
echo "offline wheels for CPython $pyver (manylinux x86_64) in $dir:"
for w in "$dir"/*.whl; do
  size=$(stat -c %s "$w")
  total=$((total + size))
  awk -v s="$size" -v n="$(basename "$w")" 'BEGIN { printf "  %8.2f MiB  %s\n", s / 1048576, n }'
done
awk -v s="$total" -v n="$n" -v cap="$max_mib" \
  'BEGIN { printf "  %8.2f MiB  total, %d wheels (cap %d MiB)\n", s / 1048576, n, cap }'
if [ "$total" -gt $((max_mib * 1048576)) ]; then
  echo "ERROR: the bundle is over $max_mib MiB: it would not travel to a GPU node" >&2
  exit 1
fi
