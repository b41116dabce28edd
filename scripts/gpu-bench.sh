#!/usr/bin/env bash
# Run on a lent GPU machine (see ../shared/gpu/README.md): candle (`unisal bench`) against PyTorch
# (`scripts/torch_bench.py`) for the same model, batch and size, then print one table of img/s and ratios.
#
# Prepared here with `scripts/gpu-pack.sh` (builds the CUDA binary, compresses it into .gpu/), then run there as
#   bash scripts/gpu-bench.sh            (with the device tool: carry [".gpu"])
# or, for the whole section-5 simulation on crc5's full pool and devtest (gpu-pack.sh's .gpu-sim, no test binaries):
#   GPU_PACK=.gpu-sim CASES='^simulate$' SIM_KERNELS=1 SIM_PARALLEL=1 ... bash scripts/gpu-bench.sh  (carry [".gpu-sim"])
# Writes logs and results.json under $OUT (or ./gpu-out when OUT is unset).
set -uo pipefail
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
NV=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
export LD_LIBRARY_PATH="$NV/cu13/lib:$NV/cudnn/lib:${LD_LIBRARY_PATH:-}"
# PyTorch: $PYTHON, else the lent machine's venv, else python3.
PY="${PYTHON:-$([ -x /opt/torch/.venv/bin/python ] && echo /opt/torch/.venv/bin/python || echo python3)}"
# A dry run of this script elsewhere: UNISAL_BIN=<a unisal binary> BENCH_DEVICE=cpu CASES=<regex> (tests skipped).
DEVICE="${BENCH_DEVICE:-cuda}"
PACK="${GPU_PACK:-.gpu}"
bin="${UNISAL_BIN:-/tmp/unisal}"
if [ -z "${UNISAL_BIN:-}" ]; then xz -dc "$PACK/unisal.xz" > "$bin" && chmod +x "$bin"; fi
want() { [[ "$1" =~ ${CASES:-.} ]]; }
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
fi
# 1. Correctness on the GPU first: the device test binaries packed by gpu-pack.sh (PyTorch parity of the narrow
#    ResNet-18 and ResNet-50, every layer's gradient against the f64 CPU reference, the training loop's device-side
#    losses against the host path and its pinned upload), with UNISAL_TEST_DEVICE=cuda; SKIP_TESTS=1 skips them,
#    TEST_ALSO runs them again under opt-in switches (below).
export UNISAL_TEST_DEVICE=cuda UNISAL_TRAIN_TEST_DATA="$here/crates/unisal-train/tests/data"
for t in "$PACK"/tests/*.xz; do
  [ -e "$t" ] && [ "$DEVICE" = cuda ] && [ "${SKIP_TESTS:-0}" != 1 ] || continue
  name=$(basename "$t" .xz)
  xz -dc "$t" > "/tmp/$name" && chmod +x "/tmp/$name"
  if timeout 120 "/tmp/$name" --test-threads 1 > "$OUT/test-$name.log" 2>&1; then
    echo "device test $name: PASS at ${SECONDS}s ($(grep -c '^test .* ok$' "$OUT/test-$name.log") tests)"
  else
    echo "device test $name: FAIL (see test-$name.log)"; tail -n 20 "$OUT/test-$name.log"
    # Whose fault: the same test on candle's composed ops.
    if UNISAL_GPU_KERNELS=0 timeout 120 "/tmp/$name" --test-threads 1 > "$OUT/test-$name-composed.log" 2>&1; then
      echo "  ... and PASS with UNISAL_GPU_KERNELS=0: our GPU kernels are at fault"
    else
      echo "  ... and FAIL with UNISAL_GPU_KERNELS=0 too (test-$name-composed.log)"
    fi
    # Which recent default is at fault: the same test with each switched off in turn (BISECT, space-separated
    # environments; session 16's blind changes and session 18's new defaults), so that one device call both finds
    # and names it.
    for e in ${BISECT:-UNISAL_PACKED_GRADS=0 UNISAL_SGD_MULTI=0 UNISAL_BLOCK_STEM=0 UNISAL_CUDNN_GRAPH=0 UNISAL_BLOCK_ACCUMULATE=0}; do
      tag=$(echo "$e" | tr -c 'A-Za-z0-9=\n' '_' | tr '=' '-')
      # shellcheck disable=SC2086
      if env $e timeout 120 "/tmp/$name" --test-threads 1 > "$OUT/test-$name-bisect-$tag.log" 2>&1; then
        echo "  ... PASS with $e"
      else
        echo "  ... FAIL with $e too"
      fi
    done
  fi
  # The same tests again under each opt-in switch of TEST_ALSO (comma-separated environments, e.g.
  # TEST_ALSO="UNISAL_CUDNN_GRAPH=auto,UNISAL_BLOCK_ACCUMULATE=1"): what must pass before a switch becomes a default.
  IFS=',' read -r -a extra <<< "${TEST_ALSO:-}"
  for e in "${extra[@]}"; do
    tag=$(echo "$e" | tr -c 'A-Za-z0-9=\n' '_' | tr '=' '-')
    # shellcheck disable=SC2086
    if env $e timeout 120 "/tmp/$name" --test-threads 1 > "$OUT/test-$name-$tag.log" 2>&1; then
      echo "device test $name with $e: PASS"
    else
      echo "device test $name with $e: FAIL (test-$name-$tag.log)"; tail -n 12 "$OUT/test-$name-$tag.log"
    fi
  done
done
# Without cuDNN the layers quietly use candle's ops: the tests then assert that cuDNN loaded (unless
# UNISAL_GPU_KERNELS=0), and this says so in one line, so that a bad library path cannot pass for a good run.
cudnn_missing() {
  if grep -qs "slower GPU ops" "$@"; then
    echo "cuDNN NOT LOADED ($(grep -hs 'slower GPU ops' "$@" | head -n 1)): check $NV/cudnn/lib"
  fi
}
[ "$DEVICE" = cuda ] && cudnn_missing "$OUT"/test-*.log
# 2. Speed: the same model, batch and size in candle and in PyTorch.
STEPS="${STEPS:-10}"
results="$OUT/results.jsonl"
: > "$results"
# name | environment of the candle run ("" for none) | candle args | torch args ("-": no PyTorch run)
run_case() {
  local name="$1" cenv="$2" cargs="$3" targs="$4"
  want "$name" || return 0
  echo "== $name ${cenv} (at ${SECONDS}s)" | tee -a "$OUT/log.txt"
  local c t=""
  # shellcheck disable=SC2086
  c=$(env $cenv timeout "${CASE_TIMEOUT:-240}" "$bin" bench $cargs --steps "$STEPS" --json 2>>"$OUT/log.txt" | tail -n 1)
  if [ "$targs" != "-" ]; then
    # shellcheck disable=SC2086
    t=$(timeout "${CASE_TIMEOUT:-120}" "$PY" scripts/torch_bench.py $targs --steps "$STEPS" --json 2>>"$OUT/log.txt" | tail -n 1)
  fi
  echo "candle: $c" | tee -a "$OUT/log.txt"
  echo "torch:  $t" | tee -a "$OUT/log.txt"
  printf '{"case":"%s","candle":%s,"torch":%s}\n' "$name" "${c:-null}" "${t:-null}" >> "$results"
}
common="--device $DEVICE"
r18="--model resnet18 --size 224 --batch 64"
# Our GPU kernels (cuDNN layers, element-wise kernels) are on by default; UNISAL_GPU_KERNELS=0 is candle's composed
# ops (the engine before them), UNISAL_CUDNN_FIND=0 cuDNN's heuristic algorithm choices, UNISAL_TF32=1 lets cuDNN use TF32 like PyTorch's --tf32.
run_case "r18-224-b64-train"          ""                     "train $common $r18" "train $common $r18"
run_case "r18-224-b64-train-composed" "UNISAL_GPU_KERNELS=0" "train $common $r18" "-"
run_case "r18-224-b64-train-heuristics" "UNISAL_CUDNN_FIND=0" "train $common $r18" "-"
# Session 12 (written after its run): the convolutions keep their descriptors, workspace sizes and one workspace
# between calls; UNISAL_CUDNN_REUSE=0 makes them anew at each call, as before. Host time is the column to read.
run_case "r18-224-b64-train-noreuse"  "UNISAL_CUDNN_REUSE=0" "train $common $r18" "-"
run_case "r18-224-b64-train-bf16-noreuse" "UNISAL_CUDNN_REUSE=0" "train $common $r18 --amp bf16" "-"
# ... and SGD's two kernels a parameter instead of one (session 12, also written after its run).
run_case "r50-224-dual-train-sgd2"    "UNISAL_FUSED_SGD=0" "train $common --model resnet50 --size 224 --batch 128 --dual" "-"
# Session 13: in training each convolution and its batch norm are one op on CUDA too (nn/cudnn/conv_bn.rs), which
# spares candle's zero-filled gradient buffer and add at the edge between them; UNISAL_FUSED_TRAIN=0 keeps two.
run_case "r18-224-b64-train-layered"  "UNISAL_FUSED_TRAIN=0" "train $common $r18" "-"
run_case "r50-224-dual-train-layered" "UNISAL_FUSED_TRAIN=0" "train $common --model resnet50 --size 224 --batch 128 --dual" "-"
# Session 14: all of a ResNet's blocks one op (cudnn/block.rs); UNISAL_FUSED_BLOCK=block one op a block (its second
# run), =0 session 13's node per convolution.
run_case "r18-224-b64-train-noblock"  "UNISAL_FUSED_BLOCK=0" "train $common $r18" "-"
run_case "r50-224-dual-train-noblock" "UNISAL_FUSED_BLOCK=0" "train $common --model resnet50 --size 224 --batch 128 --dual" "-"
run_case "r18-224-b64-train-eachblock"  "UNISAL_FUSED_BLOCK=block" "train $common $r18" "-"
run_case "r50-224-dual-train-eachblock" "UNISAL_FUSED_BLOCK=block" "train $common --model resnet50 --size 224 --batch 128 --dual" "-"
# Session 14: convolutions through execution plans of cuDNN's graph API, each timed (nn/cudnn/graph.rs):
# UNISAL_CUDNN_GRAPH=1 every pass (its last run: dual ResNet-50 483 against 470 img/s, ResNet-18 2,456 against
# 2,809), =auto each pass where its plan timed faster than the legacy choice (not yet run); unset: legacy.
run_case "r18-224-b64-train-graph"    "UNISAL_CUDNN_GRAPH=1" "train $common $r18" "-"
run_case "r18-224-b64-train-graphauto" "UNISAL_CUDNN_GRAPH=auto" "train $common $r18" "-"
run_case "r50-224-dual-train-graph"   "UNISAL_CUDNN_GRAPH=1" "train $common --model resnet50 --size 224 --batch 128 --dual" "-"
run_case "r50-224-dual-train-graphauto" "UNISAL_CUDNN_GRAPH=auto" "train $common --model resnet50 --size 224 --batch 128 --dual" "-"
run_case "r50-224-dual-train-bf16-graph" "UNISAL_CUDNN_GRAPH=1" "train $common --model resnet50 --size 224 --batch 128 --dual --amp bf16" "-"
# Session 14, written after its last run: the block op adds the main path's input gradient into the shortcut's in
# place (nn/cudnn/conv_accumulate.rs); with the graph plans where they are faster too.
run_case "r50-224-dual-train-accumulate" "UNISAL_BLOCK_ACCUMULATE=1" "train $common --model resnet50 --size 224 --batch 128 --dual" "-"
run_case "r50-224-dual-train-accumulate-graphauto" "UNISAL_BLOCK_ACCUMULATE=1 UNISAL_CUDNN_GRAPH=auto" "train $common --model resnet50 --size 224 --batch 128 --dual" "-"
run_case "r18-224-b64-train-accumulate-graphauto" "UNISAL_BLOCK_ACCUMULATE=1 UNISAL_CUDNN_GRAPH=auto" "train $common $r18" "-"
# Session 18: graph plans where faster (`auto`) and the in-place accumulation are the defaults; these rows run the
# convolutions as before (legacy calls, no accumulation), for the difference.
legacy_conv="UNISAL_CUDNN_GRAPH=0 UNISAL_BLOCK_ACCUMULATE=0"
run_case "r18-224-b64-train-legacyconv" "$legacy_conv" "train $common $r18" "-"
run_case "r50-224-dual-train-legacyconv" "$legacy_conv" "train $common --model resnet50 --size 224 --batch 128 --dual" "-"
run_case "r50-224-dual-train-bf16-legacyconv" "$legacy_conv" "train $common --model resnet50 --size 224 --batch 128 --dual --amp bf16" "-"
# Session 18, written after its last run: cuDNN's Ex batch norm calls (nn/cudnn/batchnorm_ex.rs), by default for the
# persistent mode (channels last), whose plain calls took 0.5-0.8 ms each there. UNISAL_BN_EX=1 takes them NCHW too,
# =0 never; UNISAL_BN_PERSISTENT=1 makes NCHW persistent (and so Ex). Against PyTorch's channels-last autocast.
r50d="--model resnet50 --size 224 --batch 128 --dual"
run_case "r50-224-dual-train-bf16-nhwc-plainbn" "UNISAL_BLOCK_NHWC=1 UNISAL_BN_EX=0" "train $common $r50d --amp bf16" "-"
# ... and the ReLU inside cuDNN's Ex batch norm (UNISAL_BN_FUSED_RELU=1, opt-in; channels last, persistent).
run_case "r50-224-dual-train-bf16-nhwc-fusedrelu" "UNISAL_BLOCK_NHWC=1 UNISAL_BN_FUSED_RELU=1" "train $common $r50d --amp bf16" "-"
run_case "r50-224-dual-train-bf16-bnex" "UNISAL_BN_EX=1" "train $common $r50d --amp bf16" "-"
run_case "r50-224-dual-train-bf16-persistent" "UNISAL_BN_PERSISTENT=1" "train $common $r50d --amp bf16" "-"
run_case "r50-224-dual-train-bnex" "UNISAL_BN_EX=1" "train $common $r50d" "-"
# Session 18, last: train-mode batch norm through our own kernels (nn/cuda_bn.rs, cuda/batchnorm.cu; these rows NCHW; opt-in
# UNISAL_BN_KERNELS=1), as PyTorch runs bf16 batch norm through its own kernels rather than cuDNN's.
run_case "r50-224-dual-train-bf16-bnkernels" "UNISAL_BN_KERNELS=1" "train $common $r50d --amp bf16" "-"
run_case "r50-224-dual-train-bnkernels" "UNISAL_BN_KERNELS=1" "train $common $r50d" "-"
run_case "r18-224-b64-train-bnkernels" "UNISAL_BN_KERNELS=1" "train $common $r18" "-"
# ... channels last too: the block op's convolutions at half their NCHW time (session 18), its batch norms ours.
run_case "r50-224-dual-train-bf16-nhwc-bnkernels" "UNISAL_BLOCK_NHWC=1 UNISAL_BN_KERNELS=1" "train $common $r50d --amp bf16" "train $common $r50d --amp bf16 --channels-last"
# Issue 6's other fp32 target: the dual ResNet-18 step at 224 px, 64 + 64.
run_case "r18-224-dual-train" "" "train $common --model resnet18 --size 224 --batch 128 --dual" "train $common --model resnet18 --size 224 --batch 128 --dual"
# Session 15 (no GPU; written blind): the block op's activations channels last (UNISAL_BLOCK_NHWC=1, or =bf16 for
# bf16 only), weights [O, k, k, C], the persistent batch norm: what cuDNN's bf16 tensor-core kernels take. The bf16
# rows are against PyTorch's channels-last autocast (the goal: 0.8x); the fp32 rows to see whether strict fp32 gains.
run_case "r18-224-b64-train-bf16-nhwc" "UNISAL_BLOCK_NHWC=1" "train $common $r18 --amp bf16" "train $common $r18 --amp bf16 --channels-last"
run_case "r50-224-dual-train-bf16-nhwc" "UNISAL_BLOCK_NHWC=1" "train $common --model resnet50 --size 224 --batch 128 --dual --amp bf16" "train $common --model resnet50 --size 224 --batch 128 --dual --amp bf16 --channels-last"
run_case "r50-224-dual-train-bf16-nhwc-graph" "UNISAL_BLOCK_NHWC=1 UNISAL_CUDNN_GRAPH=auto" "train $common --model resnet50 --size 224 --batch 128 --dual --amp bf16" "-"
# The host's floor: the same dual ResNet-50 step at 4 + 4 images, where the GPU's work is small and the step takes
# about the host's time to enqueue it (its tensors and launches do not depend on the batch). Against the full
# batch's step time it says whether that step waits on the host.
run_case "r50-224-dual-b8-hostfloor" "" "train $common --model resnet50 --size 224 --batch 8 --dual" "train $common --model resnet50 --size 224 --batch 8 --dual"
run_case "r50-224-dual-b8-hostfloor-bf16-nhwc" "UNISAL_BLOCK_NHWC=1" "train $common --model resnet50 --size 224 --batch 8 --dual --amp bf16" "train $common --model resnet50 --size 224 --batch 8 --dual --amp bf16 --channels-last"
# Session 16 (no GPU; written blind): the host's work of a step cut (the pack made in one launch outside the graph and
# its gradient handed to the variables as views, nn/packed_grads.rs and nn/cuda_pack.rs; SGD in one launch,
# nn/cuda_sgd.rs; the stem in the block op in either layout). These rows switch those three back off, for the
# difference; the plain rows above and below have them on.
old_host="UNISAL_PACKED_GRADS=0 UNISAL_SGD_MULTI=0 UNISAL_BLOCK_STEM=0"
run_case "r50-224-dual-train-oldhost" "$old_host" "train $common --model resnet50 --size 224 --batch 128 --dual" "-"
run_case "r50-224-dual-train-bf16-oldhost" "$old_host" "train $common --model resnet50 --size 224 --batch 128 --dual --amp bf16" "-"
run_case "r50-224-dual-train-bf16-nhwc-oldhost" "$old_host UNISAL_BLOCK_NHWC=1" "train $common --model resnet50 --size 224 --batch 128 --dual --amp bf16" "-"
run_case "r50-224-dual-b8-hostfloor-oldhost" "$old_host" "train $common --model resnet50 --size 224 --batch 8 --dual" "-"
run_case "r18-224-b64-train-nhwc"     "UNISAL_BLOCK_NHWC=1" "train $common $r18" "-"
run_case "r50-224-dual-train-nhwc"    "UNISAL_BLOCK_NHWC=1" "train $common --model resnet50 --size 224 --batch 128 --dual" "-"
run_case "r18-224-b64-train-tf32"     "UNISAL_TF32=1"        "train $common $r18" "train $common $r18 --tf32"
# bf16 mixed precision (NetConfig::bf16; written in session 6 without a GPU) against PyTorch's autocast, with and
# without channels-last (ours is NCHW).
run_case "r18-224-b64-train-bf16"     ""                     "train $common $r18 --amp bf16" "train $common $r18 --amp bf16 --channels-last"
run_case "r18-224-b64-train-bf16-nchw" ""                    "train $common $r18 --amp bf16" "train $common $r18 --amp bf16"
# The part of a step that does not grow with the batch (session 6: ~18 ms for candle, ~4 for PyTorch).
run_case "r18-224-b32-train"          "" "train $common --model resnet18 --size 224 --batch 32"  "train $common --model resnet18 --size 224 --batch 32"
run_case "r18-224-b128-train"         "" "train $common --model resnet18 --size 224 --batch 128" "train $common --model resnet18 --size 224 --batch 128"
# candle's small uploads (shapes, strides, constants) served from device memory (device::htod_cache_guard): if these
# rows are faster than the ones above, pageable uploads were making each step wait for the GPU.
run_case "r18-224-b32-train-htodcache" "UNISAL_HTOD_CACHE=1" "train $common --model resnet18 --size 224 --batch 32" "-"
run_case "r18-224-b64-train-htodcache" "UNISAL_HTOD_CACHE=1" "train $common $r18" "-"
run_case "small64-b32-train"          "" "train $common --model small --size 64 --batch 32"        "train $common --model small --size 64 --batch 32"
run_case "small64-dual-train"         "" "train $common --model small --size 64 --batch 64 --dual" "train $common --model small --size 64 --batch 64 --dual"
run_case "r18-128-dual-train"         "" "train $common --model resnet18 --size 128 --batch 128 --dual" "train $common --model resnet18 --size 128 --batch 128 --dual"
run_case "r50-224-dual-train"         "" "train $common --model resnet50 --size 224 --batch 128 --dual" "train $common --model resnet50 --size 224 --batch 128 --dual"
run_case "r50-224-dual-train-bf16"    "" "train $common --model resnet50 --size 224 --batch 128 --dual --amp bf16" "train $common --model resnet50 --size 224 --batch 128 --dual --amp bf16 --channels-last"
run_case "r50-224-dual-train-tf32"    "UNISAL_TF32=1" "train $common --model resnet50 --size 224 --batch 128 --dual" "train $common --model resnet50 --size 224 --batch 128 --dual --tf32"
run_case "r50-256-infer"              "" "infer $common --model resnet50 --size 256 --batch 128"   "infer $common --model resnet50 --size 256 --batch 128"
run_case "r18-150-infer"              "" "infer $common --model resnet18 --size 150 --batch 256"   "infer $common --model resnet18 --size 150 --batch 256"
# Eval-mode conv + batch norm + ReLU / residual join as one cuDNN call (nn::fused) is the default since session 12;
# these rows run CUDA's layers one by one instead.
run_case "r50-256-infer-layers"       "UNISAL_FUSED_EVAL=cpu" "infer $common --model resnet50 --size 256 --batch 128" "-"
run_case "r18-150-infer-layers"       "UNISAL_FUSED_EVAL=cpu" "infer $common --model resnet18 --size 150 --batch 256" "-"
# Where the time goes: our GPU ops' share of a ResNet-18 step (synchronised per op), the host's time to enqueue
# each op (unsynchronised), and PyTorch's top kernels.
if want profile; then
  echo "== profile r18-224-b64-train" | tee -a "$OUT/log.txt"
  # shellcheck disable=SC2086
  UNISAL_GPU_PROFILE=1 timeout 120 "$bin" bench train $common $r18 --steps 3 > "$OUT/profile-candle.txt" 2>&1
  tail -n 20 "$OUT/profile-candle.txt"
  # The host's side of the same steps, unsynchronised (PROFILE_HOST=1): each op's time to enqueue. Session 13's
  # first run: the dual ResNet-50 step is GPU-bound (its host time is mostly launches waiting on a full queue).
  if [ "${PROFILE_HOST:-0}" = 1 ]; then
    # shellcheck disable=SC2086
    UNISAL_OP_PROFILE=host timeout 120 "$bin" bench train $common $r18 --steps 5 > "$OUT/profile-host-candle.txt" 2>&1
    tail -n 20 "$OUT/profile-host-candle.txt"
    # shellcheck disable=SC2086
    UNISAL_OP_PROFILE=host timeout 120 "$bin" bench train $common --model resnet50 --size 224 --batch 128 --dual \
      --steps 3 > "$OUT/profile-host-candle-r50-dual.txt" 2>&1
    tail -n 20 "$OUT/profile-host-candle-r50-dual.txt"
  fi
  # bf16 (GPU-bound at 0.43x of PyTorch's channels-last autocast in session 13's first run): its GPU time by op.
  # shellcheck disable=SC2086
  UNISAL_GPU_PROFILE=1 timeout 120 "$bin" bench train $common $r18 --amp bf16 --steps 3 > "$OUT/profile-candle-bf16.txt" 2>&1
  tail -n 14 "$OUT/profile-candle-bf16.txt"
  # The dual ResNet-50 step's GPU time by op (synchronised after each).
  # shellcheck disable=SC2086
  UNISAL_GPU_PROFILE=1 timeout 120 "$bin" bench train $common --model resnet50 --size 224 --batch 128 --dual \
    --steps 2 > "$OUT/profile-candle-r50-dual.txt" 2>&1
  tail -n 20 "$OUT/profile-candle-r50-dual.txt"
  # shellcheck disable=SC2086
  timeout 120 "$PY" scripts/torch_bench.py train $common $r18 --steps 3 --profile > "$OUT/profile-torch.txt" 2>&1
  grep -E "^ *(Name|[a-z_:A-Z0-9]+.*us)" "$OUT/profile-torch.txt" | head -n 14
  # PyTorch's dual ResNet-50 step by op (its kernels' own CUDA time), against ours above: where the 0.8x is lost.
  # shellcheck disable=SC2086
  timeout 120 "$PY" scripts/torch_bench.py train $common --model resnet50 --size 224 --batch 128 --dual --steps 2 \
    --profile > "$OUT/profile-torch-r50-dual.txt" 2>&1
  grep -E "Self CUDA time total|aten::(cudnn_convolution|convolution_backward|cudnn_batch_norm|threshold_backward|relu_|add_|_foreach_|mul_|copy_|fill_|sum) " \
    "$OUT/profile-torch-r50-dual.txt" | tail -n 16
  # ... and PyTorch's bf16 step (autocast, channels-last), by op.
  # shellcheck disable=SC2086
  timeout 120 "$PY" scripts/torch_bench.py train $common $r18 --amp bf16 --channels-last --steps 3 --profile \
    > "$OUT/profile-torch-bf16.txt" 2>&1
  grep -E "Self CUDA time total" "$OUT/profile-torch-bf16.txt" | tail -n 1
fi
# Each convolution of the dual ResNet-50 step, alone: cuDNN's timing of the algorithm we chose (UNISAL_CUDNN_LOG=1)
# against PyTorch's same pass (scripts/torch_conv_layers.py), by geometry: which layers the 0.85x is lost in.
if want convlayers; then
  echo "== convlayers r50-224 batch 128 (at ${SECONDS}s)" | tee -a "$OUT/log.txt"
  # shellcheck disable=SC2086
  UNISAL_CUDNN_LOG=1 timeout 120 "$bin" bench train $common --model resnet50 --size 224 --batch 128 --dual --steps 1 \
    --warmup 1 > "$OUT/convlayers-candle.txt" 2>&1
  timeout 200 "$PY" scripts/torch_conv_layers.py --model resnet50 --size 224 --batch 128 \
    --ours "$OUT/convlayers-candle.txt" --json "$OUT/convlayers.json" 2>&1 | tee "$OUT/convlayers.txt" | tail -n 30
fi
# The graph API's best plan for each convolution pass of the dual ResNet-50 step (cudnn-graph lines: its time and the
# legacy choice's, ms, and which =auto takes), beside PyTorch's (convlayers.txt).
if want graphlog; then
  echo "== graphlog r50-224 batch 128 (at ${SECONDS}s)" | tee -a "$OUT/log.txt"
  # shellcheck disable=SC2086
  UNISAL_CUDNN_GRAPH=auto UNISAL_CUDNN_LOG=1 timeout 150 "$bin" bench train $common --model resnet50 --size 224 \
    --batch 128 --dual --steps 2 --warmup 1 > "$OUT/graphlog-candle.txt" 2>&1
  grep -E "cudnn-graph|img/s|rror" "$OUT/graphlog-candle.txt" | head -n 80
fi
# The GPU time of each of our ops at the step's normal pace (timing events, no synchronisation), and of what runs
# between them (candle's own kernels): the dual ResNet-50 step and the ResNet-18 step.
if want events; then
  echo "== events profile (at ${SECONDS}s)" | tee -a "$OUT/log.txt"
  # shellcheck disable=SC2086
  UNISAL_OP_PROFILE=events timeout 120 "$bin" bench train $common --model resnet50 --size 224 --batch 128 --dual \
    --steps 4 > "$OUT/events-r50-dual.txt" 2>&1
  tail -n 20 "$OUT/events-r50-dual.txt"
  # shellcheck disable=SC2086
  UNISAL_OP_PROFILE=events timeout 120 "$bin" bench train $common $r18 --steps 6 > "$OUT/events-r18.txt" 2>&1
  tail -n 16 "$OUT/events-r18.txt"
fi
# The same profile of the dual ResNet-50 step in bf16, the block op NCHW and channels last (UNISAL_BLOCK_NHWC=1):
# where the bf16 step's time goes against PyTorch's channels-last autocast.
if want events-bf16; then
  for layout in 0 1; do
    echo "== events profile, bf16, UNISAL_BLOCK_NHWC=$layout (at ${SECONDS}s)" | tee -a "$OUT/log.txt"
    # shellcheck disable=SC2086
    UNISAL_BLOCK_NHWC=$layout UNISAL_OP_PROFILE=events timeout 120 "$bin" bench train $common --model resnet50 \
      --size 224 --batch 128 --dual --amp bf16 --steps 4 > "$OUT/events-r50-dual-bf16-nhwc$layout.txt" 2>&1
    tail -n 20 "$OUT/events-r50-dual-bf16-nhwc$layout.txt"
  done
  # ... and with our own batch norm kernels (UNISAL_BN_KERNELS=1), NCHW and channels last: against cuDNN's above.
  for layout in 0 1; do
    echo "== events profile, bf16, UNISAL_BN_KERNELS=1 UNISAL_BLOCK_NHWC=$layout (at ${SECONDS}s)" | tee -a "$OUT/log.txt"
    # shellcheck disable=SC2086
    UNISAL_BLOCK_NHWC=$layout UNISAL_BN_KERNELS=1 UNISAL_OP_PROFILE=events timeout 120 "$bin" bench train $common \
      --model resnet50 --size 224 --batch 128 --dual --amp bf16 --steps 4 \
      > "$OUT/events-r50-dual-bf16-bnkernels-nhwc$layout.txt" 2>&1
    tail -n 24 "$OUT/events-r50-dual-bf16-bnkernels-nhwc$layout.txt"
  done
fi
# Session 16: where the host's time of the dual ResNet-50 step goes, by op (UNISAL_OP_PROFILE=host: nothing waits,
# each op's time to enqueue; the step's host time beyond their sum is candle's own ops and graph walk), bf16 channels
# last, bf16 and fp32: whether cuDNN's calls, our launches or candle's ops hold the bf16 step (host-bound in run 12).
if want hostprofile; then
  for cfg in "bf16-nhwc:UNISAL_BLOCK_NHWC=1:--amp bf16" "bf16::--amp bf16" "fp32::"; do
    IFS=: read -r tag cenv cargs <<< "$cfg"
    echo "== host profile, dual ResNet-50 $tag (at ${SECONDS}s)" | tee -a "$OUT/log.txt"
    # shellcheck disable=SC2086
    env $cenv UNISAL_OP_PROFILE=host timeout 120 "$bin" bench train $common --model resnet50 --size 224 --batch 128 \
      --dual $cargs --steps 4 > "$OUT/hostprofile-r50-dual-$tag.txt" 2>&1
    tail -n 24 "$OUT/hostprofile-r50-dual-$tag.txt"
  done
fi
# 3. The loop on the real pool (packed by gpu-pack.sh): import, dual training with the UniSAL losses (gpu-sim
#    preset, UNISAL.md section 5: ResNet-18 at 128 px, 64 + 64), prediction of the pool, selection, test.
#    Default: kernels on, two rounds of SIM_ITERS (100); kernels off (candle's composed ops): round 0 of 40, for its
#    img/s. SIM_ROUNDS, SIM_STRATEGIES, SIM_SEEDS, SIM_ENV (e.g. UNISAL_TF32=1) and SIM_ARGS (e.g. --amp bf16) make
#    it a longer run of section 5; SIM_PARALLEL=1 runs each (strategy, seed) as its own process, all at once;
#    SIM_DEADLINE (seconds since the script started) ends it in time, its finished rounds kept in the log.
if [ -d "$PACK/crc5/pool" ] && want simulate; then
  for k in ${SIM_KERNELS:-1 0}; do
    rounds=$([ "$k" = 1 ] && echo "${SIM_ROUNDS:-1}" || echo 0)
    iters=$([ "$k" = 1 ] && echo "${SIM_ITERS:-100}" || echo 40)
    limit=240
    [ -n "${SIM_DEADLINE:-}" ] && limit=$((SIM_DEADLINE - SECONDS)) && [ "$limit" -lt 10 ] && limit=10
    echo "== simulate ${SIM_STRATEGIES:-unisal}, UNISAL_GPU_KERNELS=$k ${SIM_ENV:-}, $rounds rounds of $iters" \
      "iterations (at ${SECONDS}s, ${limit}s left)" | tee -a "$OUT/log.txt"
    sim() {  # strategies, seeds, first seed, output folder, log
      # shellcheck disable=SC2086
      env UNISAL_GPU_KERNELS=$k ${SIM_ENV:-} timeout "$limit" "$bin" simulate --pool "$PACK/crc5/pool" \
        --test "$PACK/crc5/test" --strategies "$1" --initial 40 --budget 40 --rounds "$rounds" --seeds "$2" \
        --seed-base "$3" --preset gpu-sim --iterations "$iters" --device "$DEVICE" --progress-every 50 \
        ${SIM_ARGS:-} --out "$4" > "$5" 2>&1
    }
    if [ "${SIM_PARALLEL:-0}" = 1 ] && [ "$k" = 1 ]; then
      # One process per (strategy, seed), all at once on the one GPU (the step is partly bound by the host's
      # work, so they overlap), then one results.csv and the table of scripts/results_table.py.
      strategies="${SIM_STRATEGIES:-unisal}"
      for s in ${strategies//,/ }; do
        for ((seed = 0; seed < ${SIM_SEEDS:-1}; seed++)); do
          sim "$s" 1 "$seed" "$OUT/sim-kernels-1/$s-$seed" "$OUT/simulate-kernels-1-$s-$seed.log" &
        done
      done
      wait
      csvs=("$OUT"/sim-kernels-1/*/results.csv)
      if [ -e "${csvs[0]}" ]; then
        { head -n 1 "${csvs[0]}"; for f in "${csvs[@]}"; do tail -n +2 "$f"; done; } > "$OUT/sim-kernels-1/results.csv"
        "$PY" scripts/results_table.py "$OUT/sim-kernels-1/results.csv" | tee "$OUT/sim-kernels-1/table.md"
      fi
      grep -hE "img/s" "$OUT"/simulate-kernels-1-*.log | tail -n 4
      grep -hE "ms an iteration" "$OUT"/simulate-kernels-1-*.log | tail -n 4
      continue
    fi
    sim "${SIM_STRATEGIES:-unisal}" "${SIM_SEEDS:-1}" 0 "$OUT/sim-kernels-$k" "$OUT/simulate-kernels-$k.log"
    grep -E "accuracy" "$OUT/simulate-kernels-$k.log" | tail -n 12
    grep -E "img/s" "$OUT/simulate-kernels-$k.log" | tail -n 1
    grep -E "ms an iteration" "$OUT/simulate-kernels-$k.log" | tail -n 1
  done
fi
[ "$DEVICE" = cuda ] && cudnn_missing "$OUT/log.txt" "$OUT"/simulate-*.log
"$PY" - "$results" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'case':28} {'candle img/s':>13} {'torch img/s':>12} {'ratio':>7}  {'ms/step (host) candle / torch':>30}  {'tensors':>7}  device MB candle / torch")
for r in rows:
    c, t = r.get("candle") or {}, r.get("torch") or {}
    ci, ti = c.get("img_per_s"), t.get("img_per_s")
    ratio = f"{ci / ti:.3f}" if ci and ti else "n/a"
    fmt = lambda v: f"{v:.1f}" if isinstance(v, (int, float)) else "n/a"
    step = lambda d: f"{fmt(d.get('ms_per_step_median'))} ({fmt(d.get('host_ms_per_step_median'))})"
    print(f"{r['case']:28} {fmt(ci):>13} {fmt(ti):>12} {ratio:>7}  {step(c) + ' / ' + step(t):>30}  {fmt(c.get('tensors_per_step')):>7}  {fmt(c.get('device_used_mb'))} / {fmt(t.get('device_used_mb'))}")
PYEOF
# The device tool brings back at most 8 files from $OUT (session 12 lost its test logs and simulation CSVs to
# that): everything but the table's inputs goes into one archive (OUT_ARCHIVE=0 keeps the files as they are).
if [ "${OUT_ARCHIVE:-1}" = 1 ] && [ "$(find "$OUT" -type f | wc -l)" -gt 6 ]; then
  (cd "$OUT" && find . -type f ! -name results.jsonl ! -name log.txt ! -name stdout.txt ! -name out.tgz -print0 \
    | tar -czf out.tgz --null -T - --remove-files) && echo "logs packed into out.tgz"
fi
