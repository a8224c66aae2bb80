/**
 * AlexNet and AlexNet-mini (cn.models): parameter counts, output shapes, and the two-tower model
 * against the single-device grouped form (same weights => same outputs and gradients).
 */
import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { native } from '../src/native.js';
import { expectClose, maxRelError, rand, trackLeaks } from './helpers.js';

trackLeaks();

const { models } = cn;

/** The model's parameters (or gradients) as host arrays under single-device names. */
async function groupedHost(m: cn.models.AlexNet, grads = false): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, p] of m.namedParameters()) {
    const t = grads ? p.grad : p;
    if (!t) throw new Error(`${name} has no gradient`);
    const data = (await t.data()) as Float32Array;
    const key = m.towers === 2 && /^[ab]\./.test(name) ? name.slice(2) : name;
    const prev = out.get(key);
    if (!prev) {
      out.set(key, data);
    } else {
      // Tower A's half comes first (a.* parameters are listed before b.*).
      const joined = new Float32Array(prev.length + data.length);
      joined.set(prev);
      joined.set(data, prev.length);
      out.set(key, joined);
    }
  }
  return out;
}

/** One training-mode step's logits and loss (the graph is freed by backward). */
async function forwardBackward(m: cn.models.AlexNet, x: cn.Tensor, labels: number[]): Promise<{ logits: Float32Array; loss: number }> {
  const [logits, loss] = cn.scope(() => {
    const y = m.forward(x);
    return [y, cn.softmaxCrossEntropy(y, labels)];
  });
  loss.backward();
  const out = { logits: (await logits.data()) as Float32Array, loss: (await loss.data())[0] };
  logits.dispose();
  loss.dispose();
  return out;
}

function expectSameMaps(a: Map<string, Float32Array>, b: Map<string, Float32Array>, tol: number): void {
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [k, v] of a) {
    const err = maxRelError(v, b.get(k)!);
    expect(err, k).toBeLessThanOrEqual(tol);
  }
}

describe('parameter counts and shapes', () => {
  it('AlexNet-mini: parameter counts and output shapes for width 0.5 and 1, both forms', () => {
    // Counted by hand from docs/alexnet.md (AlexNet-mini) (channels 64w-128w-192w-192w-128w, fc 1024w, 10 classes).
    const expected: Record<string, number> = { 0.5: 550_538, 1: 2_187_530 };
    for (const width of [0.5, 1]) {
      for (const towers of [1, 2] as const) {
        const m = models.alexnetMini({ width, towers });
        expect(m.parameterCount()).toBe(expected[width]);
        const x = rand([3, 1, 28, 28], 1);
        const y = cn.noGrad(() => m.forward(x));
        expect([y.shape, y.device]).toEqual([[3, 10], 'cpu:0']);
        for (const t of [x, y]) t.dispose();
        m.dispose();
      }
    }
    const m = models.alexnetMini({ numClasses: 7, width: 0.25 });
    expect(m.spec.convs.map((c) => c.out)).toEqual([16, 32, 48, 48, 32]);
    expect(m.spec.hidden).toEqual([256, 256]);
    expect(m.spec.flatFeatures).toBe(32 * 2 * 2);
    m.dispose();
  });

  it('builds deterministically: the same seed gives the same weights in both forms, another seed others', async () => {
    const one = models.alexnetMini({ width: 0.5, seed: 4 });
    const two = models.alexnetMini({ width: 0.5, seed: 4, towers: 2 });
    const other = models.alexnetMini({ width: 0.5, seed: 5 });
    const a = await groupedHost(one);
    expectSameMaps(await groupedHost(two), a, 0);
    expect((await groupedHost(other)).get('conv1.weight')).not.toEqual(a.get('conv1.weight'));
    for (const m of [one, two, other]) m.dispose();
  });

  it('the paper initialisation: N(0, 0.01), biases 1 in conv2, conv4, conv5, fc6, fc7', async () => {
    const m = models.alexnetMini({ init: 'paper', towers: 2 });
    const host = await groupedHost(m);
    const biasOne = [...host].filter(([n, v]) => n.endsWith('bias') && v.every((b) => b === 1)).map(([n]) => n);
    expect(biasOne).toEqual(['conv2.bias', 'conv4.bias', 'conv5.bias', 'fc6.bias', 'fc7.bias']);
    expect(host.get('fc8.bias')!.every((b) => b === 0)).toBe(true);
    const w = host.get('fc6.weight')!;
    const std = Math.sqrt(w.reduce((s, v) => s + v * v, 0) / w.length);
    expect(std).toBeCloseTo(0.01, 3);
    m.dispose();
  });
});

describe('two towers compute the same function as the grouped single-device form', () => {
  // Dropout is compared in training mode, not separately: the two-tower model applies each
  // dropout mask to the joined [N, 4096w] activation (on both towers, with the same seed), so
  // its mask is element for element that of the single-device form (see src/models/alexnet.ts).
  it('AlexNet-mini: outputs, loss and every gradient in training mode (dropout on), over two steps', async () => {
    // The same seed: the same weights (checked above) and the same dropout seeds.
    const one = models.alexnetMini({ width: 0.5, seed: 1 });
    const two = models.alexnetMini({ width: 0.5, seed: 1, towers: 2, devices: ['cpu:0', 'cpu:1'] });
    const x = rand([6, 1, 28, 28], 3);
    const labels = [0, 1, 2, 3, 4, 9];
    for (let step = 0; step < 2; step++) {
      const r1 = await forwardBackward(one, x, labels);
      const r2 = await forwardBackward(two, x, labels);
      expectClose(r2.logits, r1.logits, 1e-5);
      expectClose([r2.loss], [r1.loss], 1e-5);
      expectSameMaps(await groupedHost(two, true), await groupedHost(one, true), 1e-5);
    }
    expect(two.getState()).toEqual({ 'drop6.calls': 2, 'drop7.calls': 2 });
    expect(one.getState()).toEqual({ 'drop6.calls': 2, 'drop7.calls': 2 });
    // Dropout really was on: evaluation gives other logits.
    one.eval();
    two.eval();
    const [e1, e2] = cn.noGrad(() => [one.forward(x), two.forward(x)]);
    expectClose(await e2.data(), await e1.data(), 1e-5);
    const r = await forwardBackward(one.train(), x, labels);
    expect(maxRelError(r.logits, await e1.data())).toBeGreaterThan(1e-3);
    for (const t of [x, e1, e2]) t.dispose();
    for (const m of [one, two]) m.dispose();
  });

  it('copyAlexNetWeights copies between the forms (1 -> 2 splits, 2 -> 1 joins) and the outputs agree', async () => {
    const one = models.alexnetMini({ width: 0.5, seed: 1 }).eval();
    const two = models.alexnetMini({ width: 0.5, seed: 2, towers: 2, devices: ['cpu:1', 'cpu:0'] }).eval();
    const back = models.alexnetMini({ width: 0.5, seed: 3 }).eval();
    const want = await groupedHost(one);
    expect((await groupedHost(two)).get('fc6.weight')).not.toEqual(want.get('fc6.weight'));
    const kept = two.parameters();
    models.copyAlexNetWeights(one, two);
    expect(two.parameters()).toEqual(kept); // copied into, not replaced
    expectSameMaps(await groupedHost(two), want, 0);
    models.copyAlexNetWeights(two, back);
    expectSameMaps(await groupedHost(back), want, 0);
    const x = rand([3, 1, 28, 28], 9);
    const ys = cn.noGrad(() => [one, two, back].map((m) => m.forward(x)));
    expectClose(await ys[1].data(), await ys[0].data(), 1e-5);
    expectClose(await ys[2].data(), await ys[0].data(), 0);
    for (const t of [x, ...ys]) t.dispose();
    for (const m of [one, two, back]) m.dispose();
  });

  it('AlexNet: 60,965,224 parameters in both forms, the layer shapes of alexnet.md, and the same outputs and gradients in training mode', async () => {
    // One test, so the 2 × 61M initial weights are drawn once.
    const one = models.alexnet({ seed: 7, devices: ['cpu:0'] });
    const two = models.alexnet({ seed: 7, towers: 2, devices: ['cpu:0', 'cpu:1'] });
    expect([one.towers, two.towers]).toEqual([1, 2]);
    expect(one.parameterCount()).toBe(60_965_224);
    expect(two.parameterCount()).toBe(60_965_224);
    expect(one.namedParameters().filter(([n]) => n.endsWith('weight')).map(([n, t]) => [n, t.shape])).toEqual([
      ['conv1.weight', [96, 3, 11, 11]],
      ['conv2.weight', [256, 48, 5, 5]],
      ['conv3.weight', [384, 256, 3, 3]],
      ['conv4.weight', [384, 192, 3, 3]],
      ['conv5.weight', [256, 192, 3, 3]],
      ['fc6.weight', [4096, 9216]],
      ['fc7.weight', [4096, 4096]],
      ['fc8.weight', [1000, 4096]],
    ]);
    const shapes = Object.fromEntries(two.namedParameters().map(([n, t]) => [n, [t.shape, t.device]]));
    expect(shapes['a.conv1.weight']).toEqual([[48, 3, 11, 11], 'cpu:0']);
    expect(shapes['b.conv2.weight']).toEqual([[128, 48, 5, 5], 'cpu:1']);
    expect(shapes['b.conv3.weight']).toEqual([[192, 256, 3, 3], 'cpu:1']);
    expect(shapes['a.fc6.weight']).toEqual([[2048, 9216], 'cpu:0']);
    expect(shapes['b.fc7.weight']).toEqual([[2048, 4096], 'cpu:1']);
    expect(shapes['fc8.weight']).toEqual([[1000, 4096], 'cpu:0']);
    const x = rand([2, 3, 224, 224], 4);
    const r1 = await forwardBackward(one, x, [3, 999]);
    const r2 = await forwardBackward(two, x, [3, 999]);
    expectClose(r2.logits, r1.logits, 1e-5);
    expectSameMaps(await groupedHost(two, true), await groupedHost(one, true), 1e-5);
    x.dispose();
    one.dispose();
    two.dispose();
  });

  it('runs with both towers on one device, and to() moves towers', async () => {
    const one = models.alexnetMini({ width: 0.5, seed: 11 }).eval();
    const two = models.alexnetMini({ width: 0.5, seed: 11, towers: 2, devices: ['cpu:1', 'cpu:1'] }).eval();
    const x = rand([2, 1, 28, 28], 5);
    const y1 = cn.noGrad(() => one.forward(x));
    const y2 = cn.noGrad(() => two.forward(x));
    expect(y2.device).toBe('cpu:1');
    expectClose(await y2.data(), await y1.data(), 1e-5);
    two.to(['cpu:1', 'cpu:0']);
    expect(two.devices).toEqual(['cpu:1', 'cpu:0']);
    expect(two.getParameter('b.conv1.weight').device).toBe('cpu:0');
    expect(two.getParameter('fc8.weight').device).toBe('cpu:1');
    one.to('cpu:1');
    expect(one.devices).toEqual(['cpu:1']);
    const y3 = cn.noGrad(() => two.forward(x));
    const y4 = cn.noGrad(() => one.forward(x));
    expect([y3.device, y4.device]).toEqual(['cpu:1', 'cpu:1']);
    expectClose(await y3.data(), await y1.data(), 1e-5);
    expectClose(await y4.data(), await y1.data(), 1e-5);
    for (const t of [x, y1, y2, y3, y4]) t.dispose();
    one.dispose();
    two.dispose();
  });

  it('copyAlexNetWeights refuses models of different architectures', () => {
    const a = models.alexnetMini({ width: 0.5 });
    const b = models.alexnetMini({ width: 1, towers: 2 });
    expect(() => models.copyAlexNetWeights(a, b)).toThrow(cn.ShapeError);
    a.dispose();
    b.dispose();
  });

  it('trains: SGD on the two-tower model lowers the loss on a fixed batch', async () => {
    const m = models.alexnetMini({ width: 0.5, towers: 2, seed: 3 });
    const opt = new cn.optim.SGD(m, { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
    const x = rand([8, 1, 28, 28], 6);
    const labels = [0, 1, 2, 3, 4, 5, 6, 7];
    m.eval();
    const losses: number[] = [];
    for (let i = 0; i < 8; i++) {
      losses.push((await forwardBackward(m, x, labels)).loss);
      opt.step();
      opt.zeroGrad();
    }
    expect(losses[losses.length - 1]).toBeLessThan(losses[0]);
    const devs = Object.entries(opt.getState().buffers).map(([k, b]) => [k.split('.')[0], b.device]);
    expect(new Set(devs.map(([k, d]) => `${k}:${d}`))).toEqual(new Set(['a:cpu:0', 'b:cpu:1', 'fc8:cpu:0']));
    x.dispose();
    opt.dispose();
    m.dispose();
  });
});

describe('both devices at the same time', () => {
  it('the forward pass issues every layer on both towers and reads nothing back', () => {
    const m = models.alexnetMini({ width: 0.5, towers: 2, devices: ['cpu:0', 'cpu:1'] });
    const x = rand([2, 1, 28, 28], 7);
    const deviceOf = new Map(m.parameters().map((p) => [p._handle('test'), p.device]));
    const issued: string[] = [];
    const reads: string[] = [];
    const saved = { launch: native.launch, downloadSync: native.downloadSync, download: native.download };
    native.launch = (op, tensors, ints, floats) => {
      // conv2d_forward / linear_forward tensors: [y, x, w, b]; w says which tower it is.
      if (op === 'conv2d_forward' || op === 'linear_forward') issued.push(`${op.split('_')[0]} ${deviceOf.get(tensors[2] as never)}`);
      return saved.launch(op, tensors, ints, floats);
    };
    native.downloadSync = (h) => {
      reads.push('downloadSync');
      return saved.downloadSync(h);
    };
    native.download = (h) => {
      reads.push('download');
      return saved.download(h);
    };
    let y: cn.Tensor;
    try {
      y = cn.noGrad(() => m.forward(x));
    } finally {
      Object.assign(native, saved);
    }
    const pair = (op: string) => [`${op} cpu:0`, `${op} cpu:1`];
    expect(issued).toEqual([...[1, 2, 3, 4, 5].flatMap(() => pair('conv2d')), ...pair('linear'), ...pair('linear'), 'linear cpu:0']);
    expect(reads).toEqual([]);
    y.dispose();
    x.dispose();
    m.dispose();
  });

  it('a two-tower training step runs both towers at the same time, forward and backward', async () => {
    const m = models.alexnetMini({ width: 0.5, towers: 2, devices: ['cpu:0', 'cpu:1'] });
    const x = rand([64, 1, 28, 28], 8);
    const labels = Array.from({ length: 64 }, (_, i) => i % 10);
    await forwardBackward(m, x, labels); // warm-up
    // Both queues idle before the traced step, so neither starts it behind the other.
    await cn.synchronize('cpu:0');
    await cn.synchronize('cpu:1');
    m.zeroGrad();
    // Which device each backward conv op is issued to, in issue order.
    const deviceOf = new Map(m.parameters().map((p) => [p._handle('test'), p.device]));
    const issued: string[] = [];
    const launch = native.launch;
    native.launch = (op, tensors, ints, floats) => {
      // conv2d_backward_data: [dx, dy, w]; w tells the tower.
      if (op === 'conv2d_backward_data') issued.push(deviceOf.get(tensors[2] as never) ?? '?');
      return launch(op, tensors, ints, floats);
    };
    cn.traceStart();
    try {
      await forwardBackward(m, x, labels);
    } finally {
      native.launch = launch;
    }
    await cn.synchronize('cpu:1');
    const events = cn.traceStop();
    m.zeroGrad();
    // conv5, conv4, conv3 (conv2 too; conv1's input needs no gradient) on each tower, issued
    // alternately: a tower-by-tower backward would issue all of one tower's first.
    expect(issued).toHaveLength(8);
    expect(new Set(issued.slice(0, 2)).size).toBe(2);
    expect(new Set(issued.slice(2, 4)).size).toBe(2);
    const overlap = (ops: RegExp) => {
      const on = (d: string) => events.filter((e) => e.device === d && ops.test(e.op));
      const a = on('cpu:0'), b = on('cpu:1');
      expect(a.length).toBeGreaterThan(0);
      expect(b.length).toBeGreaterThan(0);
      return a.some((p) => b.some((q) => p.start < q.end && q.start < p.end));
    };
    // Each queue has its own thread, so the towers compute at the same time: some op of one
    // overlaps some op of the other (copies left out: a copy_in may just be waiting). Which ops
    // overlap depends on timing (the convolutions are short at this batch size, and a loaded
    // machine stalls either queue now and then), so any computing op counts.
    expect(overlap(/^(?!copy_)/)).toBe(true);
    x.dispose();
    m.dispose();
  });
});
