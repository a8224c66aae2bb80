#!/usr/bin/env bash
# The prepared benchmark run for the GPU machine (see README.md here): the GPU check (without the
# sanitizers, which run-on-gpu.sh covers), then `bench conv` for AlexNet and AlexNet-mini in fp32
# and tf32, then `bench alexnet` (one tower on cuda:0, two towers on two virtual GPUs), all into
# one results folder, in under 8 minutes. It runs the compiled bench (dist-bench/, from
# `npm run build:bench`) with the node binary that travelled in .device/: no npm, no node_modules.
#
#   CONVNET_COMMIT=<sha> bash bench/gpu-check/run-bench-on-gpu.sh [RESULTS_DIR]
#   BENCH_CPU=1 bash bench/gpu-check/run-bench-on-gpu.sh [RESULTS_DIR]   # the same steps on cpu:0, tiny (tests)
#
# Results: RESULTS_DIR (default $OUT, else bench/results/tmp/gpu-bench): <step>.txt (the console),
# conv-*.json and conv-*.html, alexnet.json, gpu-check/, nvidia-smi.csv, and steps.txt (each
# step's exit code). Node: .device/node.xz (scripts/pack-node.sh) when present, else the PATH's.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-${OUT:-bench/results/tmp/gpu-bench}}
mkdir -p "$OUT"
: > "$OUT/steps.txt"

if [ "${BENCH_CPU:-0}" = 1 ]; then
  NODE=${NODE:-node}
  CHECK=(--cpu --small --only relu,linear --no-oom)
  CONV=(--device cpu:0 --batch 2 --width 0.25 --iters 1 --warmup 1)
  ALEXNET=(--device cpu:0,cpu:1 --model alexnet-mini --batch 4 --width 0.25 --iters 1 --warmup 1)
  MODELS=(alexnet-mini)
  CHECK_TIMEOUT=${CHECK_TIMEOUT:-120}
else
  . bench/gpu-check/node-env.sh
  gpu_env "$OUT" || exit 1
  CHECK=()
  CONV=(--device cuda:0 --iters 10 --warmup 2)
  ALEXNET=(--device cuda:0,cuda:1 --iters 5 --warmup 2)
  MODELS=(alexnet alexnet-mini)
  CHECK_TIMEOUT=${CHECK_TIMEOUT:-100}
fi
# Two logical GPUs on the one card: the two-tower step and the check's device-to-device copies.
export CONVNET_VIRTUAL_GPUS=${CONVNET_VIRTUAL_GPUS:-2}
BENCH=(dist-bench/bench/main.js)
[ -f "${BENCH[0]}" ] || { echo "missing ${BENCH[0]}: run npm run build:bench before the run" >&2; exit 1; }
start=$(date +%s)

# step NAME SECONDS COMMAND...: runs one step with a time limit, its console into $OUT/NAME.txt.
step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name ($(($(date +%s) - start)) s into the run)"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}
  echo "$name $rc" >> "$OUT/steps.txt"
}

# Worst case, every step at its limit: 100 + 2 x 100 + 2 x 60 + 80 = 500 s.
step gpu-check "$CHECK_TIMEOUT" "$NODE" bench/gpu-check/check.mjs --out "$OUT/gpu-check" "${CHECK[@]}"
for model in "${MODELS[@]}"; do
  # AlexNet at batch 128 moves about 1.5 GB of inputs and results to the PyTorch peer, and the
  # first run loads cuDNN's kernels: it gets more time than AlexNet-mini.
  limit=60
  [ "$model" = alexnet ] && limit=100
  for precision in fp32 tf32; do
    step "conv-$model-$precision" "$limit" "$NODE" "${BENCH[@]}" conv --model "$model" --precision "$precision" \
      "${CONV[@]}" --json "$OUT/conv-$model-$precision.json"
  done
done
# bench alexnet runs PyTorch beside ours (one tower; two towers need two real GPUs).
step alexnet 80 "$NODE" "${BENCH[@]}" alexnet "${ALEXNET[@]}" --json "$OUT/alexnet.json"

echo "== done in $(($(date +%s) - start)) s; exit codes:"
cat "$OUT/steps.txt"
! grep -qv ' 0$' "$OUT/steps.txt"
