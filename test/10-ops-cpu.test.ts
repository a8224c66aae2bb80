/**
 * Every op's forward pass on the CPU: against the naive references on random inputs, exact
 * hand-computed edge cases, and identities that must hold exactly.
 */
import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { expectClose, prod, rand, trackLeaks, uniform } from './helpers.js';
import { conv2dRef, convOut, linearRef, lrnRef, maxPoolRef, softmaxXentRef, type ConvParams } from './reference.js';

trackLeaks();

async function values(t: cn.Tensor): Promise<number[]> {
  const d = Array.from(await t.data());
  t.dispose();
  return d;
}

describe('conv2d', () => {
  const cases: ConvParams[] = [
    { N: 2, C: 3, H: 7, W: 6, F: 4, KH: 3, KW: 3, sh: 1, sw: 1, ph: 1, pw: 1, groups: 1 },
    { N: 1, C: 4, H: 9, W: 9, F: 6, KH: 5, KW: 3, sh: 2, sw: 3, ph: 2, pw: 0, groups: 2 },
    { N: 3, C: 1, H: 5, W: 5, F: 2, KH: 1, KW: 1, sh: 1, sw: 1, ph: 0, pw: 0, groups: 1 },
    { N: 2, C: 6, H: 4, W: 5, F: 6, KH: 4, KW: 5, sh: 1, sw: 1, ph: 0, pw: 0, groups: 3 },
    { N: 1, C: 2, H: 11, W: 11, F: 3, KH: 11, KW: 11, sh: 4, sw: 4, ph: 2, pw: 2, groups: 1 },
    { N: 2, C: 3, H: 8, W: 8, F: 5, KH: 2, KW: 2, sh: 5, sw: 5, ph: 0, pw: 0, groups: 1 },
  ];
  for (const p of cases) {
    it(`matches the reference for ${JSON.stringify(p)}`, async () => {
      const xs = [p.N, p.C, p.H, p.W], ws = [p.F, p.C / p.groups, p.KH, p.KW];
      const xd = uniform(prod(xs), 1), wd = uniform(prod(ws), 2), bd = uniform(p.F, 3);
      const x = cn.tensor(xd, xs), w = cn.tensor(wd, ws), b = cn.tensor(bd, [p.F]);
      const y = cn.conv2d(x, w, b, { stride: [p.sh, p.sw], padding: [p.ph, p.pw], groups: p.groups });
      expect(y.shape).toEqual([p.N, p.F, ...convOut(p)]);
      expectClose(await values(y), conv2dRef(p, xd, wd, bd), 1e-5);
      const y2 = cn.conv2d(x, w, null, { stride: [p.sh, p.sw], padding: [p.ph, p.pw], groups: p.groups });
      expectClose(await values(y2), conv2dRef(p, xd, wd, null), 1e-5);
      for (const t of [x, w, b]) t.dispose();
    });
  }

  it('grouped conv equals the per-group convs concatenated', async () => {
    const G = 2;
    const x = rand([2, 4, 6, 6], 10), w = rand([6, 2, 3, 3], 11), b = rand([6], 12);
    const y = cn.conv2d(x, w, b, { padding: 1, groups: G });
    const xs = cn.split(x, [2, 2], 1), wsplit = cn.split(w, [3, 3], 0), bs = cn.split(b, [3, 3], 0);
    const parts = [0, 1].map((g) => cn.conv2d(xs[g], wsplit[g], bs[g], { padding: 1 }));
    const joined = cn.concat(parts, 1);
    expect(await values(joined)).toEqual(await values(y));
    for (const t of [x, w, b, ...xs, ...wsplit, ...bs, ...parts]) t.dispose();
  });
});

describe('relu', () => {
  it('is 0 at 0 and for negatives, the identity for positives', async () => {
    const x = cn.tensor([-2, -0, 0, 1e-30, 3.5], [5]);
    expect(await values(cn.relu(x))).toEqual([0, 0, 0, 1e-30, 3.5].map((v) => Math.fround(v)));
    x.dispose();
  });
});

describe('NaN propagates as in PyTorch', () => {
  it('relu keeps NaN, and its gradient passes through a NaN input', async () => {
    const x = cn.tensor([NaN, -1, 2, -Infinity, Infinity], [5], { requiresGrad: true });
    const y = cn.relu(x);
    const g = cn.tensor([5, 6, 7, 8, 9], [5]);
    expect(Array.from(await y.data())).toEqual([NaN, 0, 2, 0, Infinity]);
    y.backward(g);
    expect(await values(x.grad!)).toEqual([5, 0, 7, 0, 9]);
    for (const t of [x, y, g]) t.dispose();
  });

  it('a NaN in a max-pool window wins it; windows without one are untouched', async () => {
    const x = cn.tensor([1, NaN, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], [1, 1, 4, 4]);
    expect(await values(cn.maxPool2d(x, { kernel: 2 }))).toEqual([NaN, 8, 14, 16]);
    x.dispose();
  });

  it('lrn and softmax cross-entropy carry NaN to their outputs', async () => {
    const x = cn.tensor([1, NaN, 3, 4], [1, 4, 1, 1]);
    const y = await values(cn.lrn(x, { size: 3 }));
    expect(y.map(Number.isNaN)).toEqual([true, true, true, false]);
    const z = cn.tensor([0, NaN, 1, 1, 2, 3], [2, 3]);
    expect(Number.isNaN((await values(cn.softmaxCrossEntropy(z, [0, 1])))[0])).toBe(true);
    x.dispose();
    z.dispose();
  });
});

describe('maxPool2d', () => {
  it('matches the reference with overlap, stride and padding', async () => {
    for (const p of [
      { N: 2, C: 3, H: 9, W: 8, KH: 3, KW: 3, sh: 2, sw: 2, ph: 0, pw: 0 },
      { N: 1, C: 2, H: 6, W: 7, KH: 3, KW: 2, sh: 1, sw: 3, ph: 1, pw: 1 },
      { N: 1, C: 1, H: 5, W: 5, KH: 5, KW: 5, sh: 1, sw: 1, ph: 2, pw: 2 },
    ]) {
      const xs = [p.N, p.C, p.H, p.W];
      const xd = uniform(prod(xs), 4);
      const x = cn.tensor(xd, xs);
      const y = cn.maxPool2d(x, { kernel: [p.KH, p.KW], stride: [p.sh, p.sw], padding: [p.ph, p.pw] });
      expect(await values(y)).toEqual(Array.from(maxPoolRef(p, xd)).map(Math.fround));
      x.dispose();
    }
  });

  it('padded cells never win, even over negative inputs', async () => {
    const x = cn.tensor([-5, -4, -3, -2], [1, 1, 2, 2]);
    const y = cn.maxPool2d(x, { kernel: 2, stride: 2, padding: 1 });
    expect(y.shape).toEqual([1, 1, 2, 2]);
    expect(await values(y)).toEqual([-5, -4, -3, -2]);
    x.dispose();
  });

  it('sends the gradient of a tie to the first maximum in row-major order', async () => {
    const x = cn.tensor([1, 7, 7, 7], [1, 1, 2, 2], { requiresGrad: true });
    const y = cn.maxPool2d(x, { kernel: 2 });
    expect(await y.data()).toEqual(new Float32Array([7]));
    const g = cn.tensor([1], [1, 1, 1, 1]);
    y.backward(g);
    expect(Array.from(await x.grad!.data())).toEqual([0, 1, 0, 0]);
    cn.zeroGrad([x]);
    g.dispose();
    y.dispose();
    x.dispose();
  });

  it('uses floor mode and a default stride equal to the kernel', () => {
    const x = cn.zeros([1, 1, 7, 7]);
    const y = cn.maxPool2d(x, { kernel: 3 });
    expect(y.shape).toEqual([1, 1, 2, 2]);
    const z = cn.maxPool2d(x, { kernel: 3, stride: 2 });
    expect(z.shape).toEqual([1, 1, 3, 3]);
    for (const t of [x, y, z]) t.dispose();
  });
});

describe('lrn', () => {
  it('matches the reference, odd and even sizes, size larger than C', async () => {
    for (const [size, C] of [[5, 7], [4, 6], [2, 3], [9, 4], [1, 2]]) {
      const shape = [2, C, 3, 2];
      const xd = uniform(prod(shape), 5 + size).map((v) => v * 3);
      const x = cn.tensor(xd, shape);
      const y = cn.lrn(x, { size, alpha: 0.5, beta: 0.75, k: 2 });
      expectClose(await values(y), lrnRef(shape, xd, size, 0.5, 0.75, 2), 1e-6);
      x.dispose();
    }
  });

  it('at the first and last channel counts the missing channels as zero (even size)', async () => {
    // C = 3, size = 4: window of c is [c-2, c+1]. Channel 0 sees {0, 1}; channel 2 sees {0, 1, 2}.
    const x = cn.tensor([1, 2, 3], [1, 3, 1, 1]);
    const [a0, a1, a2] = await values(cn.lrn(x, { size: 4, alpha: 4, beta: 1, k: 1 }));
    // (alpha/size) = 1, so y_c = x_c / (1 + sum of squares in the window).
    expect(a0).toBeCloseTo(1 / (1 + 1 + 4), 6);
    expect(a1).toBeCloseTo(2 / (1 + 1 + 4 + 9), 6);
    expect(a2).toBeCloseTo(3 / (1 + 1 + 4 + 9), 6);
    x.dispose();
  });
});

describe('dropout', () => {
  it('keeps exactly x/(1-p), drops a fraction within 4 sigma of p, and the seed names the mask', async () => {
    const n = 20000, p = 0.3;
    const x = cn.full([n], 2);
    const y = await values(cn.dropout(x, { p, seed: 7 }));
    const again = await values(cn.dropout(x, { p, seed: 7 }));
    const other = await values(cn.dropout(x, { p, seed: 8 }));
    const onCpu1 = cn.full([n], 2, { device: 'cpu:1' });
    const y1 = await values(cn.dropout(onCpu1, { p, seed: 7 }));
    const kept = Math.fround(Math.fround(2) * Math.fround(1 / (1 - p)));
    let dropped = 0;
    for (const v of y) {
      if (v === 0) dropped++;
      else expect(v).toBe(kept);
    }
    const sigma = Math.sqrt(n * p * (1 - p));
    expect(Math.abs(dropped - n * p)).toBeLessThan(4 * sigma);
    expect(again).toEqual(y);
    expect(y1).toEqual(y);
    expect(other).not.toEqual(y);
    x.dispose();
    onCpu1.dispose();
  });

  it('is the identity when training is false or p is 0', async () => {
    const x = cn.tensor([1, 2, 3], [3]);
    expect(await values(cn.dropout(x, { p: 0.5, seed: 1, training: false }))).toEqual([1, 2, 3]);
    expect(await values(cn.dropout(x, { p: 0, seed: 1 }))).toEqual([1, 2, 3]);
    x.dispose();
  });
});

describe('linear', () => {
  it('matches the reference with and without bias', async () => {
    for (const [N, K, M] of [[3, 5, 4], [1, 1, 1], [17, 33, 9], [64, 130, 70]]) {
      const xd = uniform(N * K, 1), wd = uniform(M * K, 2), bd = uniform(M, 3);
      const x = cn.tensor(xd, [N, K]), w = cn.tensor(wd, [M, K]), b = cn.tensor(bd, [M]);
      expectClose(await values(cn.linear(x, w, b)), linearRef(N, K, M, xd, wd, bd), 1e-5);
      expectClose(await values(cn.linear(x, w, null)), linearRef(N, K, M, xd, wd, null), 1e-5);
      for (const t of [x, w, b]) t.dispose();
    }
  });
});

describe('softmaxCrossEntropy', () => {
  it('matches the reference and is a scalar', async () => {
    const z = uniform(4 * 6, 9).map((v) => v * 5);
    const logits = cn.tensor(z, [4, 6]);
    const loss = cn.softmaxCrossEntropy(logits, new Int32Array([0, 5, 2, 3]));
    expect(loss.shape).toEqual([]);
    expect(loss.size).toBe(1);
    expectClose(await values(loss), [softmaxXentRef(4, 6, z, [0, 5, 2, 3])], 1e-6);
    const labels = cn.tensor(new Int32Array([1, 1, 1, 1]), [4]);
    expectClose(await values(cn.softmaxCrossEntropy(logits, labels)), [softmaxXentRef(4, 6, z, [1, 1, 1, 1])], 1e-6);
    logits.dispose();
    labels.dispose();
  });

  it('is stable for logits of +-1000', async () => {
    const logits = cn.tensor([1000, -1000, 0, -1000, 1000, 1000], [2, 3], { requiresGrad: true });
    const loss = cn.softmaxCrossEntropy(logits, [0, 0]);
    // Row 0: the label holds all the mass, loss 0. Row 1: log(2 e^1000) - (-1000) = 2000 + ln 2.
    const [l] = await loss.data();
    expect(l).toBeCloseTo((0 + 2000 + Math.LN2) / 2, 2);
    loss.backward();
    const g = Array.from(await logits.grad!.data());
    expect(g.every(Number.isFinite)).toBe(true);
    expectClose(g, [0, 0, 0, -0.5, 0.25, 0.25], 1e-7);
    cn.zeroGrad([logits]);
    loss.dispose();
    logits.dispose();
  });
});

describe('concat / split / flatten', () => {
  it('concat along any axis equals the manual interleave, split undoes it', async () => {
    const a = cn.tensor([1, 2, 3, 4], [2, 2]), b = cn.tensor([5, 6], [2, 1]);
    const c = cn.concat([a, b], 1);
    expect(c.shape).toEqual([2, 3]);
    expect(await c.array()).toEqual([[1, 2, 5], [3, 4, 6]]);
    const [p, q] = cn.split(c, [2, 1], -1);
    expect(await values(p)).toEqual([1, 2, 3, 4]);
    expect(await values(q)).toEqual([5, 6]);
    const r = cn.concat([a, a], 0);
    expect(await values(r)).toEqual([1, 2, 3, 4, 1, 2, 3, 4]);
    for (const t of [a, b, c]) t.dispose();
  });
});

describe('sgdUpdate', () => {
  it('follows v = m v + (g + wd w); w -= lr v', async () => {
    const w = cn.tensor([1, -2], [2]), g = cn.tensor([0.5, 0.25], [2]), v = cn.tensor([0.1, 0.2], [2]);
    cn.sgdUpdate(w, g, v, { lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
    const v0 = 0.9 * 0.1 + (0.5 + 0.01 * 1), v1 = 0.9 * 0.2 + (0.25 + 0.01 * -2);
    expectClose(await v.data(), [v0, v1], 1e-7);
    expectClose(await w.data(), [1 - 0.1 * v0, -2 - 0.1 * v1], 1e-7);
    cn.sgdUpdate(w, g, null, { lr: 1 });
    expectClose(await w.data(), [1 - 0.1 * v0 - 0.5, -2 - 0.1 * v1 - 0.25], 1e-7);
    for (const t of [w, g, v]) t.dispose();
  });
});
