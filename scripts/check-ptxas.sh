#!/usr/bin/env bash
# Resource check of the hot CUDA kernels: compiles them with `nvcc -Xptxas -v` for every arch of
# the fat binary (CONVNET_CUDA_ARCHS in CMakeLists.txt, or the environment variable of that name)
# plus sm_80 and sm_90, prints one line per kernel and arch (registers, static shared memory,
# stack, spills), writes them to a file, and fails when
#   - any kernel spills registers (non-zero "bytes spill stores" or "bytes spill loads"), or
#   - any kernel's static shared memory exceeds 48 KiB (the most a launch gets without
#     cudaFuncSetAttribute, which none of our launchers call).
# Needs nvcc only, no GPU; without nvcc it says so and exits 0 (the CPU-only build has no kernels).
#
#   scripts/check-ptxas.sh [FILE.cu ...]     default: the conv, GEMM and linear kernels
#
# Environment:
#   CONVNET_PTXAS_OUT    the report (default bench/results/tmp/ptxas.txt; bench/results/tmp is
#                        ignored by git)
#   CONVNET_CUDA_ARCHS   archs to check, comma- or semicolon-separated (default: CMakeLists.txt's)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v nvcc >/dev/null; then
  echo "check-ptxas: nvcc not found; nothing to check (CPU-only build)"
  exit 0
fi

files=("$@")
if [[ ${#files[@]} -eq 0 ]]; then
  files=(native/ops/conv2d_cuda.cu native/ops/conv2d_v2_cuda.cu native/ops/conv2d_v3_cuda.cu
         native/ops/gemm_cuda.cu native/ops/linear_cuda.cu)
fi

archs="${CONVNET_CUDA_ARCHS:-}"
if [[ -z "$archs" ]]; then
  archs="$(sed -n 's/^set(CONVNET_CUDA_ARCHS "\([0-9;]*\)")$/\1/p' CMakeLists.txt)"
  [[ -n "$archs" ]] || { echo "check-ptxas: no CONVNET_CUDA_ARCHS line in CMakeLists.txt" >&2; exit 1; }
fi
archs="$(printf '%s\n' ${archs//[,;]/ } 80 90 | sort -un | tr '\n' ' ')"
supported=" $(nvcc --list-gpu-arch 2>/dev/null | sed 's/compute_//' | tr '\n' ' ') "
gencode=()
for a in $archs; do
  if [[ "$supported" != *" $a "* ]]; then
    echo "check-ptxas: nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') cannot target sm_$a; skipped"
    continue
  fi
  gencode+=(-gencode "arch=compute_$a,code=sm_$a")
done

out="${CONVNET_PTXAS_OUT:-bench/results/tmp/ptxas.txt}"
mkdir -p "$(dirname "$out")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The same flags as the addon's CUDA sources (CMakeLists.txt).
flags=(-std=c++17 -O3 --expt-relaxed-constexpr -DCONVNET_WITH_CUDA -I native -Xptxas -v)
status=0
for f in "${files[@]}"; do
  log="$tmp/$(basename "$f").log"
  if ! nvcc "${flags[@]}" "${gencode[@]}" -c "$f" -o "$tmp/$(basename "$f").o" > "$log" 2>&1; then
    echo "check-ptxas: $f does not compile:" >&2
    tail -20 "$log" >&2
    status=1
    continue
  fi
  echo "== $f" >> "$tmp/all.log"
  cat "$log" >> "$tmp/all.log"
done

python3 - "$tmp/all.log" "$out" <<'PY' || status=1
import re, sys
log, out = sys.argv[1], sys.argv[2]
limit = 48 * 1024
rows, bad = [], []
src = func = arch = None
props = {}
def flush():
    if func is None:
        return
    p = props
    rows.append((src, arch, func, p.get('regs', 0), p.get('smem', 0), p.get('stack', 0),
                 p.get('st', 0), p.get('ld', 0)))
    if p.get('st', 0) or p.get('ld', 0):
        bad.append('%s [%s] %s: spills %d bytes stored, %d loaded' % (src, arch, func, p['st'], p['ld']))
    if p.get('smem', 0) > limit:
        bad.append('%s [%s] %s: %d bytes of static shared memory, over the 48 KiB a launch gets'
                   % (src, arch, func, p['smem']))
for line in open(log):
    m = re.match(r'== (.*)', line)
    if m:
        flush(); func = None; src = m.group(1); continue
    m = re.search(r"Compiling entry function '([^']+)' for '(sm_\d+)'", line)
    if m:
        flush(); func, arch, props = m.group(1), m.group(2), {}; continue
    m = re.search(r'(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads', line)
    if m and func:
        props['stack'], props['st'], props['ld'] = map(int, m.groups()); continue
    m = re.search(r'Used (\d+) registers', line)
    if m and func:
        props['regs'] = int(m.group(1))
        s = re.search(r'(\d+) bytes smem', line)
        props['smem'] = int(s.group(1)) if s else 0
flush()
def short(name):
    # A readable form of the mangled name: the kernel and its template arguments (the
    # length-prefixed identifiers after it, then its bool arguments).
    idents, i = [], 0
    while i < len(name):
        m = re.match(r'(\d+)', name[i:])
        if not m:
            i += 1
            continue
        n, start = int(m.group(1)), i + len(m.group(1))
        ident = name[start:start + n]
        if n > 0 and re.fullmatch(r'[A-Za-z_]\w*', ident or '-'):
            idents.append((start, ident))
            i = start + n
        else:
            i = start
    core = next(((k, x) for k, x in idents if x.endswith('kernel')), None)
    if not core:
        return name
    args = [x for k, x in idents if k > core[0] and x[0].isupper() and len(x) > 1]
    args += ['true' if b == '1' else 'false' for b in re.findall(r'Lb([01])E', name[core[0]:])]
    return core[1] + ('<' + ', '.join(args) + '>' if args else '')
lines = ['%-28s %-7s %5s %7s %6s %6s %6s  %s' % ('file', 'arch', 'regs', 'smem', 'stack', 'spillS', 'spillL', 'kernel')]
for src_, arch_, f, regs, smem, stack, st, ld in rows:
    lines.append('%-28s %-7s %5d %7d %6d %6d %6d  %s' % (src_.split('/')[-1], arch_, regs, smem, stack, st, ld, short(f)))
text = '\n'.join(lines) + '\n'
open(out, 'w').write(text)
print(text, end='')
if not rows:
    print('check-ptxas: no kernels found in the ptxas output'); sys.exit(1)
for b in bad:
    print('check-ptxas: FAIL ' + b)
print('check-ptxas: %d kernel x arch entries, %s (report: %s)' % (len(rows), 'FAILED' if bad else 'no spills, static shared memory within 48 KiB', out))
sys.exit(1 if bad else 0)
PY
exit $status
