/**
 * Large-batch convolution on the CPU. With AVX-512 or AVX2, batches of 64 or more images (a
 * multiple of 32) take the batch-in-lanes path (native/ops/conv2d_cpu_blocked.cc) instead of
 * im2col; these tests hold it to a double-precision reference in all three passes, including
 * conv1's stride 4 and 11x11, groups, and channel counts that are not multiples of its 8- or
 * 6-row tile; conv1's shapes, which take the direct path for few input channels; and a 3x3
 * layer that takes the Winograd path. The AVX2
 * kernels run in child processes under CN_SGEMM_ISA=avx2 (the kernels are
 * chosen once per process): the same reference, and on an AVX-512 CPU the same bits as AVX-512.
 * Then: the CPU queues share the cores, so how many workers split an op depends on what the
 * other queue is doing; results must be bit-for-bit the same either way.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { expectClose, rand, trackLeaks, uniform } from './helpers.js';
import { conv2dRef, convOut, type ConvParams } from './reference.js';

trackLeaks();

/** dx, dw, db of L = sum(y * g) in double precision. */
function conv2dGradRef(p: ConvParams, x: ArrayLike<number>, w: ArrayLike<number>, g: ArrayLike<number>) {
  const [OH, OW] = convOut(p);
  const Cg = p.C / p.groups, Fg = p.F / p.groups;
  const dx = new Float64Array(p.N * p.C * p.H * p.W);
  const dw = new Float64Array(p.F * Cg * p.KH * p.KW);
  const db = new Float64Array(p.F);
  for (let n = 0; n < p.N; n++)
    for (let f = 0; f < p.F; f++) {
      const grp = Math.floor(f / Fg);
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          const gy = g[((n * p.F + f) * OH + oh) * OW + ow];
          db[f] += gy;
          for (let c = 0; c < Cg; c++)
            for (let kh = 0; kh < p.KH; kh++) {
              const ih = oh * p.sh - p.ph + kh;
              if (ih < 0 || ih >= p.H) continue;
              for (let kw = 0; kw < p.KW; kw++) {
                const iw = ow * p.sw - p.pw + kw;
                if (iw < 0 || iw >= p.W) continue;
                const xi = ((n * p.C + grp * Cg + c) * p.H + ih) * p.W + iw;
                const wi = ((f * Cg + c) * p.KH + kh) * p.KW + kw;
                dx[xi] += gy * w[wi];
                dw[wi] += gy * x[xi];
              }
            }
        }
    }
  return { dx, dw, db };
}

const shapes: [string, ConvParams][] = [
  ['3x3 pad 1, groups 2, 12 filters per group', { N: 64, C: 16, H: 7, W: 6, F: 24, KH: 3, KW: 3, sh: 1, sw: 1, ph: 1, pw: 1, groups: 2 }],
  ['5x5 stride 2 pad 2, 10 channels', { N: 64, C: 10, H: 11, W: 9, F: 16, KH: 5, KW: 5, sh: 2, sw: 2, ph: 2, pw: 2, groups: 1 }],
  ['11x11 stride 4 pad 2 (conv1-like), 3 blocks of 32', { N: 96, C: 8, H: 23, W: 23, F: 8, KH: 11, KW: 11, sh: 4, sw: 4, ph: 2, pw: 2, groups: 1 }],
];

/**
 * Layers with few input channels (conv1): with AVX-512 or AVX2 the forward pass and the filter
 * gradient take the direct path (native/ops/conv2d_cpu_direct.cc) at any batch for long
 * reductions (AlexNet's 3 x 11 x 11) and below 32 images for short ones; at 64 images
 * AlexNet-mini's conv1 takes im2col forward and the batch-in-lanes filter gradient.
 */
const narrow: [string, ConvParams][] = [
  ['AlexNet conv1 (3 channels, 11x11 stride 4), 48 filters', { N: 4, C: 3, H: 39, W: 39, F: 48, KH: 11, KW: 11, sh: 4, sw: 4, ph: 2, pw: 2, groups: 1 }],
  ['AlexNet-mini conv1 (1 channel, 5x5), batch 8', { N: 8, C: 1, H: 28, W: 28, F: 32, KH: 5, KW: 5, sh: 1, sw: 1, ph: 2, pw: 2, groups: 1 }],
  ['AlexNet-mini conv1, batch 64', { N: 64, C: 1, H: 28, W: 28, F: 32, KH: 5, KW: 5, sh: 1, sw: 1, ph: 2, pw: 2, groups: 1 }],
  ['2 channels, 64 filters, 3x3 stride 2, odd sizes', { N: 5, C: 2, H: 17, W: 13, F: 64, KH: 3, KW: 3, sh: 2, sw: 2, ph: 0, pw: 1, groups: 1 }],
];

/**
 * 3x3 stride-1 layers with at least 64 channels and filters per group and 256 output tiles
 * (2x2 blocks over the batch) take the Winograd path (native/ops/conv2d_cpu_winograd.cc) on any CPU: F(2x2, 3x3) forward
 * and for dx, F(3x3, 2x2) for dw; 13x13 outputs end in half-filled 2x2 tiles. (F(2x2, 5x5) runs
 * only on request, CN_CONV_WINOGRAD_5X5=1; the C++ self-tests check it.)
 */
const winograd: [string, ConvParams][] = [
  ['AlexNet conv5-like 3x3 pad 1 on 13x13, 294 tiles (Winograd)', { N: 6, C: 64, H: 13, W: 13, F: 96, KH: 3, KW: 3, sh: 1, sw: 1, ph: 1, pw: 1, groups: 1 }],
];

describe('conv2d with large batches, conv1 shapes and Winograd shapes', () => {
  for (const [name, p] of [...shapes, ...narrow, ...winograd]) {
    it(`${name}: y, dx, dw and db against double precision`, async () => {
      const xs = [p.N, p.C, p.H, p.W];
      const ws = [p.F, p.C / p.groups, p.KH, p.KW];
      const xd = uniform(xs.reduce((a, b) => a * b), 1);
      const wd = uniform(ws.reduce((a, b) => a * b), 2);
      const bd = uniform(p.F, 3);
      const [OH, OW] = convOut(p);
      const gd = uniform(p.N * p.F * OH * OW, 4);
      const x = cn.tensor(xd, xs, { requiresGrad: true });
      const w = cn.tensor(wd, ws, { requiresGrad: true });
      const b = cn.tensor(bd, [p.F], { requiresGrad: true });
      const y = cn.conv2d(x, w, b, { stride: [p.sh, p.sw], padding: [p.ph, p.pw], groups: p.groups });
      const g = cn.tensor(gd, y.shape);
      y.backward(g);
      // float32 sums of up to Cg*KH*KW terms (y, dx) and N*OH*OW terms (dw, db).
      expectClose(await y.data(), conv2dRef(p, xd, wd, bd), 5e-5);
      const ref = conv2dGradRef(p, xd, wd, gd);
      expectClose(await x.grad!.data(), ref.dx, 5e-5);
      expectClose(await w.grad!.data(), ref.dw, 2e-4);
      expectClose(await b.grad!.data(), ref.db, 2e-4);
      for (const t of [x.grad!, w.grad!, b.grad!, x, w, b, y, g]) t.dispose();
    });
  }
});

/** The CPU's feature flags (Linux), or null where /proc/cpuinfo cannot be read. */
function cpuFlags(): Set<string> | null {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    return line ? new Set(line.split(':')[1].trim().split(/\s+/)) : null;
  } catch {
    return null;
  }
}

const here = path.dirname(fileURLToPath(import.meta.url));

describe('the AVX2 kernels of the batch-in-lanes path (child processes)', () => {
  it('CN_SGEMM_ISA=avx2: the double-precision reference, not im2col, and the bits of AVX-512', async (ctx) => {
    const flags = cpuFlags();
    const skip = !flags ? 'no /proc/cpuinfo' : !(flags.has('avx2') && flags.has('fma')) ? 'the CPU has no AVX2 + FMA' : null;
    if (skip) {
      console.log(`skipped: ${skip}`);
      ctx.skip();
    }
    const dir = mkdtempSync(path.join(os.tmpdir(), 'convnet-avx2-'));
    try {
      const inputs = shapes.map(([, p], i) => {
        const [OH, OW] = convOut(p);
        return {
          x: uniform(p.N * p.C * p.H * p.W, 10 * i + 1),
          w: uniform((p.F * p.C * p.KH * p.KW) / p.groups, 10 * i + 2),
          b: uniform(p.F, 10 * i + 3),
          g: uniform(p.N * p.F * OH * OW, 10 * i + 4),
        };
      });
      writeFileSync(path.join(dir, 'in.json'), JSON.stringify(shapes.map(([, p]) => p)));
      writeFileSync(path.join(dir, 'in.bin'), Buffer.concat(inputs.flatMap((t) => [t.x, t.w, t.b, t.g].map((a) => Buffer.from(a.buffer)))));
      // Each run: [y, dx, dw, db] per shape.
      const run = (out: string, env: Record<string, string | undefined>) => {
        const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(here, 'fixtures', 'conv-batched-child.ts'), dir, out], {
          encoding: 'utf8',
          timeout: 120_000,
          env: { ...process.env, CN_SGEMM_ISA: undefined, CN_CONV_BLOCKED: undefined, ...env },
        });
        expect(r.status, r.stderr).toBe(0);
        const bytes = readFileSync(path.join(dir, out));
        const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
        let at = 0;
        return inputs.map((t, i) => [t.g.length, t.x.length, t.w.length, t.b.length].map((n) => all.subarray(at, (at += n))));
      };
      const avx2 = run('avx2.bin', { CN_SGEMM_ISA: 'avx2' });
      const im2col = run('im2col.bin', { CN_SGEMM_ISA: 'avx2', CN_CONV_BLOCKED: '0' });
      const widest = flags!.has('avx512f') ? run('avx512.bin', {}) : null;
      const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
      shapes.forEach(([name, p], i) => {
        const t = inputs[i];
        const [y, dx, dw, db] = avx2[i];
        expectClose(y, conv2dRef(p, t.x, t.w, t.b), 5e-5);
        const ref = conv2dGradRef(p, t.x, t.w, t.g);
        expectClose(dx, ref.dx, 5e-5);
        expectClose(dw, ref.dw, 2e-4);
        expectClose(db, ref.db, 2e-4);
        // im2col sums in another order: other bits show that the batch-in-lanes path ran.
        expect(same(y, im2col[i][0]) && same(dx, im2col[i][1]) && same(dw, im2col[i][2]), `${name}: AVX2 gave im2col's bits`).toBe(false);
        // Both kernel sets sum every element in the same order.
        if (widest) avx2[i].forEach((a, k) => expect(same(a, widest[i][k]), `${name}: output ${k}, AVX2 vs AVX-512`).toBe(true));
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function convStep(device: string): Promise<Float32Array[]> {
  const x = rand([64, 16, 9, 9], 11, { device, requiresGrad: true });
  const w = rand([32, 8, 3, 3], 12, { device, requiresGrad: true });
  const b = rand([32], 13, { device, requiresGrad: true });
  const y = cn.conv2d(x, w, b, { padding: 1, groups: 2 });
  const g = rand(y.shape.slice(), 14, { device });
  y.backward(g);
  const out = await Promise.all([y.data(), x.grad!.data(), w.grad!.data(), b.grad!.data()]);
  for (const t of [x.grad!, w.grad!, b.grad!, x, w, b, y, g]) t.dispose();
  return out as Float32Array[];
}

describe('CPU queues share the cores', () => {
  it('a conv forward and backward gives the same bits alone and beside a busy second queue', async () => {
    const alone = await convStep('cpu:0');
    // Both queues at once, several times: the split of each op now depends on timing.
    for (let rep = 0; rep < 3; rep++) {
      const [a, b] = await Promise.all([convStep('cpu:0'), convStep('cpu:1')]);
      for (let i = 0; i < alone.length; i++) {
        expect(Buffer.from(a[i].buffer).equals(Buffer.from(alone[i].buffer)), `cpu:0 output ${i}`).toBe(true);
        expect(Buffer.from(b[i].buffer).equals(Buffer.from(alone[i].buffer)), `cpu:1 output ${i}`).toBe(true);
      }
    }
  });
});
