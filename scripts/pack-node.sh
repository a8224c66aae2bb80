#!/usr/bin/env bash
# Puts an xz-compressed copy of this machine's node binary in .device/node.xz (ignored by git),
# for a GPU machine that has no Node.js: the GPU check unpacks and runs it there.
#   scripts/pack-node.sh [node binary]      (default: the node on the PATH)
# Node's official Linux binaries are self-contained apart from glibc, so the copy runs on any
# x86-64 Linux with a glibc at least as new as the one it was built for.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
node_bin=${1:-$(command -v node)}
[ -x "$node_bin" ] || { echo "pack-node: no node binary at '$node_bin'" >&2; exit 1; }
mkdir -p "$root/.device"
out="$root/.device/node.xz"
if [ ! -s "$out" ] || [ "$node_bin" -nt "$out" ]; then
  xz -T2 -6 -c "$node_bin" > "$out.tmp"
  mv "$out.tmp" "$out"
fi
echo "pack-node: $out ($(du -h "$out" | cut -f1), node $("$node_bin" --version))"
