/**
 * Every backward pass against central finite differences of L = sum(y * g) for a fixed random
 * g, with the error relative to max(|analytic|, |numeric|, 1). Inputs near a kink (relu at 0,
 * max-pool near-ties) are masked out, as in Caffe's gradient checker.
 */
import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { prod, trackLeaks, uniform } from './helpers.js';
import { distinct, gradCheck } from './gradcheck.js';

trackLeaks();

describe('conv2d backward', () => {
  const variants: [string, number[], number[], cn.Conv2dOptions][] = [
    ['plain', [2, 3, 5, 5], [4, 3, 3, 3], {}],
    ['stride and padding', [1, 2, 7, 6], [3, 2, 3, 2], { stride: [2, 3], padding: [1, 2] }],
    ['groups', [2, 4, 5, 5], [6, 2, 3, 3], { groups: 2, padding: 1 }],
    ['1x1', [2, 3, 3, 3], [2, 3, 1, 1], {}],
    ['stride larger than kernel', [1, 2, 8, 8], [2, 2, 2, 2], { stride: 3, padding: 1 }],
  ];
  for (const [name, xs, ws, opts] of variants) {
    it(`${name}: dx, dw and db`, async () => {
      await gradCheck(([x, w, b]) => cn.conv2d(x, w, b, opts), [{ shape: xs }, { shape: ws }, { shape: [ws[0]] }]);
    });
  }
  it('without bias', async () => {
    await gradCheck(([x, w]) => cn.conv2d(x, w, null, { padding: 1 }), [{ shape: [1, 2, 4, 4] }, { shape: [3, 2, 3, 3] }]);
  });
});

describe('relu backward', () => {
  it('matches finite differences away from 0', async () => {
    await gradCheck(([x]) => cn.relu(x), [{ shape: [3, 40] }], { skip: (_i, j, d) => Math.abs(d[j]) < 0.05, samples: 120 });
  });
});

describe('maxPool2d backward', () => {
  for (const [name, opts] of [
    ['3/2 overlapping', { kernel: 3, stride: 2 }],
    ['2/2 with padding', { kernel: 2, stride: 2, padding: 1 }],
    ['3x2 stride 1', { kernel: [3, 2], stride: 1 }],
  ] as [string, cn.MaxPool2dOptions][]) {
    it(name, async () => {
      const shape = [2, 2, 7, 7];
      await gradCheck(([x]) => cn.maxPool2d(x, opts), [{ shape, data: distinct(prod(shape), 0.05, 3) }], { samples: 200 });
    });
  }
});

describe('lrn backward', () => {
  for (const [size, C] of [[5, 7], [4, 6], [3, 2], [1, 3]]) {
    it(`size ${size}, C ${C}`, async () => {
      const shape = [2, C, 3, 3];
      const data = uniform(prod(shape), 77).map((v) => v * 2);
      await gradCheck(([x]) => cn.lrn(x, { size, alpha: 0.3, beta: 0.75, k: 2 }), [{ shape, data }], { samples: 100 });
    });
  }
});

describe('dropout backward', () => {
  it('with a fixed seed', async () => {
    await gradCheck(([x]) => cn.dropout(x, { p: 0.4, seed: 5 }), [{ shape: [4, 30] }], { samples: 120 });
  });
  it('in evaluation mode', async () => {
    await gradCheck(([x]) => cn.dropout(x, { p: 0.4, seed: 5, training: false }), [{ shape: [10] }]);
  });
});

describe('linear backward', () => {
  it('dx, dw and db', async () => {
    await gradCheck(([x, w, b]) => cn.linear(x, w, b), [{ shape: [5, 7] }, { shape: [4, 7] }, { shape: [4] }]);
  });
  it('without bias', async () => {
    await gradCheck(([x, w]) => cn.linear(x, w, null), [{ shape: [3, 2] }, { shape: [6, 2] }]);
  });
});

describe('softmaxCrossEntropy backward', () => {
  it('dlogits', async () => {
    const data = uniform(5 * 4, 8).map((v) => v * 3);
    await gradCheck(([z]) => cn.softmaxCrossEntropy(z, [0, 3, 1, 1, 2]), [{ shape: [5, 4], data }]);
  });
});

describe('shape ops backward', () => {
  it('concat, split, reshape, flatten and to()', async () => {
    await gradCheck(
      ([a, b]) => {
        const c = cn.concat([a, b, a], 1); // a used twice: its gradients add up
        const [p, q] = cn.split(c, [3, 4], 1);
        const moved = cn.flatten(q).to('cpu:1').to('cpu:0');
        return cn.concat([p.reshape([2, -1]), moved], 1);
      },
      [{ shape: [2, 2, 3] }, { shape: [2, 3, 3] }],
    );
  });
});

describe('a small network end to end', () => {
  it('conv, relu, pool, lrn, dropout, linear and the loss together', async () => {
    const xs = [2, 2, 6, 6];
    await gradCheck(
      ([x, w1, b1, w2]) => {
        const h = cn.lrn(cn.maxPool2d(cn.relu(cn.conv2d(x, w1, b1, { padding: 1 })), { kernel: 2 }), { size: 3, alpha: 0.1, beta: 0.75, k: 2 });
        const z = cn.linear(cn.dropout(cn.flatten(h), { p: 0.25, seed: 3 }), w2, null);
        return cn.softmaxCrossEntropy(z, [1, 2]);
      },
      [{ shape: xs }, { shape: [3, 2, 3, 3] }, { shape: [3] }, { shape: [4, 27] }],
      { h: 1e-3, tol: 5e-3 },
    );
  });
});
