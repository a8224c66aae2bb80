/**
 * The contract between a data set of colour images and the trainer: batches that are read
 * asynchronously (decoding happens off the main thread), whose randomness is a pure function of
 * (seed, epoch, position) so that a resumed run sees exactly the batches it would have seen.
 *
 * Fashion-MNIST's in-memory {@link BatchLoader} predates this interface; the ImageNet and
 * image-folder loaders, and the synthetic source used by `convnet bench alexnet`, implement it.
 */
import type { LoaderState } from './loader.js';

/** One batch of images on the host, ready to upload. */
export interface ImageBatch {
  /**
   * Pixels, mean-subtracted (and augmented for training), `[B * patches, C, H, W]` row-major.
   * For a 10-patch evaluation batch, the patches of image i are rows `i*10 .. i*10+9`.
   */
  x: Float32Array;
  /** `[B * patches, C, H, W]`. */
  shape: [number, number, number, number];
  /** Patches per image: 1, or 10 for the paper's ten-patch evaluation. */
  patches: number;
  /** B labels, class indices into {@link ImageSource.classes}. */
  labels: Int32Array;
  /** The data set index of each of the B images. */
  indices: Int32Array;
  /** Which epoch this batch belongs to, from 0. */
  epoch: number;
  /** The batch's index within its epoch, from 0. */
  batch: number;
}

/** A split of an image data set, served in batches. */
export interface ImageSource {
  /** Class names, sorted; a label is an index into this list. */
  readonly classes: readonly string[];
  /** Images in the split (after unreadable ones were dropped). */
  readonly size: number;
  /** Images per batch (B). */
  readonly batchSize: number;
  /** Batches in one epoch. */
  readonly batchesPerEpoch: number;
  /** `[C, H, W]` of one patch as the network sees it, e.g. `[3, 224, 224]`. */
  readonly imageShape: readonly [number, number, number];
  /** Where the next batch of {@link prefetch} comes from. */
  state(): LoaderState;
  /** Moves to a saved position. */
  setState(s: LoaderState): void;
  /** The k-th batch of epoch e: a pure function of (seed, e, k). */
  batchAt(epoch: number, k: number): Promise<ImageBatch>;
  /** Batches from the current state on, forever (training) or to the epoch's end (evaluation), a few decoded ahead. */
  prefetch(): AsyncGenerator<ImageBatch, void, undefined>;
  /** Skipped files so far, each with the reason (a corrupt or unreadable image is never fatal). */
  readonly skipped: readonly {
    /** The file (or packed file and image number). */
    file: string;
    /** Why it could not be read, one line. */
    reason: string;
  }[];
  /** Releases file handles and worker threads. */
  close(): Promise<void>;
}
