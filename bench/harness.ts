/**
 * Shared pieces of the benchmark driver: the suite / trial / driver types, the clock, the
 * statistics and the plain-text tables.
 *
 * How things are measured. Every op of the library is queued on a device worker thread and
 * returns at once, so a timed region always ends with `await cn.synchronize(device)`: the clock
 * stops only when the device has finished the work. Each measurement runs `warmup` untimed
 * iterations first (the caching allocator fills, the thread pool wakes up, the JIT settles),
 * then `iters` timed ones, and reports the median (the mean and extremes are kept in the JSON).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** Options every suite receives from the command line. */
export interface BenchOptions {
  /** Timed iterations per measurement. */
  iters: number;
  /** Untimed iterations before the timed ones. */
  warmup: number;
  batch: number;
  width: number;
  /** Threads for every CPU driver (ours: CONVNET_CPU_THREADS, peers: their own setting). */
  threads: number;
  seed: number;
  /** Only these drivers, by name (null: all of the suite's). */
  drivers: string[] | null;
  /** The network whose layers are measured (conv and alexnet suites): alexnet or alexnet-mini. */
  model: string;
  /** The device our kernels run on (conv and alexnet suites); null: the suite's choice. */
  device: string | null;
  /** Math of the GEMM-like kernels for the drivers that offer a choice: fp32, tf32 or bf16. */
  precision: 'fp32' | 'tf32' | 'bf16';
  /**
   * conv suite: how many times every driver runs the whole set of layers (ours, then each peer);
   * each row reports the round with the lowest median. For machines whose speed drifts between
   * minutes, where one round can catch one driver in a slow stretch.
   */
  rounds?: number;
}

/** Summary statistics of one measurement, in milliseconds. */
export interface Stats {
  median: number;
  mean: number;
  min: number;
  max: number;
  n: number;
  /** Every timed sample, in the order measured. */
  samples: number[];
}

/** One workload (an op at given shapes, a training step) measured by one driver. */
export interface TrialResult {
  trial: string;
  driver: string;
  [metric: string]: unknown;
}

/**
 * A suite measures a list of trials with a list of drivers (implementations: ours, a PyTorch
 * peer, cuDNN...). A driver that cannot run here says why instead of producing results.
 */
export interface Driver {
  name: string;
  /** null when it can run, or a one-line reason (with how to fix it) when it cannot. */
  unavailable(): Promise<string | null>;
  run(opts: BenchOptions): Promise<TrialResult[]>;
}

export interface SuiteReport {
  /** Everything the suite measured, for --json. */
  results: TrialResult[];
  /** Drivers that could not run, with the reason. */
  skipped: { driver: string; reason: string }[];
  /** Drivers that started and threw (the run exits with status 1). */
  failed: { driver: string; error: string }[];
  /** Free-form facts the suite wants in the JSON (shapes, checks). */
  notes: Record<string, unknown>;
  /** A self-contained HTML page of the results, written beside the JSON (--html). */
  html?: string;
}

export interface Suite {
  name: string;
  describe: string;
  /** The names of its drivers, for --drivers. */
  drivers: string[];
  /** Defaults for options the user did not give. */
  defaults: Partial<BenchOptions>;
  /** Defaults that depend on what was given (e.g. a smaller batch on a CPU device). */
  resolve?(given: Partial<BenchOptions>): Partial<BenchOptions>;
  run(opts: BenchOptions, log: (line: string) => void): Promise<SuiteReport>;
}

/**
 * A one-line progress display on stderr, rewritten in place, shown only when stderr is a
 * terminal (so logs and tests see none of it); `done()` clears it.
 */
export function progress(): { update(text: string): void; done(): void } {
  const tty = process.stderr.isTTY === true;
  let shown = false;
  return {
    update(text) {
      if (!tty) return;
      const width = Math.max(20, (process.stderr.columns ?? 100) - 1);
      process.stderr.write(`\r${text.slice(0, width)}\x1b[K`);
      shown = true;
    },
    done() {
      if (shown) process.stderr.write('\r\x1b[K');
      shown = false;
    },
  };
}

export function now(): number {
  return performance.now();
}

export function stats(samples: readonly number[]): Stats {
  if (samples.length === 0) return { median: NaN, mean: NaN, min: NaN, max: NaN, n: 0, samples: [] };
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return { median, mean, min: s[0], max: s[s.length - 1], n: s.length, samples: [...samples] };
}

/** Right-aligned columns except the first `left` ones; a rule under the header. */
export function table(header: string[], rows: string[][], left = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]) =>
    r.map((c, i) => (i < left ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}

export function fixed(v: number | undefined | null, digits = 2): string {
  return v === undefined || v === null || !Number.isFinite(v) ? '-' : v.toFixed(digits);
}

export function shapeText(shape: readonly number[]): string {
  return shape.join('x');
}

/** The machine and software the numbers came from. */
export interface Environment {
  date: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  platform: string;
  node: string;
  commit: string | null;
  version: string;
}

function cpuModel(): string {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('model name'));
    if (line) return line.split(':').slice(1).join(':').trim();
  } catch {
    // not Linux: fall through to what Node knows
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

function gitCommit(): string | null {
  // Where .git did not travel (the GPU machine), the run names its commit.
  if (process.env.CONVNET_COMMIT) return process.env.CONVNET_COMMIT;
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim() || null;
  } catch {
    return null;
  }
}

export function environment(version: string): Environment {
  return {
    date: new Date().toISOString(),
    cpu: cpuModel(),
    cores: os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    platform: `${process.platform}-${process.arch}`,
    node: process.version,
    commit: gitCommit(),
    version,
  };
}
