/**
 * The composition ops (add ... div with broadcasting, unary functions, sum/mean/max, matmul,
 * transpose) against naive float64 references on the CPU; a property test over random
 * broadcastable shapes; batch normalisation and softmax composed from these ops against
 * hand-computed values; bad inputs with their exact error classes and messages.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { native } from '../src/native.js';
import { expectClose, expectError, prod, trackLeaks, uniform } from './helpers.js';

trackLeaks();

const { ShapeError, DeviceError } = cn;

// ---- Naive references over flat arrays -------------------------------------------------------

function stridesOf(shape: readonly number[]): number[] {
  const st: number[] = [];
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    st[d] = s;
    s *= shape[d];
  }
  return st;
}

function unravel(i: number, shape: readonly number[]): number[] {
  const c = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    c[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return c;
}

/** NumPy broadcasting, element by element. */
function broadcastRef(f: (a: number, b: number) => number, a: Float32Array, as: number[], b: Float32Array, bs: number[]) {
  const rank = Math.max(as.length, bs.length);
  const pa = [...new Array(rank - as.length).fill(1), ...as];
  const pb = [...new Array(rank - bs.length).fill(1), ...bs];
  const out = pa.map((d, i) => (d === 1 ? pb[i] : d));
  const sa = stridesOf(pa), sb = stridesOf(pb);
  const y = new Float64Array(prod(out));
  for (let i = 0; i < y.length; i++) {
    const c = unravel(i, out);
    let oa = 0, ob = 0;
    c.forEach((v, d) => {
      oa += (pa[d] === 1 ? 0 : v) * sa[d];
      ob += (pb[d] === 1 ? 0 : v) * sb[d];
    });
    y[i] = f(a[oa], b[ob]);
  }
  return { y, shape: out };
}

function reduceRef(x: Float32Array, shape: number[], axes: number[], kind: 'sum' | 'mean' | 'max') {
  const keep = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const n = prod(keep);
  const acc = new Float64Array(n).fill(kind === 'max' ? -Infinity : 0);
  const ks = stridesOf(keep);
  for (let i = 0; i < x.length; i++) {
    const c = unravel(i, shape);
    let o = 0;
    c.forEach((v, d) => (o += (axes.includes(d) ? 0 : v) * ks[d]));
    acc[o] = kind === 'max' ? Math.max(acc[o], x[i]) : acc[o] + x[i];
  }
  if (kind === 'mean') {
    const r = prod(axes.map((a) => shape[a]));
    for (let i = 0; i < n; i++) acc[i] /= r;
  }
  return acc;
}

function matmulRef(a: Float32Array, b: Float32Array, B: number, M: number, K: number, N: number) {
  const y = new Float64Array(B * M * N);
  for (let q = 0; q < B; q++)
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[q * M * K + i * K + k] * b[q * K * N + k * N + j];
        y[q * M * N + i * N + j] = s;
      }
  return y;
}

const ops = {
  add: [cn.add, (p: number, q: number) => p + q],
  sub: [cn.sub, (p: number, q: number) => p - q],
  mul: [cn.mul, (p: number, q: number) => p * q],
  div: [cn.div, (p: number, q: number) => p / q],
} as const;

// ---- Element-wise binary ------------------------------------------------------------------------

describe('add, sub, mul, div', () => {
  const cases: [number[], number[]][] = [
    [[2, 3], [2, 3]],
    [[2, 3], [3]],
    [[4, 1], [1, 5]],
    [[2, 1, 3], [4, 1]],
    [[], [3, 2]],
    [[1], [2, 2, 2]],
    [[3, 1, 2, 1, 2], [1, 4, 1, 3, 1]],
    [[0, 3], [3]],
  ];
  for (const [name, [fn, ref]] of Object.entries(ops)) {
    it(`${name} broadcasts like NumPy`, async () => {
      for (const [as, bs] of cases) {
        const ad = uniform(prod(as), 1);
        const bd = uniform(prod(bs), 2).map((v) => (name === 'div' ? v + Math.sign(v) * 0.5 || 0.5 : v));
        const want = broadcastRef(ref, ad, as, bd, bs);
        const y = cn.scope(() => fn(cn.tensor(ad, as), cn.tensor(bd, bs)));
        expect(y.shape).toEqual(want.shape);
        expectClose(await y.data(), want.y, 1e-6);
        y.dispose();
      }
    });
  }

  it('takes plain numbers on either side', async () => {
    const x = cn.tensor([1, 2, 4], [3]);
    const ys = [cn.add(x, 1), cn.sub(10, x), cn.mul(x, -0.5), cn.div(1, x), cn.div(x, 0)];
    expect(await Promise.all(ys.map((y) => y.array()))).toEqual([
      [2, 3, 5], [9, 8, 6], [-0.5, -1, -2], [1, 0.5, 0.25], [Infinity, Infinity, Infinity],
    ]);
    ys.forEach((y) => y.dispose());
    x.dispose();
  });

  it('an empty broadcast gives an empty tensor', async () => {
    const y = cn.scope(() => cn.add(cn.zeros([0, 3]), cn.zeros([3])));
    expect(y.shape).toEqual([0, 3]);
    expect((await y.data()).length).toBe(0);
    y.dispose();
  });

  it('large broadcasts split over the thread pool', async () => {
    for (const [as, bs] of [[[300, 7, 40], [7, 1]], [[3, 1, 50, 400], [2, 1, 400]]] as [number[], number[]][]) {
      const ad = uniform(prod(as), 5), bd = uniform(prod(bs), 6);
      const want = broadcastRef((p, q) => p - q, ad, as, bd, bs);
      const y = cn.scope(() => cn.sub(cn.tensor(ad, as), cn.tensor(bd, bs)));
      expectClose(await y.data(), want.y, 1e-6);
      const t = cn.scope(() => cn.transpose(y, [2, 0, ...(as.length === 4 ? [3] : []), 1]));
      const back = cn.scope(() => cn.transpose(t, as.length === 4 ? [1, 3, 0, 2] : [1, 2, 0]));
      expect([...(await back.data())]).toEqual([...(await y.data())]);
      [y, t, back].forEach((v) => v.dispose());
    }
  });

  it('more than 8 dims work when contiguous dims merge', async () => {
    const shape = [2, 1, 2, 1, 2, 1, 2, 1, 2, 2];
    const y = cn.scope(() => cn.mul(cn.full(shape, 3), cn.full([2], 2)));
    expect([...(await y.data())].every((v) => v === 6)).toBe(true);
    y.dispose();
  });
});

describe('element-wise ops over random broadcastable shapes (property)', () => {
  it('match the naive reference', () => {
    const dim = fc.integer({ min: 1, max: 4 });
    fc.assert(
      fc.property(
        fc.array(dim, { minLength: 0, maxLength: 5 }),
        fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
        fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
        fc.integer({ min: 0, max: 5 }),
        fc.integer({ min: 0, max: 5 }),
        fc.constantFrom('add', 'sub', 'mul', 'div'),
        fc.integer({ min: 0, max: 1000 }),
        (out, onesA, onesB, dropA, dropB, name, seed) => {
          // Each operand: a suffix of the output shape with some dims set to 1.
          const as = out.slice(Math.min(dropA, out.length)).map((d, i) => (onesA[i] ? 1 : d));
          const bs = out.slice(Math.min(dropB, out.length)).map((d, i) => (onesB[i] ? 1 : d));
          const [fn, ref] = ops[name as keyof typeof ops];
          const ad = uniform(prod(as), seed);
          const bd = uniform(prod(bs), seed + 1).map((v) => v + (v < 0 ? -0.25 : 0.25));
          const want = broadcastRef(ref, ad, as, bd, bs);
          cn.scope(() => {
            const y = fn(cn.tensor(ad, as), cn.tensor(bd, bs));
            expect(y.shape).toEqual(want.shape);
            expectClose(y.dataSync(), want.y, 1e-6);
          });
        },
      ),
      { numRuns: 150, seed: 11 },
    );
  });
});

// ---- Unary ----------------------------------------------------------------------------------------

describe('neg, exp, log, sqrt, tanh, sigmoid, pow', () => {
  const x = [0.25, 0.5, 1, 2, 3.5];
  const unaries: [string, (t: cn.Tensor) => cn.Tensor, (v: number) => number][] = [
    ['neg', cn.neg, (v) => -v],
    ['exp', cn.exp, Math.exp],
    ['log', cn.log, Math.log],
    ['sqrt', cn.sqrt, Math.sqrt],
    ['tanh', cn.tanh, Math.tanh],
    ['sigmoid', cn.sigmoid, (v) => 1 / (1 + Math.exp(-v))],
    ['pow 3', (t) => cn.pow(t, 3), (v) => v ** 3],
    ['pow -0.5', (t) => cn.pow(t, -0.5), (v) => v ** -0.5],
  ];
  for (const [name, fn, ref] of unaries) {
    it(name, async () => {
      const y = cn.scope(() => fn(cn.tensor(x, [5])));
      expectClose(await y.data(), x.map(ref), 1e-6);
      y.dispose();
    });
  }

  it('edge values follow C: log(0) = -inf, sqrt(-1) = NaN, sigmoid saturates', async () => {
    const ys = cn.scope(() => {
      const t = cn.tensor([0, -1, -100, 100], [4]);
      return [cn.log(t), cn.sqrt(t), cn.sigmoid(t), cn.tanh(t)];
    });
    const [l, s, g, th] = await Promise.all(ys.map((y) => y.data()));
    expect(l[0]).toBe(-Infinity);
    expect(Number.isNaN(l[1])).toBe(true);
    expect(Number.isNaN(s[1])).toBe(true);
    expect([g[2], g[3]]).toEqual([0, 1]);
    expect([th[2], th[3]]).toEqual([-1, 1]);
    ys.forEach((y) => y.dispose());
  });
});

// ---- Reductions -----------------------------------------------------------------------------------

describe('sum, mean, max', () => {
  const shape = [3, 4, 5, 2];
  const xd = uniform(prod(shape), 7);
  const axesCases: (number | number[] | undefined)[] = [undefined, 0, 1, -1, [0, 1], [1, 3], [0, 2], [0, 1, 2, 3], [3, 0, 2]];
  for (const kind of ['sum', 'mean', 'max'] as const) {
    it(`${kind} over one or several axes, with and without keepDims`, async () => {
      for (const axis of axesCases) {
        for (const keepDims of [false, true]) {
          const list = axis === undefined ? [0, 1, 2, 3] : (Array.isArray(axis) ? axis : [axis]).map((a) => (a + 4) % 4);
          const want = reduceRef(xd, shape, list, kind);
          const y = cn.scope(() => cn[kind](cn.tensor(xd, shape), { axis, keepDims }));
          const wantShape = keepDims ? shape.map((d, i) => (list.includes(i) ? 1 : d)) : shape.filter((_, i) => !list.includes(i));
          expect(y.shape, `${kind} axis ${JSON.stringify(axis)} keepDims ${keepDims}`).toEqual(wantShape);
          expectClose(await y.data(), want, 1e-5);
          y.dispose();
        }
      }
    });
  }

  it('match the naive reference over random shapes and axes (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 0, maxLength: 5 }),
        fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
        fc.boolean(),
        fc.boolean(),
        fc.constantFrom('sum', 'mean', 'max'),
        fc.integer({ min: 0, max: 1000 }),
        (shape, pick, all, keepDims, kind, seed) => {
          const axes = shape.map((_, i) => i).filter((i) => pick[i]);
          const xd = uniform(prod(shape), seed);
          const want = reduceRef(xd, shape, all ? shape.map((_, i) => i) : axes, kind as 'sum' | 'mean' | 'max');
          cn.scope(() => {
            const y = cn[kind as 'sum'](cn.tensor(xd, shape), all ? { keepDims } : { axis: axes, keepDims });
            expect(y.size).toBe(want.length);
            expectClose(y.dataSync(), want, 1e-5);
          });
        },
      ),
      { numRuns: 150, seed: 12 },
    );
  });

  it('no axis reduces to a 0-dim scalar; backward() needs no gradOutput', async () => {
    const x = cn.tensor([1, 2, 3, 4], [2, 2], { requiresGrad: true });
    const s = cn.sum(x);
    expect(s.shape).toEqual([]);
    expect([...(await s.data())]).toEqual([10]);
    s.backward();
    expect([...(await x.grad!.data())]).toEqual([1, 1, 1, 1]);
    s.dispose();
    x.grad!.dispose();
    x.dispose();
  });

  it('max: the gradient goes to the first maximum; a NaN wins', async () => {
    const x = cn.tensor([1, 5, 5, 2, 3, 3], [2, 3], { requiresGrad: true });
    const m = cn.max(x, { axis: 1 });
    expect(await m.array()).toEqual([5, 3]);
    const g = cn.tensor([10, 20], [2]);
    m.backward(g);
    expect(await x.grad!.array()).toEqual([[0, 10, 0], [0, 20, 0]]);
    const n = cn.scope(() => cn.max(cn.tensor([1, NaN, 3], [3])));
    expect(Number.isNaN((await n.data())[0])).toBe(true);
    [m, n, g, x.grad!, x].forEach((t) => t.dispose());
  });

  it('sums repeat bit for bit', async () => {
    const a = cn.scope(() => cn.sum(cn.tensor(uniform(100000, 3), [100000])));
    const b = cn.scope(() => cn.sum(cn.tensor(uniform(100000, 3), [100000])));
    expect([...(await a.data())]).toEqual([...(await b.data())]);
    a.dispose();
    b.dispose();
  });
});

// ---- matmul, transpose ----------------------------------------------------------------------------

describe('matmul and transpose', () => {
  it('matmul 2-D and batched', async () => {
    for (const [B, M, K, N, batched] of [[1, 3, 4, 5, false], [1, 1, 7, 1, false], [3, 2, 6, 4, true], [2, 17, 33, 9, true], [1, 2, 0, 3, false]] as const) {
      const ad = uniform(B * M * K, 1), bd = uniform(B * K * N, 2);
      const y = cn.scope(() =>
        cn.matmul(cn.tensor(ad, batched ? [B, M, K] : [M, K]), cn.tensor(bd, batched ? [B, K, N] : [K, N])));
      expect(y.shape).toEqual(batched ? [B, M, N] : [M, N]);
      expectClose(await y.data(), matmulRef(ad, bd, B, M, K, N), 1e-5);
      y.dispose();
    }
  });

  it('transpose permutes dims (a copy)', async () => {
    const shape = [2, 3, 4];
    const xd = uniform(24, 4);
    for (const perm of [[0, 1, 2], [2, 1, 0], [1, 0, 2], [0, 2, 1], [2, 0, 1]]) {
      const y = cn.scope(() => cn.transpose(cn.tensor(xd, shape), perm));
      const out = perm.map((d) => shape[d]);
      expect(y.shape).toEqual(out);
      const want = new Float32Array(24);
      const st = stridesOf(shape);
      for (let i = 0; i < 24; i++) {
        const c = unravel(i, out);
        want[i] = xd[c.reduce((o, v, k) => o + v * st[perm[k]], 0)];
      }
      expect([...(await y.data())]).toEqual([...want]);
      y.dispose();
    }
    const t = cn.scope(() => cn.transpose(cn.tensor([1, 2, 3, 4, 5, 6], [2, 3])));
    expect(await t.array()).toEqual([[1, 4], [2, 5], [3, 6]]);
    t.dispose();
  });
});

// ---- fuse ---------------------------------------------------------------------------------------

describe('fuse', () => {
  it('computes what the op-by-op chain computes, in one kernel', async () => {
    const f = cn.fuse((a, b, c) => a.mul(b).add(c.exp().div(2)).sub(1).sigmoid().pow(2).neg());
    const ad = uniform(24, 1), bd = uniform(4, 2), cd = uniform(6, 3);
    const [fused, chain] = cn.scope(() => {
      const a = cn.tensor(ad, [2, 3, 4]), b = cn.tensor(bd, [4]), c = cn.tensor(cd, [2, 3, 1]);
      const slow = cn.neg(cn.pow(cn.sigmoid(cn.sub(cn.add(cn.mul(a, b), cn.div(cn.exp(c), 2)), 1)), 2));
      slow.dataSync(); // everything queued so far has run
      cn.traceStart();
      const quick = f(a, b, c);
      quick.dataSync();
      const ops = cn.traceStop().map((e) => e.op);
      expect(ops.filter((o) => o !== 'fill')).toEqual(['fused']);
      return [quick, slow];
    });
    expect(fused.shape).toEqual([2, 3, 4]);
    expectClose(await fused.data(), await chain.data(), 1e-6);
    fused.dispose();
    chain.dispose();
  });

  it('constants, an input returned as is, and a long expression', async () => {
    const ident = cn.fuse((x) => x);
    const seven = cn.fuse((_x) => new cn.Expr('const', [], 3).add(4));
    const long = cn.fuse((x) => {
      let e = x;
      for (let i = 0; i < 20; i++) e = e.add(i).mul(0.5);
      return e;
    });
    const x = cn.tensor([1, 2], [2]);
    const ys = [ident(x), seven(x), long(x)];
    const want = [1, 2].map((v) => {
      let e = v;
      for (let i = 0; i < 20; i++) e = (e + i) * 0.5;
      return e;
    });
    expect([...(await ys[0].data())]).toEqual([1, 2]);
    expect([...(await ys[1].data())]).toEqual([7, 7]);
    expectClose(await ys[2].data(), want, 1e-6);
    [...ys, x].forEach((t) => t.dispose());
  });

  it('bad definitions and inputs', () => {
    expectError(() => cn.fuse((() => null) as never), ShapeError, 'fuse: fn must take 1 to 5 arguments, received a function of 0');
    expectError(() => cn.fuse(((x: cn.Expr) => x.add('1' as never)) as never), ShapeError,
      "fuse: the operand of add must be an expression or a number, received '1'");
    expectError(() => cn.fuse((x) => x.pow(Infinity)), ShapeError, "fuse: pow's exponent must be a finite number, received Infinity");
    const f = cn.fuse((a, b) => a.add(b));
    const a = cn.zeros([2, 3]), b = cn.zeros([4]);
    expectError(() => f(a, b), ShapeError, 'fuse: shapes [2, 3] and [4] do not broadcast');
    expectError(() => f(a), ShapeError, 'fuse: expected 2 tensor(s), received 1');
    a.dispose();
    b.dispose();
  });

  it('the native op table checks the program', () => {
    const y = cn.zeros([4]);
    const h = (t: cn.Tensor) => t._handle('test');
    const ints = (inputs: number, code: number[]) => {
      const strides = new Array(48).fill(0);
      for (let k = 0; k < inputs; k++) strides[k * 8] = 1;
      return [inputs, 1, 4, 4, 1, 1, 1, 1, 1, 1, 1, ...strides, code.length, ...code, ...new Array(32 - code.length).fill(0)];
    };
    const ts = [h(y), h(y), null, null, null, null, null];
    const consts = new Array(8).fill(0);
    expectError(() => native.launch('fused', ts, ints(1, [0, 0 * 256 + 0, 2 * 256 + 0, 2 * 256 + 0]), consts), ShapeError,
      'fused: instruction 3 pops an empty stack');
    expectError(() => native.launch('fused', ts, ints(1, [1]), consts), ShapeError,
      'fused: instruction 0 (opcode 0) has argument 1, at most 0 allowed');
    expectError(() => native.launch('fused', ts, ints(1, [0, 0]), consts), ShapeError,
      'fused: the program must leave exactly one value, it leaves 2');
    expectError(() => native.launch('fused', ts, ints(1, new Array(9).fill(0)), consts), ShapeError,
      'fused: the program needs more than 8 stack slots');
    expectError(() => native.launch('fused', ts, ints(2, [0]), consts), ShapeError, 'fused: input 1 is missing');
    y.dispose();
  });
});

// ---- Layers composed from these ops, against hand-computed values ---------------------------------

describe('composed layers', () => {
  it('softmax over rows', async () => {
    const softmax = (z: cn.Tensor) => {
      const e = cn.exp(cn.sub(z, cn.max(z, { axis: 1, keepDims: true })));
      return cn.div(e, cn.sum(e, { axis: 1, keepDims: true }));
    };
    const p = cn.scope(() => softmax(cn.tensor([0, Math.log(2), Math.log(5), 1000, 1000, 1000 + Math.log(2)], [2, 3])));
    // Row 1: e^z = [1, 2, 5] / 8. Row 2: [1, 1, 2] / 4 (stable for logits of 1000; 1000 + log 2
    // is stored to float32's 6e-5 there, hence the looser tolerance).
    const got = await p.data();
    expectClose(got.subarray(0, 3), [1 / 8, 2 / 8, 5 / 8], 1e-6);
    expectClose(got.subarray(3), [1 / 4, 1 / 4, 2 / 4], 1e-4);
    p.dispose();
  });

  it('batch normalisation over [N, C]', async () => {
    const batchNorm = (x: cn.Tensor, gamma: cn.Tensor, beta: cn.Tensor, eps: number) => {
      const mu = cn.mean(x, { axis: 0, keepDims: true });
      const d = cn.sub(x, mu);
      const v = cn.mean(cn.mul(d, d), { axis: 0, keepDims: true });
      return cn.add(cn.mul(cn.div(d, cn.sqrt(cn.add(v, eps))), gamma), beta);
    };
    // Column 0: [1, 3] (mean 2, variance 1); column 1: [2, 2] (variance 0); eps 0.25.
    const y = cn.scope(() =>
      batchNorm(cn.tensor([1, 2, 3, 2], [2, 2]), cn.tensor([2, 1], [2]), cn.tensor([0.5, -1], [2]), 0.25));
    const s = 1 / Math.sqrt(1.25);
    expectClose(await y.data(), [-2 * s + 0.5, -1, 2 * s + 0.5, -1], 1e-6);
    y.dispose();
  });
});

// ---- Bad inputs -----------------------------------------------------------------------------------

describe('bad inputs', () => {
  function withTensors(fn: (a: cn.Tensor, b: cn.Tensor) => void) {
    const a = cn.zeros([2, 3]);
    const b = cn.zeros([4]);
    try {
      fn(a, b);
    } finally {
      a.dispose();
      b.dispose();
    }
  }

  it('element-wise', () =>
    withTensors((a, b) => {
      expectError(() => cn.add(a, b), ShapeError, 'add: shapes [2, 3] and [4] do not broadcast');
      expectError(() => cn.div(b, a), ShapeError, 'div: shapes [4] and [2, 3] do not broadcast');
      expectError(() => cn.mul(a, '2' as never), ShapeError, "mul: b must be a Tensor or a number, received '2'");
      expectError(() => cn.sub(1, 2), ShapeError, 'sub: a or b must be a Tensor, received 1 and 2');
      expectError(() => cn.exp([1, 2] as never), ShapeError, 'exp: x must be a Tensor, received [1, 2]');
      expectError(() => cn.pow(a, NaN), ShapeError, 'pow: exponent must be a finite number, received NaN');
      const i = cn.tensor([1, 2], [2], { dtype: 'int32' });
      expectError(() => cn.add(i, 1), ShapeError, 'add: a must be float32, received int32');
      i.dispose();
      const c = cn.zeros([3], { device: 'cpu:1' });
      expectError(() => cn.add(a, c), DeviceError, 'add: a is on cpu:0 but b is on cpu:1; move one with t.to(device)');
      c.dispose();
    }));

  it('reductions', () =>
    withTensors((a) => {
      expectError(() => cn.sum(a, { axis: 2 }), ShapeError, 'sum: axis must be an integer in [-2, 2) or an array of them, received 2');
      expectError(() => cn.mean(a, { axis: [0, -2] }), ShapeError, 'mean: axis must not name an axis twice, received [0, -2]');
      expectError(() => cn.max(a, { keepDims: 1 as never }), ShapeError, 'max: keepDims must be a boolean, received 1');
      const e = cn.zeros([2, 0]);
      expectError(() => cn.max(e, { axis: 1 }), ShapeError, 'max: x [2, 0] has no elements along the reduced axes [1]');
      e.dispose();
    }));

  it('matmul and transpose', () =>
    withTensors((a, b) => {
      const k = cn.zeros([4, 5]);
      expectError(() => cn.matmul(a, k), ShapeError, 'matmul: b must have K = 3 rows to match a [2, 3], received b [4, 5]');
      expectError(() => cn.matmul(a, b), ShapeError,
        'matmul: a and b must both have 2 dims [M, K] x [K, N] or 3 dims [B, M, K] x [B, K, N], received [2, 3] and [4]');
      const p = cn.zeros([2, 3, 4]), q = cn.zeros([3, 4, 5]);
      expectError(() => cn.matmul(p, q), ShapeError, 'matmul: b must have B = 2 matrices like a [2, 3, 4], received b [3, 4, 5]');
      expectError(() => cn.transpose(a, [0, 0]), ShapeError,
        'transpose: perm must be a permutation of [0, ..., 1] for x [2, 3], received [0, 0]');
      [k, p, q].forEach((t) => t.dispose());
    }));

  it('customOp definitions', () => {
    const fwd = (x: cn.Tensor) => cn.neg(x);
    expectError(() => cn.customOp({ name: '', forward: fwd, backward: (g) => [g] }), ShapeError,
      "customOp: name must be a non-empty string, received ''");
    expectError(() => cn.customOp({ name: 'f', forward: 1 as never, backward: (g) => [g] }), ShapeError,
      'customOp: forward must be a function, received 1');
    const bad = cn.customOp({ name: 'bad', forward: fwd, backward: (g) => [g, g] });
    const x = cn.zeros([2], { requiresGrad: true });
    const y = bad(x);
    const g = cn.zeros([2]);
    expect(() => y.backward(g)).toThrow(new ShapeError('bad: backward must return 1 gradient(s), one per input, received 2'));
    [y, g, x].forEach((t) => t.dispose());
  });

  it('the native op table refuses what TypeScript would never send', () => {
    const y = cn.zeros([4]);
    const x = cn.zeros([2]);
    const idx = cn.zeros([4], { dtype: 'int32' });
    const h = (t: cn.Tensor) => t._handle('test');
    const strided = (rank: number, count: number, dims: number[], ...strides: number[][]) => {
      const pad = (v: number[], f: number) => [...v, ...new Array(8 - v.length).fill(f)];
      return [rank, count, ...pad(dims, 1), ...strides.flatMap((s) => pad(s, 0))];
    };
    expectError(() => native.launch('binary', [h(y), h(x), h(x)], [0, ...strided(1, 4, [4], [1], [0])], []), ShapeError,
      'binary: a holds 8 bytes but the arguments need 16');
    expectError(() => native.launch('binary', [h(y), h(x), h(x)], [4, ...strided(1, 4, [4], [0], [0])], []), ShapeError,
      'binary: code must be an integer in [0, 3], received 4');
    expectError(() => native.launch('binary', [h(y), h(x), h(x)], [0, ...strided(9, 4, [4], [0], [0])], []), ShapeError,
      'binary: rank must be an integer in [0, 8], received 9');
    expectError(() => native.launch('binary', [h(y), h(x), h(x)], [0, ...strided(1, 3, [4], [0], [0])], []), ShapeError,
      'binary: count must be 4 (the product of the dims), received 3');
    expectError(() => native.launch('strided_copy', [h(x), h(y)], strided(2, 8, [2, 4], [4, 1]), []), ShapeError,
      'strided_copy: y holds 8 bytes but the arguments need 32');
    expectError(() => native.launch('strided_copy', [h(y), h(x)], strided(1, 4, [4], [-1]), []), ShapeError,
      'strided_copy: strides[0] must be an integer in [0, 2147483647], received -1');
    expectError(() => native.launch('unary', [h(y), h(x)], [1, 4], [0]), ShapeError, 'unary: x holds 8 bytes but the arguments need 16');
    expectError(() => native.launch('unary', [h(y), h(y)], [7, 4], [0]), ShapeError, 'unary: code must be an integer in [0, 6], received 7');
    expectError(() => native.launch('reduce', [h(x), h(idx), h(y)], [1, 2, 0, 1], [1]), ShapeError,
      'reduce: max needs r >= 1 terms per output, received r = 0');
    expectError(() => native.launch('reduce', [h(x), null, h(y)], [1, 2, 2, 1], [1]), ShapeError, 'reduce: idx is missing');
    expectError(() => native.launch('reduce', [h(x), null, h(y)], [0, 2, 3, 1], [1]), ShapeError,
      'reduce: x holds 16 bytes but the arguments need 24');
    expectError(() => native.launch('reduce_max_backward', [h(y), h(x), h(x)], [2, 2, 2], []), ShapeError,
      'reduce_max_backward: dx holds 16 bytes but the arguments need 32');
    expectError(() => native.launch('matmul', [h(y), h(y), h(x)], [1, 2, 2, 2, 0, 0], []), ShapeError,
      'matmul: b holds 8 bytes but the arguments need 16');
    expectError(() => native.launch('matmul', [h(y), h(y), h(y)], [1, 2, 2, 2, 2, 0], []), ShapeError,
      'matmul: transA must be an integer in [0, 1], received 2');
    expectError(() => native.launch('matmul', [h(y), h(y), h(y)], [1, 2 ** 31, 1, 1, 0, 0], []), ShapeError,
      'matmul: M must be an integer in [0, 2147483647], received 2147483648');
    [x, y, idx].forEach((t) => t.dispose());
  });
});
