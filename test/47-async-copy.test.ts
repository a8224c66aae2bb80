/**
 * Copies between devices are ordered by events, not by holding queues: on two CPU queues
 * (cpu:0, cpu:1) a copy reads the source after the work queued before it there, writes the
 * destination after the work queued before it there, later work on the destination sees the
 * bytes, and later work on the source neither waits for the destination nor disturbs the copy.
 * Values are compared with what the host computes, bit for bit.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { rand, trackLeaks, uniform } from './helpers.js';

trackLeaks();

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const f32 = Math.fround;

async function values(t: cn.Tensor): Promise<number[]> {
  return Array.from((await t.data()) as Float32Array);
}

/** A conv that keeps a CPU queue busy for a while (about 0.1-0.5 s here). */
function busy(device: string, seed: number): { x: cn.Tensor; w: cn.Tensor; y: cn.Tensor; dispose: () => void } {
  const x = rand([8, 32, 40, 40], seed, { device });
  const w = rand([64, 32, 5, 5], seed + 1, { device });
  const y = cn.conv2d(x, w, null, { padding: 2 });
  return {
    x,
    w,
    y,
    dispose: () => {
      x.dispose();
      w.dispose();
      y.dispose();
    },
  };
}

describe('copies between CPU queues', () => {
  // With cpu:0 busy the destination half arrives first and the source half copies straight
  // into dst; with cpu:1 busy the source half arrives first and leaves a snapshot.
  for (const busyOn of ['cpu:0', 'cpu:1']) {
    it(`a chain cpu:0 -> cpu:1 -> cpu:0 keeps the value the source had when the copy was queued (${busyOn} busy)`, async () => {
      const n = 3001;
      const u = uniform(n, 1);
      const g = uniform(n, 2);
      const slow = busy(busyOn, 3);
      const x = cn.tensor(u, [n], { device: 'cpu:0' });
      const grad = cn.tensor(g, [n], { device: 'cpu:0' });
      const y = x.to('cpu:1');
      // Overwrite the source right after the copy is queued: the copy must read the old bytes.
      cn.sgdUpdate(x, grad, null, { lr: 1 });
      const back = y.to('cpu:0');
      cn.sgdUpdate(x, grad, null, { lr: 1 });
      expect(await values(y)).toEqual(Array.from(u));
      expect(await values(back)).toEqual(Array.from(u));
      expect(await values(x)).toEqual(Array.from(u, (v, i) => f32(f32(v - g[i]) - g[i])));
      for (const t of [x, grad, y, back]) t.dispose();
      slow.dispose();
    });
  }

  it('a copy into a live tensor waits for the destination work queued before it', async () => {
    const k = 64;
    const w0 = uniform(k * k, 4);
    const w1 = uniform(k * k, 5);
    const xs = uniform(16 * k, 6);
    const lin = new cn.nn.Linear(k, k, { device: 'cpu:1', bias: false });
    lin.assignParameter('weight', cn.tensor(w0, [k, k], { device: 'cpu:1' }));
    const x = cn.tensor(xs, [16, k], { device: 'cpu:1' });
    const slow = busy('cpu:1', 7); // the reads of the old weight queue behind this
    const before = lin.forward(x);
    const fresh = cn.tensor(w1, [k, k], { device: 'cpu:0' });
    lin.assignParameter('weight', fresh); // a cross-device copy into a weight still being read
    fresh.dispose(); // disposing the source mid-copy is fine: the copy holds it
    const after = lin.forward(x);
    // The same two products on one device, one after the other, are the reference.
    const ref = cn.scope(() => {
      const xr = cn.tensor(xs, [16, k], { device: 'cpu:0' });
      const a = cn.linear(xr, cn.tensor(w0, [k, k], { device: 'cpu:0' }), null);
      const b = cn.linear(xr, cn.tensor(w1, [k, k], { device: 'cpu:0' }), null);
      return [a, b];
    });
    expect(await values(before)).toEqual(await values(ref[0]));
    expect(await values(after)).toEqual(await values(ref[1]));
    for (const t of [before, after, x, ...ref]) t.dispose();
    lin.dispose();
    slow.dispose();
  });

  it('a destination allocated while queued work still reads freed memory gets the copy; that work its own data', async () => {
    const n = 8 * 32 * 40 * 40; // the size of busy()'s input
    for (let round = 0; round < 1; round++) {
      const u = uniform(n, 20 + round);
      const src = cn.tensor(u, [n], { device: 'cpu:0' });
      const slow = busy('cpu:1', 10 + round);
      slow.x.dispose(); // the queued conv still reads it; its block is free once the conv ran
      slow.w.dispose();
      const dst = src.to('cpu:1');
      src.dispose();
      const ref = cn.scope(() => cn.conv2d(rand([8, 32, 40, 40], 10 + round), rand([64, 32, 5, 5], 11 + round), null, { padding: 2 }));
      expect(await values(dst)).toEqual(Array.from(u));
      expect(await values(slow.y)).toEqual(await values(ref));
      for (const t of [dst, slow.y, ref]) t.dispose();
    }
  });

  it('many copies interleaved in both directions match the host, bit for bit', async () => {
    for (const n of [1, 257, 40000]) {
      let ha = uniform(n, 30);
      let hb = uniform(n, 31);
      let a = cn.tensor(ha, [n], { device: 'cpu:0' });
      let b = cn.tensor(hb, [n], { device: 'cpu:1' });
      for (let step = 0; step < 25; step++) {
        // a <- a + b (b copied to cpu:0); b <- b - a_old (a_old copied to cpu:1); both queued
        // before either finishes.
        const bOn0 = b.to('cpu:0');
        const aOn1 = a.to('cpu:1');
        const a2 = cn.add(a, bOn0);
        const b2 = cn.sub(b, aOn1);
        for (const t of [a, b, bOn0, aOn1]) t.dispose();
        [a, b] = [a2, b2];
        const na = ha.map((v, i) => f32(v + hb[i]));
        const nb = hb.map((v, i) => f32(v - ha[i]));
        [ha, hb] = [na, nb];
      }
      expect(await values(a)).toEqual(Array.from(ha));
      expect(await values(b)).toEqual(Array.from(hb));
      a.dispose();
      b.dispose();
    }
  });

  it('the source queue is not held: its later work runs while the destination is still busy', async () => {
    const x = rand([1000], 40, { device: 'cpu:0' });
    // cpu:0's inputs are made (in JS) and uploaded before anything is timed, so that cpu:0's
    // conv is queued microseconds after the copy, not after the JS thread drew random numbers.
    const in0 = { x: rand([8, 32, 40, 40], 45, { device: 'cpu:0' }), w: rand([64, 32, 5, 5], 46, { device: 'cpu:0' }) };
    const slow1 = [busy('cpu:1', 41), busy('cpu:1', 43)];
    await cn.synchronize('cpu:0');
    cn.traceStart();
    // cpu:1 is busy first; the copy's destination half queues behind that work.
    const more1 = slow1.map((b) => cn.conv2d(b.x, b.w, null, { padding: 2 }));
    const y = x.to('cpu:1');
    // Queued on cpu:0 after the copy: with a held source queue it could only start once cpu:1
    // had finished its convs and the copy.
    const slow0 = { y: cn.conv2d(in0.x, in0.w, null, { padding: 2 }), dispose: () => [in0.x, in0.w].forEach((t) => t.dispose()) };
    await Promise.all([cn.synchronize('cpu:0'), cn.synchronize('cpu:1')]);
    const events = cn.traceStop();
    const one = (device: string, op: string) => {
      const es = events.filter((e) => e.device === device && e.op === op);
      expect(es, `${op} on ${device}`).toHaveLength(1);
      return es[0];
    };
    const out = one('cpu:0', 'copy_out');
    const inn = one('cpu:1', 'copy_in');
    const conv0 = one('cpu:0', 'conv2d_forward');
    const convs1 = events.filter((e) => e.device === 'cpu:1' && e.op === 'conv2d_forward');
    expect(convs1.length).toBeGreaterThanOrEqual(2);
    // Ordering facts: the destination half runs after the work queued before it on cpu:1; the
    // source half runs before what was queued after it on cpu:0; cpu:0's conv starts before
    // the destination half finishes (a held queue would start it only afterwards).
    for (const c of convs1) expect(inn.start).toBeGreaterThanOrEqual(c.end);
    expect(conv0.start).toBeGreaterThanOrEqual(out.end);
    expect(conv0.start).toBeLessThan(inn.end);
    for (const e of [out, inn]) expect(e.end).toBeGreaterThanOrEqual(e.start);
    expect(await values(y)).toEqual(await values(x));
    for (const s of [...slow1, slow0]) s.dispose();
    slow0.y.dispose();
    for (const t of more1) t.dispose();
    x.dispose();
    y.dispose();
  });

  it('disposing both ends while the copy is still queued frees everything', async () => {
    const before = cn.memory();
    const slow = busy('cpu:0', 50);
    for (let k = 0; k < 10; k++) {
      const x = rand([5000], 51 + k, { device: k % 2 ? 'cpu:1' : 'cpu:0' });
      const y = x.to(k % 2 ? 'cpu:0' : 'cpu:1');
      x.dispose();
      y.dispose();
    }
    slow.dispose();
    await Promise.all([cn.synchronize('cpu:0'), cn.synchronize('cpu:1')]);
    const after = cn.memory();
    expect(after.tensors).toBe(before.tensors);
    expect(after.bytes).toEqual(before.bytes);
  });

  it('the process exits cleanly with copies still queued in both directions', () => {
    const addon = path.join(root, 'build', 'Release', 'convnet.node');
    const script = `
      const native = require(${JSON.stringify(addon)});
      const n = 1 << 18;
      const data = new Float32Array(n).fill(1.5);
      const hs = [];
      for (let k = 0; k < 40; k++) {
        const from = k % 2 ? 'cpu:1' : 'cpu:0', to = k % 2 ? 'cpu:0' : 'cpu:1';
        const a = native.alloc(from, n * 4), b = native.alloc(to, n * 4);
        native.upload(a, data);
        native.copy(b, a);
        hs.push(a, b);
      }
      ${'process.stdout.write("queued\\n");'}
      if (process.argv[1] === 'exit') process.exit(0);
    `;
    for (const mode of ['exit', 'return']) {
      const r = spawnSync(process.execPath, ['-e', script, mode], { encoding: 'utf8', timeout: 60000 });
      expect([mode, r.status, r.signal, r.stdout.trim()]).toEqual([mode, 0, null, 'queued']);
    }
  });
});

describe('two towers across cpu:0 and cpu:1', () => {
  it('train bit for bit the same on every run and as on one device', async () => {
    const run = async (devices: [string, string]) => {
      const m = cn.models.alexnetMini({ width: 0.25, seed: 3, towers: 2, devices });
      const params = m.parameters();
      const x = rand([4, 1, 28, 28], 60, { device: devices[0] });
      const labels = [1, 7, 3, 0];
      for (let step = 0; step < 2; step++) {
        cn.scope(() => {
          const loss = cn.softmaxCrossEntropy(m.forward(x), labels);
          loss.backward();
        });
        for (const p of params) {
          cn.sgdUpdate(p, p.grad!, null, { lr: 0.05 });
        }
        cn.zeroGrad(params);
      }
      const out = await Promise.all(params.map((p) => values(p)));
      x.dispose();
      m.dispose();
      return out;
    };
    const first = await run(['cpu:0', 'cpu:1']);
    const second = await run(['cpu:0', 'cpu:1']);
    const oneDevice = await run(['cpu:0', 'cpu:0']);
    expect(second).toEqual(first);
    expect(oneDevice).toEqual(first);
  });
});
