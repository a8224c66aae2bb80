#!/usr/bin/env bash
# The one command for the GPU machine (see README.md here):

# unpacks the node binary that travelled in .device/, records the GPU and driver, then runs the
# full check, memcheck and racecheck. Results go to $OUT (default bench/results/tmp/gpu-check).
#   bash bench/gpu-check/run-on-gpu.sh [extra check.mjs options]
# CONVNET_COMMIT=<sha> names the commit in the results when .git did not travel.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-bench/results/tmp/gpu-check}
mkdir -p "$OUT"
xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node
export PATH=/tmp:$PATH:/usr/local/cuda/bin
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/nvidia-smi.csv"
# Two logical GPUs on one real one, so the device-to-device copy cases run.
export CONVNET_VIRTUAL_GPUS=${CONVNET_VIRTUAL_GPUS:-2}
node bench/gpu-check/check.mjs --all --out "$OUT" "$@" 2>&1 | tee "$OUT/run.log"
