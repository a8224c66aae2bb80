/**
 * The kernel benchmark (bench conv, bench alexnet) and what it stands on: the queue markers and
 * cache flush, the cuDNN loader's failures (with fake libcudnn files built here with g++), the
 * scoring (normwise error, fast_1 / fast_2), an end-to-end `bench conv` on cpu:0 (table, JSON,
 * HTML) beside PyTorch when python3 has torch, `bench alexnet` on two CPU queues, and the
 * prepared GPU run in its CPU mode. The GPU paths run only where a CUDA device is; otherwise they
 * skip, saying why.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { bestOfRounds, dropoutCheck, normwiseError, summarize, type KernelRow } from '../bench/conv.js';
import { stats } from '../bench/harness.js';
import { renderHtml } from '../bench/html.js';
import { benchLayers } from '../bench/layers.js';
import { findPython } from '../bench/peers.js';
import * as cn from '../src/index.js';
import { native } from '../src/native.js';
import { ensureDist, trackLeaks } from './helpers.js';

trackLeaks();

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const hasGpu = cn.devices().some((d) => d.kind === 'cuda');
const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => existsSync(p));
const torch = findPython(false);
let tmp: string;

// Every entry point the loader resolves, in its order (native/bench/cudnn_loader.cc).
const SYMBOLS = ['GetVersion', 'GetErrorString', 'Create', 'Destroy', 'SetStream', 'CreateTensorDescriptor',
  'SetTensor4dDescriptor', 'DestroyTensorDescriptor', 'CreateFilterDescriptor', 'SetFilter4dDescriptor',
  'DestroyFilterDescriptor', 'CreateConvolutionDescriptor', 'SetConvolution2dDescriptor', 'SetConvolutionGroupCount',
  'SetConvolutionMathType', 'DestroyConvolutionDescriptor', 'FindConvolutionForwardAlgorithmEx',
  'FindConvolutionBackwardDataAlgorithmEx', 'FindConvolutionBackwardFilterAlgorithmEx', 'ConvolutionForward',
  'ConvolutionBackwardData', 'ConvolutionBackwardFilter'].map((s) => `cudnn${s}`);

/** A shared library exporting cudnnGetVersion (returning `version`) and the given other symbols. */
function fakeCudnn(name: string, version: number | null, symbols: string[]): string {
  const src = path.join(tmp, `${name}.cc`);
  const lib = path.join(tmp, `${name}.so`);
  const body = [
    ...(version === null ? [] : [`extern "C" unsigned long cudnnGetVersion() { return ${version}; }`]),
    ...symbols.filter((s) => s !== 'cudnnGetVersion').map((s) => `extern "C" int ${s}() { return 0; }`),
  ];
  writeFileSync(src, `${body.join('\n')}\n`);
  const r = spawnSync('g++', ['-shared', '-fPIC', '-o', lib, src], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`g++ failed: ${r.stderr}`);
  return lib;
}

function runTs(script: string, args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, script), ...args], {
    cwd: root, encoding: 'utf8', timeout: 400_000, env: { ...process.env, ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, out: `${r.stdout}${r.stderr}` };
}

/** buildInfo() in a fresh process (the loader's answer is kept for the life of a process). */
function buildInfoWith(env: Record<string, string>): cn.BuildInfo {
  const code = "import('./src/index.ts').then((cn) => console.log(JSON.stringify(cn.buildInfo())))";
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', code], { cwd: root, encoding: 'utf8', env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as cn.BuildInfo;
}

beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'convnet-bench-test-'));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('queue markers and the cache flush', () => {
  it('time the work queued between them on a CPU device, readable only after synchronize', async () => {
    const a = native.timerMark('cpu:0');
    const bytes = native.l2Flush('cpu:0');
    const b = native.timerMark('cpu:0');
    expect(bytes).toBeGreaterThanOrEqual(32 * 2 ** 20);
    expect(() => native.timerElapsed(a, b)).toThrow(/was not reached yet; synchronize the device first/);
    await cn.synchronize('cpu:0');
    const ms = native.timerElapsed(a, b);
    // Writing 32 MiB or more takes a measurable time; far below a minute.
    expect(ms).toBeGreaterThan(0);
    expect(ms).toBeLessThan(60_000);
    expect(native.timerElapsed(a, a)).toBe(0);
  });

  it('refuse markers of two devices', async () => {
    const a = native.timerMark('cpu:0');
    const b = native.timerMark('cpu:1');
    await Promise.all([cn.synchronize('cpu:0'), cn.synchronize('cpu:1')]);
    expect(() => native.timerElapsed(a, b)).toThrow(cn.DeviceError);
    expect(() => native.timerElapsed(a, b)).toThrow('timerElapsed: the markers are on two devices, cpu:0 and cpu:1');
  });
});

describe('the cuDNN loader', () => {
  it('says why a library is refused, in one line', () => {
    const old = fakeCudnn('cudnn8', 8907, []);
    expect(native.cudnnTryLoad(old, [])).toEqual({
      outcome: 'rejected', path: old, version: '8.9.7', versionNumber: 8907,
      reason: `cuDNN at ${old} is version 8.9.7; version 9 is needed`,
    });
    const partial = fakeCudnn('cudnn9-partial', 90100, SYMBOLS.filter((s) => s !== 'cudnnFindConvolutionForwardAlgorithmEx'));
    expect(native.cudnnTryLoad(partial, [])).toMatchObject({
      outcome: 'rejected', version: '9.1.0', reason: `cuDNN at ${partial} lacks cudnnFindConvolutionForwardAlgorithmEx`,
    });
    const noVersion = fakeCudnn('cudnn-noversion', null, ['cudnnCreate']);
    expect(native.cudnnTryLoad(noVersion, []).reason).toBe(`cuDNN at ${noVersion} lacks cudnnGetVersion`);
    const absent = native.cudnnTryLoad(path.join(tmp, 'nothing-here.so'), []);
    expect(absent.outcome).toBe('absent');
    expect(absent.reason).toMatch(/nothing-here\.so: cannot open shared object file/);
    expect(absent.reason).not.toMatch(/\n/);
  });

  it('reports through buildInfo(): not found, with every place it tried', (ctx) => {
    const missing = path.join(tmp, 'no-such-dir');
    const python = path.join(tmp, 'no-python3');
    const b = buildInfoWith({ CONVNET_CUDNN_PATH: missing, CONVNET_PYTHON: python });
    if (b.cudnn === 'found') {
      console.log(`skipped: this machine has cuDNN on the loader path (${b.cudnnPath})`);
      ctx.skip();
    }
    expect(b.cudnn).toBe('not found');
    expect(b.cudnnReason).toBe(
      `cuDNN not found (tried CONVNET_CUDNN_PATH=${missing}, libcudnn.so.9 on the loader path, ${python} could not list its site-packages)`);
  });

  it('reports through buildInfo(): a wrong version, and a complete library as found', () => {
    const old = fakeCudnn('cudnn8b', 8907, []);
    const b8 = buildInfoWith({ CONVNET_CUDNN_PATH: old });
    expect(b8).toMatchObject({ cudnn: 'unusable', cudnnVersion: '8.9.7', cudnnPath: old, cudnnReason: `cuDNN at ${old} is version 8.9.7; version 9 is needed` });
    // A folder holding libcudnn.so.9 works too.
    const dir = mkdtempSync(path.join(tmp, 'lib-'));
    const full = fakeCudnn('cudnn9-full', 90100, SYMBOLS);
    writeFileSync(path.join(dir, 'libcudnn.so.9'), readFileSync(full));
    const b9 = buildInfoWith({ CONVNET_CUDNN_PATH: dir });
    expect(b9).toMatchObject({ cudnn: 'found', cudnnVersion: '9.1.0', cudnnPath: path.join(dir, 'libcudnn.so.9') });
    expect(b9.cudnnReason).toBeUndefined();
  });

  it('refuses to plan on a CPU device or before a library is loaded, with a typed error', () => {
    expect(() => native.cudnnPlan('cpu:0', 'fwd', benchLayers('alexnet-mini', 2, 0.25)[0].convInts!, 'fp32')).toThrow(cn.DeviceError);
  });
});

describe('the CUDA side without a GPU', () => {
  it('drives a fake cuDNN over the emulated CUDA runtime: every pass wired right, errors typed, markers and flush', () => {
    const r = spawnSync('bash', [path.join(root, 'native', 'bench', 'emu', 'build.sh')], {
      cwd: root, encoding: 'utf8', timeout: 400_000, env: { ...process.env, CN_BENCH_EMU_OUT: path.join(tmp, 'bench-emu') },
    });
    const out = `${r.stdout}${r.stderr}`;
    expect(r.status, out).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.filter((l) => l.startsWith('FAIL '))).toEqual([]);
    // 4 shapes x 3 passes x 2 precisions x 3 checks, and 7 others.
    expect(lines.filter((l) => l.startsWith('ok '))).toHaveLength(4 * 3 * 2 * 3 + 7);
    expect(lines.at(-1)).toBe('PASS: 0 failure(s)');
  });
});

describe('scoring', () => {
  const row = (trial: string, driver: string, ms: number, correct: boolean): KernelRow => ({
    trial, driver, layer: trial, pass: 'fwd', kind: 'conv', what: '', version: '', math: 'fp32', ms: stats([ms]), flops: 1, bytes: 1,
    tflops: null, gbps: null, peakFraction: null, error: 0, correct, check: '',
  });

  it('normwise error and the dropout mask check', () => {
    expect(normwiseError(Float32Array.of(1, 2, 2), Float32Array.of(1, 2, 2))).toBe(0);
    expect(normwiseError(Float32Array.of(1, 2, 2.3), Float32Array.of(1, 2, 2))).toBeCloseTo(0.1, 6);
    expect(normwiseError(Float32Array.of(NaN, 0), Float32Array.of(1, 0))).toBe(Infinity);
    expect(normwiseError(Float32Array.of(1), Float32Array.of(1, 2))).toBe(Infinity);
    const x = Float32Array.from({ length: 1000 }, (_, i) => i + 1);
    const y = x.map((v, i) => (i % 2 ? 0 : 2 * v));
    expect(dropoutCheck(y, x, 0.5)).toEqual({ ok: true, zeroShare: 0.5 });
    expect(dropoutCheck(x.map((v) => 2 * v), x, 0.5).ok).toBe(false);
    expect(dropoutCheck(y.map((v) => v * 1.1), x, 0.5).ok).toBe(false);
  });

  it('fast_1 / fast_2 count only rows where both results agree, over all rows', () => {
    const rows = [
      row('a', 'convnet', 1, true), row('a', 'cudnn', 3, true), // 3x: fast_1 and fast_2
      row('b', 'convnet', 2, true), row('b', 'cudnn', 3, true), // 1.5x: fast_1
      row('c', 'convnet', 2, true), row('c', 'cudnn', 1, true), // 0.5x: neither
      row('d', 'convnet', 1, true), row('d', 'cudnn', 9, false), // the peer is wrong: not counted
    ];
    const s = summarize(rows, 'cudnn')!;
    expect(s).toMatchObject({ rows: 4, correct: 3, fast1: 0.5, fast2: 0.25 });
    expect(s.geomeanSpeedup).toBeCloseTo(Math.cbrt(3 * 1.5 * 0.5), 10);
    expect(summarize(rows, 'pytorch')).toBeNull();
  });

  it('--rounds keeps each row\'s best round, every round\'s median, and a failure from any round', () => {
    const r1 = [row('a', 'convnet', 2, true), row('a', 'pytorch', 1, true), row('b', 'convnet', 5, true)];
    const r2 = [row('a', 'convnet', 1, true), row('a', 'pytorch', 3, false), row('b', 'convnet', 4, true)];
    r2[1].error = 0.5;
    r2[1].check = 'DIFFERS from ours';
    const merged = bestOfRounds([r1, r2]);
    expect(merged.map((r) => [r.trial, r.driver, r.ms.median, r.roundMedians, r.correct])).toEqual([
      ['a', 'convnet', 1, [2, 1], true],
      ['a', 'pytorch', 1, [1, 3], false],
      ['b', 'convnet', 4, [5, 4], true],
    ]);
    expect(merged[1]).toMatchObject({ error: 0.5, check: 'DIFFERS from ours' });
    expect(bestOfRounds([r1])).toBe(r1);
  });
});

describe('bench conv on cpu:0', () => {
  it('runs every layer and pass, checks each driver against ours, and writes the table, JSON and HTML', () => {
    if (hasGpu) console.log('note: this machine has a GPU; this test still runs on cpu:0');
    if ('reason' in torch) console.log(`note: the pytorch driver will be unavailable: ${torch.reason}`);
    const old = fakeCudnn('cudnn8-bench', 8907, []);
    const json = path.join(tmp, 'conv', 'conv.json');
    const r = runTs('bench/main.ts', ['conv', '--model', 'alexnet-mini', '--device', 'cpu:0', '--batch', '2', '--width', '0.25',
      '--iters', '2', '--warmup', '1', '--json', json], { CONVNET_CUDNN_PATH: old });
    expect(r.status, r.out).toBe(0);
    // cuDNN's refusal is one line, and the rest of the suite runs.
    expect(r.stdout).toContain(`cudnn: unavailable: cuDNN at ${old} is version 8.9.7; version 9 is needed`);
    expect(r.stdout).toMatch(/^layer +pass +what +convnet ms +rate +%peak +err/m);
    expect(r.stdout).toContain('note: nothing was timed on a GPU');

    const report = JSON.parse(readFileSync(json, 'utf8'));
    const layers = benchLayers('alexnet-mini', 2, 0.25);
    const trials = layers.flatMap((l) => l.passes.map((p) => `${l.name} ${p.replace('_', '-')}`));
    expect(trials).toHaveLength(40);
    const drivers = 'reason' in torch ? ['convnet'] : ['convnet', 'pytorch'];
    for (const d of drivers) {
      const mine = report.results.filter((x: KernelRow) => x.driver === d);
      expect(mine.map((x: KernelRow) => x.trial).sort(), d).toEqual([...trials].sort());
      for (const x of mine as KernelRow[]) {
        expect(x.correct, `${d} ${x.trial}: ${x.check}`).toBe(true);
        expect(x.ms.n).toBe(2);
        expect(x.ms.median).toBeGreaterThan(0);
        if (x.kind === 'conv' || x.kind === 'linear') expect(x.tflops).toBeGreaterThan(0);
        else expect(x.gbps).toBeGreaterThan(0);
        if (d !== 'convnet' && x.kind !== 'dropout') expect(x.error).toBeLessThan(1e-4);
      }
    }
    expect(report.skipped).toContainEqual({ driver: 'cudnn', reason: `cuDNN at ${old} is version 8.9.7; version 9 is needed` });
    if ('reason' in torch) {
      expect(report.skipped.map((s: { driver: string }) => s.driver)).toContain('pytorch');
    } else {
      expect(r.stdout).toMatch(/^summary convnet vs pytorch: geomean [\d.]+x over 40 correct of 40 layer x pass rows; fast_1 [\d.]+, fast_2 [\d.]+$/m);
      expect(report.notes.summaries[0]).toMatchObject({ peer: 'pytorch', rows: 40, correct: 40 });
    }
    expect(report.notes.environment.device.id).toBe('cpu:0');
    expect(report.notes.environment.cudnn).toMatchObject({ status: 'unusable', version: '8.9.7' });
    expect(report.environment.commit).toBeTruthy();
    expect(report.notes.gpu).toBe('nothing was timed on a GPU');

    // The HTML page: one roofline point per kernel that does arithmetic, one bar per row.
    const html = readFileSync(path.join(tmp, 'conv', 'conv.html'), 'utf8');
    const arithmetic = report.results.filter((x: KernelRow) => x.tflops !== null).length;
    expect(arithmetic).toBe(24 * drivers.length);
    expect(html.match(/<circle class="point"/g)).toHaveLength(arithmetic);
    expect(html.match(/<rect class="bar"/g)).toHaveLength(report.results.length);
    expect(html).toMatch(/<polyline class="roof" data-peak="fp32"/);
    // Self-contained: nothing is fetched.
    expect(html).not.toMatch(/(src|href)="https?:/);
  });

  it('is listed by convnet bench --help', () => {
    const r = runTs('src/cli/main.ts', ['bench', '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^ {2}conv {5}every AlexNet/m);
    expect(r.stdout).toMatch(/^ {2}alexnet {2}the whole training step/m);
  });

  it('rejects bad options with a one-line reason', () => {
    const r = runTs('bench/main.ts', ['conv', '--precision', 'fp16']);
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe("bench: --precision must be fp32, tf32 or bf16, received 'fp16'");
  });

  it('--rounds 2 runs every row twice and reports both medians', () => {
    const json = path.join(tmp, 'conv-rounds.json');
    const r = runTs('bench/main.ts', ['conv', '--model', 'alexnet-mini', '--device', 'cpu:0', '--batch', '2', '--width', '0.25',
      '--iters', '1', '--warmup', '0', '--rounds', '2', '--drivers', 'convnet', '--json', json]);
    expect(r.status, r.out).toBe(0);
    expect(r.stdout).toContain('round 2 of 2');
    expect(r.stdout).toContain("(the best of 2 rounds' medians)");
    const report = JSON.parse(readFileSync(json, 'utf8'));
    expect(report.options.rounds).toBe(2);
    expect(report.results).toHaveLength(40);
    for (const x of report.results as KernelRow[]) {
      expect(x.roundMedians).toHaveLength(2);
      expect(x.ms.median).toBe(Math.min(...x.roundMedians!));
    }
    const bad = runTs('bench/main.ts', ['conv', '--rounds', '0']);
    expect(bad.status).toBe(2);
    expect(bad.stderr.split('\n')[0]).toBe("bench: --rounds must be an integer in [1, 20], received '0'");
    const other = runTs('bench/main.ts', ['alexnet', '--rounds', '2']);
    expect(other.status).toBe(2);
    expect(other.stderr.split('\n')[0]).toBe('bench: --rounds applies to the conv suite only, not alexnet');
  });
});

describe('the HTML page', () => {
  it('renders in headless Chromium: the bars, and a roofline with its peak lines and one point per kernel', (ctx) => {
    if (!chromium) {
      console.log('skipped: no Chromium on this machine (apt-get install chromium)');
      ctx.skip();
    }
    const layers = benchLayers('alexnet', 2, 1).filter((l) => ['conv1', 'fc6', 'relu1'].includes(l.name));
    const rows: KernelRow[] = [];
    for (const l of layers) {
      for (const pass of l.passes) {
        for (const [driver, ms] of [['convnet', 2], ['cudnn', 1]] as const) {
          const flops = l.flops[pass] ?? 0;
          rows.push({
            trial: `${l.name} ${pass.replace('_', '-')}`, driver, layer: l.name, pass, kind: l.kind, what: l.what, version: driver, math: 'fp32',
            ms: stats([ms]), flops, bytes: l.bytes[pass]!, tflops: flops ? flops / 1e-3 / ms / 1e12 : null, gbps: 1, peakFraction: null,
            error: 0, correct: driver === 'convnet' || l.name !== 'fc6', check: '',
          });
        }
      }
    }
    const peak = { tflops: { fp32: 67, tf32: 494.7, bf16: 989.4 }, bandwidthGBs: 4800, source: 'test' };
    const file = path.join(tmp, 'page.html');
    writeFileSync(file, renderHtml({ title: 'a test page', rows, layers, summaries: [], peak, copyGBs: 4000, notes: { device: 'test' } }));
    const r = spawnSync(chromium!, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${path.join(tmp, 'profile')}`,
      '--dump-dom', `file://${file}`], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(0);
    const dom = r.stdout;
    expect(dom.match(/<svg /g)).toHaveLength(2);
    // conv1 and fc6 have three passes each, two drivers: 12 points; relu1 has none.
    expect(dom.match(/<circle class="point"/g)).toHaveLength(12);
    expect(dom.match(/<rect class="bar"/g)).toHaveLength(rows.length);
    expect(dom.match(/<polyline class="roof"/g)).toHaveLength(2);
    expect(dom).toContain('fp32 peak 67.0 TFLOP/s');
    // The wrong rows (cuDNN on fc6) are drawn faded.
    expect(dom.match(/data-driver="cudnn" data-trial="fc6 [^"]+" cx="[\d.]+" cy="[\d.]+" r="4" fill="#76b900" fill-opacity="0.3"/g)).toHaveLength(3);
  });
});

describe('bench alexnet', () => {
  it('times the training step with one tower and with two towers on two CPU queues', () => {
    const json = path.join(tmp, 'alexnet.json');
    const r = runTs('bench/main.ts', ['alexnet', '--model', 'alexnet-mini', '--width', '0.25', '--batch', '4', '--iters', '2',
      '--warmup', '1', '--device', 'cpu:0,cpu:1', '--json', json]);
    expect(r.status, r.out).toBe(0);
    const report = JSON.parse(readFileSync(json, 'utf8'));
    expect(report.results.map((x: { towers: number }) => x.towers)).toEqual([1, 2]);
    for (const x of report.results) {
      expect(x.imagesPerSec).toBeGreaterThan(0);
      expect(Number.isFinite(x.lossLast)).toBe(true);
    }
    expect(report.results[1].devices).toEqual(['cpu:0', 'cpu:1']);
    expect(r.stdout).toMatch(/^two towers \/ one tower: [\d.]+x the images\/s$/m);
  });
});

describe('the prepared GPU run', () => {
  it('runs its steps in CPU mode from the compiled bench, into one folder', () => {
    const build = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.bench.json'],
      { cwd: root, encoding: 'utf8' });
    expect(build.status, `${build.stdout}${build.stderr}`).toBe(0);
    // The GPU check in it loads dist/: compile it unless it is newer than every source file.
    ensureDist(root);
    const out = path.join(tmp, 'gpu-bench');
    const r = spawnSync('bash', [path.join(root, 'bench', 'gpu-check', 'run-bench-on-gpu.sh')], {
      cwd: root, encoding: 'utf8', timeout: 400_000, env: { ...process.env, BENCH_CPU: '1', OUT: out, NODE: process.execPath },
    });
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
    expect(readFileSync(path.join(out, 'steps.txt'), 'utf8').trim().split('\n')).toEqual([
      'gpu-check 0', 'conv-alexnet-mini-fp32 0', 'conv-alexnet-mini-tf32 0', 'alexnet 0',
    ]);
    for (const f of ['conv-alexnet-mini-fp32.json', 'conv-alexnet-mini-fp32.html', 'conv-alexnet-mini-tf32.json', 'alexnet.json', 'gpu-check/gpu-check.json']) {
      expect(existsSync(path.join(out, f)), f).toBe(true);
    }
    const tf32 = JSON.parse(readFileSync(path.join(out, 'conv-alexnet-mini-tf32.json'), 'utf8'));
    expect(tf32.options.precision).toBe('tf32');
    expect(tf32.results.filter((x: KernelRow) => x.driver === 'convnet').every((x: KernelRow) => x.math === 'fp32')).toBe(true);
  });
});

describe('on a GPU', () => {
  it('bench conv races ours against cuDNN and PyTorch on cuda:0', (ctx) => {
    if (!hasGpu) {
      console.log('skipped: no CUDA device here (the prepared run is bench/gpu-check/run-bench-on-gpu.sh)');
      ctx.skip();
    }
    const json = path.join(tmp, 'gpu', 'conv.json');
    const r = runTs('bench/main.ts', ['conv', '--model', 'alexnet-mini', '--device', 'cuda:0', '--batch', '8', '--iters', '3',
      '--warmup', '1', '--json', json]);
    expect(r.status, r.out).toBe(0);
    const report = JSON.parse(readFileSync(json, 'utf8'));
    expect(report.results.filter((x: KernelRow) => x.driver === 'convnet')).toHaveLength(40);
    if (report.notes.environment.cudnn.status === 'found') {
      expect(report.results.filter((x: KernelRow) => x.driver === 'cudnn' && x.correct)).toHaveLength(15);
    } else {
      console.log(`note: cuDNN: ${report.notes.environment.cudnn.reason}`);
    }
  });
});
