#!/usr/bin/env node
// `npm run prebuild`: builds the addon from source (CPU, plus CUDA when nvcc is found, with the
// CUDA runtime linked statically, so users need only the NVIDIA driver) and copies it to
// prebuilds/<platform>-<arch>/convnet.node, where the install script and the loader look first
// in a packed package. Run it before `npm pack` / `npm publish`.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'build-native.mjs')], { stdio: 'inherit', env: process.env });
if (r.status !== 0) process.exit(r.status ?? 1);
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
mkdirSync(dir, { recursive: true });
copyFileSync(path.join(root, 'build', 'Release', 'convnet.node'), path.join(dir, 'convnet.node'));
const facts = spawnSync(process.execPath, ['-p', `JSON.stringify(require(${JSON.stringify(path.join(dir, 'convnet.node'))}).buildInfo())`], { encoding: 'utf8' });
if (facts.status !== 0) {
  console.error(`convnet: the prebuilt binary does not load: ${facts.stderr}`);
  process.exit(1);
}
const info = JSON.parse(facts.stdout);
writeFileSync(path.join(dir, 'build.json'), `${JSON.stringify({ cuda: info.cuda, cudaVersion: info.cudaVersion, archs: info.archs, node: process.version, date: new Date().toISOString() }, null, 2)}\n`);
console.log(`convnet: prebuilt binary in ${path.relative(root, dir)} (CUDA ${info.cuda ? `on, ${(info.archs ?? []).join(', ')}` : 'off'})`);
