/**
 * Time one op on every device this machine has: ops only queue work, so the clock stops after
 * `await cn.synchronize(device)`. Medians of several runs after a warm-up.
 *
 *   npx tsx examples/time-op.ts [--iters 20]
 */
import { parseArgs } from 'node:util';

import * as cn from 'convnet-cuda';

const { values } = parseArgs({ options: { iters: { type: 'string' } } });
const iters = Number(values.iters ?? 20);

// conv2 of AlexNet-mini at width 0.5: 32 -> 64 channels, 5x5, groups 2, on 13x13, batch 32.
const shape = { x: [32, 32, 13, 13], w: [64, 16, 5, 5] };
const flops = 2 * 32 * 64 * 16 * 25 * 13 * 13;

for (const d of cn.devices()) {
  const x = cn.randn(shape.x, { seed: 1, device: d.id });
  const w = cn.randn(shape.w, { seed: 2, device: d.id, std: 0.05 });
  const times: number[] = [];
  for (let i = 0; i < iters + 3; i++) {
    const t0 = performance.now();
    const y = cn.conv2d(x, w, null, { padding: 2, groups: 2 });
    await cn.synchronize(d.id);
    if (i >= 3) times.push(performance.now() - t0);
    y.dispose();
  }
  times.sort((p, q) => p - q);
  const ms = times[times.length >> 1];
  console.log(`${d.id.padEnd(7)} ${d.name}: conv2d ${ms.toFixed(3)} ms (median of ${iters}), ${(flops / ms / 1e6).toFixed(1)} GFLOP/s`);
  x.dispose();
  w.dispose();
}
