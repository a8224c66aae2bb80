#!/usr/bin/env node
/**
 * The `convnet` command line: info, train, eval, bench. A bad flag value gets a one-line error,
 * an unknown flag the usage as well (exit 2); failures get a one-line error (exit 1); nothing
 * prints a stack trace unless CONVNET_DEBUG=1. `train` checks its flags, devices and output
 * folder before it creates anything.
 */
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { buildInfo, devices } from '../device.js';
import { ConvnetError, DeviceError } from '../errors.js';
import type { TrainConfig } from '../train/trainer.js';
import { zeros } from '../ops/create.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

class UsageError extends Error {}

const USAGE = `usage: convnet <command> [options]

commands:
  info     version, build flags (CUDA on/off, target architectures) and the devices
  train    train AlexNet-mini on Fashion-MNIST (with no options: the default recipe), or AlexNet
           (--model alexnet) on ImageNet, an image folder or synthetic images, on one or two towers
  eval     evaluate a checkpoint on the test set
  prepare  decode an ImageNet or image-folder data set once into packed files for train
  bench    run the benchmarks of bench/ (e.g. convnet bench cpu)

convnet <command> --help tells the options of each.`;

const TRAIN_USAGE = `usage: convnet train [options]

Trains AlexNet-mini on Fashion-MNIST (the default) or AlexNet on ImageNet, an image folder or
synthetic images, evaluates on the validation set after every epoch (top-1, top-5), and writes
metrics.jsonl, report.html and checkpoint.safetensors to the output folder. Ctrl-C stops after
the current step and saves a checkpoint; --resume continues from it. The peak memory of each
device is printed at the end and shown in the report.

e.g. convnet train --model alexnet --data imagenet --data-dir DIR --towers 2 --devices cuda:0,cuda:1
     convnet train --model alexnet --data synthetic --towers 2 --devices cpu:0,cpu:1 --batch 8

options:
  --model NAME         alexnet-mini (default) or alexnet (the paper's network, 3x224x224 input)
  --data NAME          fashion-mnist (alexnet-mini's default), imagenet (alexnet's default; the
                       ILSVRC-2012 layout), imagefolder (DIR/train/<class>/, DIR/val/<class>/), or
                       synthetic (random images with a class signal, no files)
  --data-dir DIR       the data's folder (fashion-mnist: default /usr/share/datasets/fashion-mnist)
  --classes N          synthetic data only: number of classes (default 10); other data sets
                       bring their own
  --width W            alexnet-mini only: channel width factor (default 1; the CPU benchmark uses 0.5)
  --towers 1|2         one device, or two towers on two devices as cuda-convnet did (default 1)
  --devices LIST       comma-separated device ids (default cuda:0 when there is a GPU, else cpu:0;
                       two towers: cuda:0,cuda:1 or cpu:0,cpu:1)
  --epochs N           default 10 (alexnet: 90)
  --batch N            default 128
  --lr X               default 0.01
  --momentum X         default 0.9
  --weight-decay X     default 0.0005
  --schedule S         step:E (lr / 10 every E epochs; alexnet-mini's default step:7), plateau[:P]
                       (lr / 10 when validation top-1 has not improved for P epochs, default 1;
                       alexnet's default plateau:1), or none
  --init he|paper      He normal (alexnet-mini's default) or the paper's N(0, 0.01) with biases 1
                       in conv2, conv4, conv5, fc6, fc7 (alexnet's default)
  --no-flip            no random horizontal flips
  --crop               random crops (fashion-mnist: pad 2, crop 28x28; always on for alexnet,
                       whose training crops are random 224x224 patches)
  --no-crop            alexnet: centre crops when training
  --eval-patches 1|10  validation on the centre crop (default) or on the paper's 10 patches
                       (corners, centre and mirrors; softmax averaged); not for fashion-mnist
  --seed N             weights, data order and dropout (default 1)
  --train-limit N      train on the first N images only (default all; synthetic: 10 batches)
  --test-limit N       validate on the first N images only (default all; synthetic: 256)
  --log-every N        a metrics line every N steps (default 50; alexnet 20)
  --memory-limit SIZE  refuse to use more than SIZE on each device (e.g. 3GiB, as the paper's
                       GPUs had; 3GB, 1500MiB or bytes): a run that does not fit stops, saying
                       how much it needed
  --trace-steps N      trace the ops of N steps (after 2 warm-up steps) for the report's
                       per-op times and timeline (default 3; 0: none)
  --out DIR            output folder (default runs/<model>-<date>-<time>)
  --resume FILE        continue the run saved in this checkpoint, with its settings; --epochs
                       extends it, --devices moves it; flags that change the model or the
                       recipe are refused
  --quiet              no progress bar`;

const EVAL_USAGE = `usage: convnet eval --checkpoint FILE [options]

Evaluates a checkpoint written by convnet train on the validation set of the data it was
trained on: top-1, top-5, loss.

options:
  --checkpoint FILE    the checkpoint (required)
  --data-dir DIR       the data's folder (default: the one it was trained on)
  --devices LIST       where to run (default: the devices it was trained on)
  --eval-patches 1|10  the centre crop or the paper's 10 patches (default: as trained)
  --test-limit N       only the first N test images`;

const INFO_USAGE = `usage: convnet info

Prints the version, the build flags (CUDA on/off, target architectures) and the devices.`;

const BENCH_USAGE = `usage: convnet bench <suite> [options]

Runs bench/main.ts (needs the development install: tsx; without it, the compiled
dist-bench/bench/main.js from \`npm run build:bench\`). Suites:
  cpu      AlexNet-mini on the CPU: per-op fwd/bwd and the training step, beside PyTorch
  conv     every AlexNet (or -mini) layer, fwd / bwd-data / bwd-filter: ours vs cuDNN vs PyTorch
  alexnet  the whole training step in images/s, one tower and two towers
  data     the image pipeline: decode + augment images/s per core (--data-dir DIR, --images N)
e.g. convnet bench conv --model alexnet-mini --device cpu:0 --precision fp32 --json out/conv.json
\`convnet bench <suite> --help\` lists every option.`;

type Flags = Record<string, string | boolean | undefined>;

/**
 * Joins `--flag -1` into `--flag=-1` for string-typed flags: parseArgs takes a value that starts
 * with '-' for an option, and answers that the flag is ambiguous.
 */
function joinNegativeValues(args: string[], options: ParseArgsConfig['options']): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const name = a.startsWith('--') && !a.includes('=') ? a.slice(2) : '';
    if (name && options?.[name]?.type === 'string' && i + 1 < args.length && /^-(\d|\.\d|Infinity)/.test(args[i + 1])) {
      out.push(`${a}=${args[++i]}`);
    } else {
      out.push(a);
    }
  }
  return out;
}

function parse(usage: string, args: string[], options: ParseArgsConfig['options']): { values: Flags } {
  try {
    const { values } = parseArgs({ args: joinNegativeValues(args, options), options: { ...options, help: { type: 'boolean' } }, allowPositionals: false, strict: true });
    return { values: values as Flags };
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split('\n')[0]}\n\n${usage}`);
  }
}

/** A flag's value as messages show it: a number as it is, anything else quoted. */
function shown(v: string): string {
  return v.trim() !== '' && !Number.isNaN(Number(v)) ? v : `'${v}'`;
}

function number(flag: string, v: string | undefined, fallback: number, check: (n: number) => boolean, what: string): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || !check(n)) throw new UsageError(`--${flag} must be ${what}, received ${shown(v)}`);
  return n;
}

const UNITS: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30 };

/** A size such as 3GiB, 3GB, 1500MiB or 3221225472 (bytes), in bytes. */
function parseBytes(flag: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?$/i.exec(v.trim());
  const bytes = m ? Math.round(Number(m[1]) * UNITS[(m[2] ?? '').toLowerCase()]) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new UsageError(`--${flag} must be a size such as 3GiB, 3GB, 1500MiB or a number of bytes, received ${shown(v)}`);
  }
  return bytes;
}

const positiveInt = (n: number) => Number.isInteger(n) && n > 0;
const nonNegativeInt = (n: number) => Number.isInteger(n) && n >= 0;

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

function info(): void {
  const b = buildInfo();
  console.log(`convnet-cuda ${b.version}`);
  console.log(`node ${process.version} on ${process.platform}-${process.arch}`);
  const how = { source: 'built from source', prebuilt: 'prebuilt binary', CONVNET_ADDON: 'from CONVNET_ADDON' }[b.addon.source];
  console.log(`addon: ${how} (${path.relative(process.cwd(), b.addon.path) || b.addon.path})`);
  if (b.cuda) {
    console.log(`CUDA: on (runtime ${b.cudaVersion}; fat binary for ${(b.archs ?? []).join(', ')})`);
  } else {
    console.log('CUDA: off (CPU-only build)');
  }
  const cudaOps = b.ops.filter((o) => o.cuda).map((o) => o.name);
  const missing = b.ops.filter((o) => !o.cuda).map((o) => o.name);
  console.log(`ops: ${b.ops.length} native ops, ${cudaOps.length} with CUDA kernels${b.cuda && missing.length ? ` (not yet: ${missing.join(', ')})` : ''}`);
  console.log(b.cudnn === 'found'
    ? `cuDNN: ${b.cudnnVersion} at ${b.cudnnPath} (a benchmark driver only; never linked)`
    : `cuDNN: ${b.cudnn} (a benchmark driver only): ${b.cudnnReason}`);
  console.log(b.nvrtc === 'found'
    ? `NVRTC: ${b.nvrtcVersion} at ${b.nvrtcPath} (cn.cuda.compile)`
    : `NVRTC: ${b.nvrtc} (cn.cuda.compile needs it): ${b.nvrtcReason}`);
  console.log('devices:');
  const list = devices();
  for (const d of list) {
    const cc = d.computeCapability ? `, compute capability ${d.computeCapability}` : '';
    console.log(`  ${d.id.padEnd(8)} ${d.name}${cc}, ${gib(d.memoryBytes)}`);
  }
  if (!list.some((d) => d.kind === 'cuda')) {
    try {
      zeros([1], { device: 'cuda:0' }).dispose();
    } catch (e) {
      console.log(`  (no CUDA devices: ${(e as Error).message.replace(/^device: cannot use 'cuda:0': /, '')})`);
    }
  }
}

function defaultDevices(towers: 1 | 2): string[] {
  const cuda = devices().filter((d) => d.kind === 'cuda').map((d) => d.id);
  if (towers === 1) return [cuda[0] ?? 'cpu:0'];
  return cuda.length >= 2 ? cuda.slice(0, 2) : ['cpu:0', 'cpu:1'];
}

function stamp(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  return h > 0 ? `${h}h${String(m % 60).padStart(2, '0')}m` : m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`;
}

async function trainCommand(args: string[]): Promise<number> {
  const { values: v } = parse(TRAIN_USAGE, args, {
    model: { type: 'string' }, data: { type: 'string' }, 'data-dir': { type: 'string' }, classes: { type: 'string' },
    width: { type: 'string' }, towers: { type: 'string' }, devices: { type: 'string' },
    epochs: { type: 'string' }, batch: { type: 'string' }, lr: { type: 'string' },
    momentum: { type: 'string' }, 'weight-decay': { type: 'string' }, schedule: { type: 'string' },
    init: { type: 'string' }, 'no-flip': { type: 'boolean' }, crop: { type: 'boolean' }, 'no-crop': { type: 'boolean' },
    'eval-patches': { type: 'string' }, seed: { type: 'string' }, 'train-limit': { type: 'string' }, 'test-limit': { type: 'string' },
    'log-every': { type: 'string' }, 'trace-steps': { type: 'string' }, 'memory-limit': { type: 'string' }, out: { type: 'string' }, resume: { type: 'string' }, quiet: { type: 'boolean' },
  });
  if (v.help) {
    console.log(TRAIN_USAGE);
    return 0;
  }
  const { defaultConfig, train, readCheckpointState, resumedConfig, checkOutDir } = await import('../train/trainer.js');
  if (v.model !== undefined && v.model !== 'alexnet-mini' && v.model !== 'alexnet') throw new UsageError(`--model must be alexnet or alexnet-mini, received '${v.model}'`);
  const model = (v.model as 'alexnet' | 'alexnet-mini' | undefined) ?? 'alexnet-mini';
  const DEFAULT_CONFIG = defaultConfig(model);
  const kinds = ['fashion-mnist', 'imagenet', 'imagefolder', 'synthetic'];
  if (v.data !== undefined && !kinds.includes(v.data as string)) {
    throw new UsageError(`--data must be fashion-mnist, imagenet, imagefolder or synthetic, received '${v.data}'`);
  }
  const data = (v.data as TrainConfig['data'] | undefined) ?? DEFAULT_CONFIG.data;
  if (v.model !== undefined || v.data !== undefined) {
    if (model === 'alexnet' && data === 'fashion-mnist') {
      throw new UsageError('--data fashion-mnist holds 1x28x28 images for alexnet-mini; --model alexnet takes imagenet, imagefolder or synthetic');
    }
    if (model === 'alexnet-mini' && (data === 'imagenet' || data === 'imagefolder')) {
      throw new UsageError(`--data ${data} holds 3x224x224 images for --model alexnet; alexnet-mini takes fashion-mnist or synthetic`);
    }
  }
  if (v.width !== undefined && model === 'alexnet') throw new UsageError('--width applies to --model alexnet-mini only');
  if (v.classes !== undefined && data !== 'synthetic') throw new UsageError(`--classes applies to --data synthetic only (${data} brings its own classes)`);
  if (data === 'imagenet' || data === 'imagefolder') {
    if (v.resume === undefined && v['data-dir'] === undefined) throw new UsageError(`--data ${data} needs --data-dir DIR`);
  }
  if (v.crop && v['no-crop']) throw new UsageError('--crop and --no-crop cannot both be given');
  if (v.init !== undefined && v.init !== 'he' && v.init !== 'paper') throw new UsageError(`--init must be he or paper, received '${v.init}'`);
  const evalPatches = number('eval-patches', v['eval-patches'] as string | undefined, DEFAULT_CONFIG.evalPatches, (n) => n === 1 || n === 10, '1 or 10') as 1 | 10;
  if (evalPatches === 10 && data === 'fashion-mnist') throw new UsageError('--eval-patches 10 needs imagenet, imagefolder or synthetic data; fashion-mnist is evaluated on whole images');
  const towers = number('towers', v.towers as string | undefined, 1, (n) => n === 1 || n === 2, '1 or 2') as 1 | 2;
  const givenDevs = typeof v.devices === 'string' ? v.devices.split(',').map((s) => s.trim()) : undefined;
  const schedule = (v.schedule as string | undefined) ?? DEFAULT_CONFIG.schedule;
  if (!/^(none|step:[1-9]\d*|plateau(:\d+)?)$/.test(schedule)) {
    throw new UsageError(`--schedule must be step:E, plateau[:P] or none, received '${schedule}'`);
  }
  const flagged: TrainConfig = {
    ...DEFAULT_CONFIG,
    model,
    data,
    dataDir: v['data-dir'] as string | undefined,
    numClasses: number('classes', v.classes as string | undefined, DEFAULT_CONFIG.numClasses, (n) => Number.isInteger(n) && n >= 2, 'an integer of at least 2'),
    width: number('width', v.width as string | undefined, DEFAULT_CONFIG.width, (n) => n > 0 && n <= 8, 'a number in (0, 8]'),
    towers,
    devices: givenDevs ?? [],
    epochs: number('epochs', v.epochs as string | undefined, DEFAULT_CONFIG.epochs, positiveInt, 'a positive integer'),
    batch: number('batch', v.batch as string | undefined, DEFAULT_CONFIG.batch, positiveInt, 'a positive integer'),
    lr: number('lr', v.lr as string | undefined, DEFAULT_CONFIG.lr, (n) => n > 0, 'a positive number'),
    momentum: number('momentum', v.momentum as string | undefined, DEFAULT_CONFIG.momentum, (n) => n >= 0 && n < 1, 'a number in [0, 1)'),
    weightDecay: number('weight-decay', v['weight-decay'] as string | undefined, DEFAULT_CONFIG.weightDecay, (n) => n >= 0, 'a non-negative number'),
    schedule,
    init: (v.init as 'he' | 'paper' | undefined) ?? DEFAULT_CONFIG.init,
    flip: !v['no-flip'],
    crop: v.crop === true ? true : v['no-crop'] === true ? false : DEFAULT_CONFIG.crop,
    evalPatches,
    seed: number('seed', v.seed as string | undefined, DEFAULT_CONFIG.seed, nonNegativeInt, 'a non-negative integer'),
    trainLimit: number('train-limit', v['train-limit'] as string | undefined, 0, nonNegativeInt, 'a non-negative integer'),
    testLimit: number('test-limit', v['test-limit'] as string | undefined, 0, nonNegativeInt, 'a non-negative integer'),
    logEvery: number('log-every', v['log-every'] as string | undefined, DEFAULT_CONFIG.logEvery, positiveInt, 'a positive integer'),
    traceSteps: number('trace-steps', v['trace-steps'] as string | undefined, DEFAULT_CONFIG.traceSteps, nonNegativeInt, 'a non-negative integer'),
  };
  const memoryLimit = v['memory-limit'] === undefined ? undefined : parseBytes('memory-limit', v['memory-limit'] as string);
  const resume = v.resume as string | undefined;
  let config: TrainConfig;
  if (resume === undefined) {
    const devs = givenDevs ?? defaultDevices(towers);
    if (devs.length !== towers) throw new UsageError(`--devices must list ${towers} device${towers > 1 ? 's' : ''} for --towers ${towers}, received '${devs.join(',')}'`);
    config = { ...flagged, devices: devs };
  } else {
    if (!existsSync(resume)) throw new UsageError(`--resume: no such file '${resume}'`);
    const state = await readCheckpointState(resume, 'resume');
    const saved = state.config;
    // Flags that would change the model or the recipe: refused unless they say what the checkpoint says.
    const fixed: [string, keyof TrainConfig, string][] = [
      ['model', 'model', 'model'], ['data', 'data', 'data'], ['classes', 'numClasses', 'classes'], ['width', 'width', 'width'], ['towers', 'towers', 'towers'],
      ['batch', 'batch', 'batch'], ['lr', 'lr', 'lr'], ['momentum', 'momentum', 'momentum'],
      ['weight-decay', 'weightDecay', 'weight decay'], ['schedule', 'schedule', 'schedule'], ['init', 'init', 'init'],
      ['no-flip', 'flip', 'flips'], ['crop', 'crop', 'crops'], ['no-crop', 'crop', 'crops'], ['eval-patches', 'evalPatches', 'eval patches'], ['seed', 'seed', 'seed'],
      ['train-limit', 'trainLimit', 'train limit'], ['test-limit', 'testLimit', 'test limit'],
    ];
    for (const [flag, key, what] of fixed) {
      if (v[flag] === undefined || flagged[key] === saved[key]) continue;
      const has = typeof saved[key] === 'boolean' ? (saved[key] ? `${what} on` : `${what} off`) : `${what} ${String(saved[key])}`;
      throw new UsageError(`--${flag} cannot change on --resume (the checkpoint has ${has})`);
    }
    const done = state.loader.epoch;
    if (v.epochs !== undefined && flagged.epochs < done) {
      throw new UsageError(`--epochs must be at least ${done} on --resume (the checkpoint has done ${done} epochs), received ${flagged.epochs}`);
    }
    if (givenDevs && givenDevs.length !== saved.towers) {
      throw new UsageError(`--devices must list ${saved.towers} device${saved.towers > 1 ? 's' : ''} for the checkpoint's ${saved.towers} tower${saved.towers > 1 ? 's' : ''}, received '${givenDevs.join(',')}'`);
    }
    config = resumedConfig(state, {
      epochs: v.epochs !== undefined ? flagged.epochs : undefined,
      devices: givenDevs,
      dataDir: flagged.dataDir,
      logEvery: v['log-every'] !== undefined ? flagged.logEvery : undefined,
    }).config;
  }
  for (const d of config.devices) {
    try {
      zeros([1], { device: d }).dispose();
    } catch (e) {
      if (!(e instanceof DeviceError)) throw e;
      const hint = resume !== undefined && !givenDevs ? ` (the checkpoint ran there; --devices moves the run)` : '';
      throw new UsageError(`--devices: ${e.message.replace(/^device: /, '')}${hint}`);
      throw e;
    }
  }
  if (memoryLimit !== undefined) {
    const { setMemoryLimit } = await import('../device.js');
    for (const d of config.devices) setMemoryLimit(d, memoryLimit);
  }
  const out = (v.out as string | undefined) ?? (resume ? path.dirname(resume) : path.join('runs', `${config.model}-${stamp()}`));
  checkOutDir(out);
  const { towers: towersUsed, devices: devs } = config;

  let stopRequested = false;
  const onSigint = () => {
    if (stopRequested) {
      process.stderr.write('\nconvnet train: stopped without saving\n');
      process.exit(130);
    }
    stopRequested = true;
    process.stderr.write('\nconvnet train: stopping after this step and saving a checkpoint (Ctrl-C again to quit at once)\n');
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);

  const showBar = !v.quiet && process.stderr.isTTY === true;
  const { SingleBar, Presets } = showBar ? (await import('cli-progress')).default : { SingleBar: null, Presets: null };
  const bar = SingleBar && Presets
    ? new SingleBar({
        format: 'epoch {ep} [{bar}] {value}/{total} | loss {loss} | {ips} img/s | ETA {etaText}',
        hideCursor: true,
        clearOnComplete: true,
        stream: process.stderr,
      }, Presets.shades_classic)
    : null;
  let barEpoch = -1;
  const t0 = performance.now();
  const what = config.model === 'alexnet-mini' ? `alexnet-mini width ${config.width}` : config.model;
  console.log(`convnet train: ${what}${config.data === 'fashion-mnist' ? '' : ` on ${config.data}`}, ${towersUsed} tower${towersUsed > 1 ? 's' : ''} on ${devs.join(', ')}, ` +
    `${config.epochs} epoch${config.epochs > 1 ? 's' : ''}, batch ${config.batch}, lr ${config.lr}, schedule ${config.schedule}${resume ? ` (from ${resume})` : ''}; writing to ${out}`);
  try {
    const result = await train(config, out, {
      onStep: (p) => {
        if (!bar) return;
        if (p.epoch !== barEpoch) {
          if (barEpoch >= 0) bar.stop();
          barEpoch = p.epoch;
          bar.start(p.batches, 0, { ep: `${p.epoch + 1}/${p.epochs}`, loss: '-', ips: '-', etaText: '?' });
        }
        const left = ((p.epochs - p.epoch) * p.batches - p.batch) * config.batch;
        bar.update(p.batch, {
          loss: p.loss.toFixed(4),
          ips: p.imagesPerSecond ? p.imagesPerSecond.toFixed(0) : '-',
          etaText: p.imagesPerSecond ? fmtTime(left / p.imagesPerSecond) : '?',
        });
      },
      onEpoch: (r) => {
        if (bar && barEpoch >= 0) {
          bar.stop();
          barEpoch = -1;
        }
        console.log(`epoch ${r.epoch}/${config.epochs}: train loss ${r.trainLoss?.toFixed(4)}, test loss ${r.testLoss?.toFixed(4)}, top-1 ${(100 * r.testTop1!).toFixed(2)}%, top-5 ${(100 * r.testTop5!).toFixed(2)}%, lr ${r.lr}, ${r.imagesPerSecond?.toFixed(0) ?? '?'} img/s, ${fmtTime(r.time)}`);
      },
      onMessage: (line) => {
        if (bar && barEpoch >= 0) {
          bar.stop();
          barEpoch = -1;
        }
        console.log(line);
      },
      shouldStop: () => stopRequested,
    }, resume === undefined ? undefined : {
      checkpoint: resume,
      epochs: config.epochs,
      devices: config.devices,
      dataDir: config.dataDir,
      logEvery: config.logEvery,
    });
    bar?.stop();
    const secs = (performance.now() - t0) / 1000;
    if (result.status === 'diverged' && result.diverged) {
      const d = result.diverged;
      console.error(`convnet train: ${d.phase === 'test' ? 'test ' : ''}loss became ${d.loss} at step ${d.step} (epoch ${d.epoch}); lower --lr (now ${d.lr}); nothing was saved over the last checkpoint`);
      return 1;
    }
    if (result.status === 'stopped') {
      console.log(`stopped after ${result.steps} steps (${fmtTime(secs)}); resume with: convnet train --resume ${result.checkpoint}`);
      return 130;
    }
    const f = result.final;
    console.log(`done: ${result.epochsDone} epochs in ${fmtTime(secs)}${f ? `; test top-1 ${(100 * f.testTop1).toFixed(2)}%, top-5 ${(100 * f.testTop5).toFixed(2)}%` : ''}`);
    console.log(`report: ${path.join(out, 'report.html')}`);
    return 0;
  } finally {
    bar?.stop();
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}

async function evalCommand(args: string[]): Promise<number> {
  const { values: v } = parse(EVAL_USAGE, args, {
    checkpoint: { type: 'string' }, 'data-dir': { type: 'string' }, devices: { type: 'string' }, 'test-limit': { type: 'string' },
    'eval-patches': { type: 'string' },
  });
  if (v.help) {
    console.log(EVAL_USAGE);
    return 0;
  }
  if (typeof v.checkpoint !== 'string') throw new UsageError(`--checkpoint is required\n\n${EVAL_USAGE}`);
  if (!existsSync(v.checkpoint)) throw new UsageError(`--checkpoint: no such file '${v.checkpoint}'`);
  const limit = number('test-limit', v['test-limit'] as string | undefined, 0, nonNegativeInt, 'a non-negative integer');
  const { loadCheckpoint, evaluate, readCheckpointState, openData } = await import('../train/trainer.js');
  const devs = typeof v.devices === 'string' ? v.devices.split(',').map((s) => s.trim()) : undefined;
  const saved = await readCheckpointState(v.checkpoint, 'eval');
  const towers = saved.config.towers;
  if (devs && devs.length !== towers) {
    throw new UsageError(`--devices must list ${towers} device${towers > 1 ? 's' : ''} for the checkpoint's ${towers} tower${towers > 1 ? 's' : ''}, received '${devs.join(',')}'`);
  }
  const patches = number('eval-patches', v['eval-patches'] as string | undefined, saved.config.evalPatches, (n) => n === 1 || n === 10, '1 or 10') as 1 | 10;
  if (patches === 10 && saved.config.data === 'fashion-mnist') throw new UsageError('--eval-patches 10 needs imagenet, imagefolder or synthetic data; fashion-mnist is evaluated on whole images');
  const { model, state, opt } = await loadCheckpoint(v.checkpoint, devs, {
    state: saved,
    onWarning: (m) => console.error(`convnet: warning: ${m}`),
  });
  try {
    const config = {
      ...state.config,
      dataDir: (v['data-dir'] as string | undefined) ?? state.config.dataDir,
      testLimit: limit || state.config.testLimit,
      evalPatches: patches,
    };
    const { test } = await openData(config, { normalization: state.normalization, only: 'test' });
    try {
      const r = await evaluate(model, test, (devs ?? state.config.devices)[0]);
      const epochs = state.records.filter((x) => x.kind === 'epoch').length;
      console.log(`${v.checkpoint}: ${state.config.model}${state.config.model === 'alexnet-mini' ? ` width ${state.config.width}` : ''}, ${state.config.towers} tower(s), after ${epochs} epochs (${state.steps} steps)`);
      console.log(`test (${r.images} images${patches === 10 ? ', 10 patches each' : ''}): top-1 ${(100 * r.top1).toFixed(2)}%, top-5 ${(100 * r.top5).toFixed(2)}%, loss ${r.loss.toFixed(4)}`);
    } finally {
      await test.close();
    }
    return 0;
  } finally {
    for (const b of Object.values(opt.getState().buffers)) b.dispose();
    model.dispose();
  }
}

function benchCommand(args: string[]): number {
  if (args.length === 0 || args[0] === '--help') {
    console.log(BENCH_USAGE);
    return args.length === 0 ? 2 : 0;
  }
  const main = path.join(root, 'bench', 'main.ts');
  let tsx: string;
  try {
    tsx = createRequire(import.meta.url).resolve('tsx');
  } catch {
    const compiled = path.join(root, 'dist-bench', 'bench', 'main.js');
    if (existsSync(compiled)) return spawnSync(process.execPath, [compiled, ...args], { stdio: 'inherit', cwd: root }).status ?? 1;
    throw new ConvnetError('convnet bench needs the development install (tsx, from `npm install` in a clone of the repository)');
  }
  if (!existsSync(main)) throw new ConvnetError(`convnet bench: ${main} is missing; run it from a clone of the repository`);
  const r = spawnSync(process.execPath, ['--import', tsx, main, ...args], { stdio: 'inherit', cwd: root });
  return r.status ?? 1;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(USAGE);
    return cmd ? 0 : 2;
  }
  switch (cmd) {
    case 'info': {
      const { values } = parse(INFO_USAGE, rest, {});
      if (values.help) console.log(INFO_USAGE);
      else info();
      return 0;
    }
    case 'train':
      return trainCommand(rest);
    case 'eval':
      return evalCommand(rest);
    case 'bench':
      return benchCommand(rest);
    case 'prepare':
      return (await import('./prepare.js')).prepareCommand(rest);
    default:
      throw new UsageError(`unknown command '${cmd}'\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof UsageError) {
      console.error(`convnet: ${e.message}`);
      process.exit(2);
    }
    if (process.env.CONVNET_DEBUG === '1') console.error(e);
    else console.error(`convnet: ${(e as Error).message ?? String(e)}`);
    process.exit(1);
  },
);
