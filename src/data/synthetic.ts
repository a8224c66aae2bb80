/**
 * A synthetic {@link ImageSource}: random pixels with a signal that depends on the class, so a
 * network can learn it and its loss falls, without any files. `convnet train --data synthetic`
 * and `convnet bench alexnet` use it.
 *
 * Every image is a pure function of (the split's seed, its index): its label is a hash of the
 * index, its pixels hash noise plus the class's colour and stripes, drawn on a canvas an eighth
 * larger than the patch (256 for 224, 32 for 28). Training batches are random patches of the
 * canvas, mirrored at random, in an order shuffled per epoch; evaluation batches are the centre
 * patch, or the paper's 10 patches (rows i*10 .. i*10+9 of image i: the top-left, top-right,
 * bottom-left and bottom-right corners and the centre, then the same five mirrored). The order,
 * crops and flips are pure functions of (seed, epoch, position), so `batchAt` is pure and a
 * resumed run sees the same batches.
 */
import { ShapeError } from '../errors.js';
import { describe } from '../ops/validate.js';
import type { LoaderState } from './loader.js';
import type { ImageBatch, ImageSource } from './source.js';

/** Options of {@link SyntheticSource}. */
export interface SyntheticOptions {
  /** Images in the split. */
  size: number;
  /** Images per batch. */
  batchSize: number;
  /** Number of classes (default 10); the class names are `class-0`, `class-1`, ... */
  classes?: number;
  /** `[C, H, W]` of a patch (default `[3, 224, 224]`). */
  imageShape?: readonly [number, number, number];
  /** Which images: the split's own seed, so train and validation images differ (default 0). */
  dataSeed?: number;
  /** Seed of the order, crops and flips (default 0). */
  seed?: number;
  /** A new order every epoch (default false: index order). */
  shuffle?: boolean;
  /** Random patches of the canvas (default false: the centre patch). */
  crop?: boolean;
  /** Mirror images left-right with probability 0.5 (default false). */
  flip?: boolean;
  /** Leave out a last batch smaller than batchSize (default: when shuffling). */
  dropLast?: boolean;
  /** 1 (default) or 10: the paper's ten patches per image for evaluation. */
  patches?: 1 | 10;
  /** Standard deviation of the noise, against a class signal of about 1 (default 1). */
  noise?: number;
}

/** murmur3's 32-bit finaliser. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 32-bit hash of (a, b, c): the source's only randomness. */
function hash3(a: number, b: number, c: number): number {
  return fmix32((fmix32((fmix32(a ^ 0x9e3779b9) + b) >>> 0) ^ Math.imul(c + 1, 0x27d4eb2f)) >>> 0);
}

const U32 = 4294967296;

/**
 * Noise is read from a bank of uniform values (one per data seed, made once) at an offset per
 * image, instead of hashing every pixel: a batch of 128 AlexNet images is 19 million values.
 */
const BANK_SIZE = 1_048_573; // prime, so offsets and canvas strides do not line up
const banks = new Map<number, Float32Array>();
function noiseBank(dataSeed: number): Float32Array {
  let bank = banks.get(dataSeed);
  if (!bank) {
    bank = new Float32Array(BANK_SIZE);
    // Uniform with standard deviation 1: (u - 0.5) * sqrt(12).
    for (let i = 0; i < BANK_SIZE; i++) bank[i] = (hash3(dataSeed, i, 0x401e) / U32 - 0.5) * 3.4641016;
    if (banks.size > 4) banks.clear();
    banks.set(dataSeed, bank);
  }
  return bank;
}

/** Lets other work on the event loop run between images. */
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
const STREAM_LABEL = 1, STREAM_ORDER = 2, STREAM_CROP = 3, STREAM_FLIP = 4, STREAM_CLASS = 5;

function checkInt(arg: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new ShapeError(`SyntheticSource: ${arg} must be an integer >= ${min}, received ${describe(v)}`);
  }
  return v;
}

/**
 * Synthetic images of `classes` classes, served in batches like the ImageNet loader's.
 *
 * @throws ShapeError from the constructor for a size, batch size, class count, shape or patch
 *   count out of range
 *
 * @example
 * ```ts
 * const train = new cn.SyntheticSource({ size: 1280, batchSize: 128, classes: 10, shuffle: true, crop: true, flip: true, seed: 1 });
 * const b = await train.batchAt(0, 0); // b.shape [128, 3, 224, 224], b.labels: 128 class indices
 * const val = new cn.SyntheticSource({ size: 100, batchSize: 10, dataSeed: 1, patches: 10 });
 * (await val.batchAt(0, 0)).shape; // [100, 3, 224, 224]: ten patches of each of 10 images
 * ```
 */
export class SyntheticSource implements ImageSource {
  /** `class-0` ... */
  readonly classes: readonly string[];
  /** Images in the split. */
  readonly size: number;
  /** Images per batch. */
  readonly batchSize: number;
  /** Batches in an epoch (a last partial batch counts unless dropLast). */
  readonly batchesPerEpoch: number;
  /** `[C, H, W]` of a patch. */
  readonly imageShape: readonly [number, number, number];
  /** Patches per image in a batch. */
  readonly patches: 1 | 10;
  /** Never anything: no files. */
  readonly skipped: ImageSource['skipped'] = [];

  private readonly dataSeed: number;
  private seed: number;
  private readonly shuffle: boolean;
  private readonly crop: boolean;
  private readonly flip: boolean;
  private readonly noise: number;
  private readonly canvas: [number, number];
  /** Per class and channel: the colour, the stripes' amplitude and frequency. */
  private readonly signal: Float32Array;
  private epoch = 0;
  private batch = 0;
  private order: { epoch: number; perm: Int32Array } | null = null;

  constructor(opts: SyntheticOptions) {
    this.size = checkInt('size', opts.size, 1);
    this.batchSize = checkInt('batchSize', opts.batchSize, 1);
    const classes = checkInt('classes', opts.classes ?? 10, 1);
    const shape = opts.imageShape ?? [3, 224, 224];
    if (!Array.isArray(shape) || shape.length !== 3 || shape.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new ShapeError(`SyntheticSource: imageShape must be [C, H, W] of positive integers, received ${describe(shape)}`);
    }
    const patches = opts.patches ?? 1;
    if (patches !== 1 && patches !== 10) throw new ShapeError(`SyntheticSource: patches must be 1 or 10, received ${describe(patches)}`);
    this.imageShape = [shape[0], shape[1], shape[2]];
    this.patches = patches;
    this.dataSeed = checkInt('dataSeed', opts.dataSeed ?? 0, 0);
    this.seed = checkInt('seed', opts.seed ?? 0, 0);
    this.shuffle = opts.shuffle ?? false;
    this.crop = opts.crop ?? false;
    this.flip = opts.flip ?? false;
    this.noise = opts.noise ?? 1;
    this.classes = Array.from({ length: classes }, (_, c) => `class-${c}`);
    const dropLast = opts.dropLast ?? this.shuffle;
    this.batchesPerEpoch = dropLast ? Math.floor(this.size / this.batchSize) : Math.ceil(this.size / this.batchSize);
    this.canvas = [shape[1] + Math.ceil(shape[1] / 7), shape[2] + Math.ceil(shape[2] / 7)];
    // The class signal does not depend on the split: train and validation share their classes.
    const C = shape[0];
    this.signal = new Float32Array(classes * C * 3);
    for (let c = 0; c < classes; c++) {
      for (let ch = 0; ch < C; ch++) {
        const r = (k: number) => hash3(0x5eed, c * C + ch, STREAM_CLASS + k) / U32;
        const o = (c * C + ch) * 3;
        this.signal[o] = 2 * r(0) - 1; // colour
        this.signal[o + 1] = r(1); // stripe amplitude
        this.signal[o + 2] = 1 + Math.floor(r(2) * 4); // stripes across the canvas
      }
    }
  }

  /** The class of image `index`. */
  label(index: number): number {
    return hash3(this.dataSeed, index, STREAM_LABEL) % this.classes.length;
  }

  /** The next batch {@link prefetch} yields. */
  state(): LoaderState {
    return { seed: this.seed, epoch: this.epoch, batch: this.batch };
  }

  /** Moves to a saved position. @throws ShapeError for a position outside the epoch */
  setState(s: LoaderState): void {
    checkInt('state.seed', s.seed, 0);
    checkInt('state.epoch', s.epoch, 0);
    if (checkInt('state.batch', s.batch, 0) > this.batchesPerEpoch) {
      throw new ShapeError(`SyntheticSource: state.batch must be at most ${this.batchesPerEpoch}, received ${s.batch}`);
    }
    this.seed = s.seed;
    this.epoch = s.epoch;
    this.batch = s.batch;
  }

  private perm(epoch: number): Int32Array {
    if (this.order?.epoch === epoch) return this.order.perm;
    const perm = Int32Array.from({ length: this.size }, (_, i) => i);
    if (this.shuffle) {
      for (let i = this.size - 1; i > 0; i--) {
        const j = Math.floor((hash3(fmix32(this.seed + STREAM_ORDER), epoch, i) / U32) * (i + 1));
        [perm[i], perm[j]] = [perm[j], perm[i]];
      }
    }
    this.order = { epoch, perm };
    return perm;
  }

  /** Draws one patch of image `index` with its top-left corner at (y0, x0) of the canvas into out. */
  private draw(out: Float32Array, at: number, index: number, y0: number, x0: number, mirror: boolean): void {
    const [C, H, W] = this.imageShape;
    const [CH, CW] = this.canvas;
    const cls = this.label(index);
    const bank = noiseBank(this.dataSeed);
    const offset = hash3(this.dataSeed, index, 0x0ff5e7) % BANK_SIZE;
    for (let ch = 0; ch < C; ch++) {
      const o = (cls * C + ch) * 3;
      const colour = this.signal[o], amp = this.signal[o + 1], freq = (2 * Math.PI * this.signal[o + 2]) / CH;
      for (let y = 0; y < H; y++) {
        const cy = y0 + y;
        const base = colour + amp * Math.sin(freq * cy);
        const row = at + (ch * H + y) * W;
        const at0 = offset + (ch * CH + cy) * CW + x0;
        for (let x = 0; x < W; x++) {
          const cx = mirror ? W - 1 - x : x;
          out[row + x] = base + this.noise * bank[(at0 + cx) % BANK_SIZE];
        }
      }
    }
  }

  /** The k-th batch of epoch e (a pure function of seed, e, k). @throws ShapeError for k outside the epoch */
  async batchAt(epoch: number, k: number): Promise<ImageBatch> {
    checkInt('epoch', epoch, 0);
    if (checkInt('batch', k, 0) >= this.batchesPerEpoch) {
      throw new ShapeError(`SyntheticSource: batch must be below ${this.batchesPerEpoch}, received ${k}`);
    }
    const [C, H, W] = this.imageShape;
    const [CH, CW] = this.canvas;
    const B = Math.min(this.batchSize, this.size - k * this.batchSize), P = this.patches;
    const x = new Float32Array(B * P * C * H * W);
    const labels = new Int32Array(B);
    const indices = new Int32Array(B);
    const perm = this.perm(epoch);
    const patch = C * H * W;
    for (let i = 0; i < B; i++) {
      if (i > 0 && i % 8 === 0) await yieldToLoop();
      const pos = k * this.batchSize + i;
      const index = perm[pos];
      indices[i] = index;
      labels[i] = this.label(index);
      if (P === 10) {
        const corners: [number, number][] = [[0, 0], [0, CW - W], [CH - H, 0], [CH - H, CW - W], [(CH - H) >> 1, (CW - W) >> 1]];
        corners.forEach(([y0, x0], j) => {
          this.draw(x, (i * 10 + j) * patch, index, y0, x0, false);
          this.draw(x, (i * 10 + 5 + j) * patch, index, y0, x0, true);
        });
      } else {
        const h = hash3(fmix32(this.seed + STREAM_CROP), epoch, pos);
        const y0 = this.crop ? (h & 0xffff) % (CH - H + 1) : (CH - H) >> 1;
        const x0 = this.crop ? (h >>> 16) % (CW - W + 1) : (CW - W) >> 1;
        const mirror = this.flip && (hash3(fmix32(this.seed + STREAM_FLIP), epoch, pos) & 1) === 1;
        this.draw(x, i * patch, index, y0, x0, mirror);
      }
    }
    return { x, shape: [B * P, C, H, W], patches: P, labels, indices, epoch, batch: k };
  }

  /** Batches from the current state on: forever when shuffling (training), else to the epoch's end. */
  async *prefetch(): AsyncGenerator<ImageBatch, void, undefined> {
    for (;;) {
      if (this.batch >= this.batchesPerEpoch) {
        if (!this.shuffle) return;
        this.epoch++;
        this.batch = 0;
      }
      const b = await this.batchAt(this.epoch, this.batch);
      this.batch++;
      yield b;
    }
  }

  /** Nothing to release. */
  async close(): Promise<void> {}
}
