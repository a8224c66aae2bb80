/**
 * {@link ImageSource}s over a folder of images: one that reads a packed file (`convnet prepare`;
 * contiguous bytes at known offsets, nothing to decode) and one that decodes the JPEG and PNG
 * files on the fly with sharp. Both serve the same batches: the same order, the same augmentation
 * and, from the same decoded bytes, the same pixels.
 *
 * Randomness is counter-based as in the Fashion-MNIST loader: the order of epoch e is a
 * Fisher-Yates shuffle drawn from hash(seed, e, i), and the crop, flip and colour noise of the
 * image at position p of epoch e are drawn from hash(seed, e, stream, p). So `batchAt(e, k)` is a
 * pure function of (seed, e, k) and the state `{ seed, epoch, batch }` resumes exactly.
 *
 * An image that cannot be decoded (on the fly; a packed file holds only images that decoded) is
 * replaced by the next readable image in the epoch's order (wrapping round), with the
 * augmentation of its own position; it is reported once (a `warn` line naming the file) and
 * listed in `skipped`. As long as the files do not change, this too is a pure function of
 * (seed, e, k).
 */
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { FormatError, IOError, ShapeError } from '../errors.js';
import {
  augmentParams,
  cropInto,
  CROP_SIZE,
  evaluationPatches,
  IMAGENET_MEAN,
  IMAGENET_PCA,
  STORED_SIZE,
  type ColourPca,
  type Patch,
} from './augment.js';
import { AugmentPool, type AugmentItem } from './augment-pool.js';
import { decodeImage, listImages, type ImageLayout, type ImageSplit } from './images.js';
import { epochOrder, type LoaderState } from './loader.js';
import { packedFileName, readPackedHeader, readPackedLabels } from './packed.js';
import type { ImageBatch, ImageSource } from './source.js';

const IMAGE_BYTES = 3 * STORED_SIZE * STORED_SIZE;

/** Options of {@link openImageSource}. */
export interface ImageSourceOptions {
  /** The layout of the data folder. */
  data: ImageLayout;
  /** The data folder. */
  dataDir: string;
  /** Which split. */
  split: ImageSplit;
  /** Images per batch. */
  batchSize: number;
  /** Seed of the order and the augmentation; default 0. */
  seed?: number;
  /**
   * Training batches (shuffled, random 224 crops, flips, colour noise) or evaluation batches
   * (in order, centre crop or ten patches); default: training for the train split.
   */
  train?: boolean;
  /** Evaluation only: 1 (centre crop, default) or 10 (corners, centre and their mirrors). */
  patches?: 1 | 10;
  /**
   * The packed file to read; `false` to decode on the fly. Default: `<packedDir>/<split>.convnet-pack`
   * when it exists, else decode on the fly.
   */
  packed?: string | false;
  /** Where to look for packed files by default; default dataDir. */
  packedDir?: string;
  /** Per-channel mean to subtract (0..255 scale); default the packed file's, else {@link IMAGENET_MEAN}. */
  mean?: readonly [number, number, number];
  /** Principal axes of the colour noise; default the packed file's, else {@link IMAGENET_PCA}. */
  pca?: ColourPca;
  /** Standard deviation of the colour noise's alphas; default 0.1 (0 for none). */
  pcaSigma?: number;
  /** Probability of a mirror in training; default 0.5. */
  flip?: number;
  /** Multiplies every value after the mean is subtracted; default 1 (the 0..255 scale, as the paper). */
  scale?: number;
  /** Leave out a last batch smaller than batchSize; default true in training, false in evaluation. */
  dropLast?: boolean;
  /** Images read or decoded at once; default 2 x the CPU cores on the fly, 16 from a packed file. */
  concurrency?: number;
  /**
   * Worker threads that cut the crops and patches (0: on the JS thread). Default: the CPU cores
   * less two, at most 8 (0 on a machine of two cores or fewer). The result is the same either way.
   */
  workers?: number;
  /** Batches prepared ahead by prefetch(); default 3. */
  prefetch?: number;
  /** Where a skipped image is reported (one line); default console.warn. */
  warn?: (line: string) => void;
  /** Only the first N images of the split (in list order); default all. */
  limit?: number;
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** A counting semaphore: at most n tasks at once. */
class Limiter {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly n: number) {}
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.n) await new Promise<void>((resolve) => this.queue.push(resolve));
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}

/** What both sources share: order, augmentation, batches, state, prefetching. */
abstract class FolderSource implements ImageSource {
  readonly classes: readonly string[];
  readonly size: number;
  readonly batchSize: number;
  readonly batchesPerEpoch: number;
  readonly imageShape: readonly [number, number, number] = [3, CROP_SIZE, CROP_SIZE];
  /** Whether batches are training batches (shuffled and augmented). */
  readonly train: boolean;
  /** Patches per image: 1 in training. */
  readonly patches: 1 | 10;
  /** The per-channel mean subtracted (0..255 scale). */
  readonly mean: readonly [number, number, number];
  /** The principal axes of the colour noise. */
  readonly pca: ColourPca;
  /** Where the mean and PCA came from. */
  abstract readonly kind: 'packed' | 'decode';

  protected readonly labels: Int32Array;
  protected readonly limiter: Limiter;
  private readonly skippedList: { file: string; reason: string }[] = [];
  private readonly bad = new Set<number>();
  private readonly warn: (line: string) => void;
  private readonly opts: ImageSourceOptions;
  private readonly evalPatches: Patch[];
  private seed: number;
  private epochNow = 0;
  private batchNow = 0;
  private order: { seed: number; epoch: number; perm: Int32Array } | null = null;
  private pool: AugmentPool | null = null;
  private readonly workerCount: number;
  protected closed = false;

  constructor(o: ImageSourceOptions, classes: string[], labels: Int32Array, stats: { mean: readonly [number, number, number]; pca: ColourPca }, concurrency: number) {
    this.opts = o;
    this.classes = classes;
    this.labels = labels;
    this.size = labels.length;
    this.batchSize = o.batchSize;
    this.train = o.train ?? o.split === 'train';
    this.patches = this.train ? 1 : (o.patches ?? 1);
    this.seed = (o.seed ?? 0) >>> 0;
    this.mean = o.mean ?? stats.mean;
    this.pca = o.pca ?? stats.pca;
    this.warn = o.warn ?? ((line) => console.warn(line));
    this.limiter = new Limiter(concurrency);
    this.evalPatches = evaluationPatches(this.patches);
    const cores = os.availableParallelism();
    this.workerCount = o.workers ?? (cores > 2 ? Math.min(8, cores - 2) : 0);
    const dropLast = o.dropLast ?? this.train;
    this.batchesPerEpoch = dropLast ? Math.floor(this.size / this.batchSize) : Math.ceil(this.size / this.batchSize);
    if (this.batchesPerEpoch === 0) {
      throw new ShapeError(`ImageSource: batchSize must be at most the ${this.size} images of ${o.split} when the last partial batch is left out, received ${this.batchSize}`);
    }
  }

  get skipped(): readonly { file: string; reason: string }[] {
    return this.skippedList;
  }

  /** The image with data set index i as `[3, 256, 256]` uint8; throws when it cannot be read. */
  protected abstract read(i: number): Promise<Uint8Array>;
  /** The file of data set index i, for messages. */
  protected abstract fileOf(i: number): string;
  /** Whether a read failure of this kind may be skipped (a corrupt image) or is fatal. */
  protected abstract skippable(e: unknown): boolean;

  state(): LoaderState {
    return { seed: this.seed, epoch: this.epochNow, batch: this.batchNow };
  }

  setState(s: LoaderState): void {
    for (const k of ['seed', 'epoch', 'batch'] as const) {
      if (!isInt(s?.[k]) || s[k] < 0) throw new ShapeError(`ImageSource: state.${k} must be an integer >= 0, received ${String(s?.[k])}`);
    }
    if (s.batch > this.batchesPerEpoch) {
      throw new ShapeError(`ImageSource: state.batch must be at most ${this.batchesPerEpoch} (batches per epoch), received ${s.batch}`);
    }
    this.seed = s.seed >>> 0;
    this.epochNow = s.epoch;
    this.batchNow = s.batch;
  }

  /** The data set indices in the order of epoch e (a permutation in training, 0..size-1 in evaluation). */
  orderOf(epoch: number): Int32Array {
    if (this.order && this.order.seed === this.seed && this.order.epoch === epoch) return this.order.perm;
    const perm = epochOrder(this.seed, epoch, this.size, this.train);
    this.order = { seed: this.seed, epoch, perm };
    return perm;
  }

  /** The image at position pos of the order, or the next readable one after it. */
  private async readAt(perm: Int32Array, pos: number): Promise<{ index: number; pixels: Uint8Array }> {
    for (let step = 0; step < this.size; step++) {
      const index = perm[(pos + step) % this.size];
      if (this.bad.has(index)) continue;
      try {
        return { index, pixels: await this.limiter.run(() => this.read(index)) };
      } catch (e) {
        if (this.closed) throw new IOError(`ImageSource: the source was closed while reading ${this.fileOf(index)}`);
        if (!this.skippable(e)) throw e;
        if (!this.bad.has(index)) {
          this.bad.add(index);
          const reason = String((e as Error)?.message ?? e).split('\n')[0];
          this.skippedList.push({ file: this.fileOf(index), reason });
          this.warn(`convnet: skipped ${this.fileOf(index)}: ${reason}`);
        }
      }
    }
    throw new FormatError(`ImageSource: none of the ${this.size} images of ${this.opts.split} in ${this.opts.dataDir} can be decoded`);
  }

  async batchAt(epoch: number, k: number): Promise<ImageBatch> {
    if (this.closed) throw new IOError('ImageSource: batchAt after close()');
    if (!isInt(epoch) || epoch < 0) throw new ShapeError(`ImageSource: epoch must be an integer >= 0, received ${String(epoch)}`);
    if (!isInt(k) || k < 0 || k >= this.batchesPerEpoch) {
      throw new ShapeError(`ImageSource: batch must be an integer in [0, ${this.batchesPerEpoch}), received ${String(k)}`);
    }
    const perm = this.orderOf(epoch);
    const seed = this.seed;
    const first = k * this.batchSize;
    const b = Math.min(this.batchSize, this.size - first);
    const crop = CROP_SIZE;
    const per = 3 * crop * crop;
    const patches = this.patches;
    const x = new Float32Array(b * patches * per);
    const labels = new Int32Array(b);
    const indices = new Int32Array(b);
    const scale = this.opts.scale ?? 1;
    const aug = { crop, flip: this.opts.flip ?? 0.5, pcaSigma: this.opts.pcaSigma ?? 0.1, pca: this.pca };
    const none = [0, 0, 0];
    const itemsOf = (i: number, img: number): AugmentItem[] => {
      if (!this.train) return this.evalPatches.map((p) => ({ ...p, img, offset: none }));
      const a = augmentParams(seed, epoch, first + i, aug);
      return [{ y: a.y, x: a.x, flip: a.flip, img, offset: a.offset }];
    };
    const take = (i: number, index: number) => {
      indices[i] = index;
      labels[i] = this.labels[index];
    };
    if (this.workerCount === 0) {
      await Promise.all(Array.from({ length: b }, async (_, i) => {
        const { index, pixels } = await this.readAt(perm, first + i);
        take(i, index);
        itemsOf(i, 0).forEach((it, j) => cropInto(pixels, STORED_SIZE, x, (i * patches + j) * per, crop, it, it.offset, this.mean, scale));
      }));
    } else {
      this.pool ??= new AugmentPool(this.workerCount);
      const pool = this.pool;
      const chunk = Math.max(1, Math.ceil(b / (2 * pool.size)));
      const jobs: Promise<void>[] = [];
      for (let c = 0; c < b; c += chunk) {
        const n = Math.min(chunk, b - c);
        jobs.push((async () => {
          const got = await Promise.all(Array.from({ length: n }, (_, j) => this.readAt(perm, first + c + j)));
          got.forEach((g, j) => take(c + j, g.index));
          const items = got.flatMap((_, j) => itemsOf(c + j, j));
          const out = await pool.run({ images: got.map((g) => g.pixels), items, size: STORED_SIZE, crop, mean: [...this.mean], scale });
          x.set(out, c * patches * per);
        })());
      }
      await Promise.all(jobs);
    }
    return { x, shape: [b * patches, 3, crop, crop], patches, labels, indices, epoch, batch: k };
  }

  private advance(e: number, k: number): void {
    if (k + 1 < this.batchesPerEpoch) {
      this.epochNow = e;
      this.batchNow = k + 1;
    } else {
      this.epochNow = e + 1;
      this.batchNow = 0;
    }
  }

  async *prefetch(): AsyncGenerator<ImageBatch, void, undefined> {
    const depth = Math.max(1, this.opts.prefetch ?? 3);
    const startEpoch = this.epochNow;
    let e = this.epochNow;
    let k = this.batchNow;
    if (k >= this.batchesPerEpoch) {
      e++;
      k = 0;
    }
    const queue: { e: number; k: number; p: Promise<ImageBatch> }[] = [];
    const more = () => this.train || e === startEpoch;
    const fill = () => {
      while (queue.length < depth && more() && !this.closed) {
        const p = this.batchAt(e, k);
        p.catch(() => undefined); // awaited (and thrown) when it is used
        queue.push({ e, k, p });
        if (++k >= this.batchesPerEpoch) {
          e++;
          k = 0;
        }
      }
    };
    fill();
    while (queue.length > 0) {
      const item = queue.shift()!;
      const batch = await item.p;
      this.advance(item.e, item.k);
      fill();
      yield batch;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.pool?.close();
    this.pool = null;
  }
}

/** Serves batches from a packed file: each image is 196,608 bytes read at its offset. */
class PackedSource extends FolderSource {
  readonly kind = 'packed' as const;
  /** The packed file. */
  readonly file: string;
  private readonly fh: import('node:fs/promises').FileHandle;
  private readonly pixelsOffset: number;

  constructor(o: ImageSourceOptions, file: string, fh: import('node:fs/promises').FileHandle, h: Awaited<ReturnType<typeof readPackedHeader>>, labels: Int32Array) {
    super(o, h.classes, labels, h, o.concurrency ?? 16);
    this.file = file;
    this.fh = fh;
    this.pixelsOffset = h.pixelsOffset;
  }

  protected async read(i: number): Promise<Uint8Array> {
    const buf = new Uint8Array(IMAGE_BYTES);
    const { bytesRead } = await this.fh.read(buf, 0, IMAGE_BYTES, this.pixelsOffset + i * IMAGE_BYTES);
    if (bytesRead !== IMAGE_BYTES) throw new IOError(`ImageSource: ${this.file} ended inside image ${i}`);
    return buf;
  }

  protected fileOf(i: number): string {
    return `${this.file} (image ${i})`;
  }

  protected skippable(): boolean {
    return false;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await super.close();
    await this.fh.close();
  }
}

/** Decodes each image from its file when it is needed. */
class DecodeSource extends FolderSource {
  readonly kind = 'decode' as const;
  private readonly root: string;
  private readonly files: string[];

  constructor(o: ImageSourceOptions, root: string, classes: string[], files: string[], labels: Int32Array) {
    super(o, classes, labels, { mean: IMAGENET_MEAN, pca: IMAGENET_PCA }, o.concurrency ?? 2 * os.availableParallelism());
    this.root = root;
    this.files = files;
  }

  protected read(i: number): Promise<Uint8Array> {
    return decodeImage(path.join(this.root, this.files[i]));
  }

  protected fileOf(i: number): string {
    return path.join(this.root, this.files[i]);
  }

  protected skippable(): boolean {
    return true;
  }
}

function checkOptions(o: ImageSourceOptions): void {
  if (!o || (o.data !== 'imagenet' && o.data !== 'imagefolder')) {
    throw new ShapeError(`openImageSource: data must be 'imagenet' or 'imagefolder', received ${JSON.stringify(o?.data)}`);
  }
  if (typeof o.dataDir !== 'string' || o.dataDir === '') throw new ShapeError(`openImageSource: dataDir must be a folder, received ${JSON.stringify(o.dataDir)}`);
  if (o.split !== 'train' && o.split !== 'val') throw new ShapeError(`openImageSource: split must be 'train' or 'val', received ${JSON.stringify(o.split)}`);
  if (!isInt(o.batchSize) || o.batchSize < 1) throw new ShapeError(`openImageSource: batchSize must be an integer >= 1, received ${String(o.batchSize)}`);
  if (o.seed !== undefined && (!isInt(o.seed) || o.seed < 0)) throw new ShapeError(`openImageSource: seed must be an integer >= 0, received ${String(o.seed)}`);
  if (o.patches !== undefined && o.patches !== 1 && o.patches !== 10) throw new ShapeError(`openImageSource: patches must be 1 or 10, received ${String(o.patches)}`);
  if (o.patches === 10 && (o.train ?? o.split === 'train')) throw new ShapeError('openImageSource: patches must be 1 for training batches, received 10 (pass train: false)');
  if (o.workers !== undefined && (!isInt(o.workers) || o.workers < 0)) throw new ShapeError(`openImageSource: workers must be an integer >= 0, received ${String(o.workers)}`);
  if (o.limit !== undefined && (!isInt(o.limit) || o.limit < 1)) throw new ShapeError(`openImageSource: limit must be an integer >= 1, received ${String(o.limit)}`);
}

/** An {@link ImageSource} over a folder of images, with what it was opened from. */
export type FolderImageSource = ImageSource & {
  /** 'packed' when it reads a packed file, 'decode' when it decodes the images on the fly. */
  readonly kind: 'packed' | 'decode';
  /** The per-channel mean subtracted from every pixel (0..255 scale). */
  readonly mean: readonly [number, number, number];
  /** The principal axes of the colour noise. */
  readonly pca: ColourPca;
  /** Patches per image in each batch. */
  readonly patches: 1 | 10;
  /** Whether the batches are training batches. */
  readonly train: boolean;
};

/**
 * Opens one split of an `imagenet` or `imagefolder` data folder as an {@link ImageSource}. It
 * reads `<packedDir>/<split>.convnet-pack` (written by `convnet prepare`) when that exists,
 * else lists the folder and decodes the images on the fly with sharp (using the mean and PCA of
 * the train split's packed file when there is one, else ImageNet's well-known values).
 *
 * Training batches: shuffled per epoch, a random 224x224 crop of the 256x256 image, a mirror with
 * probability 0.5, the paper's PCA colour noise (sigma 0.1), the mean subtracted. Evaluation
 * batches: in order, the centre crop (patches 1) or the ten patches of
 * {@link evaluationPatches} (patches 10).
 *
 * @throws ShapeError for bad options; FormatError for a missing or inconsistent layout or packed file
 *
 * @example
 * ```ts
 * const train = await cn.openImageSource({ data: 'imagenet', dataDir: '/data/ilsvrc2012', split: 'train', batchSize: 128, seed: 1 });
 * const val = await cn.openImageSource({ data: 'imagenet', dataDir: '/data/ilsvrc2012', split: 'val', batchSize: 50, patches: 10 });
 * for await (const b of train.prefetch()) {
 *   // b.x: [128, 3, 224, 224]; b.labels: 128 class indices
 *   break;
 * }
 * await train.close();
 * await val.close();
 * ```
 */
export async function openImageSource(o: ImageSourceOptions): Promise<FolderImageSource> {
  checkOptions(o);
  const packedDir = o.packedDir ?? o.dataDir;
  const auto = path.join(packedDir, packedFileName(o.split));
  const file = o.packed === false ? null : (o.packed ?? (existsSync(auto) ? auto : null));
  if (file) {
    const h = await readPackedHeader(file);
    let labels = await readPackedLabels(file, h);
    if (o.limit) labels = labels.subarray(0, Math.min(o.limit, labels.length));
    let fh: import('node:fs/promises').FileHandle;
    try {
      fh = await fsp.open(file, 'r');
    } catch (e) {
      throw new FormatError(`packed file: ${file} cannot be opened (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    try {
      return new PackedSource(o, file, fh, h, labels);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }
  const list = await listImages({ data: o.data, dataDir: o.dataDir, split: o.split });
  let { files, labels } = list;
  if (o.limit) {
    files = files.slice(0, o.limit);
    labels = labels.subarray(0, o.limit);
  }
  let stats: { mean: readonly [number, number, number]; pca: ColourPca } | null = null;
  const trainPack = path.join(packedDir, packedFileName('train'));
  if (!o.mean || !o.pca) {
    const h = existsSync(trainPack) ? await readPackedHeader(trainPack).catch(() => null) : null;
    if (h) stats = { mean: h.mean, pca: h.pca };
  }
  return new DecodeSource({ ...o, mean: o.mean ?? stats?.mean, pca: o.pca ?? stats?.pca }, list.root, list.classes, files, labels);
}
