/**
 * Opening the data sets `convnet train` reads, all behind the {@link ImageSource} interface:
 * Fashion-MNIST (an adapter over the in-memory {@link BatchLoader}), the synthetic source, and
 * ImageNet / image folders (the JPEG pipeline, through {@link openDataSplit}).
 */
import { ShapeError } from '../errors.js';
import { openImageSource } from './image-source.js';
import { BatchLoader, type LoaderState } from './loader.js';
import type { ImageBatch, ImageSource } from './source.js';

/** The data sets `convnet train --data` knows. */
export type DataKind = 'fashion-mnist' | 'imagenet' | 'imagefolder' | 'synthetic';

/** Options of {@link openDataSplit}. */
export interface OpenImageSourceOptions {
  /** Images per batch. */
  batchSize: number;
  /** Seed of the order and the augmentation. */
  seed: number;
  /** A new order every epoch (training); otherwise file order. */
  shuffle: boolean;
  /** Random 224×224 crops (training); otherwise the centre crop. */
  crop: boolean;
  /** Random horizontal flips (training). */
  flip: boolean;
  /** Patches per image: 1, or 10 for the paper's ten-patch evaluation. */
  patches: 1 | 10;
  /** Use only the first N images of the split (0: all). */
  limit: number;
}

/**
 * Opens a split of an ImageNet (ILSVRC-2012 layout) or image-folder data set as an
 * {@link ImageSource} of 3×224×224 patches for the trainer, through the image pipeline's
 * `openImageSource` (packed files when `convnet prepare` wrote them, else decoding on the fly).
 * Training batches (`shuffle`) get its random crops, flips (`flip`) and colour noise; random
 * crops go with training batches there, so `crop: false` is refused for them.
 *
 * @throws ShapeError for training batches without crops; what the pipeline throws for a bad layout
 *
 * @example
 * ```ts
 * const train = await openDataSplit('imagenet', '/data/ilsvrc2012', 'train', { batchSize: 128, seed: 1, shuffle: true, crop: true, flip: true, patches: 1, limit: 0 });
 * train.classes.length; // 1000
 * ```
 */
export async function openDataSplit(kind: 'imagenet' | 'imagefolder', dir: string, split: 'train' | 'val', opts: OpenImageSourceOptions): Promise<ImageSource> {
  if (opts.shuffle && !opts.crop) {
    throw new ShapeError(`train: --data ${kind} trains on random 224x224 crops; --no-crop applies to synthetic and fashion-mnist data`);
  }
  return openImageSource({
    data: kind,
    dataDir: dir,
    split,
    batchSize: opts.batchSize,
    seed: opts.seed,
    train: opts.shuffle,
    patches: opts.patches,
    flip: opts.flip ? 0.5 : 0,
    ...(opts.limit ? { limit: opts.limit } : {}),
  });
}

/**
 * An {@link ImageSource} over a {@link BatchLoader} (Fashion-MNIST in memory): batches of one
 * patch, the last one possibly smaller when the loader keeps it.
 *
 * @example
 * ```ts
 * const test = await cn.loadFashionMnist({ split: 'test' });
 * const source = new cn.LoaderSource(new cn.BatchLoader(test, { batchSize: 500, shuffle: false }), cn.FASHION_MNIST_CLASSES);
 * const b = await source.batchAt(0, 0); // b.patches === 1
 * ```
 */
export class LoaderSource implements ImageSource {
  /** The class names. */
  readonly classes: readonly string[];
  /** Never anything: the images are in memory. */
  readonly skipped: ImageSource['skipped'] = [];

  constructor(
    /** The loader the batches come from. */
    readonly loader: BatchLoader,
    classes: readonly string[],
  ) {
    this.classes = classes;
  }

  /** Images in the data set. */
  get size(): number {
    return this.loader.dataset.count;
  }

  /** Images per batch. */
  get batchSize(): number {
    return this.loader.batchSize;
  }

  /** Batches in one epoch. */
  get batchesPerEpoch(): number {
    return this.loader.batchesPerEpoch;
  }

  /** `[1, H, W]` (the crop's size when the loader crops). */
  get imageShape(): readonly [number, number, number] {
    const c = this.loader.crop;
    return c ? [1, c.height, c.width] : [1, this.loader.dataset.rows, this.loader.dataset.cols];
  }

  /** The loader's position. */
  state(): LoaderState {
    return this.loader.state();
  }

  /** Moves the loader. @throws ShapeError from the loader for a position outside the data */
  setState(s: LoaderState): void {
    this.loader.setState(s);
  }

  /** The k-th batch of epoch e. */
  async batchAt(epoch: number, k: number): Promise<ImageBatch> {
    const b = this.loader.batchAt(epoch, k);
    return { ...b, patches: 1 };
  }

  /** The rest of the loader's current epoch. */
  async *prefetch(): AsyncGenerator<ImageBatch, void, undefined> {
    for await (const b of this.loader) yield { ...b, patches: 1 };
  }

  /** Nothing to release. */
  async close(): Promise<void> {}
}
