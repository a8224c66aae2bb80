#!/usr/bin/env bash
# Builds and runs test_bench_emu (see its header): the benchmark's CUDA-side code (cuDNN driver,
# markers, cache flush) over native/emu's emulated CUDA runtime and a fake cuDNN. Needs g++ only.
#   native/bench/emu/build.sh        # into build/bench-emu/, then runs it
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="${CN_BENCH_EMU_OUT:-$root/build/bench-emu}"
cxx="${CXX:-g++}"
mkdir -p "$out"
"$cxx" -std=c++17 -O1 -shared -fPIC -Wall "$here/fake_cudnn.cc" -o "$out/fake_cudnn.so"
flags=(-std=c++20 -O1 -g -pthread -Wall -Wno-unknown-pragmas -Wno-unused-function -DCONVNET_WITH_CUDA
       -I"$here" -I"$root/native/emu" -I"$root/native")
sources=("$here/test_bench_emu.cc" "$root/native/emu/emu.cc")
for f in timer cudnn_loader cudnn_conv; do sources+=("$root/native/bench/$f.cc"); done
for f in parallel allocator device cuda_device; do sources+=("$root/native/core/$f.cc"); done
for f in conv2d_cpu conv2d_cpu_blocked conv2d_cpu_direct conv2d_cpu_winograd gemm_cpu; do sources+=("$root/native/ops/$f.cc"); done
"$cxx" "${flags[@]}" "${sources[@]}" -ldl -o "$out/test_bench_emu"
"$out/test_bench_emu" "$out/fake_cudnn.so"
