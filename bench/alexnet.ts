/**
 * The `alexnet` suite: the whole training step of AlexNet (or AlexNet-mini) through the library's
 * own model (`cn.models.alexnet` / `alexnetMini`): forward, softmax cross-entropy, backward and
 * the SGD update of every parameter, in images per second, for one tower on one device and for
 * the paper's two towers on two devices.
 *
 * Devices: --device A,B (one tower runs on A). Default: cuda:0 and cuda:1 when there are CUDA
 * devices (CONVNET_VIRTUAL_GPUS=2 presents two on a machine with one GPU, each with its own
 * stream, so the towers overlap on the one card), else cpu:0 and cpu:1. A step is timed on the
 * host clock from the first op queued to the end of `synchronize` on every device it used:
 * throughput as a training loop sees it.
 */
import * as cn from '../src/index.js';
import { fixed, now, progress, stats, table, type Stats, type Suite, type SuiteReport, type TrialResult } from './harness.js';

const SGD = { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 } as const;

interface StepRow extends TrialResult {
  model: string;
  towers: 1 | 2;
  devices: string[];
  batch: number;
  ms: Stats;
  imagesPerSec: number;
  lossFirst: number;
  lossLast: number;
}

function labels(n: number, classes: number, seed: number): Int32Array {
  let s = (seed * 2654435761 + 7) >>> 0;
  return Int32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s >>> 8) % classes;
  });
}

async function measure(model: string, towers: 1 | 2, devices: string[], batch: number, width: number, iters: number, warmup: number,
                       seed: number): Promise<StepRow> {
  const net = model === 'alexnet'
    ? cn.models.alexnet({ towers, devices })
    : cn.models.alexnetMini({ width, towers, devices });
  const classes = model === 'alexnet' ? 1000 : 10;
  const input = model === 'alexnet' ? [batch, 3, 224, 224] : [batch, 1, 28, 28];
  const opt = new cn.optim.SGD(net, SGD);
  const x = cn.randn(input, { seed, device: devices[0] });
  const y = labels(batch, classes, seed);
  const times: number[] = [];
  const losses: number[] = [];
  try {
    for (let i = 0; i < warmup + iters; i++) {
      await Promise.all(devices.map((d) => cn.synchronize(d)));
      const t0 = now();
      const loss = cn.scope(() => cn.softmaxCrossEntropy(net.forward(x), y));
      loss.backward();
      opt.step();
      opt.zeroGrad();
      await Promise.all(devices.map((d) => cn.synchronize(d)));
      const t = now() - t0;
      losses.push((await loss.data())[0]);
      loss.dispose();
      if (i >= warmup) times.push(t);
    }
  } finally {
    x.dispose();
    for (const b of Object.values(opt.getState().buffers)) b.dispose();
    net.dispose();
  }
  const ms = stats(times);
  return {
    trial: `${towers === 1 ? 'one tower' : 'two towers'}`, driver: 'convnet', model, towers, devices, batch, ms,
    imagesPerSec: batch / (ms.median / 1000), lossFirst: losses[0], lossLast: losses[losses.length - 1],
  };
}

export const alexnetSuite: Suite = {
  name: 'alexnet',
  describe: 'the whole training step (forward, loss, backward, SGD) in images/s, one tower and two towers',
  drivers: ['convnet'],
  defaults: { iters: 10, warmup: 2, width: 1, model: 'alexnet' },
  resolve(g) {
    const cuda = cn.devices().some((d) => d.kind === 'cuda');
    const device = g.device ?? (cuda ? 'cuda:0,cuda:1' : 'cpu:0,cpu:1');
    const onCpu = device.startsWith('cpu');
    const model = g.model ?? 'alexnet';
    return { device, batch: onCpu ? (model === 'alexnet' ? 8 : 64) : 128, iters: onCpu ? 3 : 10, warmup: onCpu ? 1 : 2 };
  },
  async run(opts, log): Promise<SuiteReport> {
    const results: TrialResult[] = [];
    const skipped: { driver: string; reason: string }[] = [];
    const failed: { driver: string; error: string }[] = [];
    const have = new Set(cn.devices().map((d) => d.id));
    const devices = (opts.device ?? 'cpu:0,cpu:1').split(',');
    const bar = progress();
    const configs: [1 | 2, string[]][] = [[1, [devices[0]]], [2, devices.length > 1 ? devices.slice(0, 2) : []]];
    for (const [towers, devs] of configs) {
      const name = towers === 1 ? 'one tower' : 'two towers';
      const missing = devs.length === 0 ? ['a second device (--device A,B)'] : devs.filter((d) => !have.has(d));
      if (missing.length) {
        const reason = `${name}: no ${missing.join(', ')} here` +
          (devs.some((d) => d.startsWith('cuda')) ? ' (CONVNET_VIRTUAL_GPUS=2 presents two devices on one GPU)' : '');
        skipped.push({ driver: `convnet ${name}`, reason });
        log(`${name}: skipped: ${reason}`);
        continue;
      }
      bar.update(`bench alexnet: ${opts.model} ${name} on ${devs.join(' + ')}...`);
      try {
        results.push(await measure(opts.model, towers, devs, opts.batch, opts.width, opts.iters, opts.warmup, opts.seed));
      } catch (e) {
        failed.push({ driver: `convnet ${name}`, error: e instanceof Error ? e.message : String(e) });
        log(`${name}: FAILED: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    bar.done();
    const rows = (results as StepRow[]).map((r) => [r.trial, r.devices.join(' + '), `${r.batch}`, fixed(r.ms.median, 1), fixed(r.ms.min, 1),
      fixed(r.ms.max, 1), fixed(r.imagesPerSec, 1), `${fixed(r.lossFirst, 3)} -> ${fixed(r.lossLast, 3)}`]);
    log('');
    log(`${opts.model}${opts.model === 'alexnet-mini' ? ` width ${opts.width}` : ''}: training step (forward, loss, backward, SGD with ` +
      `momentum ${SGD.momentum}, weight decay ${SGD.weightDecay}), medians of ${opts.iters} after ${opts.warmup} warm-up, host clock`);
    log(table(['towers', 'devices', 'batch', 'ms/step', 'min', 'max', 'images/s', 'loss first -> last'], rows, 2));
    const [one, two] = [1, 2].map((t) => (results as StepRow[]).find((r) => r.towers === t));
    if (one && two) log(`two towers / one tower: ${fixed(two.imagesPerSec / one.imagesPerSec, 2)}x the images/s`);
    if (!devices.some((d) => d.startsWith('cuda'))) {
      log('note: nothing was timed on a GPU; these are CPU numbers (on a CPU the default batch is 8 for alexnet, 64 for alexnet-mini).');
    }
    return { results, skipped, failed, notes: { sgd: SGD, devices } };
  },
};
