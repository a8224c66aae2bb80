#!/usr/bin/env bash
# Builds and runs the CUDA emulation harness: the real native/ops/*_cuda.cu kernels, compiled by
# g++ against native/emu/cuda_runtime.h, checked against the CPU ops on random shapes.
# No GPU and no nvcc needed. See native/emu/README.md.
#
#   native/emu/build.sh [harness options]     build into build/emu/, run the self-test, then
#                                              the comparison (options go to the latter, e.g.
#                                              --seed 7 --cases 50 --only lrn_forward --verbose)
#
# Environment:
#   CXX                     compiler (default g++; needs C++20 and glibc's ucontext)
#   CN_EMU_OUT              build folder (default <repo>/build/emu)
#   CN_EMU_JOBS             parallel compiles (default: the number of CPUs, at most 4)
#   CN_EMU_SANITIZE=0       build without AddressSanitizer/UBSan (default: on when available)
#   CN_EMU_SELF_TEST=0      skip the self-test run
#   CN_EMU_BUILD_ONLY=1     build, do not run
#   CN_EMU_MUTATE           newline-separated 'REL@@OLD@@NEW' edits applied to the rewritten copies
#                           (never to the sources), e.g. 'ops/pool_cuda.cu@@v > best@@v >= best';
#                           used to check that the harness catches broken kernels
#   CN_EMU_CXXFLAGS         extra compiler flags for every file
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${CN_EMU_OUT:-$root/build/emu}"
cxx="${CXX:-g++}"
ncpu="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"
njobs="${CN_EMU_JOBS:-$(( ncpu < 4 ? ncpu : 4 ))}"
mkdir -p "$out/obj"

base=(-std=c++20 -O1 -g -pthread -Wall -Wno-unknown-pragmas -Wno-unused-function)
san=()
if [[ "${CN_EMU_SANITIZE:-1}" != 0 ]]; then
  probe="$out/obj/sanitize-probe"
  if echo 'int main(){return 0;}' | "$cxx" -x c++ -fsanitize=address,undefined - -o "$probe" 2>/dev/null \
      && "$probe"; then
    san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  else
    echo "build.sh: AddressSanitizer/UBSan not available with $cxx; building without" >&2
  fi
fi
extra=()
if [[ -n "${CN_EMU_CXXFLAGS:-}" ]]; then read -r -a extra <<< "$CN_EMU_CXXFLAGS"; fi

# 1. Rewrite the CUDA sources (launch syntax, __shared__, launcher limits) into $out/gen.
cu_files=()
for f in "$root"/native/ops/*_cuda.cu; do cu_files+=("ops/$(basename "$f")"); done
mutate=()
if [[ -n "${CN_EMU_MUTATE:-}" ]]; then
  while IFS= read -r m; do [[ -n "$m" ]] && mutate+=(--mutate "$m"); done <<< "$CN_EMU_MUTATE"
fi
python3 "$here/prep.py" --root "$root" --out "$out/gen" "${mutate[@]}" \
  core/cuda_launch.h emu/selftest_kernels.cu emu/selftest_mma.cu "${cu_files[@]}"

# 2. Compile. Device code: the rewritten copies, with the emulated runtime and the shrinkable
# copy of core/cuda_launch.h first on the include path, no FP contraction (see cuda_runtime.h).
# Host code: the real CPU ops, op table, device and allocator sources, and core/cuda_device.cc
# itself on the emulated runtime.
dev_flags=(-ffp-contract=off -DCONVNET_WITH_CUDA -I"$out/gen" -I"$here" -I"$root/native")
host_flags=(-DCONVNET_WITH_CUDA -I"$here" -I"$root/native")
units=()   # "source|flags-name"
for f in "${cu_files[@]}"; do units+=("$out/gen/$f.cc|dev"); done
units+=("$out/gen/emu/selftest_kernels.cu.cc|dev" "$out/gen/emu/selftest_mma.cu.cc|dev")
units+=("$here/emu.cc|dev" "$here/harness.cc|host")
for f in "$root"/native/ops/*_cpu.cc "$root"/native/ops/*_cpu_*.cc; do units+=("$f|host"); done
for f in registry.cc; do units+=("$root/native/ops/$f|host"); done
for f in parallel.cc allocator.cc device.cc cuda_device.cc; do units+=("$root/native/core/$f|host"); done

# Rebuild an object when it is missing, its flags changed, or any file it depends on is newer.
stale() {
  local obj="$1" flags="$2"
  [[ -f "$obj" && -f "$obj.d" && -f "$obj.flags" ]] || return 0
  [[ "$(cat "$obj.flags")" == "$flags" ]] || return 0
  local dep
  for dep in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$obj.d"); do
    [[ "$dep" -nt "$obj" ]] && return 0
  done
  return 1
}

objs=()
pids=()
failed=0
for u in "${units[@]}"; do
  src="${u%|*}"
  kind="${u#*|}"
  rel="${src#"$root"/}"
  obj="$out/obj/$(echo "$rel" | tr '/' '_').o"
  objs+=("$obj")
  if [[ "$kind" == dev ]]; then flags=("${base[@]}" "${san[@]}" "${dev_flags[@]}" "${extra[@]}")
  else flags=("${base[@]}" "${san[@]}" "${host_flags[@]}" "${extra[@]}"); fi
  if stale "$obj" "${flags[*]}"; then
    while (( $(jobs -rp | wc -l) >= njobs )); do wait -n || failed=1; done
    echo "build.sh: compiling $rel" >&2
    ( "$cxx" "${flags[@]}" -MMD -MF "$obj.d" -c "$src" -o "$obj" && echo "${flags[*]}" > "$obj.flags" ) &
  fi
done
while (( $(jobs -rp | wc -l) > 0 )); do wait -n || failed=1; done
wait || failed=1
if (( failed )); then echo "build.sh: compilation failed" >&2; exit 1; fi

bin="$out/harness"
newest=0
[[ -f "$bin" ]] || newest=1
for o in "${objs[@]}"; do [[ "$o" -nt "$bin" ]] && newest=1; done
if (( newest )); then
  echo "build.sh: linking $bin" >&2
  "$cxx" "${base[@]}" "${san[@]}" "${extra[@]}" "${objs[@]}" -o "$bin"
fi

[[ "${CN_EMU_BUILD_ONLY:-0}" == 1 ]] && exit 0

# 3. Run. Sanitizer findings abort the run; leaks are not checked (the harness counts emulated
# device memory itself).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
if [[ "${CN_EMU_SELF_TEST:-1}" != 0 ]]; then
  "$bin" --self-test || status=1
fi
"$bin" "$@" || status=1
exit $status
