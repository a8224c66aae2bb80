#!/usr/bin/env node
// npm's install hook. A package from the registry (or from `npm pack`) carries prebuilt
// binaries in prebuilds/<platform>-<arch>/convnet.node (made by `npm run prebuild`); when the one
// for this machine loads, nothing is compiled. Otherwise, or with CONVNET_BUILD_FROM_SOURCE=1,
// the addon is built from source with cmake-js (scripts/build-native.mjs).
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const prebuilt = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'convnet.node');
const fromSource = /^(1|true|yes|on)$/i.test(process.env.CONVNET_BUILD_FROM_SOURCE ?? '');

if (!fromSource && existsSync(prebuilt)) {
  // Load it in a child process: a binary that does not load here (another libc, a missing
  // library) must not stop the build from source.
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(prebuilt)})`], { encoding: 'utf8' });
  if (r.status === 0) {
    console.log(`convnet: using the prebuilt binary ${path.relative(root, prebuilt)} (CONVNET_BUILD_FROM_SOURCE=1 builds from source instead)`);
    process.exit(0);
  }
  console.log(`convnet: the prebuilt binary ${path.relative(root, prebuilt)} does not load here (${(r.stderr || '').trim().split('\n')[0]}); building from source`);
} else if (!fromSource) {
  console.log(`convnet: no prebuilt binary for ${process.platform}-${process.arch}; building from source`);
}
const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'build-native.mjs')], { stdio: 'inherit', env: process.env });
process.exit(r.status ?? 1);
