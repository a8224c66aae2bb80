/** Tensors, devices and memory: the foundation every other test stands on. */
import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { native } from '../src/native.js';
import { empty } from '../src/tensor.js';
import { expectError, trackLeaks } from './helpers.js';

trackLeaks();

describe('devices and build', () => {
  it('lists the CPU queues, and CUDA devices only when the build and machine have them', () => {
    const ds = cn.devices();
    expect(ds[0]).toMatchObject({ id: 'cpu:0', kind: 'cpu' });
    expect(ds[1]).toMatchObject({ id: 'cpu:1', kind: 'cpu' });
    expect(ds[0].memoryBytes).toBeGreaterThan(0);
    const b = cn.buildInfo();
    expect(b.version).toBe('0.1.0');
    expect(typeof b.cuda).toBe('boolean');
    if (b.cuda) expect(b.archs?.length).toBeGreaterThan(0);
    else expect(ds.every((d) => d.kind === 'cpu')).toBe(true);
  });

  it("treats 'cpu' as 'cpu:0'", () => {
    const t = cn.zeros([2], { device: 'cpu' });
    expect(t.device).toBe('cpu:0');
    t.dispose();
  });
});

describe('tensors', () => {
  it('round-trips float32 and int32 data', async () => {
    const f = cn.tensor([1, -2.5, 3, 4, 5, 6], [2, 3]);
    expect(f.shape).toEqual([2, 3]);
    expect(f.dtype).toBe('float32');
    expect(f.size).toBe(6);
    expect(Array.from(await f.data())).toEqual([1, -2.5, 3, 4, 5, 6]);
    expect(Array.from(f.dataSync())).toEqual([1, -2.5, 3, 4, 5, 6]);
    const i = cn.tensor(new Int32Array([7, -8, 9]), [3]);
    expect(i.dtype).toBe('int32');
    expect(Array.from(await i.data())).toEqual([7, -8, 9]);
    expect(await f.array()).toEqual([[1, -2.5, 3], [4, 5, 6]]);
    f.dispose();
    i.dispose();
  });

  it('copies the data when created, so later changes to the array do not leak in', async () => {
    const src = new Float32Array([1, 2, 3]);
    const t = cn.tensor(src, [3]);
    src[0] = 100;
    expect(Array.from(await t.data())).toEqual([1, 2, 3]);
    t.dispose();
  });

  it('fills zeros and full, and randn is a pure function of its seed', async () => {
    const z = cn.zeros([4]);
    const f = cn.full([2, 2], 2.5);
    const fi = cn.full([3], -4, { dtype: 'int32' });
    expect(Array.from(await z.data())).toEqual([0, 0, 0, 0]);
    expect(Array.from(await f.data())).toEqual([2.5, 2.5, 2.5, 2.5]);
    expect(Array.from(await fi.data())).toEqual([-4, -4, -4]);
    const a = cn.randn([1000], { seed: 42 });
    const b = cn.randn([1000], { seed: 42, device: 'cpu:1' });
    const c = cn.randn([1000], { seed: 43 });
    const da = Array.from(await a.data());
    expect(Array.from(await b.data())).toEqual(da);
    expect(Array.from(await c.data())).not.toEqual(da);
    const mean = da.reduce((s, v) => s + v, 0) / da.length;
    const sd = Math.sqrt(da.reduce((s, v) => s + (v - mean) ** 2, 0) / da.length);
    expect(Math.abs(mean)).toBeLessThan(4 / Math.sqrt(1000));
    expect(Math.abs(sd - 1)).toBeLessThan(0.1);
    const scaled = cn.randn([1000], { seed: 42, std: 0.01 });
    const ds = await scaled.data();
    expect(ds[5]).toBeCloseTo(da[5] * 0.01, 6);
    for (const t of [z, f, fi, a, b, c, scaled]) t.dispose();
  });

  it('reshape and flatten share storage and keep the data', async () => {
    const t = cn.tensor([1, 2, 3, 4, 5, 6], [1, 2, 3]);
    const r = t.reshape([3, -1]);
    expect(r.shape).toEqual([3, 2]);
    const cube = cn.tensor([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2]);
    const f = cn.flatten(cube);
    expect(f.shape).toEqual([2, 4]);
    cube.dispose();
    t.dispose();
    // The view keeps the storage alive after the original is disposed.
    expect(Array.from(await r.data())).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(await f.data())).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    r.dispose();
    f.dispose();
  });

  it('copies between CPU devices with to()', async () => {
    const a = cn.tensor([1, 2, 3], [3]);
    const b = a.to('cpu:1');
    expect(b.device).toBe('cpu:1');
    expect(Array.from(await b.data())).toEqual([1, 2, 3]);
    const c = b.to('cpu:0');
    expect(Array.from(await c.data())).toEqual([1, 2, 3]);
    for (const t of [a, b, c]) t.dispose();
  });
});

describe('queue order', () => {
  it('writing new values into a tensor waits for the queued work that still reads the old ones', async () => {
    const x = cn.full([8, 16, 32, 32], 1);
    const w = cn.full([16, 16, 5, 5], 1);
    const y = cn.conv2d(x, w, null, { padding: 2 });
    // x is still being read by the queued conv: the upload must go in queue order after it.
    native.upload(x._handle('test'), new Float32Array(x.size));
    const d = await y.data();
    expect(d[2 * 32 + 2]).toBe(16 * 25);
    expect(Array.from(await x.data()).every((v) => v === 0)).toBe(true);
    for (const t of [x, w, y]) t.dispose();
  });
});

describe('memory', () => {
  it('counts live tensors and bytes per device, and dispose gives them back', () => {
    const before = cn.memory();
    const t = cn.zeros([10, 10]);
    const u = cn.zeros([5], { device: 'cpu:1' });
    const during = cn.memory();
    expect(during.tensors).toBe(before.tensors + 2);
    expect(during.bytes['cpu:0']).toBe((before.bytes['cpu:0'] ?? 0) + 400);
    expect(during.bytes['cpu:1']).toBe((before.bytes['cpu:1'] ?? 0) + 20);
    t.dispose();
    t.dispose(); // a second dispose is harmless
    u.dispose();
    expect(cn.memory()).toEqual({ tensors: before.tensors, bytes: { ...before.bytes, 'cpu:0': before.bytes['cpu:0'] ?? 0, 'cpu:1': before.bytes['cpu:1'] ?? 0 } });
  });

  it('scope disposes what it created except what it returns', () => {
    const before = cn.memory().tensors;
    const kept = cn.scope(() => {
      const a = cn.zeros([3]);
      const b = cn.relu(a);
      cn.scope(() => cn.zeros([1]));
      return { b };
    });
    expect(cn.memory().tensors).toBe(before + 1);
    expect(kept.b.disposed).toBe(false);
    kept.b.dispose();
    expect(cn.memory().tensors).toBe(before);
  });

  it('scope disposes its tensors when fn throws', () => {
    const before = cn.memory().tensors;
    expect(() =>
      cn.scope(() => {
        cn.zeros([3]);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(cn.memory().tensors).toBe(before);
  });

  it('the finalizer frees tensors the program forgot', async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    expect(gc, 'tests run with --expose-gc').toBeTypeOf('function');
    const before = cn.memory();
    (() => {
      for (let i = 0; i < 10; i++) cn.zeros([1000]);
    })();
    expect(cn.memory().tensors).toBe(before.tensors + 10);
    for (let i = 0; i < 20 && cn.memory().tensors !== before.tensors; i++) {
      gc!();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(cn.memory()).toEqual(before);
  });

  it('the caching allocator reuses freed blocks instead of asking for new ones', async () => {
    await cn.synchronize('cpu:1');
    const before = cn.allocatorStats('cpu:1');
    for (let i = 0; i < 50; i++) {
      cn.zeros([4096], { device: 'cpu:1' }).dispose();
      // A block returns to the cache once the queued fill that holds it has run.
      await cn.synchronize('cpu:1');
    }
    const after = cn.allocatorStats('cpu:1');
    expect(after.inUse).toBe(before.inUse);
    // 50 blocks of 16 KiB went through; reuse keeps at most a few of them cached.
    expect(after.cached - before.cached).toBeGreaterThan(0);
    expect(after.cached - before.cached).toBeLessThanOrEqual(4 * 16384);
    cn.emptyCache('cpu:1');
    expect(cn.allocatorStats('cpu:1').cached).toBe(0);
  });
});

describe('poisoning', () => {
  it('op outputs start as NaN in the test suite, so unwritten elements show', async () => {
    expect(process.env.CONVNET_POISON).toBe('1');
    const t = empty([3], 'float32', 'cpu:0');
    expect(Array.from(await t.data()).every(Number.isNaN)).toBe(true);
    t.dispose();
  });
});

describe('out of memory', () => {
  it('an impossible allocation throws OutOfMemoryError naming the device and sizes; the next op works', async () => {
    let thrown: unknown;
    try {
      native.alloc('cpu:1', 2 ** 60);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(cn.OutOfMemoryError);
    const e = thrown as cn.OutOfMemoryError;
    expect(e.message).toMatch(/^out of memory on cpu:1: asked for 1152921504606846976 bytes, \d+ bytes free$/);
    expect(e.device).toBe('cpu:1');
    expect(e.bytesAsked).toBe(2 ** 60);
    expect(e.bytesFree).toBeGreaterThan(0);
    const t = cn.full([3], 2, { device: 'cpu:1' });
    expect(Array.from(await t.data())).toEqual([2, 2, 2]);
    t.dispose();
  });
});

describe('disposed tensors', () => {
  it('throw DisposedError when used', async () => {
    const t = cn.zeros([2]);
    t.dispose();
    expectError(() => cn.relu(t), cn.DisposedError, 'relu: x was disposed and cannot be used');
    expectError(() => t.dataSync(), cn.DisposedError, 'dataSync: tensor was disposed and cannot be used');
    await expect(t.data()).rejects.toThrow(cn.DisposedError);
    expectError(() => t.reshape([2]), cn.DisposedError, 'reshape: tensor was disposed and cannot be used');
    expectError(() => t.to('cpu:1'), cn.DisposedError, 'to: tensor was disposed and cannot be used');
  });
});
