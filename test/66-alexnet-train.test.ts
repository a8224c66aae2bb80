/**
 * AlexNet from the training loop and the command line, on two CPU towers with synthetic
 * images and a small image folder: the synthetic source and its ten patches, the ten-patch average, a few steps that
 * lower the loss, an exact resume, the peak memory of each device, the report's figures, and
 * the command line's answers to bad flags. Batches of 2 to 4 images keep it short.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { ALEXNET_CONFIG, averagePatchSoftmax, countCorrect, evaluate, readCheckpointState, train, type TrainConfig } from '../src/train/trainer.js';
import { crc32 } from '../src/train/png.js';
import { trackLeaks } from './helpers.js';

trackLeaks();

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'convnet-alexnet-'));
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function cli(args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), ...args], {
    cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, CONVNET_POISON: '0' },
  });
}

/** The same, without blocking: several run side by side. */
function cliAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), ...args], {
      cwd: root, env: { ...process.env, CONVNET_POISON: '0' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

const TWO = ['cpu:0', 'cpu:1'];
/** AlexNet on two CPU towers, synthetic data, 1 image a batch, 2 steps in the one epoch; 10-patch validation on 1 image. */
const tiny: TrainConfig = {
  ...ALEXNET_CONFIG, data: 'synthetic', towers: 2, devices: TWO, batch: 1, lr: 0.001, trainLimit: 2, testLimit: 1,
  epochs: 1, evalPatches: 10, logEvery: 1, traceSteps: 1,
};

describe('the synthetic source', () => {
  it('is a pure function of (seed, epoch, batch); its ten patches are corners, centre and their mirrors', async () => {
    const a = new cn.SyntheticSource({ size: 8, batchSize: 2, shuffle: true, crop: true, flip: true, seed: 3, imageShape: [3, 16, 16] });
    const b = new cn.SyntheticSource({ size: 8, batchSize: 2, shuffle: true, crop: true, flip: true, seed: 3, imageShape: [3, 16, 16] });
    const [x, y] = [await a.batchAt(1, 2), await b.batchAt(1, 2)];
    expect(y.x).toEqual(x.x);
    expect(y.labels).toEqual(x.labels);
    expect((await a.batchAt(0, 2)).x).not.toEqual(x.x);
    expect(x.labels).toEqual(Int32Array.from(x.indices, (i) => a.label(i)));

    const ten = new cn.SyntheticSource({ size: 2, batchSize: 2, patches: 10, imageShape: [3, 16, 16], dataSeed: 5 });
    const centre = new cn.SyntheticSource({ size: 2, batchSize: 2, imageShape: [3, 16, 16], dataSeed: 5 });
    const t = await ten.batchAt(0, 0);
    const c = await centre.batchAt(0, 0);
    expect(t.shape).toEqual([20, 3, 16, 16]);
    expect(t.patches).toBe(10);
    const P = 3 * 16 * 16;
    const patch = (img: number, j: number) => t.x.subarray((img * 10 + j) * P, (img * 10 + j + 1) * P);
    for (let img = 0; img < 2; img++) {
      expect(patch(img, 4)).toEqual(c.x.subarray(img * P, (img + 1) * P));
      for (let j = 0; j < 5; j++) {
        const m = patch(img, j + 5);
        const p = patch(img, j);
        for (let ch = 0; ch < 3; ch++) {
          for (let r = 0; r < 16; r++) {
            for (let q = 0; q < 16; q++) expect(m[(ch * 16 + r) * 16 + q]).toBe(p[(ch * 16 + r) * 16 + 15 - q]);
          }
        }
      }
      expect(patch(img, 0)).not.toEqual(patch(img, 3));
    }
  });

  it('refuses bad options with the argument named', () => {
    expect(() => new cn.SyntheticSource({ size: 0, batchSize: 1 })).toThrow(new cn.ShapeError('SyntheticSource: size must be an integer >= 1, received 0'));
    expect(() => new cn.SyntheticSource({ size: 4, batchSize: 1, patches: 5 as 10 })).toThrow(new cn.ShapeError('SyntheticSource: patches must be 1 or 10, received 5'));
  });
});

describe('ten-patch evaluation', () => {
  it('averages the softmax of each image\'s patches, which can change the top-1', () => {
    // Image 0: patch 0 prefers class 0 a little, patch 1 prefers class 1 a lot.
    const logits = [2, 1.5, 0, 0, 6, 0];
    const probs = averagePatchSoftmax(logits, 1, 2, 3);
    const sm = (row: number[]) => {
      const e = row.map((v) => Math.exp(v));
      const s = e.reduce((p, q) => p + q, 0);
      return e.map((v) => v / s);
    };
    const [p0, p1] = [sm(logits.slice(0, 3)), sm(logits.slice(3, 6))];
    for (let m = 0; m < 3; m++) expect(probs[m]).toBeCloseTo((p0[m] + p1[m]) / 2, 12);
    expect(countCorrect(logits.slice(0, 3), [0], 3).top1).toBe(1);
    expect(countCorrect(probs, [0], 3).top1).toBe(0);
    expect(countCorrect(probs, [1], 3).top1).toBe(1);
    expect(Number.isNaN(averagePatchSoftmax([NaN, 0, 0, 1], 1, 2, 2)[0])).toBe(true);
  });

  it('evaluate() groups rows i*10 .. i*10+9 into image i', async () => {
    const model = cn.models.alexnetMini({ width: 0.25, seed: 2 });
    const src = new cn.SyntheticSource({ size: 6, batchSize: 3, patches: 10, imageShape: [1, 28, 28], classes: 10, dataSeed: 1 });
    try {
      const r = await evaluate(model, src, 'cpu:0', { samples: 2 });
      let right1 = 0, right5 = 0, loss = 0;
      model.eval();
      for (let k = 0; k < 2; k++) {
        const b = await src.batchAt(0, k);
        const z = cn.noGrad(() => cn.scope(() => model.forward(cn.tensor(b.x, b.shape))));
        const logits = await z.data();
        z.dispose();
        for (let i = 0; i < 3; i++) {
          const avg = new Array(10).fill(0);
          for (let p = 0; p < 10; p++) {
            const row = Array.from(logits.subarray((i * 10 + p) * 10, (i * 10 + p + 1) * 10));
            const mx = Math.max(...row);
            const e = row.map((v) => Math.exp(v - mx));
            const s = e.reduce((a, c) => a + c, 0);
            e.forEach((v, m) => (avg[m] += v / s / 10));
          }
          const mine = avg[b.labels[i]];
          const above = avg.filter((v) => v > mine).length;
          right1 += above === 0 ? 1 : 0;
          right5 += above < 5 ? 1 : 0;
          loss -= Math.log(mine);
        }
      }
      expect(r.images).toBe(6);
      expect(r.top1).toBe(right1 / 6);
      expect(r.top5).toBe(right5 / 6);
      expect(r.loss).toBeCloseTo(loss / 6, 5);
      expect(r.samples).toHaveLength(2);
      expect(r.samples[0].top5).toHaveLength(5);
      expect(r.samples[0].shape).toEqual([1, 28, 28]);
    } finally {
      model.dispose();
    }
  });
});

describe('AlexNet on two CPU towers', () => {
  it('a few steps on one batch lower its loss', async () => {
    const src = new cn.SyntheticSource({ size: 2, batchSize: 2, classes: 10 });
    const b = await src.batchAt(0, 0);
    const model = cn.models.alexnet({ towers: 2, devices: TWO, numClasses: 10, seed: 1, init: 'paper' });
    const opt = new cn.optim.SGD(model, { lr: 0.001, momentum: 0.9, weightDecay: 5e-4 });
    const evalLoss = async () => {
      model.eval();
      const l = cn.noGrad(() => cn.scope(() => cn.softmaxCrossEntropy(model.forward(cn.tensor(b.x, b.shape)), b.labels)));
      const v = (await l.data())[0];
      l.dispose();
      model.train();
      return v;
    };
    try {
      const before = await evalLoss();
      for (let i = 0; i < 3; i++) {
        const loss = cn.scope(() => cn.softmaxCrossEntropy(model.forward(cn.tensor(b.x, b.shape)), b.labels));
        loss.backward();
        opt.step();
        opt.zeroGrad();
        loss.dispose();
      }
      const after = await evalLoss();
      expect(before).toBeGreaterThan(1);
      expect(after).toBeLessThan(before * 0.9);
    } finally {
      for (const buf of Object.values(opt.getState().buffers)) buf.dispose();
      model.dispose();
    }
  });

  it('a stopped and resumed run ends bit for bit where an uninterrupted one does; peak memory per device is reported', async () => {
    const whole = tmp();
    const straight = await train(tiny, whole);
    expect(straight.status).toBe('done');
    expect(straight.steps).toBe(2);
    const parts = tmp();
    let steps = 0;
    const first = await train(tiny, parts, { onStep: () => steps++, shouldStop: () => steps === 1 });
    expect(first.status).toBe('stopped');
    const second = await train(tiny, parts, {}, path.join(parts, 'checkpoint.safetensors'));
    expect(second.status).toBe('done');
    expect(second.steps).toBe(2);
    const a = await cn.loadTensors(path.join(whole, 'checkpoint.safetensors'));
    const b = await cn.loadTensors(path.join(parts, 'checkpoint.safetensors'));
    expect(Object.keys(b.tensors).sort()).toEqual(Object.keys(a.tensors).sort());
    expect(Object.keys(a.tensors)).toContain('a.conv1.weight');
    for (const name of Object.keys(a.tensors)) {
      expect(Buffer.from((b.tensors[name].data as Float32Array).buffer).equals(Buffer.from((a.tensors[name].data as Float32Array).buffer)), name).toBe(true);
    }
    const epochs = (r: typeof straight) => r.records.filter((x) => x.kind === 'epoch').map(({ testTop1, testTop5, testLoss, trainLoss }) => ({ testTop1, testTop5, testLoss, trainLoss }));
    expect(epochs(second)).toEqual(epochs(straight));

    // Peak memory: at least weights, gradients and momentum of each tower at once (fc8 on tower A).
    const paramBytes: Record<string, number> = { 'cpu:0': 0, 'cpu:1': 0 };
    for (const [name, t] of Object.entries(a.tensors)) {
      if (!name.startsWith('optimizer.')) paramBytes[name.startsWith('b.') ? 'cpu:1' : 'cpu:0'] += (t.data as Float32Array).byteLength;
    }
    expect(paramBytes['cpu:0'] + paramBytes['cpu:1']).toBe(4 * (60965224 - 4097 * 990));
    expect(Object.keys(straight.peakBytes).sort()).toEqual(TWO);
    for (const d of TWO) expect(straight.peakBytes[d]).toBeGreaterThanOrEqual(3 * paramBytes[d]);
    const lines = readFileSync(path.join(whole, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.at(-1)).toEqual({ kind: 'memory', step: 2, time: lines.at(-1).time, peakBytes: straight.peakBytes });

    // The report: peak memory, each tower's conv1 filters as a PNG grid, validation images with top-5, per-op times, a timeline.
    const html = readFileSync(path.join(whole, 'report.html'), 'utf8');
    expect(html).toContain(`<td>cpu:1</td><td>${(straight.peakBytes['cpu:1'] / 2 ** 30).toFixed(3)}</td><td>${straight.peakBytes['cpu:1']}</td>`);
    expect(html).toContain('tower A (cpu:0): 48 filters 3x11x11');
    expect(html).toContain('tower B (cpu:1): 48 filters 3x11x11');
    const pngs = [...html.matchAll(/src="data:image\/png;base64,([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1], 'base64'));
    expect(pngs.length).toBe(2 + 1);
    for (const png of pngs) {
      expect(png.subarray(1, 4).toString()).toBe('PNG');
      // IHDR's CRC covers its type and 13 bytes.
      expect(png.readUInt32BE(29)).toBe(crc32(png.subarray(12, 29)));
    }
    expect(pngs[0].readUInt32BE(16)).toBe(8 * 46 + 2); // 8 filters a row, 44 px each and 2 px gaps
    expect(html.match(/<figure class="sample">/g)).toHaveLength(1);
    expect(html).toMatch(/<ol>(<li( class="right")?>class-\d+ \d+\.\d%<\/li>){5}<\/ol>/);
    expect(straight.trace?.events.some((e) => e.device === 'cpu:0' && e.op === 'conv2d_forward')).toBe(true);
    expect(straight.trace?.events.some((e) => e.device === 'cpu:1' && e.op === 'conv2d_forward')).toBe(true);
    // Two steps in the run: one warm-up step, then the traced one.
    expect(straight.trace?.steps).toEqual([2, 2]);
    expect(html).toContain('<h2>Time per op (steps 2 to 2)</h2>');
    expect(html).toMatch(/<tr><td>cpu:1<\/td><td>conv2d_forward<\/td><td>5<\/td>/);
    expect(html).toContain('aria-label="timeline"');
  });
});

describe('AlexNet on an image folder', () => {
  it('trains two towers on JPEGs decoded on the fly, the classes from the folders, with ten-patch validation', async () => {
    const dir = tmp();
    const colours: [string, [number, number, number]][] = [['cat', [200, 40, 30]], ['dog', [30, 40, 200]]];
    for (const [cls, [r, g, b]] of colours) {
      for (const [split, n] of [['train', 2], ['val', 1]] as const) {
        mkdirSync(path.join(dir, split, cls), { recursive: true });
        for (let i = 0; i < n; i++) {
          await sharp({ create: { width: 300, height: 260, channels: 3, background: { r, g: g + 20 * i, b } } }).jpeg().toFile(path.join(dir, split, cls, `${i}.jpg`));
        }
      }
    }
    const out = tmp();
    const r = await train({ ...tiny, data: 'imagefolder', dataDir: dir, batch: 2, trainLimit: 0, testLimit: 0, traceSteps: 0 }, out);
    expect(r.status).toBe('done');
    expect(r.steps).toBe(2);
    expect(r.final!.testTop5).toBe(1); // two classes: both are in the top five
    const state = await readCheckpointState(path.join(out, 'checkpoint.safetensors'));
    expect(state.config.numClasses).toBe(2);
    const html = readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).toContain('imagefolder (');
    expect(html.match(/<figure class="sample">/g)).toHaveLength(2);
    expect(html).toMatch(/true: <b>cat<\/b>/);
  });
});

describe('a run that does not fit', () => {
  it('stops with an OutOfMemoryError that says what it had in use, what it asked for and what it needs', async () => {
    const out = tmp();
    expect(() => cn.setMemoryLimit('cpu:1', -1)).toThrow(new cn.ShapeError('setMemoryLimit: bytes must be a non-negative integer or null, received -1'));
    const limit = 200_000_000; // tower B's weights fit; with their gradients they do not
    cn.setMemoryLimit('cpu:1', limit);
    let err: unknown;
    try {
      await train({ ...tiny, traceSteps: 0 }, out);
    } catch (e) {
      err = e;
    } finally {
      cn.setMemoryLimit('cpu:1', null);
    }
    expect(err).toBeInstanceOf(cn.OutOfMemoryError);
    const e = err as cn.OutOfMemoryError;
    expect(e.device).toBe('cpu:1');
    const gib = String.raw`\d+\.\d\d GiB \((\d+) bytes\)`;
    const m = new RegExp(`^train: alexnet with batch 1 does not fit cpu:1: it had ${gib} in use and asked for ${gib} more with ${gib} free, ` +
      `so it needs at least ${gib} there \\(peak so far: cpu:0 ${gib}, cpu:1 ${gib}\\); try a smaller --batch$`).exec(e.message);
    expect(m, e.message).not.toBeNull();
    const [inUse, asked, free, needs, , peakB] = m!.slice(1).map(Number);
    expect(asked).toBe(e.bytesAsked);
    expect(free).toBe(e.bytesFree);
    expect(inUse + free).toBe(limit);
    expect(needs).toBe(inUse + asked);
    expect(needs).toBeGreaterThan(limit);
    expect(peakB).toBeLessThanOrEqual(limit);
    const last = JSON.parse(readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').at(-1)!);
    expect(last).toMatchObject({ kind: 'out-of-memory', device: 'cpu:1', bytesAsked: asked, bytesFree: free, bytesInUse: inUse });
    expect(existsSync(path.join(out, 'checkpoint.safetensors'))).toBe(false);
  });
});

describe('convnet train --model alexnet', () => {
  it('answers bad flags with one exact line and exit 2', async () => {
    const cases: [string[], string][] = [
      [['--model', 'vgg'], "--model must be alexnet or alexnet-mini, received 'vgg'"],
      [['--model', 'alexnet', '--data', 'fashion-mnist'], '--data fashion-mnist holds 1x28x28 images for alexnet-mini; --model alexnet takes imagenet, imagefolder or synthetic'],
      [['--data', 'imagenet'], '--data imagenet holds 3x224x224 images for --model alexnet; alexnet-mini takes fashion-mnist or synthetic'],
      [['--model', 'alexnet', '--data', 'imagenet'], '--data imagenet needs --data-dir DIR'],
      [['--model', 'alexnet', '--data', 'synthetic', '--width', '0.5'], '--width applies to --model alexnet-mini only'],
      [['--model', 'alexnet', '--data', 'synthetic', '--eval-patches', '5'], '--eval-patches must be 1 or 10, received 5'],
      [['--eval-patches', '10'], '--eval-patches 10 needs imagenet, imagefolder or synthetic data; fashion-mnist is evaluated on whole images'],
      [['--model', 'alexnet', '--data', 'synthetic', '--classes', '1'], '--classes must be an integer of at least 2, received 1'],
      [['--model', 'alexnet', '--classes', '5', '--data-dir', '/x', '--data', 'imagenet'], '--classes applies to --data synthetic only (imagenet brings its own classes)'],
      [['--model', 'alexnet', '--data', 'synthetic', '--towers', '2', '--devices', 'cpu:0'], "--devices must list 2 devices for --towers 2, received 'cpu:0'"],
      [['--model', 'alexnet', '--data', 'synthetic', '--memory-limit', '3 apples'], "--memory-limit must be a size such as 3GiB, 3GB, 1500MiB or a number of bytes, received '3 apples'"],
    ];
    const runs = await Promise.all(cases.map(([args]) => cliAsync(['train', ...args, '--out', path.join(tmp(), 'never')])));
    cases.forEach(([args, message], i) => {
      expect(runs[i].stderr, args.join(' ')).toBe(`convnet: ${message}\n`);
      expect(runs[i].status).toBe(2);
    });
  });

  it('trains two towers on cpu:0,cpu:1 end to end and prints the peak memory of each', () => {
    const out = path.join(tmp(), 'run');
    const r = cli(['train', '--model', 'alexnet', '--data', 'synthetic', '--towers', '2', '--devices', 'cpu:0,cpu:1', '--batch', '2',
      '--train-limit', '2', '--test-limit', '1', '--epochs', '1', '--lr', '0.001', '--trace-steps', '0', '--quiet', '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(`convnet train: alexnet on synthetic, 2 towers on cpu:0, cpu:1, 1 epoch, batch 2, lr 0.001, schedule plateau:1; writing to ${out}`);
    expect(r.stdout).toMatch(/^peak memory: cpu:0 \d+\.\d\d GiB \(\d+ bytes\), cpu:1 \d+\.\d\d GiB \(\d+ bytes\)$/m);
    expect(r.stdout).toMatch(/^done: 1 epochs in .*; test top-1 \d+\.\d\d%, top-5 \d+\.\d\d%$/m);
  });
});
