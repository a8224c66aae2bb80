/**
 * The examples in examples/ run, on tiny sizes, so they cannot rot. Each runs as a user would
 * run it (`npx tsx examples/<file>.ts`, importing 'convnet-cuda' by name, which the repo's
 * tsconfig maps to src/) in a child process; the assertions read what it prints.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(path.join(tmpdir(), 'convnet-examples-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function example(file: string, args: string[] = []): string {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'examples', file), ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 300_000,
  });
  expect(r.status, `${file} failed:\n${r.stderr}`).toBe(0);
  return r.stdout;
}

const hasData = existsSync(path.join(cn.FASHION_MNIST_DIR, cn.fashionMnistFiles('train').images));
if (!hasData) console.log('examples: train-small-convnet.ts skipped: no Fashion-MNIST files (apt-get install dataset-fashion-mnist)');

describe('examples/', () => {
  it.skipIf(!hasData)('train-small-convnet.ts: the loss falls and the test accuracy beats chance', () => {
    const out = example('train-small-convnet.ts', ['--steps', '40']);
    const acc = Number(out.match(/test accuracy after 40 steps: ([\d.]+)%/)?.[1]);
    expect(acc).toBeGreaterThan(40);
  });

  it('custom-layer.ts: a layer composed from existing ops trains through autograd', () => {
    const out = example('custom-layer.ts', ['--steps', '15']);
    const m = out.match(/loss ([\d.]+) at step 1, ([\d.]+) at step 15/);
    expect(m, out).not.toBeNull();
    expect(Number(m![2])).toBeLessThan(Number(m![1]));
  });

  it('residual-batchnorm.ts: batch norm and a residual block from the composition ops learn a toy task', () => {
    const out = example('residual-batchnorm.ts', ['--steps', '20']);
    const m = out.match(/mean loss ([\d.]+) over the first 4 steps, ([\d.]+) over the last 4/);
    expect(m, out).not.toBeNull();
    expect(Number(m![2])).toBeLessThan(Number(m![1]) / 2);
  });

  it('two-towers.ts: each tower holds its parameters and runs its ops on its own device', () => {
    const out = example('two-towers.ts', ['--devices', 'cpu:0,cpu:1']);
    expect(out).toMatch(/parameters per device: \{ 'cpu:0': \d+, 'cpu:1': \d+ \}/);
    expect(out).toMatch(/ops run per device: \{ 'cpu:\d': \d+, 'cpu:\d': \d+ \}/);
    expect(out).toMatch(/loss \d+\.\d{4}/);
  });

  it('classify-image.ts: a checkpoint and a PGM image give three ranked classes', async () => {
    const model = cn.models.alexnetMini({ width: 0.25 });
    const ckpt = path.join(dir, 'model.safetensors');
    await cn.save(ckpt, model, { convnet: JSON.stringify({ config: { width: 0.25, towers: 1 }, normalization: { mean: 0.29, std: 0.35 } }) });
    model.dispose();
    const img = path.join(dir, 'image.pgm');
    writeFileSync(img, Buffer.concat([Buffer.from('P5\n28 28\n255\n'), Buffer.from(Array.from({ length: 784 }, (_, i) => (i * 7) % 256))]));
    const lines = example('classify-image.ts', ['--checkpoint', ckpt, '--image', img]).trim().split('\n');
    expect(lines).toHaveLength(3);
    const probs = lines.map((l) => {
      const m = l.match(/^(.+?)\s+([\d.]+)%$/);
      expect(m, l).not.toBeNull();
      expect(cn.FASHION_MNIST_CLASSES).toContain(m![1]);
      return Number(m![2]);
    });
    expect(probs[0]).toBeGreaterThanOrEqual(probs[1]);
    expect(probs.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(100.1);
  });

  it('race-your-conv.ts: your convolution, ours and cuDNN, each checked against the CPU reference, then timed', () => {
    const lines = example('race-your-conv.ts', ['--iters', '2']).trim().split('\n');
    const row = (d: string) => lines.find((l) => l.startsWith(d)) ?? '';
    expect(row('yours')).toMatch(/^yours\s+[\d.]+ ms\s+[\d.]+ GF\/s\s+\d\.\de[-+]\d+\s+1\.00x/);
    expect(row('convnet')).toMatch(/^convnet\s+[\d.]+ ms .* 0\.0e\+0\s+[\d.]+x\s+device markers$/);
    // Yours must match the reference to float32 rounding.
    expect(Number(row('yours').match(/GF\/s\s+(\S+)/)![1])).toBeLessThan(1e-5);
    if (!cn.devices().some((d) => d.kind === 'cuda')) expect(row('cudnn')).toMatch(/cuDNN needs a CUDA device$/);
  });

  it('time-op.ts: one line per device with a time and a rate', () => {
    const lines = example('time-op.ts', ['--iters', '2']).trim().split('\n');
    expect(lines.length).toBe(cn.devices().length);
    for (const l of lines) expect(l).toMatch(/conv2d [\d.]+ ms \(median of 2\), [\d.]+ GFLOP\/s$/);
  });
});
