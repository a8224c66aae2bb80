/**
 * Training AlexNet-mini on Fashion-MNIST: the loop behind `convnet train`, usable from code.
 *
 * Each step queues the forward pass, the loss, backward and the SGD update, then reads the loss
 * back; while it waits, the loader prepares the next batch. After each epoch it evaluates on the
 * test split (top-1, top-5, loss), steps the learning-rate schedule, appends to metrics.jsonl,
 * rewrites report.html and saves checkpoint.safetensors atomically. A stop request (Ctrl-C) ends
 * the current step, saves a checkpoint and returns; resuming from it continues at the next
 * batch with the same weights, momentum, schedule, dropout counters and data order, under the
 * checkpoint's own config. A loss that is not finite (read every step anyway) ends the run at
 * once without saving, so the last good checkpoint stays. Nothing is written to the output
 * folder until the model, the data and any resumed state have loaded.
 */
import { accessSync, appendFileSync, constants as fsConstants, mkdirSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';

import { noGrad } from '../autograd.js';
import { buildInfo } from '../device.js';
import { FormatError, IOError, ShapeError } from '../errors.js';
import { loadFashionMnist, type ImageDataset } from '../data/fashion-mnist.js';
import { BatchLoader, batchToTensors, type Batch, type LoaderState, type Normalization } from '../data/loader.js';
import { load, saveTensors } from '../io/safetensors.js';
import { alexnetMini, type AlexNet } from '../models/alexnet.js';
import type { ModuleState } from '../nn/module.js';
import { tensor } from '../ops/create.js';
import { softmaxCrossEntropy } from '../ops/loss.js';
import { SGD } from '../optim/sgd.js';
import { ReduceOnPlateau, StepLR } from '../optim/schedule.js';
import { scope, Tensor } from '../tensor.js';
import { writeReport, type MetricRecord } from './report.js';

/** Everything that defines a run; saved in every checkpoint. */
export interface TrainConfig {
  model: 'alexnet-mini';
  data: 'fashion-mnist';
  dataDir?: string;
  width: number;
  towers: 1 | 2;
  devices: string[];
  epochs: number;
  batch: number;
  lr: number;
  momentum: number;
  weightDecay: number;
  /** 'step:E' divides the learning rate by 10 after every E epochs; 'plateau:P' when test top-1 has not improved for P epochs; 'none'. */
  schedule: string;
  init: 'he' | 'paper';
  flip: boolean;
  crop: boolean;
  seed: number;
  /** Use only the first N training / test images (tests, quick runs); 0 = all. */
  trainLimit: number;
  testLimit: number;
  /** Append a 'step' record to metrics.jsonl every this many steps. */
  logEvery: number;
}

export const DEFAULT_CONFIG: TrainConfig = {
  model: 'alexnet-mini',
  data: 'fashion-mnist',
  width: 1,
  towers: 1,
  devices: ['cpu:0'],
  epochs: 10,
  batch: 128,
  lr: 0.01,
  momentum: 0.9,
  weightDecay: 5e-4,
  schedule: 'step:7',
  init: 'he',
  flip: true,
  crop: false,
  seed: 1,
  trainLimit: 0,
  testLimit: 0,
  logEvery: 50,
};

/** Progress as the loop reports it, for a progress bar. */
export interface Progress {
  epoch: number;
  epochs: number;
  batch: number;
  batches: number;
  loss: number;
  imagesPerSecond: number;
  lr: number;
}

export interface TrainHooks {
  /** After every step. */
  onStep?(p: Progress): void;
  /** After every epoch's evaluation. */
  onEpoch?(r: MetricRecord): void;
  /** A line worth telling the user (checkpoint saved, resumed, stopped). */
  onMessage?(line: string): void;
  /** Polled after every step: true ends training after saving a checkpoint. */
  shouldStop?(): boolean;
}

export interface TrainResult {
  /**
   * 'done' after the last epoch, 'stopped' when shouldStop ended it early (a checkpoint was
   * saved), 'diverged' when the loss stopped being finite (nothing was saved).
   */
  status: 'done' | 'stopped' | 'diverged';
  /** Where the loss stopped being finite: the step (counted from the run's start), epoch (from 1), loss and learning rate. */
  diverged?: { step: number; epoch: number; loss: number; lr: number; phase: 'train' | 'test' };
  epochsDone: number;
  steps: number;
  records: MetricRecord[];
  checkpoint: string;
  final?: { testTop1: number; testTop5: number; testLoss: number };
  seconds: number;
}

/** What a checkpoint's `convnet` metadata entry holds. */
export interface CheckpointState {
  format: 1;
  config: TrainConfig;
  /**
   * The loader position of the next batch to train on; `batch` equal to the batches per epoch
   * means every batch of `epoch` is done and its evaluation is not.
   */
  loader: LoaderState;
  /** The training loss summed over the images of the epoch under way, and their count. */
  epochLoss?: { sum: number; seen: number };
  steps: number;
  lr: number;
  schedule: unknown;
  module: ModuleState;
  normalization: Normalization;
  records: MetricRecord[];
  seconds: number;
}

const MOMENTUM_PREFIX = 'optimizer.momentum.';

/** The schedule named by config.schedule. */
function makeSchedule(spec: string, opt: SGD): StepLR | ReduceOnPlateau | null {
  const [kind, arg] = spec.split(':');
  const n = arg === undefined ? undefined : Number(arg);
  if (kind === 'none') return null;
  if (kind === 'step' && n !== undefined && Number.isInteger(n) && n > 0) return new StepLR(opt, { stepSize: n, gamma: 0.1 });
  if (kind === 'plateau' && (n === undefined || (Number.isInteger(n) && n >= 0))) {
    return new ReduceOnPlateau(opt, { factor: 0.1, patience: n ?? 1, mode: 'max' });
  }
  throw new ShapeError(`train: schedule must be 'step:E', 'plateau[:P]' or 'none', received '${spec}'`);
}

function subset(ds: ImageDataset, limit: number): ImageDataset {
  if (!limit || limit >= ds.count) return ds;
  const px = ds.rows * ds.cols;
  return { ...ds, count: limit, images: ds.images.subarray(0, limit * px), labels: ds.labels.subarray(0, limit) };
}

/** The model a config describes, on its devices. */
export function buildModel(config: TrainConfig): AlexNet {
  if (config.model !== 'alexnet-mini') throw new ShapeError(`train: model must be 'alexnet-mini', received '${config.model}'`);
  return alexnetMini({
    width: config.width,
    numClasses: 10,
    towers: config.towers,
    devices: config.devices,
    seed: config.seed,
    init: config.init,
  });
}

/** The device the logits (and so the labels) live on. */
function outputDevice(config: TrainConfig): string {
  return config.devices[0];
}

/**
 * How many rows of logits [B, M] (row-major) rank their label first, and within the first five.
 * A row holding any NaN is wrong on both counts: NaN compares false with everything, so it would
 * otherwise rank first.
 */
export function countCorrect(logits: ArrayLike<number>, labels: ArrayLike<number>, classes: number): { top1: number; top5: number } {
  let top1 = 0, top5 = 0;
  const M = classes;
  for (let i = 0; i < labels.length; i++) {
    const mine = logits[i * M + labels[i]];
    let above = 0, nan = false;
    for (let m = 0; m < M; m++) {
      const v = logits[i * M + m];
      if (v !== v) nan = true;
      else if (v > mine) above++;
    }
    if (nan) continue;
    if (above === 0) top1++;
    if (above < 5) top5++;
  }
  return { top1, top5 };
}

/** Top-1, top-5 and mean loss of the model on a loader's images (evaluation mode, no graph). */
export async function evaluate(model: AlexNet, loader: BatchLoader, device: string): Promise<{ top1: number; top5: number; loss: number }> {
  const wasTraining = model.training;
  model.eval();
  let seen = 0, right1 = 0, right5 = 0, lossSum = 0;
  try {
    for (let k = 0; k < loader.batchesPerEpoch; k++) {
      const batch = loader.batchAt(0, k);
      const { logits, loss } = noGrad(() =>
        scope(() => {
          const { x, labels } = batchToTensors(batch, device);
          const z = model.forward(x);
          return { logits: z, loss: softmaxCrossEntropy(z, labels) };
        }),
      );
      const [z, l] = await Promise.all([logits.data(), loss.data()]);
      logits.dispose();
      loss.dispose();
      const B = batch.labels.length;
      const right = countCorrect(z, batch.labels, z.length / B);
      right1 += right.top1;
      right5 += right.top5;
      lossSum += l[0] * B;
      seen += B;
    }
  } finally {
    if (wasTraining) model.train();
  }
  return { top1: right1 / seen, top5: right5 / seen, loss: lossSum / seen };
}

/** Folders under which no output folder is made: the kernel's, where mkdir can spin forever. */
const SYSTEM_DIRS = ['/proc', '/sys'];

/**
 * Checks, without creating anything, that the output folder exists and is writable or can be
 * made: its nearest existing ancestor must be a writable folder outside /proc and /sys.
 * Returns the folders that would have to be made, outermost first.
 *
 * @throws IOError naming the folder and the reason
 */
export function checkOutDir(outDir: string): string[] {
  const target = path.resolve(outDir);
  const fail = (why: string, code = ''): never => {
    throw new IOError(`train: cannot use the output folder '${outDir}': ${why}`, code);
  };
  const stat = (p: string) => {
    try {
      return statSync(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      return fail(`'${p}' cannot be read (${code ?? (e as Error).message})`, code ?? '');
    }
  };
  const missing: string[] = [];
  let at = target;
  let st = stat(at);
  while (!st) {
    missing.unshift(at);
    const up = path.dirname(at);
    if (up === at) fail('no part of the path exists');
    at = up;
    st = stat(at);
  }
  let real = at;
  try {
    real = realpathSync(at);
  } catch {
    // keep the path as given
  }
  if (SYSTEM_DIRS.some((d) => real === d || real.startsWith(d + '/'))) fail(`'${at}' is a system folder (${real})`);
  if (!st.isDirectory()) fail(`'${at}' is not a folder`, 'ENOTDIR');
  try {
    accessSync(at, fsConstants.W_OK | fsConstants.X_OK);
  } catch (e) {
    fail(`'${at}' is not writable (${(e as NodeJS.ErrnoException).code ?? 'EACCES'})`, (e as NodeJS.ErrnoException).code ?? 'EACCES');
  }
  return missing;
}

/** Makes the output folder after {@link checkOutDir}, one level at a time. */
export function makeOutDir(outDir: string): void {
  for (const dir of checkOutDir(outDir)) {
    try {
      mkdirSync(dir);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EEXIST' && statSync(dir, { throwIfNoEntry: false })?.isDirectory()) continue;
      throw new IOError(`train: cannot make the output folder '${outDir}': ${err.code ?? err.message}`, err.code ?? '');
    }
  }
}

/** Runs a write to `file`, turning a file system error into an IOError naming the file. */
function writing(file: string, write: () => void): void {
  try {
    write();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (typeof err?.code !== 'string') throw e;
    const why = /^[A-Z0-9_]+: ([^,]+)/.exec(err.message)?.[1] ?? err.message;
    throw new IOError(`train: cannot write '${file}': ${why} (${err.code})`, err.code);
  }
}

/** The checkpoint path in an output folder. */
export function checkpointPath(outDir: string): string {
  return path.join(outDir, 'checkpoint.safetensors');
}

async function saveCheckpoint(file: string, model: AlexNet, opt: SGD, state: CheckpointState): Promise<void> {
  const tensors: Record<string, Tensor> = Object.fromEntries(model.namedParameters());
  for (const [name, buf] of Object.entries(opt.getState().buffers)) tensors[MOMENTUM_PREFIX + name] = buf;
  await saveTensors(file, tensors, { convnet: JSON.stringify(state) });
}

/** Reads a checkpoint's run state (and nothing else) without a model; `op` starts any error message. */
export async function readCheckpointState(file: string, op = 'checkpoint'): Promise<CheckpointState> {
  const { loadTensors } = await import('../io/safetensors.js');
  let metadata: Record<string, string>;
  try {
    ({ metadata } = await loadTensors(file));
  } catch (e) {
    if (e instanceof FormatError) throw new FormatError(e.message.replace(/^loadTensors: /, `${op}: `));
    throw e;
  }
  return parseState(file, metadata, op);
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

const positive = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0;
const nonNegative = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const positiveCount = (v: unknown) => isCount(v) && v > 0;
const isBool = (v: unknown) => typeof v === 'boolean';

/** The parts of a training state and what each must be; the first that fails is named. */
const STATE_PARTS: [string, string, (v: unknown) => boolean][] = [
  ['config', 'an object', isObject],
  ['loader', 'an object { seed, epoch, batch } of non-negative integers', (v) => isObject(v) && isCount(v.seed) && isCount(v.epoch) && isCount(v.batch)],
  ['steps', 'a non-negative integer', isCount],
  ['lr', 'a non-negative number', nonNegative],
  ['module', 'an object', isObject],
  ['normalization', 'an object { mean, std } of finite numbers with std > 0', (v) => isObject(v) && typeof v.mean === 'number' && Number.isFinite(v.mean) && positive(v.std)],
  ['records', 'an array', Array.isArray],
  ['seconds', 'a number', (v) => typeof v === 'number'],
];

/** The config fields a checkpoint must hold, what each must be, and the test. */
const CONFIG_FIELDS: [keyof TrainConfig, string, (v: unknown) => boolean][] = [
  ['model', "'alexnet-mini'", (v) => v === 'alexnet-mini'],
  ['data', "'fashion-mnist'", (v) => v === 'fashion-mnist'],
  ['width', 'a number in (0, 8]', (v) => positive(v) && (v as number) <= 8],
  ['towers', '1 or 2', (v) => v === 1 || v === 2],
  ['devices', 'a list of device ids, one a tower', Array.isArray],
  ['epochs', 'a positive integer', positiveCount],
  ['batch', 'a positive integer', positiveCount],
  ['lr', 'a positive number', positive],
  ['momentum', 'a number in [0, 1)', (v) => nonNegative(v) && (v as number) < 1],
  ['weightDecay', 'a non-negative number', nonNegative],
  ['schedule', "'step:E', 'plateau[:P]' or 'none'", (v) => typeof v === 'string' && /^(none|step:[1-9]\d*|plateau(:\d+)?)$/.test(v)],
  ['init', "'he' or 'paper'", (v) => v === 'he' || v === 'paper'],
  ['flip', 'a boolean', isBool],
  ['crop', 'a boolean', isBool],
  ['seed', 'a non-negative integer', isCount],
  ['trainLimit', 'a non-negative integer', isCount],
  ['testLimit', 'a non-negative integer', isCount],
  ['logEvery', 'a positive integer', positiveCount],
];

/** What the schedule state of each kind of schedule must hold. */
function scheduleStateOk(schedule: string, v: unknown): boolean {
  if (schedule === 'none') return v === null;
  if (v === null) return true; // a run saved before its schedule first stepped
  if (!isObject(v)) return false;
  if (schedule.startsWith('step:')) return isCount(v.epoch) && positive(v.baseLr);
  return (v.best === null || typeof v.best === 'number') && isCount(v.badEpochs) && isCount(v.reductions);
}

function parseState(file: string, metadata: Record<string, string>, op: string): CheckpointState {
  const raw = metadata.convnet;
  if (!raw) throw new FormatError(`${op}: ${file} has no 'convnet' metadata: it was not written by convnet train`);
  let state: Record<string, unknown>;
  try {
    state = JSON.parse(raw) as Record<string, unknown>;
  } catch (e) {
    throw new FormatError(`${op}: ${file} has 'convnet' metadata that is not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(state) || state.format !== 1) {
    throw new FormatError(`${op}: ${file} has 'convnet' metadata of an unknown format`);
  }
  for (const [part, what, ok] of STATE_PARTS) {
    if (!(part in state)) throw new FormatError(`${op}: ${file} has no '${part}' section in its training state`);
    if (!ok(state[part])) throw new FormatError(`${op}: ${file} has a '${part}' section that is not ${what}`);
  }
  const config = state.config as Record<string, unknown>;
  for (const [field, what, ok] of CONFIG_FIELDS) {
    if (!(field in config)) throw new FormatError(`${op}: ${file} has no 'config.${field}' in its training state`);
    if (!ok(config[field])) throw new FormatError(`${op}: ${file} has a 'config.${field}' that is not ${what} in its training state`);
  }
  const devs = config.devices as unknown[];
  if (devs.length !== config.towers || !devs.every((d) => typeof d === 'string')) {
    throw new FormatError(`${op}: ${file} has a 'config.devices' that is not a list of ${String(config.towers)} device ids in its training state`);
  }
  if ('epochLoss' in state && !(isObject(state.epochLoss) && nonNegative(state.epochLoss.sum) && isCount(state.epochLoss.seen))) {
    throw new FormatError(`${op}: ${file} has an 'epochLoss' section that is not an object { sum, seen } of non-negative numbers`);
  }
  if (!('schedule' in state)) throw new FormatError(`${op}: ${file} has no 'schedule' section in its training state`);
  if (!scheduleStateOk(config.schedule as string, state.schedule)) {
    throw new FormatError(`${op}: ${file} has a 'schedule' section that does not fit its schedule '${String(config.schedule)}'`);
  }
  return state as unknown as CheckpointState;
}

/** What a resumed run may change; everything else comes from the checkpoint. */
export interface ResumeOptions {
  /** The checkpoint to continue. */
  checkpoint: string;
  /** Train to this many epochs in all (more than the checkpoint's to extend the run). */
  epochs?: number;
  /** Move the run to these devices (as many as the checkpoint's towers). */
  devices?: string[];
  dataDir?: string;
  logEvery?: number;
}

/**
 * The config a resumed run uses: the checkpoint's, with the changes a resume may make, and a
 * line for each change made. Throws ShapeError for a change that cannot be made (fewer epochs
 * than are done, a device list of the wrong length).
 */
export function resumedConfig(state: CheckpointState, opts: Omit<ResumeOptions, 'checkpoint'>): { config: TrainConfig; changes: string[] } {
  const config = { ...state.config };
  const changes: string[] = [];
  const done = state.loader.epoch;
  if (opts.epochs !== undefined && opts.epochs !== config.epochs) {
    if (!Number.isInteger(opts.epochs) || opts.epochs < Math.max(1, done)) {
      throw new ShapeError(`resume: epochs must be an integer of at least ${Math.max(1, done)} (the checkpoint has done ${done}), received ${opts.epochs}`);
    }
    changes.push(opts.epochs > config.epochs ? `extending to ${opts.epochs} epochs (the checkpoint's run had ${config.epochs})` : `ending after ${opts.epochs} epoch${opts.epochs > 1 ? 's' : ''} (the checkpoint's run had ${config.epochs})`);
    config.epochs = opts.epochs;
  }
  if (opts.devices !== undefined && opts.devices.join(',') !== config.devices.join(',')) {
    if (opts.devices.length !== config.towers) {
      throw new ShapeError(`resume: devices must list ${config.towers} device${config.towers > 1 ? 's' : ''} for the checkpoint's ${config.towers} tower${config.towers > 1 ? 's' : ''}, received '${opts.devices.join(',')}'`);
    }
    changes.push(`moving the run from ${config.devices.join(', ')} to ${opts.devices.join(', ')}`);
    config.devices = [...opts.devices];
  }
  if (opts.dataDir !== undefined) config.dataDir = opts.dataDir;
  if (opts.logEvery !== undefined) config.logEvery = opts.logEvery;
  return { config, changes };
}

/** Loads a checkpoint's weights into a model built from its own config; returns both. */
export async function loadCheckpoint(
  file: string,
  devices?: string[],
  opts: { op?: string; onWarning?: (message: string) => void; state?: CheckpointState; config?: TrainConfig } = {},
): Promise<{ model: AlexNet; state: CheckpointState; opt: SGD }> {
  const state = opts.state ?? await readCheckpointState(file, opts.op);
  let config = opts.config ?? state.config;
  if (devices) config = resumedConfig(state, { devices }).config;
  const model = buildModel(config);
  try {
    const { rest } = await load(file, model, { unexpected: 'return', onWarning: opts.onWarning });
    const opt = new SGD(model, { lr: state.lr, momentum: config.momentum, weightDecay: config.weightDecay });
    const buffers: Record<string, Tensor> = {};
    try {
      for (const [name, t] of Object.entries(rest)) {
        if (!name.startsWith(MOMENTUM_PREFIX)) throw new FormatError(`checkpoint: ${file} holds an unexpected tensor '${name}'`);
        buffers[name.slice(MOMENTUM_PREFIX.length)] = tensor(t.data as Float32Array, t.shape);
      }
      opt.setState({ lr: state.lr, steps: state.steps, buffers });
    } finally {
      Object.values(buffers).forEach((t) => t.dispose());
    }
    model.setState(state.module);
    return { model, state: { ...state, config }, opt };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/**
 * Trains as the config says, writing metrics.jsonl, report.html and checkpoint.safetensors to
 * outDir (created if need be). With `resume`, continues the run saved in that checkpoint: the
 * checkpoint's config is the run's (`configIn` is not used), except what {@link ResumeOptions}
 * changes (more epochs, other devices), each change announced through `onMessage`.
 *
 * A loss that is not finite (the run diverged), in a training step or in the evaluation at the
 * end of an epoch, ends training at once with status 'diverged': nothing is saved over the last
 * checkpoint, and metrics.jsonl gets a 'diverged' line.
 */
export async function train(configIn: TrainConfig, outDir: string, hooks: TrainHooks = {}, resume?: string | ResumeOptions): Promise<TrainResult> {
  const say = hooks.onMessage ?? (() => {});
  const ckpt = checkpointPath(outDir);
  const metricsFile = path.join(outDir, 'metrics.jsonl');
  const reportFile = path.join(outDir, 'report.html');

  let model: AlexNet;
  let opt: SGD;
  let config = configIn;
  let resumed: CheckpointState | null = null;
  const resumeFile = typeof resume === 'string' ? resume : resume?.checkpoint;
  if (resume) {
    const r = typeof resume === 'string' ? { checkpoint: resume } : resume;
    const state = await readCheckpointState(r.checkpoint, 'resume');
    const { config: c, changes } = resumedConfig(state, r);
    const loaded = await loadCheckpoint(r.checkpoint, undefined, { state, config: c, onWarning: (m) => say(`warning: ${m}`) });
    model = loaded.model;
    opt = loaded.opt;
    resumed = loaded.state;
    config = c;
    say(`resumed from ${r.checkpoint}: epoch ${resumed.loader.epoch + 1}, batch ${resumed.loader.batch}, step ${resumed.steps}`);
    changes.forEach(say);
  } else {
    model = buildModel(config);
    opt = new SGD(model, { lr: config.lr, momentum: config.momentum, weightDecay: config.weightDecay });
  }
  try {
    checkOutDir(outDir);
    const [trainSet, testSet] = await Promise.all([
      loadFashionMnist({ dataDir: config.dataDir, split: 'train' }),
      loadFashionMnist({ dataDir: config.dataDir, split: 'test' }),
    ]);
    const trainData = subset(trainSet, config.trainLimit);
    const testData = subset(testSet, config.testLimit);
    const trainLoader = new BatchLoader(trainData, {
      batchSize: config.batch,
      shuffle: true,
      seed: config.seed,
      flip: config.flip,
      crop: config.crop,
      dropLast: true,
      normalize: resumed?.normalization,
    });
    const testLoader = new BatchLoader(testData, { batchSize: 500, shuffle: false, normalize: trainLoader.normalization });
    if (trainLoader.batchesPerEpoch === 0) {
      throw new ShapeError(`train: the training set (${trainData.count} images) is smaller than one batch (${config.batch})`);
    }
    const schedule = makeSchedule(config.schedule, opt);
    if (resumed) {
      try {
        trainLoader.setState(resumed.loader);
      } catch (e) {
        if (!(e instanceof ShapeError)) throw e;
        throw new FormatError(`resume: ${resumeFile} has a 'loader' section that does not fit the data (${e.message})`);
      }
      if (schedule && resumed.schedule) schedule.setState(resumed.schedule as never);
      opt.lr = resumed.lr;
    }
    // Only now, with the model, the data, the recipe and any resumed state known to be good, is anything created.
    makeOutDir(outDir);
    const records: MetricRecord[] = resumed ? [...resumed.records] : [];
    let steps = resumed?.steps ?? 0;
    const startSeconds = resumed?.seconds ?? 0;
    const t0 = performance.now();
    const elapsed = () => startSeconds + (performance.now() - t0) / 1000;
    const settings: [string, string][] = [
      ['model', `${config.model}, width ${config.width}, ${config.towers} tower${config.towers > 1 ? 's' : ''}`],
      ['devices', config.devices.join(', ')],
      ['data', `${config.data}: ${trainData.count} train / ${testData.count} test images`],
      ['recipe', `SGD lr ${config.lr}, momentum ${config.momentum}, weight decay ${config.weightDecay}, batch ${config.batch}, schedule ${config.schedule}, init ${config.init}`],
      ['augmentation', [config.flip ? 'random horizontal flips' : '', config.crop ? 'random crops (pad 2)' : ''].filter(Boolean).join(', ') || 'none'],
      ['build', `convnet-cuda ${buildInfo().version}, CUDA ${buildInfo().cuda ? 'on' : 'off'}`],
    ];
    const append = (line: object) => writing(metricsFile, () => appendFileSync(metricsFile, JSON.stringify(line) + '\n'));
    const record = (r: MetricRecord) => {
      records.push(r);
      append(r);
    };
    const snapshot = (status: string) => writing(reportFile, () =>
      writeReport(reportFile, { title: `convnet train: ${config.model} on ${config.data}`, settings, records, status }));
    // The epoch under way and its training loss so far (carried over from a resumed checkpoint).
    let epoch = trainLoader.state().epoch;
    let epochLoss = resumed?.epochLoss?.sum ?? 0, epochSeen = resumed?.epochLoss?.seen ?? 0;
    /**
     * The loader position to save. After the last batch of an epoch the loader has moved on to
     * the next one, but the epoch's evaluation has not run: save "all batches of this epoch
     * done" instead, so a resumed run evaluates it.
     */
    const loaderState = (): LoaderState => {
      const st = trainLoader.state();
      return st.epoch > epoch ? { ...st, epoch, batch: trainLoader.batchesPerEpoch } : st;
    };
    const checkpointState = (): CheckpointState => ({
      format: 1,
      config,
      loader: loaderState(),
      epochLoss: { sum: epochLoss, seen: epochSeen },
      steps,
      lr: opt.lr,
      schedule: schedule?.getState() ?? null,
      module: model.getState(),
      normalization: trainLoader.normalization,
      records,
      seconds: elapsed(),
    });

    const device = outputDevice(config);
    model.train();
    let stopped = false;
    let diverged: TrainResult['diverged'];
    let final: TrainResult['final'];
    while (trainLoader.state().epoch < config.epochs && !stopped && !diverged) {
      if (trainLoader.state().epoch !== epoch) {
        epoch = trainLoader.state().epoch;
        epochLoss = 0;
        epochSeen = 0;
      }
      let windowImages = 0, windowStart = performance.now();
      let ips = 0;
      for await (const batch of trainLoader) {
        const loss = step(model, opt, batch, device);
        const [l] = await loss.data();
        loss.dispose();
        steps++;
        if (!Number.isFinite(l)) {
          diverged = { step: steps, epoch: epoch + 1, loss: l, lr: opt.lr, phase: 'train' };
          append({ kind: 'diverged', epoch: epoch + (batch.batch + 1) / trainLoader.batchesPerEpoch, step: steps, time: elapsed(), loss: String(l), lr: opt.lr });
          break;
        }
        const B = batch.labels.length;
        epochLoss += l * B;
        epochSeen += B;
        windowImages += B;
        const now = performance.now();
        if (now - windowStart > 1000) {
          ips = (windowImages * 1000) / (now - windowStart);
          windowImages = 0;
          windowStart = now;
        }
        hooks.onStep?.({ epoch, epochs: config.epochs, batch: batch.batch + 1, batches: trainLoader.batchesPerEpoch, loss: l, imagesPerSecond: ips, lr: opt.lr });
        if (steps % config.logEvery === 0) {
          record({ kind: 'step', epoch: epoch + (batch.batch + 1) / trainLoader.batchesPerEpoch, step: steps, time: elapsed(), loss: l, lr: opt.lr, imagesPerSecond: ips || undefined });
        }
        if (hooks.shouldStop?.()) {
          stopped = true;
          break;
        }
      }
      if (stopped || diverged) break;
      const test = await evaluate(model, testLoader, device);
      if (!Number.isFinite(test.loss)) {
        // The last update of the epoch left weights that are not finite: no checkpoint of them.
        diverged = { step: steps, epoch: epoch + 1, loss: test.loss, lr: opt.lr, phase: 'test' };
        append({ kind: 'diverged', epoch: epoch + 1, step: steps, time: elapsed(), testLoss: String(test.loss), lr: opt.lr });
        break;
      }
      const lrUsed = opt.lr;
      if (schedule instanceof ReduceOnPlateau) schedule.step(test.top1);
      else schedule?.step();
      const r: MetricRecord = {
        kind: 'epoch',
        epoch: epoch + 1,
        step: steps,
        time: elapsed(),
        trainLoss: epochLoss / Math.max(1, epochSeen),
        testLoss: test.loss,
        testTop1: test.top1,
        testTop5: test.top5,
        lr: lrUsed,
        imagesPerSecond: (epochSeen / (elapsed() - (records.filter((x) => x.kind === 'epoch').at(-1)?.time ?? startSeconds))) || undefined,
      };
      record(r);
      final = { testTop1: test.top1, testTop5: test.top5, testLoss: test.loss };
      hooks.onEpoch?.(r);
      // The epoch is evaluated: the one under way is now the next.
      const doneEpoch = epoch;
      epoch = trainLoader.state().epoch;
      epochLoss = 0;
      epochSeen = 0;
      await saveCheckpoint(ckpt, model, opt, checkpointState());
      snapshot(`epoch ${doneEpoch + 1} of ${config.epochs} done`);
    }
    if (diverged) {
      snapshot(`diverged: the ${diverged.phase === 'test' ? 'test ' : ''}loss became ${diverged.loss} at step ${diverged.step} (epoch ${diverged.epoch}); nothing saved`);
    } else if (stopped) {
      await saveCheckpoint(ckpt, model, opt, checkpointState());
      snapshot(`stopped at epoch ${loaderState().epoch + 1}, batch ${loaderState().batch}; resume with --resume ${ckpt}`);
      say(`stopped; checkpoint saved to ${ckpt}`);
    } else {
      snapshot(`done: ${config.epochs} epochs`);
    }
    return {
      status: diverged ? 'diverged' : stopped ? 'stopped' : 'done',
      diverged,
      epochsDone: records.filter((x) => x.kind === 'epoch').length,
      steps,
      records,
      checkpoint: ckpt,
      final,
      seconds: elapsed(),
    };
  } finally {
    opt.zeroGrad();
    for (const buf of Object.values(opt.getState().buffers)) buf.dispose();
    model.dispose();
  }
}

/** One training step: queues forward, loss, backward and the update; returns the loss. */
function step(model: AlexNet, opt: SGD, batch: Batch, device: string): Tensor {
  const loss = scope(() => {
    const { x, labels } = batchToTensors(batch, device);
    return softmaxCrossEntropy(model.forward(x), labels);
  });
  loss.backward();
  opt.step();
  opt.zeroGrad();
  return loss;
}
