/**
 * Training AlexNet-mini on Fashion-MNIST, or AlexNet on ImageNet, an image folder or synthetic
 * images (one tower or two): the loop behind `convnet train`, usable from code. Every data set
 * is read through the {@link ImageSource} interface.
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
import { allocatorStats, buildSummary, peakMemory, resetPeakMemory, synchronize, traceStart, traceStop, type TraceEvent } from '../device.js';
import { FormatError, IOError, OutOfMemoryError, ShapeError } from '../errors.js';
import { FASHION_MNIST_CLASSES, loadFashionMnist, type ImageDataset } from '../data/fashion-mnist.js';
import { BatchLoader, batchToTensors, type LoaderState, type Normalization } from '../data/loader.js';
import { LoaderSource, openDataSplit, type DataKind } from '../data/open.js';
import type { ImageBatch, ImageSource } from '../data/source.js';
import { SyntheticSource } from '../data/synthetic.js';
import { load, saveTensors } from '../io/safetensors.js';
import { alexnet, alexnetMini, type AlexNet } from '../models/alexnet.js';
import type { ModuleState } from '../nn/module.js';
import { tensor } from '../ops/create.js';
import { softmaxCrossEntropy } from '../ops/loss.js';
import { SGD } from '../optim/sgd.js';
import { ReduceOnPlateau, StepLR } from '../optim/schedule.js';
import { scope, Tensor } from '../tensor.js';
import { writeReport, type MetricRecord, type ReportExtras, type SampleImage } from './report.js';

/** The networks `convnet train` trains. */
export type ModelName = 'alexnet-mini' | 'alexnet';

/** Everything that defines a run; saved in every checkpoint. */
export interface TrainConfig {
  model: ModelName;
  /** Where the images come from: Fashion-MNIST (alexnet-mini), ImageNet, an image folder, or synthetic images. */
  data: DataKind;
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
  /** Outputs of the network: 0 takes the data's class count (synthetic data: 10); a run's checkpoint holds the count used. */
  numClasses: number;
  /** Patches per validation image: 1 (the centre crop) or 10 (the paper's four corners, centre and mirrors, softmax averaged). */
  evalPatches: 1 | 10;
  /** Training steps whose ops are traced (after two warm-up steps, fewer in a short run) for the report's per-op times and timeline; 0 traces nothing. */
  traceSteps: number;
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
  numClasses: 0,
  evalPatches: 1,
  traceSteps: 3,
};

/**
 * AlexNet's defaults, the paper's recipe: ImageNet, batch 128, SGD with momentum 0.9 and weight
 * decay 5e-4, learning rate 0.01 divided by 10 when validation top-1 has not improved for an
 * epoch, N(0, 0.01) weights with biases 1 in conv2, conv4, conv5, fc6 and fc7, random crops and
 * flips, 90 epochs.
 */
export const ALEXNET_CONFIG: TrainConfig = {
  ...DEFAULT_CONFIG,
  model: 'alexnet',
  data: 'imagenet',
  epochs: 90,
  schedule: 'plateau:1',
  init: 'paper',
  crop: true,
  logEvery: 20,
};

/** The defaults of a model: {@link DEFAULT_CONFIG} for alexnet-mini, {@link ALEXNET_CONFIG} for alexnet. */
export function defaultConfig(model: ModelName): TrainConfig {
  return model === 'alexnet' ? { ...ALEXNET_CONFIG } : { ...DEFAULT_CONFIG };
}

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

/** What a traced window of training steps recorded, for the report. */
export interface TraceSample {
  /** The steps traced (counted from the run's start). */
  steps: [number, number];
  /** Every op the devices' queues ran in those steps. */
  events: TraceEvent[];
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
  /** The most bytes in use at once on each of the run's devices ({@link peakMemory}). */
  peakBytes: Record<string, number>;
  /** The traced steps, when any were traced. */
  trace?: TraceSample;
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
  /** Fashion-MNIST's pixel statistics (other data sets come mean-subtracted from their loader). */
  normalization?: Normalization;
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

/** The model a config describes, on its devices; `numClasses` 0 means 10. */
export function buildModel(config: TrainConfig): AlexNet {
  const common = { numClasses: config.numClasses || 10, towers: config.towers, devices: config.devices, seed: config.seed, init: config.init };
  if (config.model === 'alexnet') return alexnet(common);
  if (config.model !== 'alexnet-mini') throw new ShapeError(`train: model must be 'alexnet' or 'alexnet-mini', received '${String(config.model)}'`);
  return alexnetMini({ ...common, width: config.width });
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

/**
 * The paper's multi-patch prediction: for logits `[B * patches, M]` (row-major, the patches of
 * image i in rows i*patches .. i*patches+patches-1), the softmax of each row averaged over each
 * image's patches, `[B, M]`. A row holding NaN makes its image's probabilities NaN.
 */
export function averagePatchSoftmax(logits: ArrayLike<number>, images: number, patches: number, classes: number): Float64Array {
  const M = classes;
  const out = new Float64Array(images * M);
  for (let i = 0; i < images; i++) {
    for (let p = 0; p < patches; p++) {
      const row = (i * patches + p) * M;
      let max = -Infinity;
      for (let m = 0; m < M; m++) max = Math.max(max, logits[row + m]);
      let sum = 0;
      for (let m = 0; m < M; m++) sum += Math.exp(logits[row + m] - max);
      for (let m = 0; m < M; m++) out[i * M + m] += Math.exp(logits[row + m] - max) / sum / patches;
    }
  }
  return out;
}

/** Options of {@link evaluate}. */
export interface EvaluateOptions {
  /** Keep the first this many images with their top-5 predictions (for the report); default 0. */
  samples?: number;
}

/** What {@link evaluate} returns. */
export interface Evaluation {
  /** Fraction of images whose label ranks first. */
  top1: number;
  /** Fraction of images whose label ranks in the first five. */
  top5: number;
  /** Mean cross-entropy (with several patches: of the averaged softmax). */
  loss: number;
  /** Images seen. */
  images: number;
  /** The first images (one patch each, the centre one) with their top five predictions. */
  samples: SampleImage[];
}

function topK(probs: ArrayLike<number>, at: number, M: number, k: number): [number, number][] {
  const idx = Array.from({ length: M }, (_, m) => m);
  idx.sort((a, b) => (probs[at + b] - probs[at + a]) || a - b);
  return idx.slice(0, k).map((m) => [m, probs[at + m]]);
}

/**
 * Top-1, top-5 and mean loss of the model on every batch of epoch 0 of a source (or a
 * Fashion-MNIST loader), in evaluation mode without a graph. With several patches per image
 * the softmax is averaged over an image's patches.
 */
export async function evaluate(model: AlexNet, data: ImageSource | BatchLoader, device: string, opts: EvaluateOptions = {}): Promise<Evaluation> {
  const source = data instanceof BatchLoader ? new LoaderSource(data, FASHION_MNIST_CLASSES) : data;
  const wasTraining = model.training;
  model.eval();
  let seen = 0, right1 = 0, right5 = 0, lossSum = 0;
  const samples: SampleImage[] = [];
  try {
    for (let k = 0; k < source.batchesPerEpoch; k++) {
      const batch = await source.batchAt(0, k);
      const P = batch.patches;
      const { logits, loss } = noGrad(() =>
        scope(() => {
          const x = tensor(batch.x, batch.shape, { device });
          const z = model.forward(x);
          return { logits: z, loss: P === 1 ? softmaxCrossEntropy(z, batch.labels) : null };
        }),
      );
      const [z, l] = await Promise.all([logits.data(), loss?.data()]);
      logits.dispose();
      loss?.dispose();
      const B = batch.labels.length;
      const M = z.length / (B * P);
      const probs = P === 1 ? z : averagePatchSoftmax(z, B, P, M);
      const right = countCorrect(probs, batch.labels, M);
      right1 += right.top1;
      right5 += right.top5;
      if (l) {
        lossSum += l[0] * B;
      } else {
        for (let i = 0; i < B; i++) lossSum -= Math.log(Math.max(probs[i * M + batch.labels[i]], 1e-45));
      }
      if (opts.samples && samples.length < opts.samples) {
        const [C, H, W] = batch.shape.slice(1) as [number, number, number];
        const norm = P === 1 ? averagePatchSoftmax(z, B, 1, M) : probs;
        for (let i = 0; i < B && samples.length < opts.samples; i++) {
          // The centre patch: row 4 of an image's ten (corners first), its only row otherwise.
          const row = i * P + (P === 10 ? 4 : 0);
          samples.push({
            pixels: batch.x.slice(row * C * H * W, (row + 1) * C * H * W),
            shape: [C, H, W],
            label: source.classes[batch.labels[i]] ?? String(batch.labels[i]),
            top5: topK(norm, i * M, M, Math.min(5, M)).map(([m, p]) => [source.classes[m] ?? String(m), p]),
          });
        }
      }
      seen += B;
    }
  } finally {
    if (wasTraining) model.train();
  }
  return { top1: right1 / seen, top5: right5 / seen, loss: lossSum / seen, images: seen, samples };
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
  ['records', 'an array', Array.isArray],
  ['seconds', 'a number', (v) => typeof v === 'number'],
];

/** The config fields a checkpoint must hold, what each must be, and the test. */
const CONFIG_FIELDS: [keyof TrainConfig, string, (v: unknown) => boolean][] = [
  ['model', "'alexnet' or 'alexnet-mini'", (v) => v === 'alexnet' || v === 'alexnet-mini'],
  ['data', "'fashion-mnist', 'imagenet', 'imagefolder' or 'synthetic'", (v) => v === 'fashion-mnist' || v === 'imagenet' || v === 'imagefolder' || v === 'synthetic'],
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
  ['numClasses', 'a non-negative integer', isCount],
  ['evalPatches', '1 or 10', (v) => v === 1 || v === 10],
  ['traceSteps', 'a non-negative integer', isCount],
];

/** Config fields added after the first checkpoints were written, and the value those runs had. */
const LATER_FIELDS: Partial<TrainConfig> = { numClasses: 10, evalPatches: 1, traceSteps: 0 };

const NORMALIZATION_OK = (v: unknown) => isObject(v) && typeof v.mean === 'number' && Number.isFinite(v.mean) && positive(v.std);

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
  for (const [field, value] of Object.entries(LATER_FIELDS)) if (!(field in config)) config[field] = value;
  for (const [field, what, ok] of CONFIG_FIELDS) {
    if (!(field in config)) throw new FormatError(`${op}: ${file} has no 'config.${field}' in its training state`);
    if (!ok(config[field])) throw new FormatError(`${op}: ${file} has a 'config.${field}' that is not ${what} in its training state`);
  }
  if (config.data === 'fashion-mnist') {
    if (!('normalization' in state)) throw new FormatError(`${op}: ${file} has no 'normalization' section in its training state`);
    if (!NORMALIZATION_OK(state.normalization)) throw new FormatError(`${op}: ${file} has a 'normalization' section that is not an object { mean, std } of finite numbers with std > 0`);
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

/** The training and validation sources of a run. */
export interface RunData {
  /** Training batches (shuffled, augmented as the config says). */
  train: ImageSource;
  /** Validation batches: centre crops, or ten patches an image. */
  test: ImageSource;
  /** Fashion-MNIST's pixel statistics, computed on its training set (or the checkpoint's). */
  normalization?: Normalization;
}

/** The input [C, H, W] of a config's model. */
function modelInput(config: TrainConfig): [number, number, number] {
  return config.model === 'alexnet' ? [3, 224, 224] : [1, 28, 28];
}

/** Images per validation batch: Fashion-MNIST 500; otherwise the training batch, counting patches. */
function evalBatch(config: TrainConfig): number {
  return config.data === 'fashion-mnist' ? 500 : Math.max(1, Math.floor(config.batch / config.evalPatches));
}

/** Synthetic images when the config sets no limit: 10 batches to train on, 256 to validate. */
const SYNTHETIC_TRAIN = (batch: number) => 10 * batch;
const SYNTHETIC_TEST = 256;

/**
 * Opens the data a config names. `only: 'test'` opens the validation split alone (`train` is then
 * the same source). Fashion-MNIST is normalised with `normalization` when given (a resumed run's),
 * else with its training set's statistics.
 *
 * @throws ShapeError when the data's images do not fit the model, or there is not one batch of
 *   them; IOError / FormatError from the loaders
 */
export async function openData(config: TrainConfig, opts: { normalization?: Normalization; only?: 'test' } = {}): Promise<RunData> {
  const patches = config.evalPatches;
  let data: RunData;
  if (config.data === 'fashion-mnist') {
    const testSet = subset(await loadFashionMnist({ dataDir: config.dataDir, split: 'test' }), config.testLimit);
    if (patches !== 1) throw new ShapeError('train: Fashion-MNIST is evaluated on whole images: evalPatches must be 1, received 10');
    let normalization = opts.normalization;
    let train: ImageSource | undefined;
    if (opts.only !== 'test') {
      const trainData = subset(await loadFashionMnist({ dataDir: config.dataDir, split: 'train' }), config.trainLimit);
      const loader = new BatchLoader(trainData, {
        batchSize: config.batch, shuffle: true, seed: config.seed, flip: config.flip, crop: config.crop, dropLast: true, normalize: normalization,
      });
      normalization = loader.normalization;
      train = new LoaderSource(loader, FASHION_MNIST_CLASSES);
    }
    const test = new LoaderSource(new BatchLoader(testSet, { batchSize: evalBatch(config), shuffle: false, normalize: normalization }), FASHION_MNIST_CLASSES);
    data = { train: train ?? test, test, normalization };
  } else if (config.data === 'synthetic') {
    const common = { classes: config.numClasses || 10, imageShape: modelInput(config) };
    const test = new SyntheticSource({ ...common, size: config.testLimit || SYNTHETIC_TEST, batchSize: evalBatch(config), dataSeed: 1, patches });
    const train = opts.only === 'test' ? test : new SyntheticSource({
      ...common, size: config.trainLimit || SYNTHETIC_TRAIN(config.batch), batchSize: config.batch, dataSeed: 0, seed: config.seed,
      shuffle: true, crop: config.crop, flip: config.flip,
    });
    data = { train, test };
  } else {
    const dir = config.dataDir ?? '';
    const test = await openDataSplit(config.data, dir, 'val', { batchSize: evalBatch(config), seed: 0, shuffle: false, crop: false, flip: false, patches, limit: config.testLimit });
    const train = opts.only === 'test' ? test : await openDataSplit(config.data, dir, 'train', {
      batchSize: config.batch, seed: config.seed, shuffle: true, crop: config.crop, flip: config.flip, patches: 1, limit: config.trainLimit,
    });
    data = { train, test };
  }
  const want = modelInput(config);
  for (const [split, src] of [['training', data.train], ['validation', data.test]] as const) {
    if (src.imageShape.join(',') !== want.join(',')) {
      throw new ShapeError(`train: ${config.model} takes [${want.join(', ')}] images, but the ${split} images of ${config.data} are [${src.imageShape.join(', ')}]`);
    }
  }
  if (data.train.batchesPerEpoch === 0) {
    throw new ShapeError(`train: the training set (${data.train.size} images) is smaller than one batch (${config.batch})`);
  }
  if (data.test.batchesPerEpoch === 0) throw new ShapeError(`train: the validation set has no images`);
  return data;
}

/** The model's conv1 filters, one `[count, C, K, K]` array per tower, on the host. */
async function conv1Filters(model: AlexNet): Promise<{ tower: string; weights: Float32Array; shape: [number, number, number, number] }[]> {
  const named = new Map(model.namedParameters());
  const halves: [string, Tensor][] = model.towers === 2
    ? [['tower A', named.get('a.conv1.weight')!], ['tower B', named.get('b.conv1.weight')!]]
    : [['conv1', named.get('conv1.weight')!]];
  const out: { tower: string; weights: Float32Array; shape: [number, number, number, number] }[] = [];
  for (const [tower, w] of halves) {
    const [F, C, K] = w.shape;
    const data = await w.data() as Float32Array;
    if (model.towers === 2) {
      out.push({ tower: `${tower} (${model.devices[tower === 'tower A' ? 0 : 1]})`, weights: data, shape: [F, C, K, K] });
    } else {
      // The single-device form's first and second halves are the two towers' filters.
      const half = F / 2, size = C * K * K;
      out.push({ tower: 'first half (tower A)', weights: data.slice(0, half * size), shape: [half, C, K, K] });
      out.push({ tower: 'second half (tower B)', weights: data.slice(half * size), shape: [half, C, K, K] });
    }
  }
  return out;
}

/** Bytes as the messages show them: GiB with two decimals, and the exact count. */
export function showBytes(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB (${bytes} bytes)`;
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
 *
 * The peak bytes in use on each device are measured over the whole run (the allocator's peak is
 * reset at the start) and reported in the result, a 'memory' line of metrics.jsonl and the
 * report. A run that does not fit a device ends with an OutOfMemoryError that says how much it
 * had in use, what it asked for, and what was free.
 */
export async function train(configIn: TrainConfig, outDir: string, hooks: TrainHooks = {}, resume?: string | ResumeOptions): Promise<TrainResult> {
  const say = hooks.onMessage ?? (() => {});
  const ckpt = checkpointPath(outDir);
  const metricsFile = path.join(outDir, 'metrics.jsonl');
  const reportFile = path.join(outDir, 'report.html');

  let model: AlexNet | undefined;
  let opt: SGD | undefined;
  let config = configIn;
  let resumed: CheckpointState | null = null;
  let data: RunData | undefined;
  const resumeFile = typeof resume === 'string' ? resume : resume?.checkpoint;
  resetPeakMemory(config.devices);
  try {
    if (resume) {
      const r = typeof resume === 'string' ? { checkpoint: resume } : resume;
      const state = await readCheckpointState(r.checkpoint, 'resume');
      const { config: c, changes } = resumedConfig(state, r);
      resetPeakMemory(c.devices);
      const loaded = await loadCheckpoint(r.checkpoint, undefined, { state, config: c, onWarning: (m) => say(`warning: ${m}`) });
      model = loaded.model;
      opt = loaded.opt;
      resumed = loaded.state;
      config = c;
      say(`resumed from ${r.checkpoint}: epoch ${resumed.loader.epoch + 1}, batch ${resumed.loader.batch}, step ${resumed.steps}`);
      changes.forEach(say);
    }
    checkOutDir(outDir);
    data = await openData(config, { normalization: resumed?.normalization });
    const { train: trainSrc, test: testSrc } = data;
    const classes = config.data === 'synthetic' ? (config.numClasses || 10) : trainSrc.classes.length;
    if (resumed) {
      if (classes !== config.numClasses) {
        throw new FormatError(`resume: ${resumeFile} was trained on ${config.numClasses} classes, but the data has ${classes}`);
      }
    } else {
      if (config.numClasses && config.data !== 'synthetic' && config.numClasses !== classes) {
        throw new ShapeError(`train: numClasses is ${config.numClasses}, but the data has ${classes} classes`);
      }
      config = { ...config, numClasses: classes };
      model = buildModel(config);
      opt = new SGD(model, { lr: config.lr, momentum: config.momentum, weightDecay: config.weightDecay });
    }
    const net = model as AlexNet;
    const sgd = opt as SGD;
    const schedule = makeSchedule(config.schedule, sgd);
    if (resumed) {
      try {
        trainSrc.setState(resumed.loader);
      } catch (e) {
        if (!(e instanceof ShapeError)) throw e;
        throw new FormatError(`resume: ${resumeFile} has a 'loader' section that does not fit the data (${e.message})`);
      }
      if (schedule && resumed.schedule) schedule.setState(resumed.schedule as never);
      sgd.lr = resumed.lr;
    }
    // Only now, with the model, the data, the recipe and any resumed state known to be good, is anything created.
    makeOutDir(outDir);
    const records: MetricRecord[] = resumed ? [...resumed.records] : [];
    let steps = resumed?.steps ?? 0;
    const startSeconds = resumed?.seconds ?? 0;
    const t0 = performance.now();
    const elapsed = () => startSeconds + (performance.now() - t0) / 1000;
    const bpe = trainSrc.batchesPerEpoch;
    const settings: [string, string][] = [
      ['model', `${config.model}${config.model === 'alexnet-mini' ? `, width ${config.width}` : ''}, ${config.towers} tower${config.towers > 1 ? 's' : ''}, ${config.numClasses} classes, ${net.parameterCount()} parameters`],
      ['devices', config.devices.join(', ')],
      ['data', `${config.data}${config.dataDir ? ` (${config.dataDir})` : ''}: ${trainSrc.size} train / ${testSrc.size} validation images, ` +
        `validation on ${config.evalPatches === 10 ? '10 patches (softmax averaged)' : 'the centre crop'}`],
      ['recipe', `SGD lr ${config.lr}, momentum ${config.momentum}, weight decay ${config.weightDecay}, batch ${config.batch}, schedule ${config.schedule}, init ${config.init}`],
      ['augmentation', [config.flip ? 'random horizontal flips' : '', config.crop ? (config.data === 'fashion-mnist' ? 'random crops (pad 2)' : 'random crops') : ''].filter(Boolean).join(', ') || 'none'],
      ['build', `convnet-cuda ${buildSummary().version}, CUDA ${buildSummary().cuda ? 'on' : 'off'}`],
    ];
    const append = (line: object) => writing(metricsFile, () => appendFileSync(metricsFile, JSON.stringify(line) + '\n'));
    const record = (r: MetricRecord) => {
      records.push(r);
      append(r);
    };
    let extras: ReportExtras = {};
    const snapshot = (status: string) => writing(reportFile, () =>
      writeReport(reportFile, { title: `convnet train: ${config.model} on ${config.data}`, settings, records, status, ...extras }));
    const refreshExtras = async (samples: SampleImage[] | undefined) => {
      extras = {
        ...extras,
        filters: await conv1Filters(net),
        ...(samples && samples.length ? { samples } : {}),
        peakBytes: peakMemory(config.devices),
      };
    };
    // The position of the next batch, and the training loss of the epoch under way so far.
    let epoch = resumed ? resumed.loader.epoch : 0;
    let k = resumed ? resumed.loader.batch : 0;
    const dataSeed = trainSrc.state().seed;
    let epochLoss = resumed?.epochLoss?.sum ?? 0, epochSeen = resumed?.epochLoss?.seen ?? 0;
    /** The position to save: `batch` equal to the batches per epoch means all done and not yet evaluated. */
    const loaderState = (): LoaderState => ({ seed: dataSeed, epoch, batch: k });
    const checkpointState = (): CheckpointState => ({
      format: 1,
      config,
      loader: loaderState(),
      epochLoss: { sum: epochLoss, seen: epochSeen },
      steps,
      lr: sgd.lr,
      schedule: schedule?.getState() ?? null,
      module: net.getState(),
      ...(data?.normalization ? { normalization: data.normalization } : {}),
      records,
      seconds: elapsed(),
    });

    const device = outputDevice(config);
    const syncAll = () => Promise.all(config.devices.map((d) => synchronize(d)));
    net.train();
    let stopped = false;
    let diverged: TrainResult['diverged'];
    let final: TrainResult['final'];
    let trace: TraceSample | undefined;
    let tracing: number | null = null;
    // Two warm-up steps before the traced ones, fewer in a run too short for them.
    const traceFrom = Math.max(0, Math.min(2, (config.epochs - epoch) * bpe - k - config.traceSteps));
    let localSteps = 0;
    const endTrace = async () => {
      if (tracing === null) return;
      await syncAll();
      trace = { steps: [tracing, steps], events: traceStop() };
      extras = { ...extras, trace };
      tracing = null;
    };
    try {
      while (epoch < config.epochs && !stopped && !diverged) {
        let windowImages = 0, windowStart = performance.now();
        let ips = 0;
        // One batch decoded ahead while the current step runs.
        let next: Promise<ImageBatch> | null = k < bpe ? trainSrc.batchAt(epoch, k) : null;
        try {
          while (k < bpe) {
            const batch = await (next as Promise<ImageBatch>);
            next = k + 1 < bpe ? trainSrc.batchAt(epoch, k + 1) : null;
            if (config.traceSteps > 0 && trace === undefined && tracing === null && localSteps === traceFrom) {
              await syncAll();
              traceStart();
              tracing = steps + 1;
            }
            const loss = step(net, sgd, batch, device);
            const [l] = await loss.data();
            loss.dispose();
            steps++;
            localSteps++;
            k++;
            if (tracing !== null && steps - tracing + 1 >= config.traceSteps) await endTrace();
            if (!Number.isFinite(l)) {
              diverged = { step: steps, epoch: epoch + 1, loss: l, lr: sgd.lr, phase: 'train' };
              append({ kind: 'diverged', epoch: epoch + k / bpe, step: steps, time: elapsed(), loss: String(l), lr: sgd.lr });
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
            hooks.onStep?.({ epoch, epochs: config.epochs, batch: k, batches: bpe, loss: l, imagesPerSecond: ips, lr: sgd.lr });
            if (steps % config.logEvery === 0) {
              record({ kind: 'step', epoch: epoch + k / bpe, step: steps, time: elapsed(), loss: l, lr: sgd.lr, imagesPerSecond: ips || undefined });
            }
            if (hooks.shouldStop?.()) {
              stopped = true;
              break;
            }
          }
        } finally {
          // A batch read ahead and never used: its failure, if any, is nobody's business.
          next?.catch(() => {});
        }
        await endTrace();
        if (stopped || diverged) break;
        const test = await evaluate(net, testSrc, device, { samples: 6 });
        if (!Number.isFinite(test.loss)) {
          // The last update of the epoch left weights that are not finite: no checkpoint of them.
          diverged = { step: steps, epoch: epoch + 1, loss: test.loss, lr: sgd.lr, phase: 'test' };
          append({ kind: 'diverged', epoch: epoch + 1, step: steps, time: elapsed(), testLoss: String(test.loss), lr: sgd.lr });
          break;
        }
        const lrUsed = sgd.lr;
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
        epoch++;
        k = 0;
        epochLoss = 0;
        epochSeen = 0;
        await saveCheckpoint(ckpt, net, sgd, checkpointState());
        await refreshExtras(test.samples);
        snapshot(`epoch ${doneEpoch + 1} of ${config.epochs} done`);
      }
    } catch (e) {
      if (tracing !== null) traceStop();
      if (e instanceof OutOfMemoryError) {
        const peak = peakMemory(config.devices);
        // What the device had in use when it said no (the allocator records it under its lock).
        const inUse = e.device && config.devices.includes(e.device) ? allocatorStats(e.device).inUseAtFailure : 0;
        const msg = `train: ${config.model} with batch ${config.batch} does not fit ${e.device || 'a device'}: it had ${showBytes(inUse)} in use and asked for ` +
          `${showBytes(e.bytesAsked)} more with ${showBytes(e.bytesFree)} free, so it needs at least ${showBytes(inUse + e.bytesAsked)} there ` +
          `(peak so far: ${Object.entries(peak).map(([d, b]) => `${d} ${showBytes(b)}`).join(', ')}); try a smaller --batch`;
        append({ kind: 'out-of-memory', step: steps, time: elapsed(), device: e.device, bytesAsked: e.bytesAsked, bytesFree: e.bytesFree, bytesInUse: inUse, peakBytes: peak });
        throw new OutOfMemoryError(msg, e.device, e.bytesAsked, e.bytesFree);
      }
      throw e;
    }
    const peakBytes = peakMemory(config.devices);
    // A diverged run's last line stays the 'diverged' one.
    if (!diverged) append({ kind: 'memory', step: steps, time: elapsed(), peakBytes });
    say(`peak memory: ${Object.entries(peakBytes).map(([d, b]) => `${d} ${showBytes(b)}`).join(', ')}`);
    extras = { ...extras, peakBytes };
    if (!extras.filters) await refreshExtras(undefined);
    if (diverged) {
      snapshot(`diverged: the ${diverged.phase === 'test' ? 'test ' : ''}loss became ${diverged.loss} at step ${diverged.step} (epoch ${diverged.epoch}); nothing saved`);
    } else if (stopped) {
      await saveCheckpoint(ckpt, net, sgd, checkpointState());
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
      peakBytes,
      trace,
    };
  } finally {
    await data?.train.close().catch(() => {});
    if (data && data.test !== data.train) await data.test.close().catch(() => {});
    if (opt) {
      opt.zeroGrad();
      for (const buf of Object.values(opt.getState().buffers)) buf.dispose();
    }
    model?.dispose();
  }
}

/** One training step: queues forward, loss, backward and the update; returns the loss. */
function step(model: AlexNet, opt: SGD, batch: ImageBatch, device: string): Tensor {
  const loss = scope(() => {
    const { x, labels } = batchToTensors(batch, device);
    return softmaxCrossEntropy(model.forward(x), labels);
  });
  try {
    loss.backward();
    opt.step();
  } catch (e) {
    // Out of memory half way, say: the loss (and the graph behind it) goes now.
    loss.dispose();
    throw e;
  } finally {
    opt.zeroGrad();
  }
  return loss;
}
