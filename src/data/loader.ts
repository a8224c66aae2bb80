/**
 * Batches from an in-memory image data set, on the host: shuffling, normalisation, random
 * horizontal flips and random crops, with prefetching.
 *
 * Randomness is counter-based (the project's habit for dropout and initialisation): the
 * order of epoch e is a pure function of (seed, e), and the flip and crop of the image at
 * position p of epoch e a pure function of (seed, e, p). So `batchAt(e, k)` is pure, the
 * whole generator state is `{ seed, epoch, batch }` (three integers that fit in a checkpoint's
 * metadata), and a run resumed from a saved state sees exactly the batches it would have seen.
 *
 * ```ts
 * const train = await loadFashionMnist({ split: 'train' });
 * const loader = new BatchLoader(train, { batchSize: 128, seed: 1, flip: true });
 * const test = new BatchLoader(testSet, { batchSize: 1000, shuffle: false, normalize: loader.normalization });
 * for await (const b of loader) { const { x, labels } = batchToTensors(b, 'cuda:0'); ... }
 * ```
 */
import { ShapeError } from '../errors.js';
import { tensor } from '../ops/create.js';
import type { Tensor } from '../tensor.js';
import type { ImageDataset } from './fashion-mnist.js';

/** Mean and standard deviation of the pixels, on the [0, 1] scale (pixel / 255). */
export interface Normalization {
  /** The mean pixel value. */
  mean: number;
  /** The standard deviation of the pixel values (positive). */
  std: number;
}

/** Random crops as in the AlexNet paper: pad the image, then cut a window at a random place. */
export interface CropOptions {
  /** Zero pixels added on each side before cropping; default 2. */
  padding?: number;
  /** [height, width] of the crop; default the image's own size. */
  size?: readonly [number, number];
  /** Take the centre window instead of a random one (for evaluation); default false. */
  center?: boolean;
}

/** Options of {@link BatchLoader}. */
export interface BatchLoaderOptions {
  /** Images per batch. */
  batchSize: number;
  /** Shuffle the order every epoch; default true. */
  shuffle?: boolean;
  /** Seed of the order, flips and crops; default 0. */
  seed?: number;
  /**
   * Pixel statistics to normalise with, `(pixel / 255 - mean) / std`. Default: computed from
   * this data set. Pass the training loader's `normalization` to a test loader.
   */
  normalize?: Normalization;
  /** Mirror images left-right: `true` with probability 0.5, or a probability; default false. */
  flip?: boolean | number;
  /** Random crops: `true` for padding 2 and the image's size, or the options; default none. */
  crop?: boolean | CropOptions;
  /** Leave out the last batch when it would be smaller than batchSize; default false. */
  dropLast?: boolean;
}

/** One batch on the host. */
export interface Batch {
  /** Normalised pixels, [B, 1, H, W] row-major. */
  x: Float32Array;
  /** [B, 1, H, W]. */
  shape: [number, number, number, number];
  /** B labels. */
  labels: Int32Array;
  /** The data set index of each image. */
  indices: Int32Array;
  /** Which epoch and which batch of it. */
  epoch: number;
  /** The batch's index within its epoch, from 0. */
  batch: number;
}

/** Where a loader stands: the next batch `iterate()` yields is `batchAt(epoch, batch)`. */
export interface LoaderState {
  /** The seed of the order, flips and crops. */
  seed: number;
  /** The epoch of the next batch, from 0. */
  epoch: number;
  /** The index of the next batch within that epoch. */
  batch: number;
}

/**
 * Mean and standard deviation of all pixels of a data set, on the [0, 1] scale. Compute them
 * on the training set and use them for every split.
 *
 * @example
 * ```ts
 * const train = await cn.loadFashionMnist({ split: 'train' });
 * const { mean, std } = cn.normalizationStats(train); // about 0.286 and 0.353
 * ```
 */
export function normalizationStats(ds: ImageDataset): Normalization {
  const hist = new Float64Array(256);
  const px = ds.images;
  for (let i = 0; i < px.length; i++) hist[px[i]]++;
  let n = 0;
  let sum = 0;
  for (let v = 0; v < 256; v++) {
    n += hist[v];
    sum += hist[v] * (v / 255);
  }
  const mean = n > 0 ? sum / n : 0;
  let sq = 0;
  for (let v = 0; v < 256; v++) sq += hist[v] * (v / 255 - mean) ** 2;
  return { mean, std: n > 0 ? Math.sqrt(sq / n) : 0 };
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

/**
 * A 32-bit hash of (seed, epoch, stream, counter): the loaders' only source of randomness
 * (this loader's and the colour-image sources').
 */
export function hash4(seed: number, epoch: number, stream: number, counter: number): number {
  let h = fmix32(seed ^ 0x9e3779b9);
  h = fmix32((h + epoch) >>> 0);
  h = fmix32((h ^ Math.imul(stream + 1, 0x27d4eb2f)) >>> 0);
  return fmix32((h + counter) >>> 0);
}

const STREAM_ORDER = 0;
const STREAM_FLIP = 1;
const STREAM_CROP_Y = 2;
const STREAM_CROP_X = 3;
/** 2^32: `hash4(...) / TWO_32` is uniform in [0, 1). */
export const TWO_32 = 4294967296;

/**
 * The order of epoch `epoch` over n items: a Fisher-Yates permutation whose draws come from the
 * counter-based hash (a pure function of seed and epoch), or 0..n-1 without shuffling. Shared by
 * this loader and the colour-image sources.
 */
export function epochOrder(seed: number, epoch: number, n: number, shuffle: boolean): Int32Array {
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  if (shuffle) {
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor((hash4(seed, epoch, STREAM_ORDER, i) / TWO_32) * (i + 1));
      const t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
  }
  return perm;
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const show = (v: unknown) => (typeof v === 'string' ? `'${v}'` : Array.isArray(v) ? `[${v.join(', ')}]` : String(v));

function checkInt(arg: string, v: unknown, min: number): number {
  if (!isInt(v) || v < min) {
    throw new ShapeError(`BatchLoader: ${arg} must be an integer >= ${min}, received ${show(v)}`);
  }
  return v;
}

/**
 * Batches over an in-memory data set. Iterating (`for (const b of loader)`, or
 * `for await (const b of loader)` with prefetching) yields the rest of the current epoch and
 * moves the state on one batch per batch yielded; the next loop yields the next epoch.
 * Everything is a pure function of the seed, the options and `(epoch, batch)`, so a saved
 * {@link BatchLoader.state | state} resumes exactly.
 *
 * @throws ShapeError from the constructor for a malformed data set or bad options
 *
 * @example
 * ```ts
 * const train = await cn.loadFashionMnist({ split: 'train' });
 * const test = await cn.loadFashionMnist({ split: 'test' });
 * const loader = new cn.BatchLoader(train, { batchSize: 128, seed: 1, flip: true, crop: true });
 * const testLoader = new cn.BatchLoader(test, { batchSize: 1000, shuffle: false, normalize: loader.normalization });
 * for await (const b of loader) {
 *   const { x, labels } = cn.batchToTensors(b, 'cpu:0');
 *   // ... train on x, labels, then dispose them
 * }
 * ```
 */
export class BatchLoader {
  /** The data set the batches are cut from. */
  readonly dataset: ImageDataset;
  /** Images per batch (the last batch may be smaller unless `dropLast`). */
  readonly batchSize: number;
  /** Whether each epoch has its own order. */
  readonly shuffle: boolean;
  /** Probability of mirroring an image left-right, in [0, 1]. */
  readonly flipProbability: number;
  /** Whether a last batch smaller than batchSize is left out. */
  readonly dropLast: boolean;
  /** The statistics this loader normalises with; pass them to the test split's loader. */
  readonly normalization: Normalization;
  /** The padding and crop window, or null without cropping. */
  readonly crop: {
    /** Zero pixels added on each side before cropping. */
    padding: number;
    /** The crop's height in pixels. */
    height: number;
    /** The crop's width in pixels. */
    width: number;
    /** Whether the centre window is taken instead of a random one. */
    center: boolean;
  } | null;
  /** Batches in one epoch. */
  readonly batchesPerEpoch: number;

  private seed: number;
  private epochNow = 0;
  private batchNow = 0;
  private readonly lut: Float32Array;
  private order: { seed: number; epoch: number; perm: Int32Array } | null = null;

  constructor(dataset: ImageDataset, opts: BatchLoaderOptions) {
    if (!dataset || !(dataset.images instanceof Uint8Array) || !(dataset.labels instanceof Uint8Array)) {
      throw new ShapeError('BatchLoader: dataset must have images and labels as Uint8Arrays');
    }
    const { count, rows, cols } = dataset;
    checkInt('dataset.count', count, 0);
    checkInt('dataset.rows', rows, 1);
    checkInt('dataset.cols', cols, 1);
    if (dataset.images.length !== count * rows * cols || dataset.labels.length !== count) {
      throw new ShapeError(
        `BatchLoader: dataset must hold ${count} images of ${rows}x${cols} (${count * rows * cols} bytes) and ${count} labels, ` +
          `received ${dataset.images.length} image bytes and ${dataset.labels.length} labels`,
      );
    }
    this.dataset = dataset;
    this.batchSize = checkInt('batchSize', opts?.batchSize, 1);
    this.shuffle = opts.shuffle ?? true;
    this.seed = checkInt('seed', opts.seed ?? 0, 0) >>> 0;
    this.dropLast = opts.dropLast ?? false;

    const flip = opts.flip ?? false;
    this.flipProbability = flip === true ? 0.5 : flip === false ? 0 : flip;
    if (typeof this.flipProbability !== 'number' || !(this.flipProbability >= 0 && this.flipProbability <= 1)) {
      throw new ShapeError(`BatchLoader: flip must be a boolean or a probability in [0, 1], received ${show(flip)}`);
    }

    const crop = opts.crop ?? false;
    if (crop === false) {
      this.crop = null;
    } else {
      const c: CropOptions = crop === true ? {} : crop;
      const padding = checkInt('crop.padding', c.padding ?? 2, 0);
      const size = c.size ?? [rows, cols];
      if (!Array.isArray(size) || size.length !== 2 || !size.every((d) => isInt(d) && d >= 1)
          || size[0] > rows + 2 * padding || size[1] > cols + 2 * padding) {
        throw new ShapeError(
          `BatchLoader: crop.size must be [height, width] of positive integers at most the padded image ` +
            `${rows + 2 * padding}x${cols + 2 * padding}, received ${show(size)}`,
        );
      }
      this.crop = { padding, height: size[0], width: size[1], center: c.center ?? false };
    }

    const norm = opts.normalize ?? normalizationStats(dataset);
    if (!norm || !Number.isFinite(norm.mean) || !Number.isFinite(norm.std) || !(norm.std > 0)) {
      throw new ShapeError(
        `BatchLoader: normalize must be { mean, std } with finite numbers and std > 0, received ` +
          `{ mean: ${norm?.mean}, std: ${norm?.std} }`,
      );
    }
    this.normalization = { mean: norm.mean, std: norm.std };
    this.lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) this.lut[v] = (v / 255 - norm.mean) / norm.std;

    this.batchesPerEpoch = this.dropLast ? Math.floor(count / this.batchSize) : Math.ceil(count / this.batchSize);
  }

  /** [height, width] of the images in a batch. */
  get imageSize(): [number, number] {
    return this.crop ? [this.crop.height, this.crop.width] : [this.dataset.rows, this.dataset.cols];
  }

  /** The current state, to save with a checkpoint. */
  state(): LoaderState {
    return { seed: this.seed, epoch: this.epochNow, batch: this.batchNow };
  }

  /** Restores a state from {@link state}; the next batch yielded is `batchAt(epoch, batch)`. */
  setState(s: LoaderState): void {
    checkInt('state.seed', s?.seed, 0);
    checkInt('state.epoch', s.epoch, 0);
    checkInt('state.batch', s.batch, 0);
    if (s.batch > this.batchesPerEpoch) {
      throw new ShapeError(`BatchLoader: state.batch must be at most ${this.batchesPerEpoch} (batches per epoch), received ${s.batch}`);
    }
    this.seed = s.seed >>> 0;
    this.epochNow = s.epoch;
    this.batchNow = s.batch;
  }

  /** The data set indices in the order of epoch `epoch` (a permutation, or 0..count-1 without shuffling). */
  orderOf(epoch: number): Int32Array {
    if (this.order && this.order.seed === this.seed && this.order.epoch === epoch) return this.order.perm;
    const perm = epochOrder(this.seed, epoch, this.dataset.count, this.shuffle);
    this.order = { seed: this.seed, epoch, perm };
    return perm;
  }

  /** Batch `k` of epoch `epoch`: a pure function of the seed, the options, epoch and k. */
  batchAt(epoch: number, k: number): Batch {
    checkInt('epoch', epoch, 0);
    if (!isInt(k) || k < 0 || k >= this.batchesPerEpoch) {
      throw new ShapeError(`BatchLoader: batch must be an integer in [0, ${this.batchesPerEpoch}), received ${show(k)}`);
    }
    const { images, labels: allLabels, rows, cols } = this.dataset;
    const perm = this.orderOf(epoch);
    const first = k * this.batchSize;
    const b = Math.min(this.batchSize, this.dataset.count - first);
    const [h, w] = this.imageSize;
    const x = new Float32Array(b * h * w);
    const labels = new Int32Array(b);
    const indices = new Int32Array(b);
    const lut = this.lut;
    const pad = this.crop?.padding ?? 0;
    const background = lut[0];
    for (let i = 0; i < b; i++) {
      const pos = first + i;
      const idx = perm[pos];
      indices[i] = idx;
      labels[i] = allLabels[idx];
      const flip = this.flipProbability > 0 && hash4(this.seed, epoch, STREAM_FLIP, pos) / TWO_32 < this.flipProbability;
      // The window's top-left corner in padded coordinates; the source pixel of output (r, c)
      // is (oy + r - pad, ox + c - pad) in the image, before the flip.
      let oy = pad;
      let ox = pad;
      if (this.crop) {
        const spanY = rows + 2 * pad - h;
        const spanX = cols + 2 * pad - w;
        if (this.crop.center) {
          oy = spanY >> 1;
          ox = spanX >> 1;
        } else {
          oy = Math.floor((hash4(this.seed, epoch, STREAM_CROP_Y, pos) / TWO_32) * (spanY + 1));
          ox = Math.floor((hash4(this.seed, epoch, STREAM_CROP_X, pos) / TWO_32) * (spanX + 1));
        }
      }
      const src = idx * rows * cols;
      let o = i * h * w;
      for (let r = 0; r < h; r++) {
        const sy = oy + r - pad;
        const rowIn = sy >= 0 && sy < rows;
        for (let c = 0; c < w; c++) {
          const cc = ox + c - pad;
          const sx = flip ? cols - 1 - cc : cc;
          x[o++] = rowIn && sx >= 0 && sx < cols ? lut[images[src + sy * cols + sx]] : background;
        }
      }
    }
    return { x, shape: [b, 1, h, w], labels, indices, epoch, batch: k };
  }

  /** Moves the state past batch k of epoch e. */
  private advance(e: number, k: number): void {
    if (k + 1 < this.batchesPerEpoch) {
      this.epochNow = e;
      this.batchNow = k + 1;
    } else {
      this.epochNow = e + 1;
      this.batchNow = 0;
    }
  }

  /**
   * The rest of the current epoch, batch by batch. The state moves on as each batch is
   * yielded, so a state saved after training on a batch resumes with the next one.
   */
  *iterate(): Generator<Batch, void, undefined> {
    const e = this.epochNow;
    const start = this.batchNow;
    if (start >= this.batchesPerEpoch) {
      this.advance(e, this.batchesPerEpoch - 1);
      return;
    }
    for (let k = start; k < this.batchesPerEpoch; k++) {
      const b = this.batchAt(e, k);
      this.advance(e, k);
      yield b;
    }
  }

  /**
   * The same batches as {@link iterate}, but batch k+1 is prepared (in a `setImmediate`
   * callback, on this thread) while the caller works on batch k: whenever the caller awaits
   * device work, the next batch gets built.
   */
  async *prefetch(): AsyncGenerator<Batch, void, undefined> {
    const e = this.epochNow;
    const start = this.batchNow;
    const n = this.batchesPerEpoch;
    if (start >= n) {
      this.advance(e, n - 1);
      return;
    }
    const prepare = (k: number): Promise<Batch> => {
      const p = new Promise<Batch>((resolve, reject) => {
        setImmediate(() => {
          try {
            resolve(this.batchAt(e, k));
          } catch (err) {
            reject(err);
          }
        });
      });
      // A batch still being prepared when the caller stops iterating must not become an
      // unhandled rejection; it is awaited (and its error thrown) when it is used.
      p.catch(() => undefined);
      return p;
    };
    let next = prepare(start);
    for (let k = start; k < n; k++) {
      const b = await next;
      if (k + 1 < n) next = prepare(k + 1);
      this.advance(e, k);
      yield b;
    }
  }

  /** `for (const b of loader)`: the same as {@link iterate}. */
  [Symbol.iterator](): Generator<Batch, void, undefined> {
    return this.iterate();
  }

  /** `for await (const b of loader)`: the same as {@link prefetch}. */
  [Symbol.asyncIterator](): AsyncGenerator<Batch, void, undefined> {
    return this.prefetch();
  }
}

/**
 * A batch as tensors on a device: `x` float32 [B, 1, H, W] and `labels` int32 [B]. The caller
 * disposes them (or creates them inside `cn.scope`).
 *
 * @param device where to put them; default `'cpu'` (`'cpu:0'`)
 * @throws DeviceError for an unknown device
 *
 * @example
 * ```ts
 * for (const b of loader) {
 *   cn.scope(() => {
 *     const { x, labels } = cn.batchToTensors(b, 'cuda:0');
 *     const loss = cn.softmaxCrossEntropy(model.forward(x), labels);
 *     loss.backward();
 *   });
 *   opt.step();
 *   opt.zeroGrad();
 * }
 * ```
 */
export function batchToTensors(batch: Batch, device = 'cpu'): {
  /** The normalised images, float32 [B, 1, H, W]. */
  x: Tensor;
  /** The labels, int32 [B]. */
  labels: Tensor;
} {

  const x = tensor(batch.x, batch.shape, { device });
  try {
    return { x, labels: tensor(batch.labels, [batch.labels.length], { device }) };
  } catch (e) {
    x.dispose();
    throw e;
  }
}
