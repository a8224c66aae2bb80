/** Autograd semantics: accumulation, zeroGrad, noGrad, graph lifetime and memory. */
import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { expectClose, rand, trackLeaks } from './helpers.js';

trackLeaks();

function mlp(x: cn.Tensor, w: cn.Tensor, labels: number[]): cn.Tensor {
  return cn.scope(() => cn.softmaxCrossEntropy(cn.relu(cn.linear(x, w, null)), labels));
}

describe('autograd', () => {
  it('gradients accumulate across backward calls until zeroGrad', async () => {
    const x = rand([4, 3], 1);
    const w = rand([5, 3], 2, { requiresGrad: true });
    const l1 = mlp(x, w, [0, 1, 2, 3]);
    l1.backward();
    const once = Array.from(await w.grad!.data());
    const l2 = mlp(x, w, [0, 1, 2, 3]);
    l2.backward();
    expectClose(await w.grad!.data(), once.map((v) => 2 * v), 1e-6);
    cn.zeroGrad([w]);
    expect(w.grad).toBeNull();
    const l3 = mlp(x, w, [0, 1, 2, 3]);
    l3.backward();
    expectClose(await w.grad!.data(), once, 1e-6);
    expect(x.grad).toBeNull();
    cn.zeroGrad([w]);
    for (const t of [x, w, l1, l2, l3]) t.dispose();
  });

  it('a tensor used twice gets the sum of both gradients', async () => {
    const a = cn.tensor([1, -2, 3], [1, 3], { requiresGrad: true });
    const y = cn.scope(() => cn.concat([a, cn.relu(a)], 1));
    const g = cn.tensor([1, 1, 1, 10, 10, 10], [1, 6]);
    y.backward(g);
    expect(Array.from(await a.grad!.data())).toEqual([11, 1, 11]);
    cn.zeroGrad([a]);
    for (const t of [a, y, g]) t.dispose();
  });

  it("accumulating into a leaf's grad never writes into the caller's gradOutput", async () => {
    for (const op of [(t: cn.Tensor) => cn.reshape(t, [4]), (t: cn.Tensor) => cn.flatten(cn.dropout(t, { p: 0.5, seed: 1, training: false })).reshape([4])]) {
      const x = cn.randn([2, 2], { seed: 1, requiresGrad: true });
      const g = cn.tensor([1, 1, 1, 1], [4]);
      for (let k = 0; k < 2; k++) {
        const y = cn.scope(() => op(x));
        y.backward(g);
        y.dispose();
      }
      expect(Array.from(await g.data())).toEqual([1, 1, 1, 1]);
      expect(Array.from(await x.grad!.data())).toEqual([2, 2, 2, 2]);
      cn.zeroGrad([x]);
      x.dispose();
      g.dispose();
    }
  });

  it('noGrad records nothing', () => {
    const w = rand([2, 2], 3, { requiresGrad: true });
    const y = cn.noGrad(() => cn.relu(w));
    expect(y.requiresGrad).toBe(false);
    const z = cn.relu(w);
    expect(z.requiresGrad).toBe(true);
    for (const t of [w, y, z]) t.dispose();
  });

  it('backward of a leaf itself gives ones or gradOutput', async () => {
    const s = cn.tensor([3], [], { requiresGrad: true });
    s.backward();
    expect(Array.from(await s.grad!.data())).toEqual([1]);
    cn.zeroGrad([s]);
    s.dispose();
  });

  it('the graph lives while its output does, and frees all memory when disposed unused', () => {
    const before = cn.memory();
    const x = rand([8, 16], 4);
    const w = rand([4, 16], 5, { requiresGrad: true });
    const loss = mlp(x, w, [0, 1, 2, 3, 0, 1, 2, 3]);
    // Intermediates were disposed by the scope, yet saved storage keeps the graph usable.
    expect(cn.memory().tensors).toBe(before.tensors + 3);
    expect(cn.memory().bytes['cpu:0']).toBeGreaterThan((before.bytes['cpu:0'] ?? 0) + 4 * (8 * 16 + 4 * 16 + 4));
    loss.dispose();
    x.dispose();
    w.dispose();
    expect(cn.memory()).toEqual(before);
  });

  it('backward frees saved storage as it goes', () => {
    const before = cn.memory();
    const x = rand([8, 16], 6);
    const w = rand([4, 16], 7, { requiresGrad: true });
    const loss = mlp(x, w, [0, 1, 2, 3, 0, 1, 2, 3]);
    loss.backward();
    // Left: x, w, w.grad and the loss itself; nothing the graph saved.
    const after = cn.memory();
    expect(after.tensors - before.tensors).toBe(4);
    expect((after.bytes['cpu:0'] ?? 0) - (before.bytes['cpu:0'] ?? 0)).toBe(4 * (8 * 16 + 4 * 16 + 4 * 16 + 1));
    cn.zeroGrad([w]);
    for (const t of [x, w, loss]) t.dispose();
  });

  it('gradients flow back across devices', async () => {
    const a = cn.tensor([1, 2, 3], [1, 3], { requiresGrad: true });
    const y = cn.scope(() => cn.relu(a.to('cpu:1')));
    expect(y.device).toBe('cpu:1');
    const g = cn.tensor([1, 2, 3], [1, 3], { device: 'cpu:1' });
    y.backward(g);
    expect(a.grad!.device).toBe('cpu:0');
    expect(Array.from(await a.grad!.data())).toEqual([1, 2, 3]);
    cn.zeroGrad([a]);
    for (const t of [a, y, g]) t.dispose();
  });
});
