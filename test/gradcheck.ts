/**
 * The finite-difference gradient checker shared by the gradient tests: every backward pass
 * against central differences of L = sum(y * g) for a fixed random g, with the error relative to
 * max(|analytic|, |numeric|, 1); inputs near a kink can be skipped, as in Caffe's checker.
 */
import { expect } from 'vitest';

import * as cn from '../src/index.js';
import { prod, uniform } from './helpers.js';

export interface Input {
  shape: number[];
  data?: Float32Array;
}

export interface CheckOptions {
  h?: number;
  tol?: number;
  /** Skip element j of input i (a kink within reach of the step). */
  skip?: (i: number, j: number, data: Float32Array) => boolean;
  /** Check at most this many elements per input, spread evenly. */
  samples?: number;
}

function dot(y: ArrayLike<number>, g: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += y[i] * g[i];
  return s;
}

/** Checks the gradients of fn with respect to every input; returns the worst error seen. */
export async function gradCheck(fn: (xs: cn.Tensor[]) => cn.Tensor, inputs: Input[], opts: CheckOptions = {}): Promise<number> {
  const h = opts.h ?? 1e-2;
  const tol = opts.tol ?? 2e-3;
  const datas = inputs.map((inp, i) => inp.data ?? uniform(prod(inp.shape), 100 + i));
  const xs = inputs.map((inp, i) => cn.tensor(datas[i], inp.shape, { requiresGrad: true }));
  // Intermediates are disposed at once; the graph keeps what backward needs.
  const y = cn.scope(() => fn(xs));
  const gd = uniform(y.size, 999);
  const g = cn.tensor(gd, [...y.shape]);
  y.backward(g);
  const analytic = await Promise.all(xs.map(async (x) => (x.grad ? await x.grad.data() : null)));
  y.dispose();
  g.dispose();
  cn.zeroGrad(xs);
  xs.forEach((x) => x.dispose());

  const loss = (k: number, d: Float32Array) =>
    cn.noGrad(() =>
      cn.scope(() => {
        const ts = inputs.map((inp, i) => cn.tensor(i === k ? d : datas[i], inp.shape));
        return dot(fn(ts).dataSync(), gd);
      }),
    );
  let worst = 0;
  for (let i = 0; i < inputs.length; i++) {
    const a = analytic[i];
    expect(a, `input ${i} got a gradient`).not.toBeNull();
    const n = datas[i].length;
    const step = Math.max(1, Math.floor(n / (opts.samples ?? 64)));
    for (let j = 0; j < n; j += step) {
      if (opts.skip?.(i, j, datas[i])) continue;
      const d = datas[i].slice();
      d[j] = datas[i][j] + h;
      const up = loss(i, d);
      d[j] = datas[i][j] - h;
      const down = loss(i, d);
      const numeric = (up - down) / (2 * h);
      const err = Math.abs(numeric - a![j]) / Math.max(Math.abs(numeric), Math.abs(a![j]), 1);
      if (!(err <= tol)) {
        expect.fail(`input ${i} element ${j}: analytic ${a![j]}, numeric ${numeric}, error ${err} > ${tol}`);
      }
      worst = Math.max(worst, err);
    }
  }
  return worst;
}

/** Values spaced at least `gap` apart (a shuffled ramp), so small steps never reorder them. */
export function distinct(n: number, gap: number, seed: number): Float32Array {
  const order = Array.from({ length: n }, (_, i) => i);
  const r = uniform(n, seed);
  order.sort((a, b) => r[a] - r[b]);
  return Float32Array.from(order, (k) => (k - n / 2) * gap);
}
