#!/usr/bin/env bash
# Packs the project as a user would receive it and uses it from a fresh project outside the
# repository, through the public entry point (import * as cn from 'convnet-cuda'):
#   1. with the prebuilt binary the package carries (npm's default: the install script of a
#      dependency does not run, so nothing may need compiling);
#   2. built from source (CONVNET_BUILD_FROM_SOURCE=1, the install script allowed).
# Each time it runs examples/time-op.ts there and checks what `convnet info` says it loaded.
# Needs the npm registry (the package's dependencies and tsx for the TypeScript example).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/convnet-package-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$root"

echo "== npm run prebuild"
npm run --silent prebuild
echo "== npm pack"
tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
tgz="$work/$tarball"
tar -tzf "$tgz" | grep -q "package/prebuilds/$(node -p 'process.platform + "-" + process.arch')/convnet.node" \
  || { echo "the tarball lacks the prebuilt binary" >&2; exit 1; }

use_it() {  # use_it <folder> <expected addon line> <allowScripts JSON>
  local app=$1 expect=$2 allow=$3
  mkdir -p "$app" && cd "$app"
  echo "{ \"name\": \"convnet-user\", \"version\": \"1.0.0\", \"private\": true, \"type\": \"module\", \"allowScripts\": $allow }" > package.json
  npm install --no-audit --no-fund "$tgz" tsx
  cp "$root/examples/time-op.ts" .
  npx --no-install tsx time-op.ts --iters 2
  npx --no-install convnet info | tee info.txt
  grep -q "^addon: $expect" info.txt || { echo "expected 'addon: $expect' in convnet info" >&2; exit 1; }
  cd "$root"
}

echo "== a fresh project with the prebuilt binary"
use_it "$work/prebuilt" "prebuilt binary" '{ "esbuild": false }'
echo "== a fresh project built from source"
CONVNET_BUILD_FROM_SOURCE=1 use_it "$work/source" "built from source" '{ "esbuild": false, "convnet-cuda": true }'
echo "== the package works as a dependency, prebuilt and from source"
