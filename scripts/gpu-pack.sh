#!/usr/bin/env bash
# Build the CUDA binary of `unisal` (cuDNN is loaded at run time) on a machine without a GPU and pack it into .gpu/ for a lent GPU:
# the toolkit comes from pinned PyPI wheels (../shared/gpu/setup-cuda-build.sh), PTX for sm_90 (H100/H200).
#   bash scripts/gpu-pack.sh            then run scripts/gpu-bench.sh there with .gpu carried along.
# The first build compiles candle's CUDA kernels (15-20 minutes on 2 cores); keep CARGO_TARGET_DIR between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CUDA_VENV:-/tmp/venv-cuda}"
if [ ! -f "$VENV/cuda-env.sh" ]; then
  cargo fetch
  WITH_CUDNN=1 bash ../shared/gpu/setup-cuda-build.sh "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/cuda-env.sh"
cargo build --release -p unisal-cli --features cuda
target="${CARGO_TARGET_DIR:-target}"
rm -rf .gpu && mkdir -p .gpu
xz -9 -T2 -c "$target/release/unisal" > .gpu/unisal.xz
# The device tests (run there with UNISAL_TEST_DEVICE=cuda by gpu-bench.sh).
mkdir -p .gpu/tests
for t in models_device layers_gradcheck_device training_device; do
  exe=$(cargo test --release -p unisal-train --features cuda --test "$t" --no-run --message-format=json \
    | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')
  xz -9 -T2 -c "$exe" > ".gpu/tests/$t.xz"
done
ls -l .gpu/unisal.xz .gpu/tests
# A real pool for one whole round on the GPU (gpu-bench.sh runs `unisal simulate` when it finds it): the first
# POOL_PER_CLASS (500) patches of each class of crc5's pool and 60 test patches a class (read from ../shared/data,
# never committed; .gpu/ is ignored). All that travels (the tracked files too) must stay under 64 MiB.
data=../shared/data/crc5
if [ -d "$data/pool" ] && [ "${WITH_POOL:-1}" = 1 ]; then
  rm -rf .gpu/crc5
  copy_first() {  # source folder, count, destination
    mkdir -p "$3"
    mapfile -t files < <(find "$1" -maxdepth 1 -type f \( -name '*.jpg' -o -name '*.png' -o -name '*.tif' \) | sort)
    cp "${files[@]:0:$2}" "$3/"
  }
  for d in "$data"/pool/*/; do copy_first "$d" "${POOL_PER_CLASS:-500}" ".gpu/crc5/pool/$(basename "$d")"; done
  for d in "$data"/devtest/*/; do copy_first "$d" 60 ".gpu/crc5/test/$(basename "$d")"; done
fi
du -sh .gpu
# The whole section-5 data for a simulation-only call (carry [".gpu-sim"], GPU_PACK=.gpu-sim): the binary with all
# of crc5's pool (4,000) and devtest (1,000), as in ../shared/method/UNISAL.md section 5 (~48 MB; with the tracked
# files under the 64 MiB a call may carry, which .gpu's test binaries would not leave room for).
if [ -d "$data/pool" ] && [ "${WITH_SIM_PACK:-1}" = 1 ]; then
  rm -rf .gpu-sim && mkdir -p .gpu-sim/crc5
  cp .gpu/unisal.xz .gpu-sim/
  cp -r "$data/pool" .gpu-sim/crc5/pool
  cp -r "$data/devtest" .gpu-sim/crc5/test
  du -sh .gpu-sim
fi
