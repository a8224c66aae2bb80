/**
 * Finite-difference gradient checks of the composition ops (broadcast gradients included) and of
 * user-defined ops (cn.customOp), with the checker of test/gradcheck.ts; then a residual block
 * built from these ops trained a few steps.
 */
import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { prod, trackLeaks, uniform } from './helpers.js';
import { distinct, gradCheck } from './gradcheck.js';

trackLeaks();


const positive = (shape: number[], seed: number) => ({ shape, data: uniform(prod(shape), seed).map((v) => 0.5 + Math.abs(v)) });

describe('add, sub, mul, div backward, broadcast operands reduced to their shapes', () => {
  const pairs: [number[], number[]][] = [
    [[2, 3], [2, 3]],
    [[2, 3], [3]],
    [[4, 1], [1, 5]],
    [[3, 1, 2], [4, 1]],
    [[2, 3, 4], []],
    [[1, 3], [2, 1, 1]],
  ];
  const fns = { add: cn.add, sub: cn.sub, mul: cn.mul, div: cn.div } as const;
  for (const [name, fn] of Object.entries(fns)) {
    for (const [as, bs] of pairs) {
      it(`${name} ${JSON.stringify(as)} x ${JSON.stringify(bs)}`, async () => {
        await gradCheck(([a, b]) => fn(a, b), [{ shape: as }, name === 'div' ? positive(bs, 5) : { shape: bs }]);
      });
    }
    it(`${name} with a number on either side`, async () => {
      await gradCheck(([a]) => fn(a, 1.5), [name === 'div' ? positive([2, 3], 6) : { shape: [2, 3] }]);
      await gradCheck(([b]) => fn(-2, b), [name === 'div' ? positive([2, 3], 6) : { shape: [2, 3] }]);
    });
  }
  it('one operand used twice (x * x + x)', async () => {
    await gradCheck(([x]) => cn.add(cn.mul(x, x), x), [{ shape: [3, 4] }]);
  });
});

describe('unary backward', () => {
  const cases: [string, (t: cn.Tensor) => cn.Tensor, boolean][] = [
    ['neg', cn.neg, false],
    ['exp', cn.exp, false],
    ['log', cn.log, true],
    ['sqrt', cn.sqrt, true],
    ['tanh', cn.tanh, false],
    ['sigmoid', cn.sigmoid, false],
    ['pow 2', (t) => cn.pow(t, 2), false],
    ['pow -1.5', (t) => cn.pow(t, -1.5), true],
    ['pow 0', (t) => cn.pow(t, 0), false],
  ];
  for (const [name, fn, pos] of cases) {
    it(name, async () => {
      await gradCheck(([x]) => fn(x), [pos ? positive([3, 7], 9) : { shape: [3, 7] }], { h: 1e-3, tol: 5e-3 });
    });
  }
});

describe('sum, mean, max backward', () => {
  const shape = [3, 4, 5];
  for (const axis of [undefined, 0, 1, 2, [0, 1], [1, 2], [0, 2], [-1, 0]] as (number | number[] | undefined)[]) {
    for (const keepDims of [false, true]) {
      it(`axis ${JSON.stringify(axis)} keepDims ${keepDims}`, async () => {
        await gradCheck(([x]) => cn.sum(x, { axis, keepDims }), [{ shape }]);
        await gradCheck(([x]) => cn.mean(x, { axis, keepDims }), [{ shape }]);
        await gradCheck(([x]) => cn.max(x, { axis, keepDims }), [{ shape, data: distinct(prod(shape), 0.05, 4) }]);
      });
    }
  }
});

describe('matmul and transpose backward', () => {
  it('matmul [M, K] x [K, N]', async () => {
    await gradCheck(([a, b]) => cn.matmul(a, b), [{ shape: [3, 4] }, { shape: [4, 5] }]);
  });
  it('matmul [B, M, K] x [B, K, N]', async () => {
    await gradCheck(([a, b]) => cn.matmul(a, b), [{ shape: [2, 3, 4] }, { shape: [2, 4, 2] }]);
  });
  it('transpose', async () => {
    await gradCheck(([x]) => cn.transpose(x, [2, 0, 1]), [{ shape: [2, 3, 4] }]);
    await gradCheck(([x]) => cn.transpose(x), [{ shape: [3, 5] }]);
  });
});

describe('composed layers backward', () => {
  it('softmax and batch normalisation', async () => {
    const softmax = (z: cn.Tensor) => {
      const e = cn.exp(cn.sub(z, cn.max(z, { axis: 1, keepDims: true })));
      return cn.div(e, cn.sum(e, { axis: 1, keepDims: true }));
    };
    await gradCheck(([z]) => softmax(z), [{ shape: [3, 5], data: distinct(15, 0.1, 2) }]);
    const bn = (x: cn.Tensor, g: cn.Tensor, b: cn.Tensor) => {
      const d = cn.sub(x, cn.mean(x, { axis: 0, keepDims: true }));
      const v = cn.mean(cn.mul(d, d), { axis: 0, keepDims: true });
      return cn.add(cn.mul(cn.div(d, cn.sqrt(cn.add(v, 1e-3))), g), b);
    };
    await gradCheck(([x, g, b]) => bn(x, g, b), [{ shape: [6, 4] }, { shape: [4] }, { shape: [4] }], { h: 1e-3, tol: 1e-2 });
  });
});

describe('customOp', () => {
  const square = cn.customOp({
    name: 'square',
    forward: (x) => cn.mul(x, x),
    backward: (g, { inputs: [x] }) => [cn.mul(g, cn.mul(x, 2))],
  });
  // f(a, b) = a * sigmoid(b), its backward from the saved output and inputs.
  const gate = cn.customOp({
    name: 'gate',
    forward: (a, b) => cn.mul(a, cn.sigmoid(b)),
    backward: (g, { inputs: [a, b] }) => {
      const s = cn.sigmoid(b);
      return [cn.mul(g, s), cn.mul(cn.mul(g, a), cn.mul(s, cn.sub(1, s)))];
    },
  });

  it('is gradient-checked like the built-in ops', async () => {
    await gradCheck(([x]) => square(x), [{ shape: [4, 3] }]);
    await gradCheck(([a, b]) => gate(a, b), [{ shape: [2, 5] }, { shape: [2, 5] }]);
    await gradCheck(([a, b]) => cn.sum(gate(square(a), cn.tanh(b)), { axis: 0 }), [{ shape: [3, 4] }, { shape: [3, 4] }]);
  });

  it('a single tensor or null may be returned; gradOutput itself may be returned', async () => {
    const ident = cn.customOp({ name: 'ident', forward: (x) => x, backward: (g) => g });
    const first = cn.customOp({ name: 'first', forward: (a, _b) => cn.add(a, 0), backward: (g) => [g, null] });
    const a = cn.tensor([1, 2], [2], { requiresGrad: true });
    const b = cn.tensor([3, 4], [2], { requiresGrad: true });
    const y = cn.scope(() => cn.sum(cn.mul(ident(a), first(a, b))));
    y.backward();
    expect([...(await a.grad!.data())]).toEqual([2, 4]);
    expect(b.grad).toBeNull();
    [y, a.grad!, a, b].forEach((t) => t.dispose());
  });

  it('tensors from outside that forward or backward return are left alive', async () => {
    const c = cn.tensor([5, 6], [2]);
    const k = cn.tensor([7, 8], [2]);
    const constant = cn.customOp({ name: 'constant', forward: (_x) => c, backward: () => [k] });
    const x = cn.tensor([1, 2], [2], { requiresGrad: true });
    const y = constant(x);
    y.backward(k);
    expect([...(await y.data())]).toEqual([5, 6]);
    expect([...(await x.grad!.data())]).toEqual([7, 8]);
    expect([...(await c.data())]).toEqual([5, 6]);
    expect([...(await k.data())]).toEqual([7, 8]);
    [y, x.grad!, x, c, k].forEach((t) => t.dispose());
  });
});

describe('fuse backward (one fused kernel per input gradient)', () => {
  const swish = cn.fuse((x) => x.mul(x.sigmoid()));
  const mix = cn.fuse((a, b, c) => a.mul(b).sub(c.tanh().div(b)).add(a.exp().mul(0.5)));
  const powers = cn.fuse((x, y) => x.pow(3).add(y.sqrt()).add(x.neg().log()));
  // 3 inputs, too long for one program (more than 32 instructions): runs op by op.
  const long = cn.fuse((a, b, c) => {
    let e = a;
    for (let i = 0; i < 12; i++) e = e.mul(b).add(c.div(i + 2));
    return e;
  });
  it('one input', async () => {
    await gradCheck(([x]) => swish(x), [{ shape: [3, 5] }]);
  });
  it('three broadcast inputs', async () => {
    await gradCheck(([a, b, c]) => mix(a, b, c), [{ shape: [2, 3, 4] }, { shape: [3, 1], data: uniform(3, 8).map((v) => 1 + Math.abs(v)) }, { shape: [4] }]);
  });
  it('pow, sqrt, log, neg', async () => {
    await gradCheck(([x, y]) => powers(x, y), [
      { shape: [4, 3], data: uniform(12, 3).map((v) => -0.5 - Math.abs(v)) },
      { shape: [3], data: uniform(3, 4).map((v) => 0.5 + Math.abs(v)) },
    ], { h: 1e-3, tol: 5e-3 });
  });
  it('an expression too long for one kernel falls back to op by op', async () => {
    await gradCheck(([a, b, c]) => long(a, b, c), [{ shape: [2, 3] }, { shape: [3] }, { shape: [2, 1] }], { h: 1e-3, tol: 5e-3 });
  });
});

describe('a residual block trained a few steps', () => {
  it('the loss falls', async () => {
    const N = 16, D = 6;
    const x = cn.tensor(uniform(N * D, 1), [N, D]);
    const target = cn.tensor(uniform(N * D, 2).map((v) => v * 0.5), [N, D]);
    const w1 = cn.tensor(uniform(D * D, 3).map((v) => v * 0.4), [D, D], { requiresGrad: true });
    const b1 = cn.zeros([D], { requiresGrad: true });
    const w2 = cn.tensor(uniform(D * D, 4).map((v) => v * 0.4), [D, D], { requiresGrad: true });
    const params = [w1, b1, w2];
    const losses: number[] = [];
    for (let step = 0; step < 30; step++) {
      const loss = cn.scope(() => {
        const h = cn.tanh(cn.add(cn.matmul(x, w1), b1));
        const y = cn.add(x, cn.matmul(h, w2));
        const d = cn.sub(y, target);
        return cn.mean(cn.mul(d, d));
      });
      losses.push((await loss.data())[0]);
      loss.backward();
      loss.dispose();
      for (const p of params) cn.sgdUpdate(p, p.grad!, null, { lr: 0.5 });
      cn.zeroGrad(params);
    }
    for (let i = 1; i < losses.length; i++) expect(losses[i]).toBeLessThan(losses[i - 1]);
    expect(losses[losses.length - 1]).toBeLessThan(0.5 * losses[0]);
    [x, target, ...params].forEach((t) => t.dispose());
  });
});
