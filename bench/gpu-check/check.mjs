#!/usr/bin/env node
/**
 * The GPU check: every op on the device under test against the CPU reference (compare.mjs),
 * the out-of-memory path, and compute-sanitizer runs. Plain JavaScript that imports only node
 * builtins and the compiled package (dist/), because the GPU machine has a node binary and
 * nothing else. See README.md next to this file.
 *
 *   node bench/gpu-check/check.mjs [--device cuda:0] [--reference cpu:0] [--small] [--out DIR]
 *                                  [--seed N] [--sanitize memcheck|racecheck] [--all] [--cpu]
 *
 * Exit code 0 only when everything passed (or, without --device and --cpu, when there is no
 * CUDA device to check: it says why and exits 0).
 */
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { OPS, KERNELS, TOL, checkCopyRace, checkOutOfMemory, checkRuntimeCompile, fmtErr, makeCases, runCase, summarize } from './compare.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const SANITIZERS = ['memcheck', 'racecheck'];

const usage = `usage: node bench/gpu-check/check.mjs [options]
  --device ID       device under test (default: cuda:0 when there is one)
  --reference ID    reference device (default cpu:0)
  --cpu             check cpu:1 against cpu:0 (how CI keeps this program working)
  --small           tiny shapes: every kernel runs once, quickly
  --seed N          seed of the random shapes and data (default 1)
  --out DIR         results folder (default bench/results/tmp/gpu-check)
  --sanitize MODE   run the --small check under compute-sanitizer --tool MODE (memcheck | racecheck)
  --all             the check, then memcheck and racecheck on --small
  --only OPS        comma-separated ops to check (${OPS.join(', ')})
  --no-oom          skip the 1 EB allocation (used under compute-sanitizer, which reports it)
  --sanitizer PATH  the compute-sanitizer binary (default: PATH, then /usr/local/cuda/bin)
  --sanitize-timeout S  seconds allowed to each sanitizer run (default 200)`;

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      device: { type: 'string' },
      reference: { type: 'string', default: 'cpu:0' },
      cpu: { type: 'boolean', default: false },
      small: { type: 'boolean', default: false },
      seed: { type: 'string', default: '1' },
      out: { type: 'string', default: path.join(root, 'bench', 'results', 'tmp', 'gpu-check') },
      sanitize: { type: 'string' },
      all: { type: 'boolean', default: false },
      only: { type: 'string' },
      'no-oom': { type: 'boolean', default: false },
      sanitizer: { type: 'string' },
      'sanitize-timeout': { type: 'string', default: '200' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (e) {
  console.error(`${e.message}\n${usage}`);
  process.exit(2);
}
if (args.help) {
  console.log(usage);
  process.exit(0);
}
const seed = Number(args.seed);
const only = args.only ? args.only.split(',').map((s) => s.trim()) : null;
const badOp = only?.find((op) => !OPS.includes(op));
if (!Number.isInteger(seed) || seed < 0 || (args.sanitize && !SANITIZERS.includes(args.sanitize)) || badOp) {
  console.error(`bad --seed, --sanitize or --only value\n${usage}`);
  process.exit(2);
}

// Poison every op output with NaN so an element a kernel never writes fails the comparison;
// the package reads this when it loads, hence the dynamic import below.
process.env.CONVNET_POISON = '1';
// On the CPU a third queue stands in for the second GPU of the device-to-device copies.
if (args.cpu && !process.env.CONVNET_CPU_DEVICES) process.env.CONVNET_CPU_DEVICES = '3';

let cn, native;
try {
  cn = await import('../../dist/index.js');
  ({ native } = await import('../../dist/native.js'));
} catch (e) {
  console.error(`cannot load the compiled package from ${path.join(root, 'dist')}: ${e.message}\n` +
    'Compile it first: npx tsc -p tsconfig.build.json (and build the addon: npm run build:native).');
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Which devices.

const ids = cn.devices().map((d) => d.id);
let device = args.device;
if (!device && args.cpu) device = 'cpu:1';
if (!device) {
  const cuda = cn.devices().find((d) => d.kind === 'cuda');
  if (!cuda) {
    console.log(`no CUDA device: ${noCudaReason()}`);
    process.exit(0);
  }
  device = cuda.id;
}
const reference = args.reference;
for (const id of [device, reference]) {
  try {
    cn.zeros([1], { device: id }).dispose();
  } catch (e) {
    console.error(`cannot use ${id}: ${e.message}`);
    process.exit(2);
  }
}
const kind = device.startsWith('cuda') ? 'cuda' : 'cpu';
// A second device of the same kind, for the device-to-device copies (cuda:1 with
// CONVNET_VIRTUAL_GPUS=2 on a one-GPU machine).
const peer = ids.find((id) => id.startsWith(`${kind}:`) && id !== device && id !== reference) ?? null;
const info = cn.devices().find((d) => d.id === device);
const build = cn.buildInfo();
const noKernel = kind === 'cuda' ? build.ops.filter((o) => !o.cuda).map((o) => o.name) : [];

function noCudaReason() {
  try {
    cn.zeros([1], { device: 'cuda:0' }).dispose();
    return 'cuda:0 works but cn.devices() lists no CUDA device';
  } catch (e) {
    return e.message.replace(/^device: /, '');
  }
}

// ---------------------------------------------------------------------------------------------
// Output: progress lines on stdout and in DIR/gpu-check.log.

const out = path.resolve(args.out);
mkdirSync(out, { recursive: true });
const logFile = path.join(out, 'gpu-check.log');
writeFileSync(logFile, '');
function say(line = '') {
  console.log(line);
  appendFileSync(logFile, `${line}\n`);
}

const gpu = nvidiaSmi();
const commit = gitCommit();
say(`gpu-check: ${device} (${info?.name ?? '?'}${info?.computeCapability ? `, sm ${info.computeCapability}` : ''}) against ${reference}` +
  `${peer ? `, peer ${peer}` : ''}; seed ${seed}${args.small ? ', small shapes' : ''}`);
say(`build: cuda ${build.cuda}${build.cudaVersion ? ` ${build.cudaVersion}` : ''}${build.archs ? ` archs ${build.archs.join(',')}` : ''}; ` +
  `driver ${gpu?.driver ?? 'unknown'}; commit ${commit ?? 'unknown'}; node ${process.version}`);
if (noKernel.length) say(`native ops without a CUDA kernel in this build: ${noKernel.join(', ')}`);

// ---------------------------------------------------------------------------------------------
// The check.

const results = [];
let oom = null;
let rtc = null;
let copyRace = null;
const sanitizers = [];
const runMain = !args.sanitize || args.all;

if (runMain) {
  const cases = makeCases({ seed, small: args.small, peer: peer !== null, only });
  const width = String(cases.length).length;
  say(`${cases.length} cases, tolerance ${TOL} (normwise relative error); bit-equal for dropout, randn, fills, copies`);
  cases.forEach((c, i) => {
    const r = runCase(cn, c, { device, reference, peer, noKernel });
    results.push(r);
    const errs = r.status === 'pass' || r.status === 'fail' ? `  fwd ${fmtErr(r.fwdErr)}  grad ${fmtErr(r.gradErr)}` : '';
    say(`[${String(i + 1).padStart(width)}/${cases.length}] ${c.op} ${c.label}${errs}  ${r.status}${r.detail ? `: ${r.detail}` : ''} (${r.ms} ms)`);
  });
  if (!peer && (!only || only.includes('to'))) {
    say(`note: no second ${kind} device, so no device-to-device copy case (CONVNET_VIRTUAL_GPUS=2 gives two on one GPU)`);
  }
  if (!only || only.includes('cuda.compile')) {
    rtc = checkRuntimeCompile(cn, device);
    say(`cuda.compile: ${rtc.status}${rtc.detail ? `: ${rtc.detail}` : ''}`);
  }
  if (!only || only.includes('to')) {
    copyRace = checkCopyRace(cn, device, peer, { seed, small: args.small });
    say(`copy race: ${copyRace.status}${copyRace.detail ? `: ${copyRace.detail}` : ''}`);
  }
  if (!args['no-oom']) {
    oom = checkOutOfMemory(cn, native, device);
    say(`out of memory: ${oom.status}${oom.detail ? `: ${oom.detail}` : ''}${oom.error ? ` (${oom.error})` : ''}`);
  }
}

const modes = args.all ? SANITIZERS : args.sanitize ? [args.sanitize] : [];
for (const mode of modes) sanitizers.push(await sanitize(mode));

/**
 * Runs this program with --small under compute-sanitizer --tool mode; its output goes to
 * DIR/sanitize-<mode>.log and its results to DIR/sanitize-<mode>/.
 */
async function sanitize(mode) {
  const row = { tool: mode, status: 'pass', detail: '', errors: null, exitCode: null, seconds: 0 };
  const bin = findSanitizer();
  if (!bin) {
    // On the CPU there is nothing for the sanitizer to check; on a GPU run its absence fails.
    row.status = kind === 'cuda' ? 'fail' : 'skipped';
    row.detail = 'compute-sanitizer not found on PATH or in /usr/local/cuda/bin';
    say(`${mode}: ${row.status}: ${row.detail}`);
    return row;
  }
  const childOut = path.join(out, `sanitize-${mode}`);
  const childArgs = [
    '--tool', mode, '--error-exitcode', '9',
    process.execPath, fileURLToPath(import.meta.url), '--small', '--no-oom',
    '--device', device, '--reference', reference, '--seed', String(seed), '--out', childOut,
    ...(only ? ['--only', only.join(',')] : []),
  ];
  say(`${mode}: ${bin} ${childArgs.join(' ')}`);
  const childLog = path.join(out, `sanitize-${mode}.log`);
  writeFileSync(childLog, '');
  const started = Date.now();
  const text = [];
  const code = await new Promise((resolve) => {
    const child = spawn(bin, childArgs, { cwd: root, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), Number(args['sanitize-timeout']) * 1000);
    const take = (chunk) => {
      const s = chunk.toString();
      text.push(s);
      appendFileSync(childLog, s);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', (e) => {
      take(`${e.message}\n`);
      clearTimeout(timer);
      resolve(-1);
    });
    child.on('close', (c, signal) => {
      clearTimeout(timer);
      resolve(c ?? (signal ? `killed by ${signal} (timeout?)` : -1));
    });
  });
  row.seconds = Math.round((Date.now() - started) / 1000);
  row.exitCode = code;
  const all = text.join('');
  const summary = all.match(/ERROR SUMMARY: (\d+) error/);
  row.errors = summary ? Number(summary[1]) : null;
  let child = null;
  try {
    child = JSON.parse(readFileSync(path.join(childOut, 'gpu-check.json'), 'utf8'));
  } catch {
    // the child died before writing its results
  }
  row.cases = child?.cases?.length ?? 0;
  if (code !== 0) {
    row.status = 'fail';
    const failed = child?.cases?.filter((r) => r.status !== 'pass').map((r) => `${r.op} ${r.label}: ${r.status}`) ?? [];
    row.detail = code === 9 || row.errors
      ? `${row.errors ?? '?'} sanitizer errors, see ${childLog}`
      : `the check exited ${code} under the sanitizer${failed.length ? ` (${failed.length} cases failed: ${failed.slice(0, 3).join('; ')})` : ''}, see ${childLog}`;
    // The first lines the sanitizer printed about the errors.
    const lines = all.split('\n').filter((l) => l.startsWith('========='));
    for (const l of lines.slice(0, 20)) say(`  ${l}`);
  }
  say(`${mode}: ${row.status}${row.detail ? `: ${row.detail}` : ''} (${row.cases} cases, ${row.seconds} s)`);
  return row;
}

function findSanitizer() {
  if (args.sanitizer) return args.sanitizer;
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/local/cuda/bin']) {
    if (!dir) continue;
    const file = path.join(dir, 'compute-sanitizer');
    if (existsSync(file)) return file;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Facts about the machine and the checkout, each optional.

function nvidiaSmi() {
  const r = spawnSync('nvidia-smi', ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'], { encoding: 'utf8' });
  if (r.status !== 0 || !r.stdout) return null;
  const first = r.stdout.trim().split('\n').find((l) => !l.startsWith('name'));
  if (!first) return null;
  const [name, driver, memory] = first.split(',').map((s) => s.trim());
  return { name, driver, memory };
}

/** The commit of the checkout, read from .git without the git binary (CONVNET_COMMIT wins). */
function gitCommit() {
  if (process.env.CONVNET_COMMIT) return process.env.CONVNET_COMMIT;
  try {
    let gitDir = path.join(root, '.git');
    // In a worktree or submodule .git is a file naming the real folder.
    if (statSync(gitDir).isFile()) {
      const target = readFileSync(gitDir, 'utf8').match(/^gitdir: (.*)$/m)?.[1];
      if (!target) return null;
      gitDir = path.resolve(root, target.trim());
    }
    return resolveHead(gitDir);
  } catch {
    return null;
  }
}

function resolveHead(gitDir) {
  try {
    const head = readFileSync(path.join(gitDir, 'HEAD'), 'utf8').trim();
    const ref = head.match(/^ref: (.*)$/)?.[1];
    if (!ref) return head;
    // A worktree keeps its refs in the common folder.
    const common = existsSync(path.join(gitDir, 'commondir'))
      ? path.resolve(gitDir, readFileSync(path.join(gitDir, 'commondir'), 'utf8').trim())
      : gitDir;
    for (const dir of [gitDir, common]) {
      const file = path.join(dir, ref);
      if (existsSync(file)) return readFileSync(file, 'utf8').trim();
    }
    const packed = readFileSync(path.join(common, 'packed-refs'), 'utf8');
    return packed.split('\n').find((l) => l.endsWith(` ${ref}`))?.split(' ')[0] ?? null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Results: JSON, then the table, last.

const rows = runMain ? summarize(results).filter((r) => !only || only.includes(r.op)) : [];
const oomPass = !oom || oom.status === 'pass';
const rtcPass = !rtc || rtc.status !== 'fail';
const copyPass = !copyRace || copyRace.status !== 'fail';
const pass = rows.every((r) => r.pass) && oomPass && rtcPass && copyPass && sanitizers.every((s) => s.status !== 'fail');

const report = {
  device: { ...info, driver: gpu?.driver ?? null, nvidiaSmi: gpu },
  reference,
  peer,
  date: new Date().toISOString(),
  commit,
  node: process.version,
  build,
  kernels: KERNELS,
  args: { seed, small: args.small, all: args.all, sanitize: args.sanitize ?? null, only, cpu: args.cpu },
  tolerance: TOL,
  summary: rows,
  cases: results,
  outOfMemory: oom,
  runtimeCompile: rtc,
  copyRace,
  sanitizers,
  pass,
};
writeFileSync(path.join(out, 'gpu-check.json'), `${JSON.stringify(report, null, 2)}\n`);
say(`results: ${path.join(out, 'gpu-check.json')}, ${logFile}`);

const table = [['op', 'cases', 'max fwd err', 'max grad err', 'result']];
for (const r of rows) table.push([r.op, String(r.cases), fmtErr(r.fwdErr), fmtErr(r.gradErr), r.status]);
if (rtc) table.push(['cuda.compile', '1', fmtErr(rtc.fwdErr ?? null), '-', rtc.status]);
if (copyRace) table.push(['copy race', '1', '-', '-', copyRace.status]);
if (oom) table.push(['out of memory', '1', '-', '-', oom.status]);
for (const s of sanitizers) table.push([`${s.tool} (--small)`, String(s.cases ?? 0), '-', '-', s.errors ? `${s.status} (${s.errors} errors)` : s.status]);
const widths = table[0].map((_, j) => Math.max(...table.map((row) => row[j].length)));
const line = (row) => row.map((cell, j) => (j === 0 || j === row.length - 1 ? cell.padEnd(widths[j]) : cell.padStart(widths[j]))).join(' | ').trimEnd();
say();
say(line(table[0]));
say(widths.map((w) => '-'.repeat(w)).join('-|-'));
for (const row of table.slice(1)) say(line(row));
const failed = rows.filter((r) => !r.pass).length + (oomPass ? 0 : 1) + (rtcPass ? 0 : 1) + (copyPass ? 0 : 1) + sanitizers.filter((s) => s.status === 'fail').length;
say(`${pass ? 'PASS' : `FAIL (${failed} rows)`}: ${device} against ${reference}, ${results.length} cases`);
process.exit(pass ? 0 : 1);
