#!/usr/bin/env bash
# The standalone C++ kernel self-tests (native/ops/test_*.cc: SGEMM and conv2d against naive
# loops and finite differences, pooling and LRN likewise; the thread pool, also under
# ThreadSanitizer), for this machine or for aarch64.
#   scripts/native-selftest.sh            build and run here, once per SGEMM micro-kernel this
#                                         CPU has, and once with the portable kernel
#   scripts/native-selftest.sh aarch64    cross-compile with Debian's aarch64-linux-gnu-g++, run
#                                         the self-tests under qemu-aarch64, and cross-compile the
#                                         whole CPU addon (against this machine's Node headers)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${1:-native}
flags=(-O2 -std=c++17 -pthread -Wall -Wno-unused-function -Inative)
gemm_conv=(native/core/parallel.cc native/ops/gemm_cpu.cc native/ops/conv2d_cpu.cc native/ops/conv2d_cpu_blocked.cc native/ops/conv2d_cpu_direct.cc native/ops/conv2d_cpu_winograd.cc native/ops/test_gemm_conv.cc)
pool_lrn=(native/core/parallel.cc native/ops/pool_cpu.cc native/ops/lrn_cpu.cc native/ops/test_pool_lrn.cc)
threads=(native/core/parallel.cc native/core/test_parallel.cc)

case "$target" in
  native)
    out=build/selftest
    mkdir -p "$out"
    g++ "${flags[@]}" "${gemm_conv[@]}" -o "$out/test_gemm_conv"
    g++ "${flags[@]}" "${pool_lrn[@]}" -o "$out/test_pool_lrn"
    g++ "${flags[@]}" "${threads[@]}" -o "$out/test_parallel"
    g++ "${flags[@]}" -O1 -g -fsanitize=thread "${threads[@]}" -o "$out/test_parallel_tsan"
    for spin in 50 0; do
      CONVNET_SPIN_US=$spin "$out/test_parallel"
      CONVNET_SPIN_US=$spin "$out/test_parallel_tsan"
    done
    for isa in portable sse avx2 avx512; do
      echo "-- test_gemm_conv, SGEMM micro-kernel capped at $isa"
      CN_SGEMM_ISA=$isa "$out/test_gemm_conv" --no-bench
    done
    "$out/test_pool_lrn"
    ;;
  aarch64)
    cxx=aarch64-linux-gnu-g++
    command -v "$cxx" >/dev/null || { echo "$cxx not found (apt-get install g++-aarch64-linux-gnu)" >&2; exit 1; }
    command -v qemu-aarch64 >/dev/null || { echo "qemu-aarch64 not found (apt-get install qemu-user)" >&2; exit 1; }
    out=build/aarch64
    mkdir -p "$out/obj"
    "$cxx" "${flags[@]}" "${gemm_conv[@]}" -o "$out/test_gemm_conv"
    "$cxx" "${flags[@]}" "${pool_lrn[@]}" -o "$out/test_pool_lrn"
    "$cxx" "${flags[@]}" "${threads[@]}" -o "$out/test_parallel"
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/test_parallel"
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/test_gemm_conv" --no-bench
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/test_pool_lrn"
    # The whole CPU-only addon compiles and links for aarch64 too.
    napi=$(node -p "require('node-addon-api').include" | tr -d '"')
    node_inc=$(node -p "require('node:path').resolve(process.execPath, '../../include/node')")
    objs=()
    # The CPU-only source list of CMakeLists.txt (CONVNET_SOURCES, plus the no-CUDA device stub).
    sources=$(sed -n '/^set(CONVNET_SOURCES/,/^)/p' CMakeLists.txt | grep -o 'native/[^ )]*\.cc')
    for f in $sources native/core/cuda_none.cc; do
      o="$out/obj/$(basename "$f").o"
      "$cxx" "${flags[@]}" -O3 -fPIC -I"$node_inc" -I"$napi" -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS \
        -DNODE_ADDON_API_DISABLE_DEPRECATED -c "$f" -o "$o"
      objs+=("$o")
    done
    "$cxx" -shared -pthread "${objs[@]}" -o "$out/convnet.node"
    echo "aarch64: self-tests passed under qemu; the CPU addon links ($out/convnet.node)"
    ;;
  *)
    echo "usage: scripts/native-selftest.sh [native | aarch64]" >&2
    exit 2
    ;;
esac
