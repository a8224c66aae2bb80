/**
 * Training end to end on real Fashion-MNIST (a subset, so CI stays short): the loss falls and
 * accuracy rises; a stopped and resumed run ends bit for bit where an uninterrupted one does;
 * the command line reports bad flags in one line, stops cleanly on a real SIGINT, evaluates a
 * checkpoint, and writes a report. Not a timed test.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { DEFAULT_CONFIG, train, type TrainConfig } from '../src/train/trainer.js';
import { trackLeaks } from './helpers.js';

trackLeaks();

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'convnet-train-'));
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const small: TrainConfig = { ...DEFAULT_CONFIG, width: 0.5, batch: 64, trainLimit: 1280, testLimit: 500, epochs: 2, logEvery: 5 };

/** Runs the CLI from source (tsx), so it needs no build of dist/. */
function cli(args: string[], opts: { timeout?: number } = {}) {
  return spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: opts.timeout ?? 120_000,
    env: { ...process.env, CONVNET_POISON: '0' },
  });
}

describe('training', () => {
  it('a few hundred steps on a subset: the loss falls well below ln 10 and accuracy rises well above chance', async () => {
    const out = tmp();
    const result = await train({ ...DEFAULT_CONFIG, width: 0.5, batch: 64, trainLimit: 9600, testLimit: 2000, epochs: 2 }, out);
    expect(result.status).toBe('done');
    expect(result.steps).toBe(300);
    const epochs = result.records.filter((r) => r.kind === 'epoch');
    expect(epochs).toHaveLength(2);
    expect(epochs[0].trainLoss!).toBeLessThan(Math.LN10);
    expect(epochs[1].trainLoss!).toBeLessThan(1.0);
    expect(result.final!.testTop1).toBeGreaterThan(0.65);
    expect(result.final!.testTop5).toBeGreaterThan(0.95);
    const lines = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.kind === 'epoch')).toHaveLength(2);
    expect(lines.filter((l) => l.kind === 'step').length).toBe(300 / 50);
    expect(existsSync(path.join(out, 'checkpoint.safetensors'))).toBe(true);
    const html = readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).toContain('<svg');
    expect(html).toContain('Test accuracy');
    expect(html.match(/<tr><td>\d+<\/td>/g)).toHaveLength(2);
  });

  it('a run stopped mid-epoch and resumed ends exactly where an uninterrupted run does', async () => {
    const whole = tmp();
    await train(small, whole);
    const parts = tmp();
    let steps = 0;
    const first = await train(small, parts, { onStep: () => steps++, shouldStop: () => steps === 27 });
    expect(first.status).toBe('stopped');
    expect(first.steps).toBe(27);
    const second = await train(small, parts, {}, path.join(parts, 'checkpoint.safetensors'));
    expect(second.status).toBe('done');
    expect(second.steps).toBe(40);
    const a = await cn.loadTensors(path.join(whole, 'checkpoint.safetensors'));
    const b = await cn.loadTensors(path.join(parts, 'checkpoint.safetensors'));
    expect(Object.keys(b.tensors).sort()).toEqual(Object.keys(a.tensors).sort());
    expect(Object.keys(a.tensors).some((k) => k.startsWith('optimizer.momentum.'))).toBe(true);
    for (const name of Object.keys(a.tensors)) {
      expect(Buffer.from(b.tensors[name].data.buffer).equals(Buffer.from(a.tensors[name].data.buffer)), name).toBe(true);
    }
    expect(second.final).toEqual((await train({ ...small, epochs: 2 }, tmp())).final);
  });

  it('two towers on cpu:0 and cpu:1 train too', async () => {
    const r = await train({ ...small, towers: 2, devices: ['cpu:0', 'cpu:1'], epochs: 1 }, tmp());
    expect(r.status).toBe('done');
    expect(r.final!.testTop1).toBeGreaterThan(0.2);
  });
});

describe('the command line', () => {
  it('bad flags: one line and the usage, exit 2, no stack trace', () => {
    for (const [args, first] of [
      [['train', '--bogus'], "convnet: Unknown option '--bogus'"],
      [['train', '--towers', '3'], "convnet: --towers must be 1 or 2, received 3"],
      [['train', '--epochs', 'ten'], "convnet: --epochs must be a positive integer, received 'ten'"],
      [['train', '--towers', '2', '--devices', 'cpu:0'], "convnet: --devices must list 2 devices for --towers 2, received 'cpu:0'"],
      [['train', '--schedule', 'cosine'], "convnet: --schedule must be step:E, plateau[:P] or none, received 'cosine'"],
      [['eval'], 'convnet: --checkpoint is required'],
      [['frobnicate'], "convnet: unknown command 'frobnicate'"],
    ] as [string[], string][]) {
      const r = cli(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.split('\n')[0]).toBe(first);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('--help on each command', () => {
    for (const args of [['--help'], ['train', '--help'], ['eval', '--help'], ['info', '--help'], ['bench', '--help']]) {
      const r = cli(args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^usage: convnet/);
    }
  });

  it('says exactly how to get the data when it is missing', () => {
    const r = cli(['train', '--data-dir', '/nonexistent/fashion', '--quiet']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/apt-get install dataset-fashion-mnist/);
    expect(r.stderr).toMatch(/--data-dir/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('Ctrl-C (a real SIGINT) stops after the current step, saves a checkpoint, and eval reads it', async () => {
    const out = tmp();
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'train', '--width', '0.5',
      '--train-limit', '25600', '--test-limit', '500', '--epochs', '1', '--log-every', '2', '--out', out, '--quiet'], {
      cwd: root, env: { ...process.env, CONVNET_POISON: '0' },
    });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    // Wait for the first metrics line: training is under way.
    const metrics = path.join(out, 'metrics.jsonl');
    for (let i = 0; i < 600 && !(existsSync(metrics) && readFileSync(metrics, 'utf8').length > 0); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(existsSync(metrics)).toBe(true);
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(130);
    expect(stderr).toContain('stopping after this step and saving a checkpoint');
    expect(stdout).toMatch(/stopped after \d+ steps/);
    expect(stdout).toContain(`resume with: convnet train --resume ${path.join(out, 'checkpoint.safetensors')}`);
    const html = readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).toMatch(/stopped at epoch 1, batch \d+/);
    const ev = cli(['eval', '--checkpoint', path.join(out, 'checkpoint.safetensors'), '--test-limit', '500']);
    expect(ev.status).toBe(0);
    expect(ev.stdout).toMatch(/test \(500 images\): top-1 \d+\.\d\d%, top-5 \d+\.\d\d%, loss \d+\.\d{4}/);
  });
});
