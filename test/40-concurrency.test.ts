/**
 * Concurrency: ops on two CPU queues at once give the results of running them one by one;
 * waiting for data never blocks the event loop; the addon loads and works in two worker
 * threads at the same time.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { rand, trackLeaks } from './helpers.js';

trackLeaks();

const here = path.dirname(fileURLToPath(import.meta.url));

async function convOn(device: string, seed: number): Promise<Float32Array> {
  const y = cn.scope(() => {
    const x = rand([4, 8, 12, 12], seed, { device });
    const w = rand([16, 8, 3, 3], seed + 1, { device });
    return cn.relu(cn.conv2d(x, w, null, { padding: 1 }));
  });
  const d = (await y.data()) as Float32Array;
  y.dispose();
  return d;
}

describe('concurrency', () => {
  it('Promise.all over independent ops on two devices equals running them one by one', async () => {
    const seq: Float32Array[] = [];
    for (let i = 0; i < 6; i++) seq.push(await convOn(i % 2 ? 'cpu:1' : 'cpu:0', 10 * i));
    const par = await Promise.all(Array.from({ length: 6 }, (_, i) => convOn(i % 2 ? 'cpu:1' : 'cpu:0', 10 * i)));
    for (let i = 0; i < 6; i++) expect(Array.from(par[i])).toEqual(Array.from(seq[i]));
  });

  it('two CPU devices really compute at the same time (their traced ops overlap)', async () => {
    const inputs = ['cpu:0', 'cpu:1'].map((device) => ({
      x: rand([16, 16, 24, 24], 3, { device }),
      w: rand([32, 16, 5, 5], 4, { device }),
    }));
    cn.traceStart();
    const ys: cn.Tensor[] = [];
    for (let k = 0; k < 4; k++) for (const { x, w } of inputs) ys.push(cn.conv2d(x, w, null, { padding: 2 }));
    await Promise.all(ys.map((y) => y.data()));
    const events = cn.traceStop().filter((e) => e.op === 'conv2d_forward');
    expect(events).toHaveLength(8);
    const on = (d: string) => events.filter((e) => e.device === d);
    const overlaps = on('cpu:0').some((a) => on('cpu:1').some((b) => a.start < b.end && b.start < a.end));
    expect(overlaps).toBe(true);
    for (const t of [...ys, ...inputs.flatMap((i) => [i.x, i.w])]) t.dispose();
  });

  it('await t.data() leaves the event loop free while the queue works', async () => {
    const x = rand([32, 32, 32, 32], 1);
    const w = rand([64, 32, 5, 5], 2);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const y = cn.conv2d(x, w, null, { padding: 2 });
    const t0 = performance.now();
    await y.data();
    const elapsed = performance.now() - t0;
    clearInterval(timer);
    // The conv takes tens of milliseconds; a blocked loop would not tick at all.
    expect(elapsed).toBeGreaterThan(5);
    expect(ticks).toBeGreaterThan(0);
    for (const t of [x, w, y]) t.dispose();
  });

  it('the addon loads and works in two worker threads at once', async () => {
    const expected = Array.from(await convOn('cpu:0', 77));
    const run = () =>
      new Promise<number[]>((resolve, reject) => {
        const worker = new Worker(path.join(here, 'fixtures', 'worker.mjs'), { workerData: { seed: 77 } });
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.once('exit', (code) => code !== 0 && reject(new Error(`worker exited with ${code}`)));
      });
    const [a, b] = await Promise.all([run(), run()]);
    expect(a).toEqual(expected);
    expect(b).toEqual(expected);
  });
});
