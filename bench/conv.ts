/**
 * The `conv` suite: every layer of AlexNet or AlexNet-mini (bench/layers.ts), each pass timed
 * by each driver side by side:
 *   convnet     our kernels, launched directly (no autograd), on --device; for conv layers
 *               kernel version 1 (im2col + SGEMM), the default;
 *   convnet-v2  conv layers only, on CUDA devices: our version-2 kernels (implicit GEMM), checked
 *               against the convnet row like every other driver;
 *   convnet-v3  conv forward passes only, on CUDA devices, with --precision tf32 or bf16: our
 *               version-3 tensor-core kernel (the gradients of version 3 are version 2's);
 *   cudnn    cuDNN 9 opened at run time (src/cudnn.ts), on the same CUDA device, stream and
 *            buffers, with the fastest algorithm cudnnFind*AlgorithmEx reports (convolutions);
 *   pytorch  bench/peers/torch_kernels.py in a child process, the same shapes and the same input
 *            data (passed as raw float32 files), cudnn.benchmark on; an independent anchor.
 * Before anything is timed, every driver's output for a pass is compared with ours on the same
 * inputs (normwise relative error ||theirs - ours|| / ||ours||); a result over the tolerance of
 * the precision is marked wrong and left out of the fast_1 / fast_2 scores.
 *
 * Our kernels other than convnet-v3 are float32 only: --precision tf32 or bf16 changes what cuDNN
 * and PyTorch may use, and ours still run fp32 (the rows say so). fp32 means no tensor-core math on any side: cuDNN
 * gets CUDNN_FMA_MATH, PyTorch runs with TF32 off.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import * as cn from '../src/index.js';
import { normwiseError } from '../src/bench.js';
import { cudnnStatus } from '../src/cudnn.js';
import { native, type NativeCudnnPlan } from '../src/native.js';
import { launchInPlace } from '../src/ops/launch.js';
import { empty, type Tensor } from '../src/tensor.js';
import {
  fixed, progress, stats, table, type BenchOptions, type Stats, type Suite, type SuiteReport, type TrialResult,
} from './harness.js';
import { randomLabels } from './alexnet_mini.js';
import { renderHtml } from './html.js';
import { benchLayers, DROPOUT_P, LRN, MODELS, PASS_LABEL, poolInts, type BenchLayer, type Model, type Pass } from './layers.js';
import { peakOf, type Peak, type Precision } from './machine.js';
import { findPython, peerScript, runPeer } from './peers.js';
import { copyBandwidth, timeQueued } from './timing.js';

/** Normwise relative error a correct result stays under, by the math it was allowed. */
export const TOLERANCE: Record<Precision, number> = { fp32: 1e-4, tf32: 1e-2, bf16: 5e-2 };

export const DRIVERS = ['convnet', 'convnet-v2', 'convnet-v3', 'cudnn', 'pytorch'] as const;
export type DriverName = (typeof DRIVERS)[number];

export interface KernelRow extends TrialResult {
  layer: string;
  pass: Pass;
  kind: string;
  what: string;
  /** Which kernel (version, algorithm) and which math it ran with. */
  version: string;
  math: Precision;
  ms: Stats;
  flops: number;
  bytes: number;
  tflops: number | null;
  gbps: number | null;
  /** Achieved over peak: FLOP/s over the peak of its math, or GB/s over the measured copy bandwidth. */
  peakFraction: number | null;
  /** ||theirs - ours|| / ||ours|| (0 for ours); null when not comparable. */
  error: number | null;
  correct: boolean;
  check: string;
  /** With --rounds: this row's median in every round, in order (the row is its best round). */
  roundMedians?: number[];
}

/**
 * Merges the rows of several rounds: per (trial, driver), the row of the round with the lowest
 * median, with every round's median kept in `roundMedians`; a row is correct only if it was
 * correct in every round, and its error is the largest seen. Rows keep the first round's order.
 */
export function bestOfRounds(rounds: KernelRow[][]): KernelRow[] {
  if (rounds.length === 1) return rounds[0];
  const key = (r: KernelRow) => `${r.trial}\u0000${r.driver}`;
  const all = new Map<string, KernelRow[]>();
  for (const round of rounds) for (const r of round) all.set(key(r), [...(all.get(key(r)) ?? []), r]);
  const out: KernelRow[] = [];
  for (const [, rs] of all) {
    const best = rs.reduce((a, b) => (b.ms.median < a.ms.median ? b : a));
    const errors = rs.map((r) => r.error).filter((e): e is number => e !== null);
    out.push({
      ...best,
      roundMedians: rs.map((r) => r.ms.median),
      correct: rs.every((r) => r.correct),
      error: errors.length ? Math.max(...errors) : best.error,
      check: rs.every((r) => r.correct) ? best.check : (rs.find((r) => !r.correct) ?? best).check,
    });
  }
  return out;
}

interface Inputs {
  tensors: Tensor[];
  x: Tensor;
  w?: Tensor;
  dy?: Tensor;
  labels?: Tensor;
}

function makeInputs(l: BenchLayer, device: string, seed: number): Inputs {
  const t: Tensor[] = [];
  const keep = (x: Tensor) => (t.push(x), x);
  const x = keep(cn.randn(l.x, { seed, device }));
  const inputs: Inputs = { tensors: t, x };
  if (l.w) {
    const fanIn = l.w.slice(1).reduce((a, b) => a * b, 1);
    inputs.w = keep(cn.randn(l.w, { seed: seed + 1, std: 1 / Math.sqrt(fanIn), device }));
  }
  if (l.kind === 'xent') {
    inputs.labels = keep(cn.tensor(randomLabels(l.x[0], seed, l.x[1]), [l.x[0]], { device }));
  } else {
    inputs.dy = keep(cn.randn(l.y, { seed: seed + 2, device }));
  }
  return inputs;
}

/**
 * Our kernel for one pass: the output tensors (made once) and a function that queues the pass.
 * `main` is the output the drivers are compared on.
 */
function ourPass(l: BenchLayer, pass: Pass, inp: Inputs, device: string, convVersion = 1): { outs: Tensor[]; main: Tensor; run: () => void } {
  const f32 = (shape: number[]) => empty(shape, 'float32', device);
  const { x, w, dy, labels } = inp;
  switch (l.kind) {
    case 'conv': {
      const ints = [...l.convInts!, convVersion];
      if (pass === 'fwd') {
        const y = f32(l.y);
        return { outs: [y], main: y, run: () => launchInPlace('conv2d_forward', [y, x, w!, null], ints) };
      }
      if (pass === 'bwd_data') {
        const dx = f32(l.x);
        return { outs: [dx], main: dx, run: () => launchInPlace('conv2d_backward_data', [dx, dy!, w!], ints) };
      }
      const dw = f32(l.w!);
      return { outs: [dw], main: dw, run: () => launchInPlace('conv2d_backward_filter', [dw, null, x, dy!], ints) };
    }
    case 'linear': {
      const ints = [l.x[0], l.x[1], l.y[1]];
      if (pass === 'fwd') {
        const y = f32(l.y);
        return { outs: [y], main: y, run: () => launchInPlace('linear_forward', [y, x, w!, null], ints) };
      }
      if (pass === 'bwd_data') {
        const dx = f32(l.x);
        return { outs: [dx], main: dx, run: () => launchInPlace('linear_backward_data', [dx, dy!, w!], ints) };
      }
      const dw = f32(l.w!);
      return { outs: [dw], main: dw, run: () => launchInPlace('linear_backward_weight', [dw, null, x, dy!], ints) };
    }
    case 'relu': {
      const out = f32(l.x);
      const n = [out.size];
      return pass === 'fwd'
        ? { outs: [out], main: out, run: () => launchInPlace('relu_forward', [out, x], n) }
        : { outs: [out], main: out, run: () => launchInPlace('relu_backward', [out, x, dy!], n) };
    }
    case 'dropout': {
      const out = f32(l.x);
      const ints = [out.size, 7];
      const src = pass === 'fwd' ? x : dy!;
      return { outs: [out], main: out, run: () => launchInPlace('dropout', [out, src], ints, [DROPOUT_P]) };
    }
    case 'lrn': {
      const ints = [...l.x, LRN.size];
      const floats = [LRN.alpha, LRN.beta, LRN.k];
      const y = f32(l.x);
      const scale = f32(l.x);
      const fwd = () => launchInPlace('lrn_forward', [y, scale, x], ints, floats);
      if (pass === 'fwd') return { outs: [y, scale], main: y, run: fwd };
      fwd();
      const dx = f32(l.x);
      return { outs: [y, scale, dx], main: dx, run: () => launchInPlace('lrn_backward', [dx, x, y, scale, dy!], ints, floats) };
    }
    case 'pool': {
      const ints = poolInts(l);
      const y = f32(l.y);
      const idx = empty(l.y, 'int32', device);
      const fwd = () => launchInPlace('maxpool2d_forward', [y, idx, x], ints);
      if (pass === 'fwd') return { outs: [y, idx], main: y, run: fwd };
      fwd();
      const dx = f32(l.x);
      return { outs: [y, idx, dx], main: dx, run: () => launchInPlace('maxpool2d_backward', [dx, dy!, idx], ints) };
    }
    case 'xent': {
      const [N, M] = l.x;
      const loss = f32([]);
      const probs = f32([N, M]);
      const fwd = () => launchInPlace('softmax_xent_forward', [loss, probs, x, labels!], [N, M]);
      if (pass === 'fwd') return { outs: [loss, probs], main: loss, run: fwd };
      fwd();
      const gout = cn.full([], 1, { device });
      const dlogits = f32([N, M]);
      return { outs: [loss, probs, gout, dlogits], main: dlogits, run: () => launchInPlace('softmax_xent_backward', [dlogits, probs, labels!, gout], [N, M]) };
    }
  }
}

export { normwiseError };

/**
 * Dropout masks come from each library's own generator, so outputs cannot be compared element
 * by element: every element must be 0 or in / (1 - p), and the share of zeros near p.
 */
export function dropoutCheck(out: Float32Array, input: Float32Array, p: number): { ok: boolean; zeroShare: number } {
  let zeros = 0;
  let ok = out.length === input.length;
  const scale = 1 / (1 - p);
  for (let i = 0; ok && i < out.length; i++) {
    if (out[i] === 0) zeros++;
    else if (Math.abs(out[i] - input[i] * scale) > 1e-5 * Math.max(1, Math.abs(input[i] * scale))) ok = false;
  }
  const zeroShare = zeros / Math.max(1, out.length);
  return { ok: ok && Math.abs(zeroShare - p) < 0.05 + 3 / Math.sqrt(Math.max(1, out.length)), zeroShare };
}

function rowFor(l: BenchLayer, pass: Pass, driver: DriverName, version: string, math: Precision, samples: number[],
                peak: Peak | null, copyGBs: number | null, error: number | null, correct: boolean, check: string): KernelRow {
  const ms = stats(samples);
  const flops = l.flops[pass] ?? 0;
  const bytes = l.bytes[pass] ?? 0;
  const seconds = ms.median / 1000;
  const tflops = flops > 0 ? flops / seconds / 1e12 : null;
  const gbps = bytes / seconds / 1e9;
  let peakFraction: number | null = null;
  if (tflops !== null && peak) peakFraction = tflops / peak.tflops[math];
  else if (tflops === null && copyGBs) peakFraction = gbps / copyGBs;
  return {
    trial: `${l.name} ${PASS_LABEL[pass]}`, driver, layer: l.name, pass, kind: l.kind, what: l.what, version, math,
    ms, flops, bytes, tflops, gbps, peakFraction, error, correct, check,
  };
}

interface RunContext {
  opts: BenchOptions;
  device: string;
  kind: 'cpu' | 'cuda';
  precision: Precision;
  layers: BenchLayer[];
  peak: Peak | null;
  copyGBs: number | null;
  /** Folder of the files the PyTorch peer reads (null when it does not run). */
  exchange: string | null;
  drivers: Set<DriverName>;
  cudnnVersion: string | null;
  /** cuDNN passes that ran. */
  cudnnRuns: number;
  failed: { driver: string; error: string }[];
  log: (line: string) => void;
}

/** Our kernels; a second version of one is its own driver (convnet-v2 for conv). */
const OUR_KERNEL: Record<string, string> = {
  conv: 'v1: im2col + SGEMM', linear: 'SGEMM', relu: 'elementwise', dropout: 'counter-based mask', lrn: 'channel window',
  pool: 'argmax, int32 indices', xent: 'row softmax',
};
const ourVersion = (kind: string) => `${OUR_KERNEL[kind] ?? kind}, fp32`;

function writeF32(file: string, a: Float32Array | Int32Array): void {
  writeFileSync(file, Buffer.from(a.buffer, a.byteOffset, a.byteLength));
}

/** Ours on every pass of one layer, then cuDNN on the same inputs. */
async function measureLayer(ctx: RunContext, l: BenchLayer, index: number, bar: ReturnType<typeof progress>,
                            rows: KernelRow[], total: number, done: { n: number }): Promise<void> {
  const { device, opts } = ctx;
  const inp = makeInputs(l, device, opts.seed + 10 * index);
  const timing = { iters: opts.iters, warmup: opts.warmup, flush: true };
  try {
    if (ctx.exchange) {
      const base = path.join(ctx.exchange, l.name);
      writeF32(`${base}.x.f32`, (await inp.x.data()) as Float32Array);
      if (inp.w) writeF32(`${base}.w.f32`, (await inp.w.data()) as Float32Array);
      if (inp.dy) writeF32(`${base}.dy.f32`, (await inp.dy.data()) as Float32Array);
      if (inp.labels) writeF32(`${base}.labels.i32`, (await inp.labels.data()) as Int32Array);
    }
    for (const pass of l.passes) {
      bar.update(`bench conv: ${l.name} ${PASS_LABEL[pass]} (convnet)  ${done.n + 1}/${total}`);
      const ours = ourPass(l, pass, inp, device);
      try {
        ours.run();
        const ref = (await ours.main.data()) as Float32Array;
        let finite = true;
        for (let i = 0; i < ref.length && finite; i++) finite = Number.isFinite(ref[i]);
        let check = finite ? 'reference for the others' : 'NaN or Inf in the output';
        let correct = finite;
        if (l.kind === 'dropout') {
          const src = (await (pass === 'fwd' ? inp.x : inp.dy!).data()) as Float32Array;
          const d = dropoutCheck(ref, src, DROPOUT_P);
          correct = correct && d.ok;
          check = `mask check: ${d.ok ? 'ok' : 'FAILED'}, ${(100 * d.zeroShare).toFixed(1)}% zeros`;
        }
        if (ctx.exchange) writeF32(path.join(ctx.exchange, `${l.name}.${pass}.ours.f32`), ref);
        if (ctx.drivers.has('convnet')) {
          const samples = await timeQueued(device, timing, ours.run);
          rows.push(rowFor(l, pass, 'convnet', ourVersion(l.kind), 'fp32', samples, ctx.peak, ctx.copyGBs, 0, correct, check));
        }

        if (ctx.drivers.has('convnet-v2') && l.kind === 'conv') {
          bar.update(`bench conv: ${l.name} ${PASS_LABEL[pass]} (convnet-v2)  ${done.n + 1}/${total}`);
          rows.push(await measureConvV2(ctx, l, pass, inp, ref, timing));
        }

        if (ctx.drivers.has('convnet-v3') && l.kind === 'conv' && pass === 'fwd') {
          bar.update(`bench conv: ${l.name} ${PASS_LABEL[pass]} (convnet-v3)  ${done.n + 1}/${total}`);
          rows.push(await measureConvV3(ctx, l, pass, inp, ref, timing));
        }

        if (ctx.drivers.has('cudnn') && l.kind === 'conv') {
          bar.update(`bench conv: ${l.name} ${PASS_LABEL[pass]} (cudnn)  ${done.n + 1}/${total}`);
          // A cuDNN failure is cuDNN's row only; if its very first pass fails (the library
          // cannot start here), it is dropped for the rest of the run.
          try {
            rows.push(await measureCudnn(ctx, l, pass, inp, ref, timing));
            ctx.cudnnRuns++;
          } catch (e) {
            const error = `${l.name} ${PASS_LABEL[pass]}: ${e instanceof Error ? e.message : String(e)}`;
            ctx.failed.push({ driver: 'cudnn', error });
            ctx.log(`cudnn: FAILED: ${error}`);
            if (ctx.cudnnRuns === 0) {
              ctx.drivers.delete('cudnn');
              ctx.log('cudnn: dropped for the rest of the run');
            }
          }
        }
      } finally {
        ours.outs.forEach((t) => t.dispose());
      }
      done.n++;
    }
  } finally {
    inp.tensors.forEach((t) => t.dispose());
  }
}

/**
 * Our version-3 conv forward (tensor cores, ctx.precision tf32 or bf16) on one pass, checked
 * against version 1's fp32 output within the precision's tolerance.
 */
async function measureConvV3(ctx: RunContext, l: BenchLayer, pass: Pass, inp: Inputs, ref: Float32Array,
                             timing: { iters: number; warmup: number; flush: boolean }): Promise<KernelRow> {
  // The conv ops' last int: version + 10 * precision (1 tf32, 2 bf16; native/ops/conv2d_cuda.h).
  const v3 = ourPass(l, pass, inp, ctx.device, 3 + 10 * (ctx.precision === 'bf16' ? 2 : 1));
  try {
    v3.run();
    const error = normwiseError((await v3.main.data()) as Float32Array, ref);
    const correct = error <= TOLERANCE[ctx.precision];
    const samples = await timeQueued(ctx.device, timing, v3.run);
    return rowFor(l, pass, 'convnet-v3', `v3: tensor cores, ${ctx.precision}`, ctx.precision, samples, ctx.peak, ctx.copyGBs, error, correct,
      `normwise error ${error.toExponential(1)} against v1 (fp32)`);
  } finally {
    v3.outs.forEach((t) => t.dispose());
  }
}

/** Our version-2 conv kernels (implicit GEMM) on one pass, checked against version 1's output. */
async function measureConvV2(ctx: RunContext, l: BenchLayer, pass: Pass, inp: Inputs, ref: Float32Array,
                             timing: { iters: number; warmup: number; flush: boolean }): Promise<KernelRow> {
  const v2 = ourPass(l, pass, inp, ctx.device, 2);
  try {
    v2.run();
    const error = normwiseError((await v2.main.data()) as Float32Array, ref);
    const correct = error <= TOLERANCE.fp32;
    const samples = await timeQueued(ctx.device, timing, v2.run);
    return rowFor(l, pass, 'convnet-v2', 'v2: implicit GEMM, fp32', 'fp32', samples, ctx.peak, ctx.copyGBs, error, correct,
      `normwise error ${error.toExponential(1)} against v1`);
  } finally {
    v2.outs.forEach((t) => t.dispose());
  }
}

async function measureCudnn(ctx: RunContext, l: BenchLayer, pass: Pass, inp: Inputs, ref: Float32Array,
                            timing: { iters: number; warmup: number; flush: boolean }): Promise<KernelRow> {
  const math = ctx.precision === 'fp32' ? 'fp32' : 'tf32';
  const outShape = pass === 'fwd' ? l.y : pass === 'bwd_data' ? l.x : l.w!;
  const out = empty(outShape, 'float32', ctx.device);
  let plan: NativeCudnnPlan | null = null;
  try {
    const h = (t: Tensor) => t._handle('cudnn');
    const buffers = pass === 'fwd' ? [h(out), h(inp.x), h(inp.w!)]
      : pass === 'bwd_data' ? [h(out), h(inp.dy!), h(inp.w!)] : [h(out), h(inp.x), h(inp.dy!)];
    plan = native.cudnnPlan(ctx.device, pass as 'fwd' | 'bwd_data' | 'bwd_filter', l.convInts!, math);
    const p = plan;
    native.cudnnFind(p, buffers);
    native.cudnnRun(p, buffers);
    const theirs = (await out.data()) as Float32Array;
    const info = native.cudnnPlanInfo(p);
    const error = normwiseError(theirs, ref);
    const correct = error <= TOLERANCE[ctx.precision];
    const samples = await timeQueued(ctx.device, timing, () => native.cudnnRun(p, buffers));
    const mathName = ['default', 'tensor-op', 'tensor-op+conversion', 'fma'][info.mathType] ?? `math ${info.mathType}`;
    const version = `cuDNN ${ctx.cudnnVersion} algo ${info.algo} (${mathName}, ${(info.workspaceBytes / 2 ** 20).toFixed(1)} MiB workspace)`;
    return rowFor(l, pass, 'cudnn', version, ctx.precision === 'bf16' ? 'tf32' : ctx.precision, samples, ctx.peak,
      ctx.copyGBs, error, correct, correct ? 'matches ours' : 'DIFFERS from ours');
  } finally {
    out.dispose();
    // Its workspace goes back to the allocator now, not when the garbage collector gets to it.
    if (plan) native.cudnnPlanRelease(plan);
  }
}

interface PeerRow {
  layer: string;
  pass: Pass;
  samples: number[];
  error: number | null;
  /** For dropout: the structural check. */
  maskOk?: boolean;
  zeroShare?: number;
  version: string;
}

interface PeerReport {
  torch: string;
  cudnn: number | null;
  device: string;
  threads: number;
  rows: PeerRow[];
}

async function measureTorch(ctx: RunContext, python: string, rows: KernelRow[]): Promise<PeerReport> {
  const spec = {
    device: ctx.kind === 'cuda' ? 'cuda' : 'cpu',
    precision: ctx.precision,
    iters: ctx.opts.iters,
    warmup: ctx.opts.warmup,
    threads: ctx.opts.threads,
    dir: ctx.exchange,
    lrn: LRN,
    dropout: DROPOUT_P,
    layers: ctx.layers,
  };
  const specFile = path.join(ctx.exchange!, 'spec.json');
  writeFileSync(specFile, JSON.stringify(spec));
  const report = (await runPeer(python, peerScript('torch_kernels.py'), ['--spec', specFile], ctx.opts.threads)) as PeerReport;
  const tol = TOLERANCE[ctx.precision];
  for (const r of report.rows) {
    const l = ctx.layers.find((x) => x.name === r.layer);
    if (!l) throw new Error(`conv suite: the PyTorch peer reported an unknown layer ${r.layer}`);
    const isDropout = l.kind === 'dropout';
    const correct = isDropout ? r.maskOk === true : r.error !== null && r.error <= tol;
    const check = isDropout
      ? `mask check: ${r.maskOk ? 'ok' : 'FAILED'}, ${(100 * (r.zeroShare ?? 0)).toFixed(1)}% zeros`
      : correct ? 'matches ours' : 'DIFFERS from ours';
    // Our memory-bound kernels have no precision choice, and neither have PyTorch's.
    const math: Precision = l.kind === 'conv' || l.kind === 'linear' ? ctx.precision : 'fp32';
    rows.push(rowFor(l, r.pass, 'pytorch', r.version, math, r.samples, ctx.peak, ctx.copyGBs, isDropout ? null : r.error, correct, check));
  }
  return report;
}

/** fast_p as KernelBench defines it, for one driver pair over the rows both have. */
export interface PairSummary {
  ours: string;
  peer: string;
  rows: number;
  /** Rows where the peer's result matched ours (only these count as correct). */
  correct: number;
  /** Geometric mean of peer time / our time over the correct rows (above 1: ours faster). */
  geomeanSpeedup: number | null;
  fast1: number;
  fast2: number;
}

export function summarize(rows: KernelRow[], peer: string): PairSummary | null {
  const ours = rows.filter((r) => r.driver === 'convnet');
  const pairs = ours.map((o) => [o, rows.find((r) => r.driver === peer && r.trial === o.trial)] as const)
    .filter((p): p is readonly [KernelRow, KernelRow] => p[1] !== undefined);
  if (pairs.length === 0) return null;
  const ok = pairs.filter(([o, p]) => o.correct && p.correct);
  const speed = (o: KernelRow, p: KernelRow) => p.ms.median / o.ms.median;
  const logs = ok.map(([o, p]) => Math.log(speed(o, p)));
  return {
    ours: 'convnet', peer, rows: pairs.length, correct: ok.length,
    geomeanSpeedup: logs.length ? Math.exp(logs.reduce((a, b) => a + b, 0) / logs.length) : null,
    fast1: ok.filter(([o, p]) => speed(o, p) >= 1).length / pairs.length,
    fast2: ok.filter(([o, p]) => speed(o, p) >= 2).length / pairs.length,
  };
}

/** TFLOP/s (GFLOP/s under 1 TFLOP/s) for arithmetic, GB/s for the memory-bound layers. */
function rate(r: KernelRow): string {
  if (r.tflops === null) return `${fixed(r.gbps, 1)} GB/s`;
  return r.tflops >= 1 ? `${fixed(r.tflops, 2)} TF/s` : `${fixed(1000 * r.tflops, 1)} GF/s`;
}

function fmtErr(e: number | null): string {
  if (e === null) return '-';
  if (e === 0) return '0';
  return Number.isFinite(e) ? e.toExponential(1) : 'inf';
}

function report(ctx: RunContext, rows: KernelRow[], drivers: DriverName[], summaries: PairSummary[], log: (l: string) => void): void {
  const first = drivers[0];
  const header = ['layer', 'pass', 'what'];
  for (const d of drivers) header.push(`${d} ms`, 'rate', '%peak', 'err');
  const peers = drivers.filter((d) => d !== 'convnet');
  if (drivers.includes('convnet')) for (const p of peers) header.push(`vs ${p}`);
  const out: string[][] = [];
  for (const l of ctx.layers) {
    for (const pass of l.passes) {
      const trial = `${l.name} ${PASS_LABEL[pass]}`;
      const row = [l.name, PASS_LABEL[pass], l.what];
      const byDriver = drivers.map((d) => rows.find((r) => r.trial === trial && r.driver === d));
      if (!byDriver.some((r) => r)) continue;
      for (const r of byDriver) {
        if (!r) {
          row.push('-', '-', '-', '-');
          continue;
        }
        row.push(fixed(r.ms.median, 3), rate(r),
          r.peakFraction !== null ? `${fixed(100 * r.peakFraction, 1)}%` : '-',
          r.driver === 'convnet' ? (r.correct ? 'ref' : 'BAD') : r.correct ? fmtErr(r.error) : `WRONG ${fmtErr(r.error)}`);
      }
      if (drivers.includes('convnet')) {
        const ours = byDriver[drivers.indexOf('convnet')];
        for (const p of peers) {
          const peer = byDriver[drivers.indexOf(p)];
          row.push(ours && peer ? `${fixed(peer.ms.median / ours.ms.median, 2)}x` : '-');
        }
      }
      out.push(row);
    }
  }
  log('');
  log(`${ctx.opts.model}, batch ${ctx.opts.batch}${ctx.opts.model === 'alexnet-mini' ? `, width ${ctx.opts.width}` : ''} on ${ctx.device}: ` +
    `median ms of ${ctx.opts.iters} after ${ctx.opts.warmup} warm-up, cache flushed before each` +
    `${(ctx.opts.rounds ?? 1) > 1 ? ` (the best of ${ctx.opts.rounds} rounds' medians)` : ''}; ` +
    `TF/s for convolutions and linear layers, GB/s (of the least traffic) for the others; %peak of ` +
    `${ctx.peak ? 'the peak of the math used' : '(no peak known)'} or of the measured copy bandwidth; ` +
    `err = ||theirs - ours|| / ||ours||; "vs X" = X's time / ours (above 1: ours faster)`);
  if (first) log(table(header, out, 3));
  for (const s of summaries) {
    log(`summary convnet vs ${s.peer}: geomean ${s.geomeanSpeedup === null ? '-' : `${fixed(s.geomeanSpeedup, 2)}x`} ` +
      `over ${s.correct} correct of ${s.rows} layer x pass rows; fast_1 ${fixed(s.fast1, 2)}, fast_2 ${fixed(s.fast2, 2)}`);
  }
}

export const convSuite: Suite = {
  name: 'conv',
  describe: 'every AlexNet / AlexNet-mini layer, fwd + bwd-data + bwd-filter, ours vs cuDNN vs PyTorch',
  drivers: [...DRIVERS],
  defaults: { iters: 20, warmup: 3, width: 1, model: 'alexnet', precision: 'fp32' },
  resolve(g) {
    const device = g.device ?? (cn.devices().some((d) => d.kind === 'cuda') ? 'cuda:0' : 'cpu:0');
    // On a CPU the full AlexNet at batch 128 takes minutes per pass: a smaller default batch.
    const model = g.model ?? 'alexnet';
    const batch = device.startsWith('cpu') ? (model === 'alexnet' ? 8 : 64) : 128;
    return { device, batch, iters: device.startsWith('cpu') ? 5 : 20 };
  },
  async run(opts, log): Promise<SuiteReport> {
    const skipped: { driver: string; reason: string }[] = [];
    const failed: { driver: string; error: string }[] = [];
    if (!MODELS.includes(opts.model as Model)) throw new Error(`conv suite: --model must be one of ${MODELS.join(', ')}`);
    const device = opts.device ?? 'cpu:0';
    const info = cn.devices().find((d) => d.id === device);
    if (!info) {
      const ids = cn.devices().map((d) => d.id).join(', ');
      throw new Error(`conv suite: no device ${device} here (devices: ${ids})`);
    }
    const precision = opts.precision as Precision;
    const layers = benchLayers(opts.model as Model, opts.batch, opts.width);
    const wanted = DRIVERS.filter((d) => !opts.drivers || opts.drivers.includes(d));
    const drivers = new Set<DriverName>();
    const build = cn.buildInfo();
    const cudnn = cudnnStatus();
    let python: string | null = null;
    let torchInfo: { version: string } | null = null;
    for (const d of wanted) {
      let why: string | null = null;
      if (d === 'cudnn') {
        if (cudnn.status !== 'found') why = cudnn.reason ?? `cuDNN ${cudnn.status}`;
        else if (info.kind !== 'cuda') why = `cuDNN ${cudnn.version} found at ${cudnn.path}, but ${device} is not a CUDA device`;
        else if (precision === 'bf16') why = 'bf16: cuDNN would need bf16 copies of the tensors; our storage is float32 (use fp32 or tf32)';
      } else if (d === 'convnet-v2') {
        if (info.kind !== 'cuda') why = `kernel versions are CUDA kernels; ${device} runs the CPU convolution`;
      } else if (d === 'convnet-v3') {
        if (info.kind !== 'cuda') why = `kernel versions are CUDA kernels; ${device} runs the CPU convolution`;
        else if (precision === 'fp32') why = 'version 3 is tensor-core math: it needs --precision tf32 or bf16';
        else if (Number(info.computeCapability?.split('.')[0] ?? 0) < 8) why = `tensor-core mma.sync needs sm_80 or newer; ${device} is sm_${info.computeCapability}`;
      } else if (d === 'pytorch') {
        const found = findPython(info.kind === 'cuda');
        if ('reason' in found) why = found.reason;
        else {
          python = found.python;
          torchInfo = { version: found.torch };
        }
      }
      if (why) {
        skipped.push({ driver: d, reason: why });
        log(`${d}: unavailable: ${why}`);
      } else drivers.add(d);
    }

    const peak = peakOf(info.kind, info.name, opts.threads);
    const copyGBs = await copyBandwidth(device, info.kind === 'cuda' ? 2 ** 30 : 2 ** 27);
    log(`device ${device}: ${info.name}${info.computeCapability ? ` (sm_${info.computeCapability.replace('.', '')})` : ''}; ` +
      `peak ${peak ? `fp32 ${fixed(peak.tflops.fp32, 2)} / tf32 ${fixed(peak.tflops.tf32, 2)} TFLOP/s (${peak.source})` : 'unknown'}; ` +
      `copy bandwidth ${fixed(copyGBs, 1)} GB/s (measured)`);
    log(`precision ${precision}: convnet and convnet-v2 run fp32 math whatever --precision says (convnet-v3: the conv forward in ${precision === 'fp32' ? 'tf32 / bf16 only' : precision}); ` +
      `${precision === 'fp32' ? 'cuDNN gets FMA-only math and PyTorch runs with TF32 off' : `cuDNN and PyTorch may use ${precision}`}`);
    if (info.kind === 'cpu') {
      log('nothing in this run is timed on a GPU: it runs on the CPU (pass --device cuda:0 on a machine with one); ' +
        'on a CPU the default batch is 8 for alexnet and 64 for alexnet-mini, and 5 timed runs (--batch, --iters to change)');
    }

    const ctx: RunContext = {
      opts, device, kind: info.kind, precision, layers, peak, copyGBs,
      exchange: drivers.has('pytorch') ? mkdtempSync(path.join(tmpdir(), 'convnet-bench-')) : null,
      drivers, cudnnVersion: cudnn.version ?? null, cudnnRuns: 0, failed, log,
    };
    const roundRows: KernelRow[][] = [];
    const rounds = opts.rounds ?? 1;
    const bar = progress();
    const total = rounds * layers.reduce((a, l) => a + l.passes.length, 0);
    const done = { n: 0 };
    let torchReport: PeerReport | null = null;
    try {
      for (let round = 1; round <= rounds; round++) {
        const rows: KernelRow[] = [];
        roundRows.push(rows);
        if (rounds > 1) log(`round ${round} of ${rounds}`);
        // Our kernels always run: their results are what every other driver is checked against.
        // Without `convnet` in --drivers they are not timed and have no rows.
        if (!drivers.has('convnet') && drivers.size > 0) log('convnet: not timed (--drivers), but run once per pass as the reference');
        for (const [k, l] of layers.entries()) {
          if (drivers.size === 0) break;
          try {
            await measureLayer(ctx, l, k, bar, rows, total, done);
          } catch (e) {
            failed.push({ driver: 'convnet', error: `${l.name}: ${e instanceof Error ? e.message : String(e)}` });
            log(`convnet: ${l.name} FAILED: ${e instanceof Error ? e.message : String(e)}`);
            if (drivers.has('pytorch')) {
              drivers.delete('pytorch');
              skipped.push({ driver: 'pytorch', reason: 'our kernels failed, so there is nothing to compare with' });
            }
          }
        }
        if (drivers.has('pytorch') && python) {
          bar.update(`bench conv: PyTorch ${torchInfo?.version ?? ''} on the same layers...`);
          try {
            torchReport = await measureTorch(ctx, python, rows);
          } catch (e) {
            failed.push({ driver: 'pytorch', error: e instanceof Error ? e.message : String(e) });
            log(`pytorch: FAILED: ${e instanceof Error ? e.message : String(e)}`);
          }
        }
        // A failure is not measured again: the remaining rounds would repeat it.
        if (failed.length) break;
      }
    } finally {
      bar.done();
      // BENCH_KEEP=1 keeps the files exchanged with the PyTorch peer, to rerun it alone.
      if (ctx.exchange && process.env.BENCH_KEEP === '1') log(`kept the PyTorch peer's files in ${ctx.exchange}`);
      else if (ctx.exchange) rmSync(ctx.exchange, { recursive: true, force: true });
    }

    const rows = bestOfRounds(roundRows);
    const order = DRIVERS.filter((d) => rows.some((r) => r.driver === d));
    const summaries = order.filter((d) => d !== 'convnet').map((d) => summarize(rows, d)).filter((s): s is PairSummary => s !== null);
    report(ctx, rows, order, summaries, log);
    if (info.kind === 'cpu') log('note: nothing was timed on a GPU; these are CPU numbers (cuDNN needs a CUDA device).');

    const environment = {
      device: { id: device, name: info.name, kind: info.kind, computeCapability: info.computeCapability ?? null },
      cuda: build.cuda ? build.cudaVersion ?? 'unknown' : null,
      archs: build.archs ?? [],
      cudnn: { status: cudnn.status, version: cudnn.version ?? null, path: cudnn.path ?? null, reason: cudnn.reason ?? null },
      torch: torchReport ? { version: torchReport.torch, cudnn: torchReport.cudnn, device: torchReport.device, threads: torchReport.threads } : torchInfo,
      driver: process.env.CONVNET_GPU_DRIVER ?? null,
      peak,
      copyBandwidthGBs: copyGBs,
    };
    const notes = {
      environment,
      model: opts.model,
      precision,
      tolerance: TOLERANCE[precision],
      ours: 'one kernel version per op today (a second version would be its own row); fp32 math',
      layers,
      summaries,
      gpu: info.kind === 'cuda' ? 'timed on a GPU' : 'nothing was timed on a GPU',
    };
    return {
      results: rows, skipped, failed, notes,
      html: renderHtml({ title: `convnet-cuda bench conv: ${opts.model} on ${info.name}`, rows, layers, summaries, peak, copyGBs, notes: {
        device: `${device} (${info.name})`, batch: opts.batch, precision, gpu: notes.gpu,
        cudnn: cudnn.status === 'found' ? `${cudnn.version} (${cudnn.path})` : cudnn.reason ?? cudnn.status,
        skipped: skipped.map((s) => `${s.driver}: ${s.reason}`).join('; ') || 'none',
      } }),
    };
  },
};
