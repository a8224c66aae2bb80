#!/usr/bin/env python3
"""Rewrites CUDA sources so g++ can compile them against native/emu/cuda_runtime.h.

Run at build time by native/emu/build.sh; the output goes to the build folder and is never
committed. Usage:

    prep.py --root REPO --out DIR [--mutate 'REL@@OLD@@NEW' ...] REL...

REL is a path under native/ (ops/gemm_cuda.cu, core/cuda_launch.h); the rewritten copy is
written to DIR/REL (a .cu file as DIR/REL.cc). Every rewrite keeps the line count, and each
copy starts with a #line directive naming the real file, so diagnostics and sanitizer reports
point at the original source lines. The rewrites, all outside comments and string literals:

  kernel<<<grid, block[, smem[, stream]]>>>(args)
      -> ::cn_emu::launch(kernel, "kernel", "file:line", ::cn_emu::LaunchConfig(grid, block...))(args)
  __shared__ [__align__(A)] T name[D1]...;
      -> T (&name)[D1]... = ::cn_emu::shared_var<T[D1]..., A>([] {}, "name");
  extern __shared__ [__align__(A)] T name[];
      -> T* const name = static_cast<T*>(::cn_emu::dynamic_shared());
  __launch_bounds__(N) ... kernel(...) {
      -> ... kernel(...) { ::cn_emu::launch_bounds_check(N, "kernel");
  constexpr T kName = v;   (only the launcher limits listed in TUNABLES)
      -> inline const T& kName = ::cn_emu::tunable<T>("kName", v);

Anything left that looks like CUDA syntax the emulation cannot take (<<<, >>>, __shared__) is an
error, as is a TUNABLES entry that is not found: this script fails loudly rather than letting
coverage slip.

--mutate applies a literal replacement (first occurrence, which must exist; \n in OLD or NEW
stands for a newline) to the copy of REL before the rewrites, for checking that the harness
notices a broken kernel (native/emu/mutants.sh).
"""
import argparse
import os
import re
import sys

# Launcher limits that only huge tensors reach on a GPU; made run-time values so the harness can
# shrink them (see harness.cc, "tiny limits").
TUNABLES = {
    'core/cuda_launch.h': ['kMaxBlocks'],
    'ops/loss_cuda.cu': ['kMaxRowBlocks'],
    'ops/gemm_cuda.cu': ['kMaxGridX', 'kMaxGridZ'],
    'ops/conv2d_cuda.cu': ['kWorkspaceFloats', 'kFilterSliceCols'],
    'ops/conv2d_v2_cuda.cu': ['kLargeTileMinBlocks', 'kSmallTileMaxRows', 'kFilterSplitDepth'],
}


def fail(msg):
    sys.stderr.write('prep.py: %s\n' % msg)
    sys.exit(1)


def code_mask(s):
    """True for each character of s that is code (not in a comment or string/char literal)."""
    mask = [True] * len(s)
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if s.startswith('//', i):
            j = s.find('\n', i)
            j = n if j < 0 else j
        elif s.startswith('/*', i):
            j = s.find('*/', i + 2)
            j = n if j < 0 else j + 2
        elif c in '"\'':
            j = i + 1
            while j < n and s[j] != c:
                j += 2 if s[j] == '\\' else 1
            j += 1
        else:
            i += 1
            continue
        for k in range(i, min(j, n)):
            mask[k] = False
        i = j
    return mask


def sub_code(pattern, repl, s, flags=0):
    """re.sub that skips matches starting inside comments or literals; repl(match, s) -> str."""
    mask = code_mask(s)
    out, last, count = [], 0, 0
    for m in re.finditer(pattern, s, flags):
        if not mask[m.start()]:
            continue
        out.append(s[last:m.start()])
        out.append(repl(m, s))
        last = m.end()
        count += 1
    out.append(s[last:])
    return ''.join(out), count


def line_of(s, pos):
    return s.count('\n', 0, pos) + 1


def rewrite(rel, s):
    # Tunables first (they are plain C++ and the other rewrites do not touch them).
    for name in TUNABLES.get(rel, []):
        pat = r'\bconstexpr\s+([A-Za-z_][\w:]*)\s+(%s)\s*=\s*([^;]+);' % name
        s, n = sub_code(pat, lambda m, _s: 'inline const %s& %s = ::cn_emu::tunable<%s>("%s", %s);'
                        % (m.group(1), m.group(2), m.group(1), m.group(2), m.group(3)), s)
        if n != 1:
            fail('%s: expected one `constexpr <type> %s = ...;` (found %d); update TUNABLES in '
                 'native/emu/prep.py' % (rel, name, n))

    # __launch_bounds__(N) name(...) {  ->  name(...) { check(N);  (the body's first brace)
    mask = code_mask(s)
    pieces, last = [], 0
    for m in re.finditer(r'__launch_bounds__\s*\(([^()]*)\)\s*([A-Za-z_]\w*)\s*\(', s):
        if not mask[m.start()]:
            continue
        brace = s.find('{', m.end())
        if brace < 0:
            fail('%s:%d: no kernel body after __launch_bounds__' % (rel, line_of(s, m.start())))
        pieces.append(s[last:m.start()])
        pieces.append(s[m.end(1) + 1:brace + 1])  # keeps the newlines
        # __launch_bounds__(maxThreads[, minBlocks[, maxBlocksPerCluster]]): only the first
        # bounds the launch; the others are register hints for ptxas.
        max_threads = m.group(1).split(',')[0].strip()
        pieces.append(' ::cn_emu::launch_bounds_check(%s, "%s");' % (max_threads, m.group(2)))
        last = brace + 1
    pieces.append(s[last:])
    s = ''.join(pieces)

    # extern __shared__ (dynamic) arrays.
    s, _ = sub_code(r'\bextern\s+__shared__\s+(?:__align__\s*\(\s*\w+\s*\)\s+)?'
                    r'([A-Za-z_][\w:<>, ]*?)\s+(\w+)\s*\[\s*\]\s*;',
                    lambda m, _s: '%s* const %s = static_cast<%s*>(::cn_emu::dynamic_shared());' % (
                        m.group(1).strip(), m.group(2), m.group(1).strip()), s)

    # Static __shared__ variables.
    def shared(m, _s):
        align = m.group(1) or '0'
        typ, name, dims = m.group(2).strip(), m.group(3), m.group(4) or ''
        if dims:
            return '%s (&%s)%s = ::cn_emu::shared_var<%s%s, %s>([] {}, "%s");' % (
                typ, name, dims, typ, dims, align, name)
        return '%s& %s = ::cn_emu::shared_var<%s, %s>([] {}, "%s");' % (typ, name, typ, align, name)
    s, _ = sub_code(r'\b__shared__\s+(?:__align__\s*\(\s*(\w+)\s*\)\s+)?'
                    r'([A-Za-z_][\w:<>, ]*?)\s+(\w+)\s*((?:\[[^\]\n;]+\])*)\s*;', shared, s)

    # Launches.
    def launch(m, src):
        kernel = re.sub(r'\s+', ' ', m.group(1))
        where = '%s:%d' % (os.path.join('native', rel), line_of(src, m.start()))
        return '::cn_emu::launch(%s, "%s", "%s", ::cn_emu::LaunchConfig(%s))(' % (
            m.group(1), kernel, where, m.group(2))
    s, _ = sub_code(r'([A-Za-z_][\w:]*(?:\s*<[^<>;{}()]*>)?)\s*<<<(.*?)>>>\s*\(', launch, s,
                    re.S)

    mask = code_mask(s)
    for tok in ('<<<', '>>>', '__shared__'):
        for m in re.finditer(re.escape(tok), s):
            if mask[m.start()]:
                fail('%s:%d: `%s` that prep.py cannot rewrite' % (rel, line_of(s, m.start()), tok))
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--root', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--mutate', action='append', default=[])
    ap.add_argument('files', nargs='+')
    a = ap.parse_args()
    mutations = {}
    for spec in a.mutate:
        parts = spec.split('@@')
        if len(parts) != 3:
            fail('--mutate wants REL@@OLD@@NEW, got %r' % spec)
        unescape = lambda t: t.replace('\\n', '\n')  # '\n' in a spec stands for a newline
        mutations.setdefault(parts[0], []).append((unescape(parts[1]), unescape(parts[2])))
    for rel in TUNABLES:
        if rel not in a.files:
            fail('TUNABLES names %s, which was not given' % rel)
    for rel in a.files:
        src_path = os.path.join(a.root, 'native', rel)
        with open(src_path) as f:
            s = f.read()
        for old, new in mutations.pop(rel, []):
            if old not in s:
                fail('--mutate: %r not found in %s' % (old, rel))
            s = s.replace(old, new, 1)
        lines = s.count('\n')
        s = rewrite(rel, s)
        if s.count('\n') != lines:
            fail('%s: internal error, the rewrite changed the line count' % rel)
        dst = os.path.join(a.out, rel + ('.cc' if rel.endswith('.cu') else ''))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        text = '#line 1 "%s"\n%s' % (os.path.abspath(src_path), s)
        if os.path.exists(dst):
            with open(dst) as f:
                if f.read() == text:
                    continue  # unchanged: keep the timestamp so the object is not rebuilt
        with open(dst, 'w') as f:
            f.write(text)
    if mutations:
        fail('--mutate names files that were not given: %s' % ', '.join(mutations))


if __name__ == '__main__':
    main()
