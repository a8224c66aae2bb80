/**
 * Training AlexNet-mini on Fashion-MNIST: the loop behind `convnet train`, usable from code.
 *
 * Each step queues the forward pass, the loss, backward and the SGD update, then reads the loss
 * back; while it waits, the loader prepares the next batch. After each epoch it evaluates on the
 * test split (top-1, top-5, loss), steps the learning-rate schedule, appends to metrics.jsonl,
 * rewrites report.html and saves checkpoint.safetensors atomically. A stop request (Ctrl-C) ends
 * the current step, saves a checkpoint and returns; resuming from it continues at the next
 * batch with the same weights, momentum, schedule, dropout counters and data order.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';

import { noGrad } from '../autograd.js';
import { buildInfo } from '../device.js';
import { FormatError, ShapeError } from '../errors.js';
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
  /** 'done' after the last epoch, 'stopped' when shouldStop ended it early. */
  status: 'done' | 'stopped';
  epochsDone: number;
  steps: number;
  records: MetricRecord[];
  checkpoint: string;
  final?: { testTop1: number; testTop5: number; testLoss: number };
  seconds: number;
}

/** What a checkpoint's `convnet` metadata entry holds. */
interface CheckpointState {
  format: 1;
  config: TrainConfig;
  /** The loader position of the next batch to train on. */
  loader: LoaderState;
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
      const B = batch.labels.length, M = z.length / B;
      for (let i = 0; i < B; i++) {
        const label = batch.labels[i];
        const mine = z[i * M + label];
        let above = 0;
        for (let m = 0; m < M; m++) if (z[i * M + m] > mine) above++;
        if (above === 0) right1++;
        if (above < 5) right5++;
      }
      lossSum += l[0] * B;
      seen += B;
    }
  } finally {
    if (wasTraining) model.train();
  }
  return { top1: right1 / seen, top5: right5 / seen, loss: lossSum / seen };
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

/** Reads a checkpoint's run state (and nothing else) without a model. */
export async function readCheckpointState(file: string): Promise<CheckpointState> {
  const { loadTensors } = await import('../io/safetensors.js');
  const { metadata } = await loadTensors(file);
  return parseState(file, metadata);
}

function parseState(file: string, metadata: Record<string, string>): CheckpointState {
  const raw = metadata.convnet;
  if (!raw) throw new FormatError(`checkpoint: ${file} has no 'convnet' metadata: it was not written by convnet train`);
  let state: CheckpointState;
  try {
    state = JSON.parse(raw) as CheckpointState;
  } catch (e) {
    throw new FormatError(`checkpoint: ${file} has 'convnet' metadata that is not valid JSON (${(e as Error).message})`);
  }
  if (state?.format !== 1 || typeof state.config !== 'object') {
    throw new FormatError(`checkpoint: ${file} has 'convnet' metadata of an unknown format`);
  }
  return state;
}

/** Loads a checkpoint's weights into a model built from its own config; returns both. */
export async function loadCheckpoint(file: string, devices?: string[]): Promise<{ model: AlexNet; state: CheckpointState; opt: SGD }> {
  const state = await readCheckpointState(file);
  const config = devices ? { ...state.config, devices } : state.config;
  const model = buildModel(config);
  try {
    const { rest } = await load(file, model, { unexpected: 'return' });
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
 * outDir. With `resume`, continues the run saved in that checkpoint (its config wins, except
 * `epochs`, which may be raised).
 */
export async function train(configIn: TrainConfig, outDir: string, hooks: TrainHooks = {}, resume?: string): Promise<TrainResult> {
  const say = hooks.onMessage ?? (() => {});
  mkdirSync(outDir, { recursive: true });
  const ckpt = checkpointPath(outDir);
  const metricsFile = path.join(outDir, 'metrics.jsonl');
  const reportFile = path.join(outDir, 'report.html');

  let model: AlexNet;
  let opt: SGD;
  let config = configIn;
  let resumed: CheckpointState | null = null;
  if (resume) {
    const r = await loadCheckpoint(resume, configIn.devices);
    model = r.model;
    opt = r.opt;
    resumed = r.state;
    config = { ...r.state.config, epochs: Math.max(configIn.epochs, r.state.config.epochs) };
    say(`resumed from ${resume}: epoch ${resumed.loader.epoch + 1}, batch ${resumed.loader.batch}, step ${resumed.steps}`);
  } else {
    model = buildModel(config);
    opt = new SGD(model, { lr: config.lr, momentum: config.momentum, weightDecay: config.weightDecay });
  }
  try {
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
      trainLoader.setState(resumed.loader);
      if (schedule && resumed.schedule) schedule.setState(resumed.schedule as never);
      opt.lr = resumed.lr;
    }
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
    const record = (r: MetricRecord) => {
      records.push(r);
      appendFileSync(metricsFile, JSON.stringify(r) + '\n');
    };
    const snapshot = (status: string) => writeReport(reportFile, { title: `convnet train: ${config.model} on ${config.data}`, settings, records, status });
    const checkpointState = (): CheckpointState => ({
      format: 1,
      config,
      loader: trainLoader.state(),
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
    let final: TrainResult['final'];
    while (trainLoader.state().epoch < config.epochs && !stopped) {
      const epoch = trainLoader.state().epoch;
      let epochLoss = 0, epochSeen = 0;
      let windowImages = 0, windowStart = performance.now();
      let ips = 0;
      for await (const batch of trainLoader) {
        const loss = step(model, opt, batch, device);
        const [l] = await loss.data();
        loss.dispose();
        steps++;
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
      if (stopped) break;
      const test = await evaluate(model, testLoader, device);
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
      await saveCheckpoint(ckpt, model, opt, checkpointState());
      snapshot(`epoch ${epoch + 1} of ${config.epochs} done`);
    }
    if (stopped) {
      await saveCheckpoint(ckpt, model, opt, checkpointState());
      snapshot(`stopped at epoch ${trainLoader.state().epoch + 1}, batch ${trainLoader.state().batch}; resume with --resume ${ckpt}`);
      say(`stopped; checkpoint saved to ${ckpt}`);
    } else {
      snapshot(`done: ${config.epochs} epochs`);
    }
    return {
      status: stopped ? 'stopped' : 'done',
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
