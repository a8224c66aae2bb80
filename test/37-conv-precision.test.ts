/**
 * conv2d's precision (option `precision`, cn.setPrecision) and version 3 (tensor cores): exact
 * errors for bad values in TypeScript and in the op table, the value reaching the native ops
 * (last int = version + 10 * precision code), and the rule that fp32 never runs version 3.
 * On a CPU the precision changes nothing (float32 math is always allowed), so the results must
 * be bit-identical; version 3 against the CPU runs under the emulation (native/emu, `--only
 * conv2d_v3`, test/36) and on a GPU in test/30-ops-gpu.test.ts (row conv2dV3Tf32 / Bf16).
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
  cn.setPrecision('fp32');
});

describe('precision', () => {
  it('defaults to fp32; setPrecision returns the previous value and rejects others exactly', () => {
    expect(cn.getPrecision()).toBe('fp32');
    expect(cn.setPrecision('tf32')).toBe('fp32');
    expect(cn.getPrecision()).toBe('tf32');
    expect(cn.setPrecision('bf16')).toBe('tf32');
    for (const [p, shown] of [['fp16', "'fp16'"], ['TF32', "'TF32'"], [undefined, 'undefined'], [null, 'null'], [32, '32']] as const) {
      expectError(() => cn.setPrecision(p as never), cn.ShapeError,
        `setPrecision: precision must be 'fp32', 'tf32' or 'bf16', received ${shown}`);
    }
    expect(cn.getPrecision()).toBe('bf16');  // unchanged by the failed calls
  });

  it('rejects a bad precision option and version 3 with fp32, exactly', () => {
    const { x, w, all } = convInputs();
    try {
      expectError(() => cn.conv2d(x, w, null, { groups: 2, precision: 'half' as never }), cn.ShapeError,
        "conv2d: precision must be 'fp32', 'tf32' or 'bf16', received 'half'");
      expectError(() => cn.conv2d(x, w, null, { groups: 2, version: 3 }), cn.ShapeError,
        "conv2d: version 3 (tensor cores) needs precision 'tf32' or 'bf16', received precision 'fp32'");
      expectError(() => cn.conv2d(x, w, null, { groups: 2, version: 3, precision: 'fp32' }), cn.ShapeError,
        "conv2d: version 3 (tensor cores) needs precision 'tf32' or 'bf16', received precision 'fp32'");
      cn.setPrecision('tf32');  // the global setting, overridden per call
      expectError(() => cn.conv2d(x, w, null, { groups: 2, version: 3, precision: 'fp32' }), cn.ShapeError,
        "conv2d: version 3 (tensor cores) needs precision 'tf32' or 'bf16', received precision 'fp32'");
    } finally {
      all.forEach((t) => t.dispose());
    }
  });

  it('encodes version + 10 * precision last: option, else setPrecision; reduced precision picks version 3', () => {
    const { x, w, all } = convInputs();
    const last = (o: cn.Conv2dOptions) => conv2dPlan(x, w, null, { groups: 2, ...o }).ints.at(-1);
    try {
      delete process.env.CONVNET_CONV_VERSION;
      expect(last({})).toBe(0);
      expect(last({ precision: 'fp32' })).toBe(0);
      expect(last({ precision: 'tf32' })).toBe(13);
      expect(last({ precision: 'bf16' })).toBe(23);
      expect(last({ precision: 'tf32', version: 3 })).toBe(13);
      expect(last({ precision: 'bf16', version: 2 })).toBe(22);  // v2 runs fp32 math
      expect(last({ precision: 'tf32', version: 1 })).toBe(11);
      cn.setPrecision('bf16');
      expect(last({})).toBe(23);
      expect(last({ precision: 'fp32' })).toBe(0);
      expect(last({ version: 2 })).toBe(22);
      cn.setPrecision('fp32');
      process.env.CONVNET_CONV_VERSION = '3';  // applies to reduced-precision calls only
      expect(last({})).toBe(0);
      expect(last({ precision: 'tf32' })).toBe(13);
      process.env.CONVNET_CONV_VERSION = '2';
      expect(last({ precision: 'tf32' })).toBe(12);
      expect(last({ precision: 'tf32', version: 3 })).toBe(13);
    } finally {
      all.forEach((t) => t.dispose());
    }
  });

  it('the op table bounds the combined argument and refuses version 3 with fp32', () => {
    const { x, w, all } = convInputs();
    const y = cn.zeros([2, 6, 7, 5]);
    try {
      const ints = conv2dPlan(x, w, null, { groups: 2 }).ints.slice(0, 14);
      expectError(() => launchInPlace('conv2d_forward', [y, x, w, null], [...ints, 3]), cn.ShapeError,
        'conv2d_forward: version 3 (tensor cores) needs precision tf32 or bf16, received fp32');
      expectError(() => launchInPlace('conv2d_backward_data', [x, y, w], [...ints, 3]), cn.ShapeError,
        'conv2d_backward_data: version 3 (tensor cores) needs precision tf32 or bf16, received fp32');
      for (const v of [4, 19]) {
        expectError(() => launchInPlace('conv2d_forward', [y, x, w, null], [...ints, v]), cn.ShapeError,
          `conv2d_forward: version (last int % 10) must be 0 to 3, received ${v}`);
      }
      for (const v of [13, 23, 21]) launchInPlace('conv2d_forward', [y, x, w, null], [...ints, v]);
    } finally {
      [...all, y].forEach((t) => t.dispose());
    }
  });

  it('on a CPU every precision gives the same output and gradients, bit for bit', async () => {
    await expectSameConvBits([{ precision: 'fp32' }, { precision: 'tf32' }, { precision: 'bf16' }]);
  });
});
