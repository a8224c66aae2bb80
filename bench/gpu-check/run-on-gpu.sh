#!/usr/bin/env bash
# The GPU check on a machine with an NVIDIA GPU (see README.md here): records the GPU and driver,
# then runs the full check, memcheck and racecheck, everything into one results folder.
#   bash bench/gpu-check/run-on-gpu.sh [RESULTS_DIR] [extra check.mjs options]
# RESULTS_DIR defaults to $OUT, else bench/results/tmp/gpu-check. Node: .device/node.xz (made by
# scripts/pack-node.sh) when present, else the node on the PATH. CONVNET_COMMIT=<sha> names the
# commit in the results when .git is not there.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-bench/results/tmp/gpu-check}
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then OUT=$1; shift; fi
mkdir -p "$OUT"
. bench/gpu-check/node-env.sh
gpu_env "$OUT"
# Two logical GPUs on one real one, so the device-to-device copy cases run.
export CONVNET_VIRTUAL_GPUS=${CONVNET_VIRTUAL_GPUS:-2}
"$NODE" bench/gpu-check/check.mjs --all --out "$OUT" "$@" 2>&1 | tee "$OUT/run.log"
