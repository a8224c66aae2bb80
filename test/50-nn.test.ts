/** Layers (cn.nn), the SGD optimizer and the learning-rate schedules (cn.optim). */
import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { expectClose, rand, trackLeaks } from './helpers.js';

trackLeaks();

const { nn, optim } = cn;

async function values(t: cn.Tensor): Promise<number[]> {
  return Array.from(await t.data());
}

function stats(v: ArrayLike<number>): { mean: number; std: number } {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i];
  const mean = s / v.length;
  let q = 0;
  for (let i = 0; i < v.length; i++) q += (v[i] - mean) ** 2;
  return { mean, std: Math.sqrt(q / v.length) };
}

describe('layers: shapes and parameters', () => {
  it('Conv2d has weight [F, C/groups, KH, KW] and bias [F], and its output shape', () => {
    const conv = new nn.Conv2d(96, 256, 5, { padding: 2, groups: 2 });
    expect(conv.namedParameters().map(([n, t]) => [n, t.shape])).toEqual([
      ['weight', [256, 48, 5, 5]],
      ['bias', [256]],
    ]);
    expect(conv.parameterCount()).toBe(256 * 48 * 25 + 256);
    const x = rand([2, 96, 9, 9], 1);
    const y = conv.forward(x);
    expect(y.shape).toEqual([2, 256, 9, 9]);
    const strided = new nn.Conv2d(3, 8, [11, 11], { stride: 4, padding: 2, bias: false });
    expect(strided.bias).toBeNull();
    expect(strided.parameters().length).toBe(1);
    const img = rand([1, 3, 224, 224], 2);
    const z = strided.forward(img);
    expect(z.shape).toEqual([1, 8, 55, 55]);
    for (const t of [x, y, img, z]) t.dispose();
    conv.dispose();
    strided.dispose();
  });

  it('Linear, ReLU, MaxPool2d, LRN, Flatten give the ops\' shapes', async () => {
    const fc = new nn.Linear(12, 5);
    expect(fc.weight.shape).toEqual([5, 12]);
    expect(fc.bias!.shape).toEqual([5]);
    expect(fc.parameterCount()).toBe(65);
    const x = rand([2, 3, 7, 7], 3);
    const pool = new nn.MaxPool2d(3, { stride: 2 });
    const p = pool.forward(x);
    expect(p.shape).toEqual([2, 3, 3, 3]);
    const l = new nn.LRN().forward(x);
    expect(l.shape).toEqual([2, 3, 7, 7]);
    const f = new nn.Flatten().forward(p);
    expect(f.shape).toEqual([2, 27]);
    const r = new nn.ReLU().forward(f);
    expect(Math.min(...(await values(r)))).toBeGreaterThanOrEqual(0);
    const flat = cn.scope(() => cn.flatten(rand([2, 2, 2, 3], 4)));
    const y = fc.forward(flat);
    expect(y.shape).toEqual([2, 5]);
    for (const t of [x, p, l, f, r, flat, y]) t.dispose();
    fc.dispose();
  });

  it('LRN defaults are AlexNet\'s (n 5, alpha 1e-4, beta 0.75, k 2), and groups keep the window inside each group', async () => {
    const lrn = new nn.LRN();
    expect([lrn.size, lrn.alpha, lrn.beta, lrn.k, lrn.groups]).toEqual([5, 1e-4, 0.75, 2, 1]);
    // Large values so that the normalisation matters.
    const x = cn.scope(() => cn.tensor(rand([2, 8, 3, 3], 5).dataSync().map((v) => 30 * v), [2, 8, 3, 3]));
    const opts = { size: 5, alpha: 1e-4, beta: 0.75, k: 2 };
    const grouped = new nn.LRN(5, { groups: 2 }).forward(x);
    const expected = cn.scope(() => {
      const [a, b] = cn.split(x, [4, 4], 1);
      return cn.concat([cn.lrn(a, opts), cn.lrn(b, opts)], 1);
    });
    const whole = cn.lrn(x, opts);
    expectClose(await grouped.data(), await expected.data(), 1e-6);
    expect(Array.from(await grouped.data())).not.toEqual(Array.from(await whole.data()));
    for (const t of [x, grouped, expected, whole]) t.dispose();
  });

  it('He-normal init by default (std sqrt(2/fan_in), zero bias), the paper\'s N(0, 0.01) with a bias value on request', async () => {
    const conv = new nn.Conv2d(64, 128, 3, { groups: 2, init: { seed: 7 } });
    const w = stats(await conv.weight.data());
    expect(Math.abs(w.mean)).toBeLessThan(0.005);
    expect(w.std / Math.sqrt(2 / (32 * 9))).toBeCloseTo(1, 1);
    expect(new Set(await values(conv.bias!))).toEqual(new Set([0]));
    const fc = new nn.Linear(1000, 300, { init: { std: 0.01, bias: 1, seed: 8 } });
    expect(stats(await fc.weight.data()).std / 0.01).toBeCloseTo(1, 1);
    expect(new Set(await values(fc.bias!))).toEqual(new Set([1]));
    // Same seed, same weights; another seed, other weights.
    const again = new nn.Conv2d(64, 128, 3, { groups: 2, init: { seed: 7 } });
    const other = new nn.Conv2d(64, 128, 3, { groups: 2, init: { seed: 9 } });
    expect(await values(again.weight)).toEqual(await values(conv.weight));
    expect(await values(other.weight)).not.toEqual(await values(conv.weight));
    for (const m of [conv, fc, again, other]) m.dispose();
  });

  it('a weight drawn in blocks (one seed each) is the concatenation of the blocks', async () => {
    const whole = new nn.Linear(6, 8, { init: { seed: [11, 12] } });
    const first = new nn.Linear(6, 4, { init: { seed: 11 } });
    const second = new nn.Linear(6, 4, { init: { seed: 12 } });
    expect(await values(whole.weight)).toEqual([...(await values(first.weight)), ...(await values(second.weight))]);
    for (const m of [whole, first, second]) m.dispose();
  });
});

describe('Module', () => {
  function net(): cn.nn.Sequential {
    return new nn.Sequential(
      ['features', new nn.Sequential(new nn.Conv2d(2, 4, 3, { padding: 1 }), new nn.ReLU(), new nn.MaxPool2d(2))],
      ['flatten', new nn.Flatten()],
      ['fc', new nn.Linear(16, 3)],
      ['drop', new nn.Dropout(0.5, { seed: 3 })],
    );
  }

  it('namedParameters gives dotted names in order; parameters() the same tensors', () => {
    const m = net();
    expect(m.namedParameters().map(([n, t]) => [n, t.shape])).toEqual([
      ['features.0.weight', [4, 2, 3, 3]],
      ['features.0.bias', [4]],
      ['fc.weight', [3, 16]],
      ['fc.bias', [3]],
    ]);
    expect(m.parameters()).toEqual(m.namedParameters().map(([, t]) => t));
    expect(m.parameters().every((t) => t.requiresGrad)).toBe(true);
    expect(m.getParameter('fc.bias')).toBe(m.parameters()[3]);
    expect(() => m.getParameter('fc.nothing')).toThrow("Module: no parameter named 'fc.nothing'");
    m.dispose();
  });

  it('backward fills every parameter\'s grad; zeroGrad frees them', () => {
    const before = cn.memory().tensors;
    const m = net().eval();
    const x = rand([2, 2, 4, 4], 1);
    const loss = cn.scope(() => cn.softmaxCrossEntropy(m.forward(x), [0, 2]));
    loss.backward();
    expect(m.parameters().every((p) => p.grad !== null && p.grad.shape.join() === p.shape.join())).toBe(true);
    m.zeroGrad();
    expect(m.parameters().every((p) => p.grad === null)).toBe(true);
    loss.dispose();
    x.dispose();
    m.dispose();
    expect(cn.memory().tensors).toBe(before);
  });

  it('to(device) moves parameters and gradients, disposes the old ones and remembers the device', async () => {
    const m = net().eval();
    expect(m.device).toBe('cpu:0');
    const x = rand([2, 2, 4, 4], 2);
    const loss = cn.scope(() => cn.softmaxCrossEntropy(m.forward(x), [1, 2]));
    loss.backward();
    const weights = await Promise.all(m.parameters().map(values));
    const grads = await Promise.all(m.parameters().map((p) => values(p.grad!)));
    const old = m.parameters();
    const live = cn.memory().tensors;
    cn.scope(() => m.to('cpu:1')); // moving inside a scope must not lose the parameters
    expect(cn.memory().tensors).toBe(live);
    expect(old.every((t) => t.disposed)).toBe(true);
    expect(m.device).toBe('cpu:1');
    expect(m.parameters().map((p) => p.device)).toEqual(['cpu:1', 'cpu:1', 'cpu:1', 'cpu:1']);
    expect(m.parameters().map((p) => p.grad!.device)).toEqual(['cpu:1', 'cpu:1', 'cpu:1', 'cpu:1']);
    expect(await Promise.all(m.parameters().map(values))).toEqual(weights);
    expect(await Promise.all(m.parameters().map((p) => values(p.grad!)))).toEqual(grads);
    const x1 = x.to('cpu:1');
    const y = m.forward(x1);
    expect(y.device).toBe('cpu:1');
    for (const t of [loss, x, x1, y]) t.dispose();
    m.dispose();
  });

  it('train() / eval() switch dropout everywhere below', async () => {
    const m = net();
    const drop = m.namedChildren().find(([n]) => n === 'drop')![1] as cn.nn.Dropout;
    expect(m.training && drop.training).toBe(true);
    m.eval();
    expect(m.training || drop.training).toBe(false);
    m.train();
    expect(drop.training).toBe(true);
    m.dispose();
  });

  it('dispose frees every parameter and gradient', () => {
    const before = cn.memory();
    const m = net();
    const x = rand([1, 2, 4, 4], 3);
    const loss = cn.scope(() => cn.softmaxCrossEntropy(m.forward(x), [0]));
    loss.backward();
    loss.dispose();
    x.dispose();
    m.dispose();
    expect(cn.memory()).toEqual(before);
  });
});

describe('Dropout', () => {
  it('training: zeros or x/(1-p), a fresh mask each call; eval: the identity, counter unchanged', async () => {
    const d = new nn.Dropout(0.5, { seed: 42 });
    const x = cn.full([4000], 1);
    const y1 = d.forward(x);
    const y2 = d.forward(x);
    expect(d.calls).toBe(2);
    const v1 = await values(y1);
    expect(new Set(v1)).toEqual(new Set([0, 2]));
    const kept = v1.filter((v) => v > 0).length / v1.length;
    expect(kept).toBeGreaterThan(0.45);
    expect(kept).toBeLessThan(0.55);
    expect(await values(y2)).not.toEqual(v1);
    d.eval();
    const y3 = d.forward(x);
    expect(await values(y3)).toEqual(await values(x));
    expect(d.calls).toBe(2);
    for (const t of [x, y1, y2, y3]) t.dispose();
  });

  it('its counter is state: restoring it replays the same masks', async () => {
    const m = new nn.Sequential(['drop', new nn.Dropout(0.3, { seed: 5 })]);
    const x = rand([3, 50], 4);
    m.forward(x).dispose();
    const state = m.getState();
    expect(state).toEqual({ 'drop.calls': 1 });
    const a = m.forward(x);
    const fresh = new nn.Sequential(['drop', new nn.Dropout(0.3, { seed: 5 })]);
    fresh.setState(JSON.parse(JSON.stringify(state)));
    const b = fresh.forward(x);
    expect(await values(b)).toEqual(await values(a));
    // forwardShared draws one mask for several tensors and advances once.
    const d = new nn.Dropout(0.3, { seed: 5 });
    d.calls = 1;
    const [c1, c2] = cn.scope(() => d.forwardShared([x, x.to('cpu:1')]));
    expect(d.calls).toBe(2);
    expect(await values(c1)).toEqual(await values(a));
    expect(await values(c2)).toEqual(await values(a));
    for (const t of [x, a, b, c1, c2]) t.dispose();
  });
});

describe('SGD', () => {
  it('a step matches the hand computation (momentum, weight decay), over two steps', async () => {
    const p0 = [1, -2, 3, 0.5];
    const g1 = [0.1, 0.2, -0.3, 0];
    const g2 = [-0.4, 0.1, 0.2, 1];
    const p = cn.tensor(p0, [4], { requiresGrad: true });
    const opt = new optim.SGD([p], { lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
    // Hand computation: d = g + wd p; v = m v + d; p -= lr v.
    const want = [...p0];
    const v = [0, 0, 0, 0];
    for (const g of [g1, g2]) {
      p.grad = cn.tensor(g, [4]);
      opt.step();
      opt.zeroGrad();
      expect(p.grad).toBeNull();
      for (let i = 0; i < 4; i++) {
        v[i] = 0.9 * v[i] + g[i] + 0.01 * want[i];
        want[i] -= 0.1 * v[i];
      }
    }
    expectClose(await p.data(), want, 1e-6);
    expect(opt.steps).toBe(2);
    expectClose(await opt.getState().buffers['0'].data(), v, 1e-6);
    // A parameter without a gradient is left alone; lr is settable.
    opt.lr = 0.5;
    opt.step();
    expectClose(await p.data(), want, 1e-6);
    p.grad = cn.tensor([1, 1, 1, 1], [4]);
    const noMomentum = new optim.SGD([p], { lr: 0.5 });
    noMomentum.step();
    expectClose(await p.data(), want.map((w) => w - 0.5), 1e-6);
    opt.zeroGrad();
    opt.dispose();
    noMomentum.dispose();
    p.dispose();
  });

  it('trains a module, makes buffers on each parameter\'s device and follows it through to()', async () => {
    const m = new nn.Linear(4, 3, { init: { seed: 1 } });
    const opt = new optim.SGD(m, { lr: 0.05, momentum: 0.9 });
    const x = rand([8, 4], 2);
    const labels = [0, 1, 2, 0, 1, 2, 0, 1];
    const lossAt = async (xx: cn.Tensor) => {
      const loss = cn.scope(() => cn.softmaxCrossEntropy(m.forward(xx), labels));
      const v = (await loss.data())[0];
      loss.backward();
      loss.dispose();
      return v;
    };
    const first = await lossAt(x);
    opt.step();
    opt.zeroGrad();
    expect(Object.keys(opt.getState().buffers)).toEqual(['weight', 'bias']);
    m.to('cpu:1');
    const x1 = x.to('cpu:1');
    let last = first;
    for (let i = 0; i < 20; i++) {
      last = await lossAt(x1);
      opt.step();
      opt.zeroGrad();
    }
    expect(last).toBeLessThan(first);
    expect(Object.values(opt.getState().buffers).map((b) => b.device)).toEqual(['cpu:1', 'cpu:1']);
    opt.dispose();
    m.dispose();
    x.dispose();
    x1.dispose();
  });

  it('state export / import continues exactly where it left off', async () => {
    const a = cn.tensor([1, 2, 3], [3], { requiresGrad: true });
    const opt = new optim.SGD([a], { lr: 0.1, momentum: 0.9, weightDecay: 5e-4 });
    a.grad = cn.tensor([0.5, -1, 2], [3]);
    opt.step();
    opt.step();
    const state = opt.getState();
    const b = cn.tensor(await a.data(), [3], { requiresGrad: true });
    const opt2 = new optim.SGD([b], { lr: 1, momentum: 0.9, weightDecay: 5e-4 });
    opt2.setState(state);
    expect(opt2.lr).toBe(0.1);
    expect(opt2.steps).toBe(2);
    b.grad = cn.tensor([0.5, -1, 2], [3]);
    opt.step();
    opt2.step();
    expect(await values(b)).toEqual(await values(a));
    expect(() => opt2.setState({ lr: 0.1, buffers: { 7: a } })).toThrow("SGD.setState: no parameter with key '7'");
    opt.zeroGrad();
    opt2.zeroGrad();
    opt.dispose();
    opt2.dispose();
    a.dispose();
    b.dispose();
  });
});

describe('schedules', () => {
  it('StepLR multiplies lr by gamma every stepSize epochs, and restores its state', () => {
    const opt = { lr: 0.1 };
    const s = new optim.StepLR(opt, { stepSize: 2, gamma: 0.1 });
    const lrs = [1, 2, 3, 4, 5].map(() => s.step());
    expectClose(lrs, [0.1, 0.01, 0.01, 0.001, 0.001], 1e-12);
    const opt2 = { lr: 0.5 };
    const s2 = new optim.StepLR(opt2, { stepSize: 2, gamma: 0.1 });
    s2.setState(s.getState());
    expect(opt2.lr).toBeCloseTo(0.001, 12);
    expect(s2.step()).toBeCloseTo(0.0001, 12);
  });

  it('ReduceOnPlateau divides lr by 10 after more than `patience` epochs without a better accuracy', () => {
    const sgdLike = { lr: 0.01 };
    const s = new optim.ReduceOnPlateau(sgdLike, { patience: 1 });
    const seen: number[] = [];
    for (const acc of [0.5, 0.6, 0.6, 0.6, 0.7, 0.65, 0.65]) {
      s.step(acc);
      seen.push(sgdLike.lr);
    }
    expectClose(seen, [0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.0001], 1e-12);
    expect(s.reductions).toBe(2);
    const state = JSON.parse(JSON.stringify(s.getState()));
    expect(state).toEqual({ best: 0.7, badEpochs: 0, reductions: 2 });
    const s2 = new optim.ReduceOnPlateau(sgdLike, { patience: 1 });
    s2.setState(state);
    s2.step(0.69);
    expect(s2.step(0.69)).toBe(true);
    // mode 'min' for a loss.
    const o = { lr: 1 };
    const m = new optim.ReduceOnPlateau(o, { mode: 'min', factor: 0.5 });
    m.step(2);
    m.step(1);
    m.step(1.5);
    expect(o.lr).toBe(0.5);
  });
});
