/** Shared test helpers: leak tracking, random data, comparisons. */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, expect } from 'vitest';

import * as cn from '../src/index.js';

/** Asserts the file ends with the live tensors and bytes it began with. */
export function trackLeaks(): void {
  let start: ReturnType<typeof cn.memory>;
  beforeAll(() => {
    start = cn.memory();
  });
  afterAll(() => {
    const end = cn.memory();
    expect(end.tensors).toBe(start.tensors);
    for (const [d, b] of Object.entries(end.bytes)) expect([d, b]).toEqual([d, start.bytes[d] ?? 0]);
  });
}

/** A small deterministic generator (mulberry32) for test data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n uniform values in [-1, 1). */
export function uniform(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = 2 * r() - 1;
  return out;
}

export function prod(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A tensor of uniform values in [-1, 1). */
export function rand(shape: number[], seed: number, opts: { requiresGrad?: boolean; device?: string } = {}): cn.Tensor {
  return cn.tensor(uniform(prod(shape), seed), shape, opts);
}

/** max_i |a_i - b_i| / max(|a_i|, |b_i|, 1), NaN counting as infinitely wrong. */
export function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]) / Math.max(Math.abs(a[i]), Math.abs(b[i]), 1);
    if (!(d <= worst)) worst = Number.isNaN(d) ? Infinity : d;
  }
  return worst;
}

export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-5): void {
  const err = maxRelError(actual, expected);
  if (!(err <= tol)) {
    let at = 0;
    for (let i = 0; i < actual.length; i++) {
      const d = Math.abs(actual[i] - expected[i]) / Math.max(Math.abs(actual[i]), Math.abs(expected[i]), 1);
      if (!(d <= tol)) {
        at = i;
        break;
      }
    }
    expect.fail(`max relative error ${err} > ${tol}; first at [${at}]: got ${actual[at]}, expected ${expected[at]}`);
  }
}

/** Expects fn to throw exactly this class with exactly this message, and memory to be unchanged. */
export function expectError(fn: () => unknown, cls: new (...a: never[]) => Error, message: string | RegExp): void {
  const before = cn.memory();
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, 'expected an error').toBeInstanceOf(cls);
  expect((thrown as Error).constructor).toBe(cls);
  if (typeof message === 'string') expect((thrown as Error).message).toBe(message);
  else expect((thrown as Error).message).toMatch(message);
  expect(cn.memory()).toEqual(before);
}

/** Awaits p, expects it to reject with exactly this class, and returns the message. */
export async function rejection(p: Promise<unknown>, cls: new (...a: never[]) => Error = cn.FormatError): Promise<string> {
  let thrown: unknown;
  try {
    await p;
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `expected a ${cls.name}`).toBeInstanceOf(cls);
  expect((thrown as Error).constructor).toBe(cls);
  return (thrown as Error).message;
}

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(p) : entry.name.endsWith('.ts') ? statSync(p).mtimeMs : 0);
  }
  return newest;
}

/**
 * Compiles src/ to dist/ unless dist/index.js is newer than every source file (for the tests
 * that run the plain-JavaScript GPU check and compiled bench, which load dist/).
 */
export function ensureDist(root: string): void {
  const index = path.join(root, 'dist', 'index.js');
  if (existsSync(index) && statSync(index).mtimeMs >= newestSource(path.join(root, 'src'))) return;
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tsc -p tsconfig.build.json failed:\n${r.stdout}${r.stderr}`);
}

/** The small grouped, strided conv2d inputs (with gradients) that the version and precision tests share. */
export function convInputs(): { x: cn.Tensor; w: cn.Tensor; b: cn.Tensor; all: cn.Tensor[] } {
  const x = cn.randn([2, 4, 9, 7], { seed: 3, requiresGrad: true });
  const w = cn.randn([6, 2, 3, 3], { seed: 4, std: 0.3, requiresGrad: true });
  const b = cn.randn([6], { seed: 5, requiresGrad: true });
  return { x, w, b, all: [x, w, b] };
}

/**
 * y, dx, dw and db of L = sum(conv2d(x, w, b, opts)^2) on fresh {@link convInputs}, for each
 * option set; expects every output of every run to equal the first run's bit for bit (and the
 * first y not to be all zeros).
 */
export async function expectSameConvBits(optionSets: cn.Conv2dOptions[]): Promise<void> {
  const results: Float32Array[][] = [];
  for (const opts of optionSets) {
    const { x, w, b, all } = convInputs();
    const y = cn.conv2d(x, w, b, { groups: 2, stride: [2, 1], padding: 1, ...opts });
    const sq = cn.mul(y, y);
    const loss = cn.sum(sq);
    loss.backward();
    results.push([
      (await y.data()) as Float32Array, (await x.grad!.data()) as Float32Array,
      (await w.grad!.data()) as Float32Array, (await b.grad!.data()) as Float32Array,
    ]);
    [...all.map((t) => t.grad!), ...all, y, sq, loss].forEach((t) => t.dispose());
  }
  for (const r of results.slice(1)) {
    r.forEach((a, i) => expect(Buffer.from(a.buffer).equals(Buffer.from(results[0][i].buffer)), `output ${i}`).toBe(true));
  }
  expect(results[0][0].some((v) => v !== 0)).toBe(true);
}
