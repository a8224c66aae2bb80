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
const common = ['--out', 'build', '--config', 'Release'];
console.log(`convnet: building the native addon (CONVNET_CUDA=${env.CONVNET_CUDA ?? 'auto'}, CONVNET_CUDA_ARCHS=${env.CONVNET_CUDA_ARCHS ?? 'default'})`);
// Configure every time: the CUDA switch and targets come from the environment, and an existing
// build folder would otherwise keep the previous choice. Ninja then rebuilds only what changed.
for (const step of [
  ['configure', ...common],
  ['build', ...common, '--parallel', String(Math.max(1, Number(env.CONVNET_BUILD_JOBS) || 2))],
]) {
  const r = spawnSync(process.execPath, [cmakeJs, ...step], { cwd: root, env, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`convnet: the native build failed at 'cmake-js ${step[0]}'; see the CMake output above.`);
    process.exit(r.status ?? 1);
  }
}
const addon = path.join(root, 'build', 'Release', 'convnet.node');
if (!existsSync(addon)) {
  console.error(`convnet: the build finished but ${addon} is missing`);
  process.exit(1);
}
console.log(`convnet: built ${path.relative(root, addon)}`);
