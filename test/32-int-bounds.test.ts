/**
 * Integers at the edges: every op's integer options and shapes driven with 0, -1, 2^31-1, 2^31,
 * 2^32-1, 2^32 and 2^53 in child processes (test/fixtures/int-bounds-probe.ts), so that a crash
 * would show as a signal instead of taking the test runner down. Each case must end in a typed
 * error or in a result that matches the naive reference, never in a signal or a wrong number.
 * Then the native guards themselves, called past the TypeScript validation: they throw, they
 * never narrow.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { native } from '../src/native.js';
import { expectError, trackLeaks } from './helpers.js';

trackLeaks();

const here = path.dirname(fileURLToPath(import.meta.url));
const probe = path.join(here, 'fixtures', 'int-bounds-probe.ts');

interface Line {
  start?: string;
  case?: string;
  ok?: boolean;
  error?: string;
  message?: string;
  wrong?: string;
  skipped?: string;
  done?: number;
}

function runGroup(group: string): Map<string, Line> {
  const r = spawnSync(process.execPath, ['--import', 'tsx', probe, group], {
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, CONVNET_POISON: '1' },
  });
  const lines: Line[] = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);
  const started = lines.filter((l) => l.start).map((l) => l.start!);
  const results = new Map(lines.filter((l) => l.case).map((l) => [l.case!, l]));
  const unfinished = started.filter((s) => !results.has(s));
  expect(r.signal, `the probe died by ${r.signal} during: ${unfinished.join(', ')}\n${r.stderr}`).toBeNull();
  expect(r.status, r.stderr).toBe(0);
  expect(unfinished).toEqual([]);
  expect(lines.at(-1)?.done).toBe(started.length);
  const typed = new Set(['ShapeError', 'DeviceError', 'OutOfMemoryError']);
  for (const [name, l] of results) {
    expect(l.wrong, `${name}: wrong result`).toBeUndefined();
    if (l.error) expect(typed.has(l.error), `${name}: ${l.error}: ${l.message}`).toBe(true);
  }
  return results;
}

const outcome = (m: Map<string, Line>, name: string) => {
  const l = m.get(name);
  expect(l, `no case '${name}'`).toBeDefined();
  return l!.ok ? 'ok' : l!.error ? `${l!.error}: ${l!.message}` : `skipped: ${l!.skipped}`;
};

describe('boundary integers in child processes: a typed error or a correct result', () => {
  it('conv2d', () => {
    const m = runGroup('conv2d');
    expect(outcome(m, 'conv2d stride 2147483647')).toBe('ok');
    expect(outcome(m, 'conv2d stride [2147483647, 1]')).toBe('ok');
    expect(outcome(m, 'conv2d x [0,2,2147483647,5]')).toBe('ok');
    expect(outcome(m, 'conv2d stride 4294967296')).toBe('ShapeError: conv2d: stride must be at most 2^31-1 = 2147483647, received 4294967296');
    expect(outcome(m, 'conv2d padding 2147483647')).toBe(
      'ShapeError: conv2d: the padded input 4294967299x4294967299 must be at most 2^31-1 = 2147483647 along each axis, received input 5x5 with padding [2147483647, 2147483647]');
  });

  it('maxPool2d', () => {
    const m = runGroup('maxPool2d');
    expect(outcome(m, 'maxPool2d stride 2147483647')).toBe('ok');
    expect(outcome(m, 'maxPool2d kernel 4 padding 2 stride 2147483647')).toBe('ok');
    expect(outcome(m, 'maxPool2d x [0,2,2147483647,6]')).toBe('ok');
    expect(outcome(m, 'maxPool2d stride 4294967296')).toBe('ShapeError: maxPool2d: stride must be at most 2^31-1 = 2147483647, received 4294967296');
  });

  it('lrn', () => {
    const m = runGroup('lrn');
    expect(outcome(m, 'lrn size 2147483647')).toBe('ok');
    expect(outcome(m, 'lrn size 2147483648')).toBe('ShapeError: lrn: size must be at most 2^31-1 = 2147483647, received 2147483648');
    expect(outcome(m, 'lrn size 4294967295')).toBe('ShapeError: lrn: size must be at most 2^31-1 = 2147483647, received 4294967295');
  });

  it('element-wise ops, creation and int32 conversion', () => {
    const m = runGroup('elementwise');
    expect(outcome(m, 'dropout seed 9007199254740992')).toBe('ok');
    expect(outcome(m, 'tensor int32 [2147483647]')).toBe('ok');
    expect(outcome(m, 'full int32 4294967296')).toBe('ShapeError: full: value must be a 32-bit integer for dtype int32, received 4294967296');
    expect(outcome(m, 'zeros [0,4294967296]')).toBe('ShapeError: zeros: shape dimensions must be at most 2^31-1, received [0, 4294967296]');
  });

  it('linear and softmax cross-entropy', () => {
    const m = runGroup('linear');
    expect(outcome(m, 'softmaxCrossEntropy label 0')).toBe('ok');
    expect(outcome(m, 'linear x [2,0] w [2147483647,0]')).toBe('ShapeError: linear: the output [2, 2147483647] has 4294967294 elements, more than the limit of 2^31-1');
  });

  it('composition ops: reduction axes, permutations, matmul and broadcast shapes, pow exponents', () => {
    const m = runGroup('compose');
    expect(outcome(m, 'sum axis 0')).toBe('ok');
    expect(outcome(m, 'max axis -1')).toBe('ok');
    expect(outcome(m, 'pow exponent 9007199254740992')).toBe('ok');
    expect(outcome(m, 'matmul [2, 0] x [0, 3]')).toBe('ok');
    expect(outcome(m, 'sum axis 4294967296')).toBe('ShapeError: sum: axis must be an integer in [-2, 2) or an array of them, received 4294967296');
    expect(outcome(m, 'matmul [2147483647, 0] x [0, 2]')).toBe('ShapeError: matmul: the output [2147483647, 2] has 4294967294 elements, more than the limit of 2^31-1');
  });

  it('shape ops', () => {
    const m = runGroup('shape');
    expect(outcome(m, 'split sizes [0, 4]')).toBe('ok');
    expect(outcome(m, 'concat axis -1')).toBe('ok');
  });
});

describe('native op guards (past the TypeScript checks)', () => {
  const { ShapeError } = cn;
  const h = (t: cn.Tensor) => t._handle('test');
  // maxpool2d_forward ints: [N, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW]
  const pool = (ints: number[]) => {
    const x = cn.zeros([1, 1, 4, 4]);
    const y = cn.zeros([1, 1, 2, 2]);
    const idx = cn.zeros([1, 1, 2, 2], { dtype: 'int32' });
    try {
      native.launch('maxpool2d_forward', [h(y), h(idx), h(x)], ints, []);
    } finally {
      [x, y, idx].forEach((t) => t.dispose());
    }
  };
  const good = [1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 2, 2];
  const withInt = (k: number, v: number) => good.map((g, i) => (i === k ? v : g));

  it('a well-formed call passes', () => {
    expect(() => pool(good)).not.toThrow();
  });

  it('an integer beyond int32 is refused, not narrowed', () => {
    expectError(() => pool(withInt(7, 2 ** 32)), ShapeError, 'maxpool2d_forward: sw must be an integer in [1, 2147483647], received 4294967296');
    expectError(() => pool(withInt(4, 2 ** 31)), ShapeError, 'maxpool2d_forward: KH must be an integer in [1, 2147483647], received 2147483648');
    expectError(() => pool(withInt(0, -1)), ShapeError, 'maxpool2d_forward: N must be an integer in [0, 2147483647], received -1');
  });

  it('non-integers and integers past 2^53 are refused', () => {
    expectError(() => pool(withInt(6, 1.5)), ShapeError, 'maxpool2d_forward: integer argument 6 must be an integer of at most 2^53 in magnitude, received 1.5');
    expectError(() => pool(withInt(6, 2 ** 60)), ShapeError, 'maxpool2d_forward: integer argument 6 must be an integer of at most 2^53 in magnitude, received 1152921504606847000');
    expectError(() => pool(withInt(6, NaN)), ShapeError, 'maxpool2d_forward: integer argument 6 must be an integer of at most 2^53 in magnitude, received NaN');
  });

  it('inconsistent shapes and buffers too small for them are refused', () => {
    expectError(() => pool(withInt(10, 3)), ShapeError, 'maxpool2d_forward: output height must be 2, received 3');
    expectError(() => pool([1, 1, 8, 8, 2, 2, 2, 2, 0, 0, 4, 4]), ShapeError, 'maxpool2d_forward: y holds 16 bytes but the arguments need 64');
    const x = cn.zeros([8]);
    const y = cn.zeros([4]);
    expectError(() => native.launch('relu_forward', [h(y), h(x)], [8], []), ShapeError, 'relu_forward: y holds 16 bytes but the arguments need 32');
    expectError(() => native.launch('copy_blocks', [h(y), h(x)], [2, 2, 4, 7, 2, 0], []), ShapeError, 'copy_blocks: src holds 32 bytes but the arguments need 52');
    expectError(() => native.launch('lrn_forward', [h(y), h(y), h(x)], [1, 8, 1, 1, 2 ** 31], [1e-4, 0.75, 1]), ShapeError, 'lrn_forward: size must be an integer in [1, 2147483647], received 2147483648');
    x.dispose();
    y.dispose();
  });
});
