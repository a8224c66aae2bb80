/**
 * Opening the data sets `convnet train` reads, all behind the {@link ImageSource} interface:
 * Fashion-MNIST (an adapter over the in-memory {@link BatchLoader}), the synthetic source, and
 * ImageNet / image folders (the JPEG pipeline, through {@link openImageSource}).
 */
import { ConvnetError } from '../errors.js';
import { BatchLoader, type LoaderState } from './loader.js';
import type { ImageBatch, ImageSource } from './source.js';

/** The data sets `convnet train --data` knows. */
export type DataKind = 'fashion-mnist' | 'imagenet' | 'imagefolder' | 'synthetic';

/** Options of {@link openImageSource}. */
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
 * Whether this build has the JPEG pipeline that reads `--data imagenet` and `--data imagefolder`.
 * False until the loader is connected in {@link openImageSource}.
 */
export const IMAGE_LOADER_AVAILABLE: boolean = false;

/**
 * Opens a split of an ImageNet (ILSVRC-2012 layout) or image-folder data set as an
 * {@link ImageSource} of 3×224×224 patches.
 *
 * This is the one call site of the JPEG pipeline: until that pipeline is part of the build it
 * throws, and {@link IMAGE_LOADER_AVAILABLE} is false (the command line then refuses
 * `--data imagenet` and `--data imagefolder` up front).
 *
 * @throws ConvnetError when this build has no image loader
 *
 * @example
 * ```ts
 * const train = await openImageSource('imagenet', '/data/ilsvrc2012', 'train', { batchSize: 128, seed: 1, shuffle: true, crop: true, flip: true, patches: 1, limit: 0 });
 * train.classes.length; // 1000
 * ```
 */
export async function openImageSource(kind: 'imagenet' | 'imagefolder', dir: string, split: 'train' | 'val', opts: OpenImageSourceOptions): Promise<ImageSource> {
  void dir;
  void split;
  void opts;
  throw new ConvnetError(`train: --data ${kind} needs the JPEG loader, which is not part of this build; --data synthetic trains without files`);
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
