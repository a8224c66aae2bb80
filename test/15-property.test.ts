/**
 * Property tests over conv2d and maxPool2d parameters: for any parameters the result matches
 * the naive loop reference, or a ShapeError is thrown (and nothing is allocated): never a
 * crash, never garbage.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { expectClose, prod, trackLeaks, uniform } from './helpers.js';
import { conv2dRef, maxPoolRef } from './reference.js';

trackLeaks();

const small = (lo: number, hi: number) => fc.integer({ min: lo, max: hi });
// Mostly valid values, sometimes zero, negative or fractional.
const strideArb = fc.oneof({ weight: 6, arbitrary: small(1, 3) }, { weight: 1, arbitrary: fc.constantFrom(0, -1, 1.5) });
const padArb = fc.oneof({ weight: 6, arbitrary: small(0, 3) }, { weight: 1, arbitrary: fc.constantFrom(-1, 0.5) });

describe('conv2d over random parameters', () => {
  it('matches the reference or throws ShapeError', () => {
    fc.assert(
      fc.property(
        fc.record({
          N: small(1, 2), C: small(1, 4), H: small(1, 8), W: small(1, 8), F: small(1, 4),
          KH: small(1, 5), KW: small(1, 5), sh: strideArb, sw: strideArb, ph: padArb, pw: padArb,
          groups: small(1, 3), wChannelsRight: fc.boolean(), bias: fc.boolean(), seed: small(0, 1000),
        }),
        (p) => {
          const Cw = p.wChannelsRight && p.C % p.groups === 0 ? p.C / p.groups : 1 + (p.seed % 4);
          const xs = [p.N, p.C, p.H, p.W], ws = [p.F, Cw, p.KH, p.KW];
          const xd = uniform(prod(xs), p.seed), wd = uniform(prod(ws), p.seed + 1), bd = uniform(p.F, p.seed + 2);
          const int = (v: number, min: number) => Number.isInteger(v) && v >= min;
          const valid =
            int(p.sh, 1) && int(p.sw, 1) && int(p.ph, 0) && int(p.pw, 0) &&
            p.C % p.groups === 0 && p.F % p.groups === 0 && Cw === p.C / p.groups &&
            p.KH <= p.H + 2 * p.ph && p.KW <= p.W + 2 * p.pw;
          cn.scope(() => {
            const x = cn.tensor(xd, xs), w = cn.tensor(wd, ws), b = p.bias ? cn.tensor(bd, [p.F]) : null;
            const before = cn.memory();
            const opts = { stride: [p.sh, p.sw] as [number, number], padding: [p.ph, p.pw] as [number, number], groups: p.groups };
            if (!valid) {
              expect(() => cn.conv2d(x, w, b, opts)).toThrow(cn.ShapeError);
              expect(cn.memory()).toEqual(before);
              return;
            }
            const y = cn.conv2d(x, w, b, opts);
            const ref = conv2dRef({ ...p, groups: p.groups }, xd, wd, p.bias ? bd : null);
            expect(y.size).toBe(ref.length);
            expectClose(y.dataSync(), ref, 1e-5);
          });
        },
      ),
      { numRuns: 300, seed: 20261126 },
    );
  });
});

describe('maxPool2d over random parameters', () => {
  it('matches the reference or throws ShapeError', () => {
    fc.assert(
      fc.property(
        fc.record({
          N: small(1, 2), C: small(1, 3), H: small(1, 9), W: small(1, 9),
          KH: small(1, 5), KW: small(1, 5), sh: strideArb, sw: strideArb, ph: padArb, pw: padArb, seed: small(0, 1000),
        }),
        (p) => {
          const xs = [p.N, p.C, p.H, p.W];
          const xd = uniform(prod(xs), p.seed);
          const int = (v: number, min: number) => Number.isInteger(v) && v >= min;
          const valid =
            int(p.sh, 1) && int(p.sw, 1) && int(p.ph, 0) && int(p.pw, 0) &&
            2 * p.ph <= p.KH && 2 * p.pw <= p.KW && p.KH <= p.H + 2 * p.ph && p.KW <= p.W + 2 * p.pw;
          cn.scope(() => {
            const x = cn.tensor(xd, xs);
            const before = cn.memory();
            const opts = { kernel: [p.KH, p.KW] as [number, number], stride: [p.sh, p.sw] as [number, number], padding: [p.ph, p.pw] as [number, number] };
            if (!valid) {
              expect(() => cn.maxPool2d(x, opts)).toThrow(cn.ShapeError);
              expect(cn.memory()).toEqual(before);
              return;
            }
            const y = cn.maxPool2d(x, opts);
            expect(Array.from(y.dataSync())).toEqual(Array.from(maxPoolRef(p, xd)).map(Math.fround));
          });
        },
      ),
      { numRuns: 300, seed: 20261127 },
    );
  });
});
