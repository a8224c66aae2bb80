/**
 * Every op on a CUDA device against the CPU reference: the comparisons of the GPU check
 * (bench/gpu-check/compare.mjs) in vitest form. Seeded random AlexNet-like and odd shapes,
 * forward and backward with the same gradOutput on both devices, outputs poisoned with NaN
 * (vitest.config.ts sets CONVNET_POISON=1); normwise relative error under 1e-4, bit-equal for
 * dropout, randn, fills and copies. Skips, saying why, when there is no CUDA device.
 * CONVNET_TEST_DEVICE=cpu:1 runs it against a second CPU queue (to check the suite itself).
 */
import { describe, expect, it } from 'vitest';

import { OPS, checkOutOfMemory, makeCases, runCase } from '../bench/gpu-check/compare.mjs';
import * as cn from '../src/index.js';
import { native } from '../src/native.js';
import { trackLeaks } from './helpers.js';

trackLeaks();

const cuda = cn.devices().filter((d) => d.kind === 'cuda');
const device = process.env.CONVNET_TEST_DEVICE ?? cuda[0]?.id ?? null;
const reference = 'cpu:0';
const kind = device?.startsWith('cuda') ? 'cuda' : 'cpu';
const peer = cn.devices().find((d) => d.kind === kind && d.id !== device && d.id !== reference)?.id ?? null;
const noKernel = kind === 'cuda' ? cn.buildInfo().ops.filter((o) => !o.cuda).map((o) => o.name) : [];

function whyNoDevice(): string {
  try {
    cn.zeros([1], { device: 'cuda:0' }).dispose();
    return 'cn.devices() lists no CUDA device';
  } catch (e) {
    return (e as Error).message;
  }
}
const skipReason = device ? null : `no CUDA device (${whyNoDevice()})`;
const cases = device ? makeCases({ seed: 1, peer: peer !== null }) : [];

describe(`ops on ${device ?? 'cuda:0'} against ${reference}`, () => {
  for (const op of OPS) {
    it(op, (ctx) => {
      if (skipReason) {
        console.log(`skipped: ${skipReason}`);
        ctx.skip();
      }
      const results = cases.filter((c) => c.op === op).map((c) => runCase(cn, c, { device: device!, reference, peer, noKernel }));
      expect(results.length).toBeGreaterThan(0);
      expect(results.filter((r) => r.status !== 'pass').map((r) => `${r.label}: ${r.status}: ${r.detail}`)).toEqual([]);
    });
  }

  it('a 1 EB allocation throws OutOfMemoryError and the device still works', (ctx) => {
    if (skipReason) {
      console.log(`skipped: ${skipReason}`);
      ctx.skip();
    }
    const r = checkOutOfMemory(cn, native, device!);
    expect(r.detail).toBe('');
    expect(r.status).toBe('pass');
  });
});
