/**
 * The `alexnet` suite: the whole training step of AlexNet (or AlexNet-mini) through the library's
 * own model (`cn.models.alexnet` / `alexnetMini`): forward, softmax cross-entropy, backward and
 * the SGD update of every parameter, in images per second, for one tower on one device and for
 * the paper's two towers on two devices; beside PyTorch training the same network (AlexNet only,
 * bench/peers/torch_alexnet.py, one tower and, on two CUDA devices, two towers).
 *
 * Data: synthetic images (`cn.SyntheticSource`, 1000 classes for AlexNet, random crops and flips)
 * made before the clock starts, two batches used in turn, so decoding is not timed. The peak
 * memory of each device over the timed steps is reported beside the speed.
 *
 * Devices: --device A,B (one tower runs on A). Default: cuda:0 and cuda:1 when there are CUDA
 * devices (CONVNET_VIRTUAL_GPUS=2 presents two on a machine with one GPU, each with its own
 * stream, so the towers overlap on the one card), else cpu:0 and cpu:1. A step is timed on the
 * host clock from the first op queued to the end of `synchronize` on every device it used:
 * throughput as a training loop sees it.
 */
import * as cn from '../src/index.js';
import { fixed, now, progress, stats, table, type Stats, type Suite, type SuiteReport, type TrialResult } from './harness.js';
import { findPython, peerScript, runPeer } from './peers.js';

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
  /** Peak bytes in use on each device over the timed steps (ours only). */
  peakBytes?: Record<string, number>;
}

async function measure(model: string, towers: 1 | 2, devices: string[], batch: number, width: number, iters: number, warmup: number,
                       seed: number): Promise<StepRow> {
  const net = model === 'alexnet'
    ? cn.models.alexnet({ towers, devices })
    : cn.models.alexnetMini({ width, towers, devices });
  const classes = model === 'alexnet' ? 1000 : 10;
  const imageShape: [number, number, number] = model === 'alexnet' ? [3, 224, 224] : [1, 28, 28];
  const opt = new cn.optim.SGD(net, SGD);
  const source = new cn.SyntheticSource({ size: 2 * batch, batchSize: batch, classes, imageShape, seed, shuffle: true, crop: true, flip: true });
  const batches = [await source.batchAt(0, 0), await source.batchAt(0, 1)];
  const xs = batches.map((b) => cn.tensor(b.x, b.shape, { device: devices[0] }));
  const times: number[] = [];
  const losses: number[] = [];
  let peakBytes: Record<string, number> = {};
  try {
    for (let i = 0; i < warmup + iters; i++) {
      await Promise.all(devices.map((d) => cn.synchronize(d)));
      if (i === warmup) cn.resetPeakMemory(devices);
      const t0 = now();
      const loss = cn.scope(() => cn.softmaxCrossEntropy(net.forward(xs[i % 2]), batches[i % 2].labels));
      loss.backward();
      opt.step();
      opt.zeroGrad();
      await Promise.all(devices.map((d) => cn.synchronize(d)));
      const t = now() - t0;
      losses.push((await loss.data())[0]);
      loss.dispose();
      if (i >= warmup) times.push(t);
    }
    peakBytes = cn.peakMemory(devices);
  } finally {
    xs.forEach((x) => x.dispose());
    for (const b of Object.values(opt.getState().buffers)) b.dispose();
    net.dispose();
  }
  const ms = stats(times);
  return {
    trial: `${towers === 1 ? 'one tower' : 'two towers'}`, driver: 'convnet', model, towers, devices, batch, ms,
    imagesPerSec: batch / (ms.median / 1000), lossFirst: losses[0], lossLast: losses[losses.length - 1], peakBytes,
  };
}

/** PyTorch training the same AlexNet, on the same devices, at the same batch. */
async function measureTorch(python: string, towers: 1 | 2, devices: string[], opts: { batch: number; iters: number; warmup: number; threads: number; seed: number }): Promise<StepRow> {
  const args = ['--towers', `${towers}`, '--devices', devices.join(','), '--batch', `${opts.batch}`, '--iters', `${opts.iters}`,
    '--warmup', `${opts.warmup}`, '--threads', `${opts.threads}`, '--seed', `${opts.seed}`];
  const r = (await runPeer(python, peerScript('torch_alexnet.py'), args, opts.threads)) as {
    torch: string; ms: Stats; imagesPerSec: number; lossFirst: number; lossLast: number;
  };
  return {
    trial: towers === 1 ? 'one tower' : 'two towers', driver: `pytorch ${r.torch}`, model: 'alexnet', towers, devices, batch: opts.batch,
    ms: r.ms, imagesPerSec: r.imagesPerSec, lossFirst: r.lossFirst, lossLast: r.lossLast,
  };
}

export const alexnetSuite: Suite = {
  name: 'alexnet',
  describe: 'the whole training step (forward, loss, backward, SGD) in images/s, one tower and two towers',
  drivers: ['convnet', 'pytorch'],
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
    const wants = (d: string) => opts.drivers === null || opts.drivers.includes(d);
    const configs: [1 | 2, string[]][] = [[1, [devices[0]]], [2, devices.length > 1 ? devices.slice(0, 2) : []]];
    for (const [towers, devs] of configs) {
      if (!wants('convnet')) break;
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
    if (wants('pytorch')) {
      const torchDevice = (d: string) => (d.startsWith('cpu') ? 'cpu' : d);
      const py = opts.model === 'alexnet' ? findPython(devices[0].startsWith('cuda')) : { reason: 'the PyTorch peer trains AlexNet only (--model alexnet)' };
      if ('reason' in py) {
        skipped.push({ driver: 'pytorch', reason: py.reason });
        log(`pytorch: skipped: ${py.reason}`);
      } else {
        for (const [towers, devs] of configs) {
          const name = towers === 1 ? 'one tower' : 'two towers';
          if (towers === 2 && !(devs.length === 2 && devs.every((d) => d.startsWith('cuda')) && devs[0] !== devs[1])) {
            const reason = 'PyTorch has no second CPU device; its two towers need two CUDA devices';
            skipped.push({ driver: `pytorch ${name}`, reason });
            log(`pytorch ${name}: skipped: ${reason}`);
            continue;
          }
          bar.update(`bench alexnet: pytorch ${name} on ${devs.join(' + ')}...`);
          try {
            results.push(await measureTorch(py.python, towers, devs.map(torchDevice), opts));
          } catch (e) {
            // A second GPU that only this library sees (CONVNET_VIRTUAL_GPUS) is not PyTorch's.
            const reason = e instanceof Error ? e.message : String(e);
            if (towers === 2) skipped.push({ driver: `pytorch ${name}`, reason });
            else failed.push({ driver: `pytorch ${name}`, error: reason });
            log(`pytorch ${name}: ${towers === 2 ? 'skipped' : 'FAILED'}: ${reason}`);
          }
        }
      }
    }
    bar.done();
    const gib = (b: number | undefined) => (b === undefined ? '' : fixed(b / 2 ** 30, 2));
    const rows = (results as StepRow[]).map((r) => [r.driver, r.trial, r.devices.join(' + '), `${r.batch}`, fixed(r.ms.median, 1), fixed(r.ms.min, 1),
      fixed(r.ms.max, 1), fixed(r.imagesPerSec, 1), `${fixed(r.lossFirst, 3)} -> ${fixed(r.lossLast, 3)}`,
      r.peakBytes ? r.devices.map((d) => gib(r.peakBytes?.[d])).join(' + ') : '']);
    log('');
    log(`${opts.model}${opts.model === 'alexnet-mini' ? ` width ${opts.width}` : ''}: training step (forward, loss, backward, SGD with ` +
      `momentum ${SGD.momentum}, weight decay ${SGD.weightDecay}) on synthetic images, medians of ${opts.iters} after ${opts.warmup} warm-up, host clock`);
    log(table(['driver', 'towers', 'devices', 'batch', 'ms/step', 'min', 'max', 'images/s', 'loss first -> last', 'peak GiB'], rows, 3));
    const ours = (results as StepRow[]).filter((r) => r.driver === 'convnet');
    const [one, two] = [1, 2].map((t) => ours.find((r) => r.towers === t));
    if (one && two) log(`two towers / one tower: ${fixed(two.imagesPerSec / one.imagesPerSec, 2)}x the images/s`);
    for (const t of (results as StepRow[]).filter((r) => r.driver.startsWith('pytorch'))) {
      const mine = ours.find((r) => r.towers === t.towers);
      if (mine) log(`${t.trial}: convnet / ${t.driver}: ${fixed(mine.imagesPerSec / t.imagesPerSec, 2)}x the images/s`);
    }
    if (!devices.some((d) => d.startsWith('cuda'))) {
      log('note: nothing was timed on a GPU; these are CPU numbers (on a CPU the default batch is 8 for alexnet, 64 for alexnet-mini).');
    }
    return { results, skipped, failed, notes: { sgd: SGD, devices } };
  },
};
