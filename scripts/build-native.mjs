#!/usr/bin/env node
// Builds the native addon with cmake-js (run by `npm install`).
// CONVNET_CUDA=0 forces a CPU-only build; CONVNET_CUDA_ARCHS=90 (comma- or semicolon-separated
// compute capabilities without dots) overrides the CUDA fat-binary targets.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

// Build against the headers of the running Node when the machine has them, so no header
// download is needed (the build machines reach no Node.js distribution server).
const env = { ...process.env };
if (!env.npm_config_nodedir) {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) env.npm_config_nodedir = prefix;
}

const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const args = [cmakeJs, 'compile', '--out', 'build', '--config', 'Release', '--parallel', String(Math.max(1, Number(env.CONVNET_BUILD_JOBS) || 2))];
console.log(`convnet: building the native addon (CONVNET_CUDA=${env.CONVNET_CUDA ?? 'auto'})`);
const r = spawnSync(process.execPath, args, { cwd: root, env, stdio: 'inherit' });
if (r.status !== 0) {
  console.error('convnet: the native build failed; see the CMake output above.');
  process.exit(r.status ?? 1);
}
const addon = path.join(root, 'build', 'Release', 'convnet.node');
if (!existsSync(addon)) {
  console.error(`convnet: the build finished but ${addon} is missing`);
  process.exit(1);
}
console.log(`convnet: built ${path.relative(root, addon)}`);
