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
import { convInputs, expectError, expectSameConvBits, trackLeaks } from './helpers.js';

trackLeaks();

const saved = process.env.CONVNET_CONV_VERSION;
afterEach(() => {
  if (saved === undefined) delete process.env.CONVNET_CONV_VERSION;
  else process.env.CONVNET_CONV_VERSION = saved;
});

describe('conv2d version', () => {
  it('rejects a version other than 1, 2 or 3 with the exact message', () => {
    const { x, w, all } = convInputs();
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
    const { x, w, all } = convInputs();
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
    const { x, w, all } = convInputs();
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
    const { x, w, all } = convInputs();
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
    await expectSameConvBits([{}, { version: 1 }, { version: 2 }]);
  });
});
