/**
 * conv2d's kernel version (option `version`, environment variable CONVNET_CONV_VERSION): exact
 * errors for bad values in TypeScript and in the op table, and the value reaching the native ops
 * of the forward and both gradients. On a CPU the version changes nothing, so the results with
 * version 1, 2 and the default must be bit-identical; version 2 against the CPU on a GPU is the
 * conv2dV2 row of test/30-ops-gpu.test.ts, and under the emulation native/emu (test/36).
 */
import { afterEach, describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { conv2dPlan } from '../src/ops/conv2d.js';
import { launchInPlace } from '../src/ops/launch.js';
import { expectError, trackLeaks } from './helpers.js';

trackLeaks();

const saved = process.env.CONVNET_CONV_VERSION;
afterEach(() => {
  if (saved === undefined) delete process.env.CONVNET_CONV_VERSION;
  else process.env.CONVNET_CONV_VERSION = saved;
});

function inputs() {
  const x = cn.randn([2, 4, 9, 7], { seed: 3, requiresGrad: true });
  const w = cn.randn([6, 2, 3, 3], { seed: 4, std: 0.3, requiresGrad: true });
  const b = cn.randn([6], { seed: 5, requiresGrad: true });
  return { x, w, b, all: [x, w, b] };
}

describe('conv2d version', () => {
  it('rejects a version other than 1, 2 or 3 with the exact message', () => {
    const { x, w, all } = inputs();
    try {
      for (const [v, shown] of [[4, '4'], [0, '0'], ['2', "'2'"], [1.5, '1.5'], [null, 'null']] as const) {
        expectError(() => cn.conv2d(x, w, null, { groups: 2, version: v as never }), cn.ShapeError,
          `conv2d: version must be 1, 2 or 3, received ${shown}`);
      }
    } finally {
      all.forEach((t) => t.dispose());
    }
  });

  it('rejects a bad CONVNET_CONV_VERSION with the exact message, and the option overrides it', () => {
    const { x, w, all } = inputs();
    try {
      process.env.CONVNET_CONV_VERSION = 'fast';
      expectError(() => cn.conv2d(x, w, null, { groups: 2 }), cn.ShapeError,
        "conv2d: the environment variable CONVNET_CONV_VERSION must be 1, 2 or 3, received 'fast'");
      const y = cn.conv2d(x, w, null, { groups: 2, version: 1 });
      expect(y.shape).toEqual([2, 6, 7, 5]);
      y.dispose();
    } finally {
      all.forEach((t) => t.dispose());
    }
  });

  it('puts the version last in the native argument list: option, else the environment, else 0', () => {
    const { x, w, all } = inputs();
    try {
      delete process.env.CONVNET_CONV_VERSION;
      expect(conv2dPlan(x, w, null, { groups: 2 }).ints).toEqual([2, 4, 9, 7, 6, 3, 3, 1, 1, 0, 0, 2, 7, 5, 0]);
      expect(conv2dPlan(x, w, null, { groups: 2, version: 2 }).ints.at(-1)).toBe(2);
      process.env.CONVNET_CONV_VERSION = '2';
      expect(conv2dPlan(x, w, null, { groups: 2 }).ints.at(-1)).toBe(2);
      expect(conv2dPlan(x, w, null, { groups: 2, version: 1 }).ints.at(-1)).toBe(1);
      process.env.CONVNET_CONV_VERSION = '';
      expect(conv2dPlan(x, w, null, { groups: 2 }).ints.at(-1)).toBe(0);
    } finally {
      all.forEach((t) => t.dispose());
    }
  });

  it('the op table bounds the version argument of every conv op', () => {
    const { x, w, all } = inputs();
    const y = cn.zeros([2, 6, 7, 5]);
    const dw = cn.zeros([6, 2, 3, 3]);
    try {
      const ints = [...conv2dPlan(x, w, null, { groups: 2 }).ints.slice(0, 14)];
      for (const v of [24, -1]) {
        expectError(() => launchInPlace('conv2d_forward', [y, x, w, null], [...ints, v]), cn.ShapeError,
          `conv2d_forward: version must be an integer in [0, 23], received ${v}`);
        expectError(() => launchInPlace('conv2d_backward_data', [x, y, w], [...ints, v]), cn.ShapeError,
          `conv2d_backward_data: version must be an integer in [0, 23], received ${v}`);
        expectError(() => launchInPlace('conv2d_backward_filter', [dw, null, x, y], [...ints, v]), cn.ShapeError,
          `conv2d_backward_filter: version must be an integer in [0, 23], received ${v}`);
      }
    } finally {
      [...all, y, dw].forEach((t) => t.dispose());
    }
  });

  it('on a CPU every version gives the same output and gradients, bit for bit', async () => {
    const results: Float32Array[][] = [];
    for (const version of [undefined, 1, 2] as const) {
      const { x, w, b, all } = inputs();
      const y = cn.conv2d(x, w, b, { groups: 2, stride: [2, 1], padding: 1, ...(version ? { version } : {}) });
      const sq = cn.mul(y, y);
      const loss = cn.sum(sq);
      loss.backward();
      results.push([
        (await y.data()) as Float32Array, (await x.grad!.data()) as Float32Array,
        (await w.grad!.data()) as Float32Array, (await b.grad!.data()) as Float32Array,
      ]);
      [...all.map((t) => t.grad!), ...all, y, sq, loss].forEach((t) => t.dispose());
    }
    for (const r of results.slice(1)) {
      r.forEach((a, i) => expect(Buffer.from(a.buffer).equals(Buffer.from(results[0][i].buffer)), `output ${i}`).toBe(true));
    }
    expect(results[0][0].some((v) => v !== 0)).toBe(true);
  });
});
