/**
 * Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): 60,000 training and 10,000 test images, 28x28
 * grey, 10 classes, as the four gzip IDX files of Debian's `dataset-fashion-mnist` package.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';

import { FormatError } from '../errors.js';
import { IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, readIdxGz } from './idx.js';

/** Where `apt-get install dataset-fashion-mnist` puts the files. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

/** The class names, by label. */
export const FASHION_MNIST_CLASSES: readonly string[] = Object.freeze([
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
]);

const NUM_CLASSES = 10;
const OP = 'fashion-mnist';

/** An image classification data set held in memory: grey images as bytes, one label each. */
export interface ImageDataset {
  /** count x rows x cols pixels, row-major, 0 (background) to 255. */
  images: Uint8Array;
  /** count labels in [0, 10). */
  labels: Uint8Array;
  /** The number of images. */
  count: number;
  /** Image height in pixels (28 for Fashion-MNIST). */
  rows: number;
  /** Image width in pixels (28 for Fashion-MNIST). */
  cols: number;
}

/** Options of {@link loadFashionMnist}. */
export interface FashionMnistOptions {
  /** The folder holding the four `.gz` files; defaults to {@link FASHION_MNIST_DIR}. */
  dataDir?: string;
  /** `'train'` (60,000 images) or `'test'` (10,000 images, the `t10k-*` files). */
  split: 'train' | 'test';
}

/**
 * The names of a split's two files (inside {@link FASHION_MNIST_DIR} or `dataDir`).
 *
 * @example
 * ```ts
 * cn.fashionMnistFiles('test');
 * // { images: 't10k-images-idx3-ubyte.gz', labels: 't10k-labels-idx1-ubyte.gz' }
 * ```
 */
export function fashionMnistFiles(split: 'train' | 'test'): {
  /** The images file, e.g. `train-images-idx3-ubyte.gz`. */
  images: string;
  /** The labels file, e.g. `train-labels-idx1-ubyte.gz`. */
  labels: string;
} {
  const prefix = split === 'train' ? 'train' : 't10k';
  return { images: `${prefix}-images-idx3-ubyte.gz`, labels: `${prefix}-labels-idx1-ubyte.gz` };
}

/** How to get the data, appended to "not found" messages. */
function howToGet(dir: string): string {
  const { images, labels } = fashionMnistFiles('train');
  const t = fashionMnistFiles('test');
  return (
    ' Install the data set with `apt-get install dataset-fashion-mnist` (it puts the files in ' +
    `${FASHION_MNIST_DIR}), or pass --data-dir (the dataDir option) naming a folder that holds ` +
    `${images}, ${labels}, ${t.images} and ${t.labels}` +
    (dir === FASHION_MNIST_DIR ? '.' : ` (looked in ${dir}).`)
  );
}

/**
 * Loads one split of Fashion-MNIST into memory. Decompression runs off the JS thread.
 *
 * @throws FormatError naming the file and the problem when the split is not `'train'` or
 *   `'test'`, the folder or a file is missing (the message says how to get the data), a file is
 *   not gzip, is truncated, has the wrong magic number or dims that do not match its length,
 *   the image and label counts differ, or a label is 10 or more.
 *
 * @example
 * ```ts
 * const train = await cn.loadFashionMnist({ split: 'train' });
 * train.count; // 60000
 * const test = await cn.loadFashionMnist({ split: 'test', dataDir: './data' });
 * ```
 */

export async function loadFashionMnist(opts: FashionMnistOptions): Promise<ImageDataset> {
  const split = opts?.split;
  if (split !== 'train' && split !== 'test') {
    throw new FormatError(`${OP}: split must be 'train' or 'test', received ${JSON.stringify(split) ?? String(split)}`);
  }
  const dir = path.resolve(opts.dataDir ?? FASHION_MNIST_DIR);
  const isDir = await stat(dir).then((s) => s.isDirectory(), () => false);
  if (!isDir) throw new FormatError(`${OP}: the data folder ${dir} does not exist.${howToGet(dir)}`);

  const names = fashionMnistFiles(split);
  const imagesFile = path.join(dir, names.images);
  const labelsFile = path.join(dir, names.labels);
  // Both files are read at once; when both are bad, the images file's problem is reported.
  const [imgResult, labResult] = await Promise.allSettled([
    readIdxGz(imagesFile, IDX_IMAGES_MAGIC, OP, howToGet(dir)),
    readIdxGz(labelsFile, IDX_LABELS_MAGIC, OP, howToGet(dir)),
  ]);
  if (imgResult.status === 'rejected') throw imgResult.reason;
  if (labResult.status === 'rejected') throw labResult.reason;
  const img = imgResult.value;
  const lab = labResult.value;
  const [count, rows, cols] = img.dims;
  if (lab.dims[0] !== count) {
    throw new FormatError(`${OP}: ${imagesFile} holds ${count} images but ${labelsFile} holds ${lab.dims[0]} labels`);
  }
  for (let i = 0; i < count; i++) {
    if (lab.data[i] >= NUM_CLASSES) {
      throw new FormatError(`${OP}: ${labelsFile} has label ${lab.data[i]} at index ${i}, expected 0 to ${NUM_CLASSES - 1}`);
    }
  }
  return { images: img.data, labels: lab.data, count, rows, cols };
}
