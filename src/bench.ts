/**
 * Racing a convolution of your own against ours and cuDNN's, on the same inputs, the way
 * `convnet bench conv` races the library's kernels: `cn.bench.raceConv(problem, yours)` checks
 * every contender against the CPU reference first (normwise error), then times each with the
 * same method and returns one row per contender.
 *
 * Timing. Work that is only queued on a device (ours, cuDNN's, a kernel launched with
 * `kernel.launch`) is timed between markers queued around it (CUDA events on a GPU; host
 * timestamps taken by the queue thread on a CPU), with the cache flushed before each timed run.
 * A contender whose function returns a Promise (for example one that computes on the host) is
 * timed by the wall clock until its result is ready instead; the row says which.
 */
import { cudnnStatus } from './cudnn.js';
import { synchronize } from './device.js';
import { ShapeError } from './errors.js';
import { native, type NativeCudnnPlan } from './native.js';
import { conv2d, conv2dPlan, type Conv2dOptions } from './ops/conv2d.js';
import { randn } from './ops/create.js';
import { launchInPlace } from './ops/launch.js';
import { describe } from './ops/validate.js';
import { empty, Tensor } from './tensor.js';

/** How each run is timed: iterations, warm-up runs, and whether to flush the cache first. */
export interface TimingOptions {
  /** Timed iterations. */
  iters: number;
  /** Untimed iterations before them. */
  warmup: number;
  /** Flush the last-level cache (the L2 on a GPU) before each timed iteration. */
  flush: boolean;
}

/**
 * Milliseconds of each timed iteration of `run`, which only queues work on `device`: each
 * iteration is `flush, marker, run(), marker`, queued back to back, and the device is waited for
 * once at the end.
 *
 * @example
 * ```ts
 * const x = cn.randn([64, 64, 27, 27], { seed: 1, device: 'cuda:0' });
 * const ms = await cn.bench.timeQueued('cuda:0', { iters: 20, warmup: 3, flush: true }, () => cn.relu(x).dispose());
 * ```
 */
export async function timeQueued(device: string, opts: TimingOptions, run: () => void): Promise<number[]> {
  for (let i = 0; i < opts.warmup; i++) run();
  await synchronize(device);
  const marks = [];
  for (let i = 0; i < opts.iters; i++) {
    if (opts.flush) native.l2Flush(device);
    const a = native.timerMark(device);
    run();
    marks.push([a, native.timerMark(device)] as const);
  }
  await synchronize(device);
  return marks.map(([a, b]) => native.timerElapsed(a, b));
}

/**
 * ||theirs - ours|| / ||ours|| (Infinity for a length mismatch or NaN).
 *
 * @example
 * ```ts
 * cn.bench.normwiseError(new Float32Array([1, 2.001]), new Float32Array([1, 2]));  // about 4.5e-4
 * ```
 */
export function normwiseError(theirs: ArrayLike<number>, ours: ArrayLike<number>): number {
  if (theirs.length !== ours.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < ours.length; i++) {
    const d = theirs[i] - ours[i];
    num += d * d;
    den += ours[i] * ours[i];
  }
  const e = Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
  return Number.isNaN(e) ? Infinity : e;
}

/** The convolution to race: input and filter shapes and the options of `cn.conv2d`. */
export interface ConvProblem extends Conv2dOptions {
  /** [N, C, H, W] */
  x: number[];
  /** [F, C/groups, KH, KW] */
  w: number[];
}

/** Options of {@link raceConv}. */
export interface RaceOptions {
  /** Where every contender runs (default `'cpu:0'`). */
  device?: string;
  /** Timed runs per contender (default 10). */
  iters?: number;
  /** Untimed runs before them (default 2). */
  warmup?: number;
  /** Flush the cache before each timed run (default true). */
  flush?: boolean;
  /** Seed of the random inputs (default 1). */
  seed?: number;
  /** Largest normwise error against the CPU reference that counts as correct (default 1e-4). */
  tolerance?: number;
}

/** One contender's result. */
export interface RaceRow {
  /** `'yours'`, `'convnet'` or `'cudnn'`. */
  driver: string;
  /** Median milliseconds (null when it did not run). */
  ms: number | null;
  /** Every timed run, in milliseconds, in the order measured. */
  samples: number[];
  /** Achieved TFLOP/s at the median (2 FLOP per multiply-add). */
  tflops: number | null;
  /** Normwise error against the CPU reference (null when it did not run). */
  error: number | null;
  /** Whether it ran and its error is within the tolerance. */
  correct: boolean;
  /** How it was timed, or why it did not run. */
  note: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * Checks `yours` (x, w) → y against the CPU reference on random inputs, then times it beside
 * `cn.conv2d` and, on a CUDA device where cuDNN is found, cuDNN's best forward algorithm.
 *
 * @example
 * ```ts
 * const rows = await cn.bench.raceConv(
 *   { x: [32, 64, 27, 27], w: [128, 64, 5, 5], padding: 2 },
 *   (x, w) => myConv(x, w),              // your implementation; returns y [N, F, OH, OW]
 *   { device: 'cuda:0', iters: 20 },
 * );
 * console.log(cn.bench.formatRace(rows));
 * ```
 */
export async function raceConv(problem: ConvProblem, yours: (x: Tensor, w: Tensor) => Tensor | Promise<Tensor>,
                               opts: RaceOptions = {}): Promise<RaceRow[]> {
  const op = 'raceConv';
  if (typeof yours !== 'function') throw new ShapeError(`${op}: yours must be a function (x, w) => y, received ${describe(yours)}`);
  const device = opts.device ?? 'cpu:0';
  const timing: TimingOptions = { iters: opts.iters ?? 10, warmup: opts.warmup ?? 2, flush: opts.flush ?? true };
  const tolerance = opts.tolerance ?? 1e-4;
  const seed = opts.seed ?? 1;
  const fanIn = problem.w.slice(1).reduce((a, b) => a * b, 1);
  const x = randn(problem.x, { seed, device });
  const w = randn(problem.w, { seed: seed + 1, std: 1 / Math.sqrt(fanIn), device });
  const made: Tensor[] = [x, w];
  try {
    const { yShape, ints } = conv2dPlan(x, w, null, problem);
    const flops = 2 * ints[0] * ints[4] * (ints[1] / ints[11]) * ints[5] * ints[6] * ints[12] * ints[13];
    const opt: Conv2dOptions = { stride: problem.stride, padding: problem.padding, groups: problem.groups };
    // The reference: the library's CPU convolution, the specification of the others.
    const xr = x.to('cpu:0');
    const wr = w.to('cpu:0');
    made.push(xr, wr);
    const refT = conv2d(xr, wr, null, opt);
    made.push(refT);
    const ref = (await refT.data()) as Float32Array;
    const row = (driver: string, samples: number[], error: number | null, note: string): RaceRow => {
      const ms = samples.length ? median(samples) : null;
      const correct = error !== null && error <= tolerance;
      return { driver, ms, samples, tflops: ms ? flops / (ms / 1000) / 1e12 : null, error, correct, note: correct || error === null ? note : `${note}; DIFFERS from the reference` };
    };
    const rows: RaceRow[] = [];

    // Yours: checked first, then timed by markers when it only queues work, by the wall clock when it is async.
    const first = await yours(x, w);
    if (!(first instanceof Tensor)) throw new ShapeError(`${op}: yours must return a Tensor, received ${describe(first)}`);
    const shapeOk = first.shape.length === 4 && first.shape.every((d, i) => d === yShape[i]);
    const err = shapeOk ? normwiseError((await first.data()) as Float32Array, ref) : Infinity;
    first.dispose();
    const probe = yours(x, w);
    let samples: number[];
    let how: string;
    if (probe instanceof Promise) {
      (await probe).dispose();
      samples = [];
      for (let i = 0; i < timing.warmup + timing.iters; i++) {
        const t0 = performance.now();
        const y = await yours(x, w);
        await synchronize(device);
        if (i >= timing.warmup) samples.push(performance.now() - t0);
        y.dispose();
      }
      how = 'wall clock (async)';
    } else {
      probe.dispose();
      samples = await timeQueued(device, timing, () => (yours(x, w) as Tensor).dispose());
      how = 'device markers';
    }
    rows.push(row('yours', samples, err, shapeOk ? how : `returned ${JSON.stringify(first.shape)}, expected ${JSON.stringify(yShape)}`));

    // Ours, into one output made beforehand (as the benchmark does).
    const y = empty(yShape, 'float32', device);
    made.push(y);
    launchInPlace('conv2d_forward', [y, x, w, null], ints);
    const ourErr = normwiseError((await y.data()) as Float32Array, ref);
    rows.push(row('convnet', await timeQueued(device, timing, () => launchInPlace('conv2d_forward', [y, x, w, null], ints)), ourErr, 'device markers'));

    // cuDNN's fastest forward algorithm, on CUDA devices where it is found.
    const cudnn = device.startsWith('cuda') ? cudnnStatus() : null;
    if (!cudnn || cudnn.status !== 'found') {
      rows.push({ driver: 'cudnn', ms: null, samples: [], tflops: null, error: null, correct: false,
        note: cudnn ? (cudnn.reason ?? 'not found') : 'cuDNN needs a CUDA device' });
    } else {
      const out = empty(yShape, 'float32', device);
      made.push(out);
      const buffers = [out, x, w].map((t) => t._handle(op));
      let plan: NativeCudnnPlan | null = null;
      try {
        plan = native.cudnnPlan(device, 'fwd', ints.slice(0, 14), 'fp32'); // without the kernel version
        const p = plan;
        native.cudnnFind(p, buffers);
        native.cudnnRun(p, buffers);
        const e = normwiseError((await out.data()) as Float32Array, ref);
        const info = native.cudnnPlanInfo(p);
        rows.push(row('cudnn', await timeQueued(device, timing, () => native.cudnnRun(p, buffers)), e, `cuDNN ${cudnn.version} algo ${info.algo}, device markers`));
      } finally {
        if (plan) native.cudnnPlanRelease(plan);
      }
    }
    return rows;
  } finally {
    for (const t of made) t.dispose();
  }
}

/**
 * The rows of {@link raceConv} as a text table, with each time's ratio to yours.
 *
 * @example
 * ```ts
 * console.log(cn.bench.formatRace(await cn.bench.raceConv(problem, yours)));
 * ```
 */
export function formatRace(rows: readonly RaceRow[]): string {
  const yours = rows.find((r) => r.driver === 'yours')?.ms ?? null;
  const lines = rows.map((r) => [
    r.driver.padEnd(8),
    r.ms === null ? '       -' : `${r.ms.toFixed(3).padStart(8)} ms`,
    r.tflops === null ? '         -' : `${(r.tflops * 1000).toFixed(1).padStart(7)} GF/s`,
    r.error === null ? '      -' : r.error.toExponential(1).padStart(7),
    r.ms !== null && yours !== null ? `${(r.ms / yours).toFixed(2).padStart(6)}x` : '      -',
    r.note,
  ].join('  '));
  return ['driver    median       rate       error  time/yours  notes', ...lines].join('\n');
}
