/**
 * Data: the IDX reader and Fashion-MNIST on the real files and on broken copies (every
 * problem a FormatError with an exact message), and the host-side batch loader.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { rng, trackLeaks } from './helpers.js';

trackLeaks();

const DIR = cn.FASHION_MNIST_DIR;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'convnet-data-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Byte-wise equality of two typed arrays (vitest's toEqual is slow on millions of elements). */
function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

async function formatError(p: Promise<unknown>): Promise<string> {
  let thrown: unknown;
  try {
    await p;
  } catch (e) {
    thrown = e;
  }
  expect(thrown, 'expected a FormatError').toBeInstanceOf(cn.FormatError);
  return (thrown as Error).message;
}

/** An IDX file of unsigned bytes: magic, big-endian dims, the bytes. */
function idx(magic: number, dims: number[], data: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt32BE(magic, 0);
  dims.forEach((d, k) => head.writeUInt32BE(d, 4 + 4 * k));
  return Buffer.concat([head, data]);
}

let caseNo = 0;
/** A folder holding a training split made of these two (already gzipped or raw) files. */
function splitDir(images: Buffer | null, labels: Buffer | null): string {
  const dir = path.join(tmp, `case-${++caseNo}`);
  mkdirSync(dir);
  if (images) writeFileSync(path.join(dir, 'train-images-idx3-ubyte.gz'), images);
  if (labels) writeFileSync(path.join(dir, 'train-labels-idx1-ubyte.gz'), labels);
  return dir;
}

/** A small valid data set: n images of rows x cols with random pixels and labels. */
function synthetic(n: number, rows: number, cols: number, seed: number): cn.ImageDataset {
  const r = rng(seed);
  const images = new Uint8Array(n * rows * cols);
  for (let i = 0; i < images.length; i++) images[i] = Math.floor(r() * 256);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) labels[i] = Math.floor(r() * 10);
  return { images, labels, count: n, rows, cols };
}

const goodImages = (n: number) => gzipSync(idx(0x803, [n, 28, 28], new Uint8Array(n * 784)));
const goodLabels = (n: number, fill = 1) => gzipSync(idx(0x801, [n], new Uint8Array(n).fill(fill)));

describe('Fashion-MNIST, the real files', () => {
  let train: cn.ImageDataset;
  let test: cn.ImageDataset;
  beforeAll(async () => {
    [train, test] = await Promise.all([cn.loadFashionMnist({ split: 'train' }), cn.loadFashionMnist({ split: 'test', dataDir: DIR })]);
  });

  it('has 60000 training and 10000 test images of 28x28, labels in [0, 10)', () => {
    expect([train.count, train.rows, train.cols, train.images.length, train.labels.length]).toEqual([60000, 28, 28, 60000 * 784, 60000]);
    expect([test.count, test.rows, test.cols, test.images.length, test.labels.length]).toEqual([10000, 28, 28, 10000 * 784, 10000]);
    expect(train.images.constructor).toBe(Uint8Array);
    expect(train.labels.constructor).toBe(Uint8Array);
    const perClass = new Array(10).fill(0);
    for (const l of train.labels) perClass[l]++;
    expect(perClass).toEqual(new Array(10).fill(6000));
    expect(Math.max(...test.labels)).toBe(9);
  });

  it('has the known first labels (9 = ankle boot)', () => {
    expect([...train.labels.subarray(0, 10)]).toEqual([9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    expect([...test.labels.subarray(0, 10)]).toEqual([9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    expect(cn.FASHION_MNIST_CLASSES[train.labels[0]]).toBe('Ankle boot');
  });

  it('has the published training mean and standard deviation', () => {
    const s = cn.normalizationStats(train);
    expect(s.mean).toBeCloseTo(0.286041, 5);
    expect(s.std).toBeCloseTo(0.353024, 5);
  });

  it('prefetching yields the same batches as plain iteration over a whole epoch', async () => {
    const opts = { batchSize: 500, seed: 3, flip: true, crop: true };
    const a = new cn.BatchLoader(train, opts);
    const b = new cn.BatchLoader(train, opts);
    const plain = [...a];
    let k = 0;
    for await (const batch of b) {
      expect(sameBytes(batch.indices, plain[k].indices), `indices of batch ${k}`).toBe(true);
      expect(sameBytes(batch.x, plain[k].x), `x of batch ${k}`).toBe(true);
      k++;
    }
    expect(k).toBe(120);
    expect(b.state()).toEqual(a.state());
    expect(a.state()).toEqual({ seed: 3, epoch: 1, batch: 0 });
  });

  it('flips about half of the images', () => {
    const loader = new cn.BatchLoader(train, { batchSize: 4000, shuffle: false, flip: true });
    const plain = new cn.BatchLoader(train, { batchSize: 4000, shuffle: false });
    const x = loader.batchAt(0, 0).x;
    const y = plain.batchAt(0, 0).x;
    let same = 0;
    for (let i = 0; i < 4000; i++) {
      if (x.subarray(i * 784, (i + 1) * 784).every((v, j) => v === y[i * 784 + j])) same++;
    }
    expect(same / 4000).toBeGreaterThan(0.45);
    expect(same / 4000).toBeLessThan(0.55);
  });
});

describe('Fashion-MNIST, broken files', () => {
  let rawImages: Buffer;
  beforeAll(() => {
    rawImages = gunzipSync(readFileSync(path.join(DIR, 'train-images-idx3-ubyte.gz')));
  });

  it('a missing folder says how to get the data', async () => {
    const dir = path.join(tmp, 'nowhere');
    expect(await formatError(cn.loadFashionMnist({ split: 'train', dataDir: dir }))).toBe(
      `fashion-mnist: the data folder ${dir} does not exist. Install the data set with ` +
        '`apt-get install dataset-fashion-mnist` (it puts the files in /usr/share/datasets/fashion-mnist), ' +
        'or pass --data-dir (the dataDir option) naming a folder that holds train-images-idx3-ubyte.gz, ' +
        `train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (looked in ${dir}).`,
    );
  });

  it('a missing file names it and says how to get the data', async () => {
    const dir = splitDir(goodImages(2), null);
    expect(await formatError(cn.loadFashionMnist({ split: 'train', dataDir: dir }))).toBe(
      `fashion-mnist: ${dir}/train-labels-idx1-ubyte.gz does not exist. Install the data set with ` +
        '`apt-get install dataset-fashion-mnist` (it puts the files in /usr/share/datasets/fashion-mnist), ' +
        'or pass --data-dir (the dataDir option) naming a folder that holds train-images-idx3-ubyte.gz, ' +
        `train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (looked in ${dir}).`,
    );
  });

  it('the test split reads the t10k files', async () => {
    const dir = splitDir(goodImages(2), goodLabels(2));
    expect(await formatError(cn.loadFashionMnist({ split: 'test', dataDir: dir }))).toMatch(
      new RegExp(`^fashion-mnist: ${dir}/t10k-images-idx3-ubyte.gz does not exist\\. Install`),
    );
  });

  it('a copy holding only 1000 bytes of images is truncated', async () => {
    const dir = splitDir(gzipSync(rawImages.subarray(0, 16 + 1000)), goodLabels(60000));
    expect(await formatError(cn.loadFashionMnist({ split: 'train', dataDir: dir }))).toBe(
      `fashion-mnist: ${dir}/train-images-idx3-ubyte.gz is truncated: header says 60000 images of 28x28 ` +
        '(47040000 bytes), file holds 1000 bytes',
    );
  });

  it('a .gz cut short is truncated', async () => {
    const gz = readFileSync(path.join(DIR, 'train-labels-idx1-ubyte.gz'));
    const dir = splitDir(goodImages(60000), gz.subarray(0, 5000));
    expect(await formatError(cn.loadFashionMnist({ split: 'train', dataDir: dir }))).toBe(
      `fashion-mnist: ${dir}/train-labels-idx1-ubyte.gz is truncated: the gzip stream ends early (unexpected end of file)`,
    );
  });

  it('a file that is not gzip', async () => {
    const dir = splitDir(idx(0x803, [1, 28, 28], new Uint8Array(784)), goodLabels(1));
    expect(await formatError(cn.loadFashionMnist({ split: 'train', dataDir: dir }))).toBe(
      `fashion-mnist: ${dir}/train-images-idx3-ubyte.gz is not a valid gzip file (incorrect header check)`,
    );
  });

  it('a corrupted magic number', async () => {
    const bad = Buffer.from(rawImages.subarray(0, 16 + 784 * 3));
    bad.writeUInt32BE(3, 4);
    bad[3] = 0x01;
    const dir = splitDir(gzipSync(bad), goodLabels(3));
    expect(await formatError(cn.loadFashionMnist({ split: 'train', dataDir: dir }))).toBe(
      `fashion-mnist: ${dir}/train-images-idx3-ubyte.gz has magic number 0x00000801, expected 0x00000803 ` +
        '(IDX images: unsigned bytes, 3 dims)',
    );
    const swapped = splitDir(goodLabels(3), goodImages(3));
    expect(await formatError(cn.loadFashionMnist({ split: 'train', dataDir: swapped }))).toBe(
      `fashion-mnist: ${swapped}/train-images-idx3-ubyte.gz has magic number 0x00000801, expected 0x00000803 ` +
        '(IDX images: unsigned bytes, 3 dims)',
    );
  });

  it('a header cut inside the dims, and bytes past the end', async () => {
    let dir = splitDir(gzipSync(Buffer.from([0, 0, 8, 3, 0, 0, 0, 1, 0, 0])), goodLabels(1));
    expect(await formatError(cn.loadFashionMnist({ split: 'train', dataDir: dir }))).toBe(
      `fashion-mnist: ${dir}/train-images-idx3-ubyte.gz is truncated: 10 bytes, too short for the 16-byte header`,
    );
    dir = splitDir(goodImages(2), gzipSync(idx(0x801, [2], new Uint8Array(5))));
    expect(await formatError(cn.loadFashionMnist({ split: 'train', dataDir: dir }))).toBe(
      `fashion-mnist: ${dir}/train-labels-idx1-ubyte.gz is longer than its header says: 2 labels (2 bytes), file holds 5 bytes`,
    );
  });

  it('image and label counts that differ', async () => {
    const dir = splitDir(goodImages(3), goodLabels(2));
    expect(await formatError(cn.loadFashionMnist({ split: 'train', dataDir: dir }))).toBe(
      `fashion-mnist: ${dir}/train-images-idx3-ubyte.gz holds 3 images but ${dir}/train-labels-idx1-ubyte.gz holds 2 labels`,
    );
  });

  it('a label of 10 or more', async () => {
    const labels = new Uint8Array([1, 2, 9, 10]);
    const dir = splitDir(goodImages(4), gzipSync(idx(0x801, [4], labels)));
    expect(await formatError(cn.loadFashionMnist({ split: 'train', dataDir: dir }))).toBe(
      `fashion-mnist: ${dir}/train-labels-idx1-ubyte.gz has label 10 at index 3, expected 0 to 9`,
    );
  });

  it('a small valid copy loads', async () => {
    const dir = splitDir(goodImages(5), goodLabels(5, 7));
    const ds = await cn.loadFashionMnist({ split: 'train', dataDir: dir });
    expect([ds.count, ds.rows, ds.cols, [...ds.labels]]).toEqual([5, 28, 28, [7, 7, 7, 7, 7]]);
  });
});

describe('BatchLoader', () => {
  const ds = synthetic(37, 5, 7, 11);
  const pixels = (i: number) => ds.images.subarray(i * 35, (i + 1) * 35);

  it('shuffles into a permutation, the same for the same seed and epoch', () => {
    const a = new cn.BatchLoader(ds, { batchSize: 8, seed: 5 });
    const epoch0 = [...a];
    expect(epoch0.map((b) => b.labels.length)).toEqual([8, 8, 8, 8, 5]);
    expect(epoch0.map((b) => b.shape)).toEqual([8, 8, 8, 8, 5].map((n) => [n, 1, 5, 7]));
    const order = epoch0.flatMap((b) => [...b.indices]);
    expect([...order].sort((x, y) => x - y)).toEqual([...Array(37).keys()]);
    expect(order).not.toEqual([...Array(37).keys()]);
    for (const b of epoch0) expect([...b.labels]).toEqual([...b.indices].map((i) => ds.labels[i]));

    const epoch1 = [...a].flatMap((b) => [...b.indices]);
    expect(epoch1).not.toEqual(order);
    const again = new cn.BatchLoader(ds, { batchSize: 8, seed: 5 });
    expect([...again].flatMap((b) => [...b.indices])).toEqual(order);
    expect([...again].flatMap((b) => [...b.indices])).toEqual(epoch1);
    const other = new cn.BatchLoader(ds, { batchSize: 8, seed: 6 });
    expect([...other].flatMap((b) => [...b.indices])).not.toEqual(order);
  });

  it('keeps the order without shuffling, and drops the last short batch when asked', () => {
    const a = new cn.BatchLoader(ds, { batchSize: 8, shuffle: false, dropLast: true });
    const batches = [...a];
    expect(a.batchesPerEpoch).toBe(4);
    expect(batches.flatMap((b) => [...b.indices])).toEqual([...Array(32).keys()]);
  });

  it('normalises with the data set statistics, or with those it is given', () => {
    const tiny: cn.ImageDataset = { images: new Uint8Array([0, 255, 0, 255]), labels: new Uint8Array([0]), count: 1, rows: 2, cols: 2 };
    expect(cn.normalizationStats(tiny)).toEqual({ mean: 0.5, std: 0.5 });
    expect([...new cn.BatchLoader(tiny, { batchSize: 1 }).batchAt(0, 0).x]).toEqual([-1, 1, -1, 1]);

    const a = new cn.BatchLoader(ds, { batchSize: 37, shuffle: false });
    const { mean, std } = cn.normalizationStats(ds);
    expect(a.normalization).toEqual({ mean, std });
    const x = a.batchAt(0, 0).x;
    x.forEach((v, j) => expect(v).toBe(Math.fround((ds.images[j] / 255 - mean) / std)));
    const m = x.reduce((s, v) => s + v, 0) / x.length;
    const sd = Math.sqrt(x.reduce((s, v) => s + (v - m) ** 2, 0) / x.length);
    expect(m).toBeCloseTo(0, 5);
    expect(sd).toBeCloseTo(1, 5);

    const testSet = synthetic(4, 5, 7, 12);
    const t = new cn.BatchLoader(testSet, { batchSize: 4, shuffle: false, normalize: a.normalization });
    expect(t.normalization).toEqual(a.normalization);
    expect(t.batchAt(0, 0).x[0]).toBe(Math.fround((testSet.images[0] / 255 - mean) / std));
  });

  it('flips only mirror images left-right', () => {
    const flip = new cn.BatchLoader(ds, { batchSize: 37, shuffle: false, flip: true, normalize: { mean: 0, std: 1 / 255 } });
    const x = flip.batchAt(0, 0).x;
    let flipped = 0;
    for (let i = 0; i < 37; i++) {
      const img = [...x.subarray(i * 35, (i + 1) * 35)];
      const orig = [...pixels(i)];
      const mirror = orig.map((_, j) => orig[Math.floor(j / 7) * 7 + 6 - (j % 7)]);
      if (img.every((v, j) => v === mirror[j]) && !img.every((v, j) => v === orig[j])) flipped++;
      else expect(img).toEqual(orig);
    }
    expect(flipped).toBeGreaterThan(5);
    expect(flipped).toBeLessThan(32);
    const never = new cn.BatchLoader(ds, { batchSize: 37, shuffle: false, flip: false, normalize: { mean: 0, std: 1 / 255 } });
    expect([...never.batchAt(0, 0).x]).toEqual([...ds.images].map((v) => v));
  });

  it('crops a window of the padded image', () => {
    const crop = new cn.BatchLoader(ds, { batchSize: 37, shuffle: false, crop: true, normalize: { mean: 0, std: 1 / 255 } });
    expect(crop.imageSize).toEqual([5, 7]);
    const x = crop.batchAt(0, 0).x;
    const seen = new Set<string>();
    for (let i = 0; i < 37; i++) {
      const img = x.subarray(i * 35, (i + 1) * 35);
      const orig = pixels(i);
      const at = (y: number, c: number) => (y >= 0 && y < 5 && c >= 0 && c < 7 ? orig[y * 7 + c] : 0);
      const fits: string[] = [];
      for (let oy = 0; oy <= 4; oy++) {
        for (let ox = 0; ox <= 4; ox++) {
          if (img.every((v, j) => v === at(oy - 2 + Math.floor(j / 7), ox - 2 + (j % 7)))) fits.push(`${oy},${ox}`);
        }
      }
      expect(fits.length, `image ${i}`).toBeGreaterThan(0);
      seen.add(fits[0]);
    }
    expect(seen.size).toBeGreaterThan(8);

    const small = new cn.BatchLoader(ds, { batchSize: 2, shuffle: false, crop: { padding: 0, size: [3, 3], center: true }, normalize: { mean: 0, std: 1 / 255 } });
    const b = small.batchAt(0, 0);
    expect(b.shape).toEqual([2, 1, 3, 3]);
    expect([...b.x.subarray(0, 9)]).toEqual([1, 2, 3].flatMap((r) => [2, 3, 4].map((c) => pixels(0)[r * 7 + c])));
  });

  it('resumes from a saved state with the same batches', async () => {
    const opts = { batchSize: 8, seed: 9, flip: true, crop: true };
    const a = new cn.BatchLoader(ds, opts);
    const all = [...a, ...a].map((b) => b.x);
    const b = new cn.BatchLoader(ds, opts);
    const it1 = b.iterate();
    it1.next();
    it1.next();
    const saved = JSON.parse(JSON.stringify(b.state()));
    expect(saved).toEqual({ seed: 9, epoch: 0, batch: 2 });
    const c = new cn.BatchLoader(ds, { ...opts, seed: 1 });
    c.setState(saved);
    const rest: Float32Array[] = [];
    for await (const batch of c) rest.push(batch.x);
    for await (const batch of c) rest.push(batch.x);
    expect(rest).toEqual(all.slice(2));
  });

  it('prepares batch k+1 while the caller works on batch k', async () => {
    const made: number[] = [];
    class Counting extends cn.BatchLoader {
      override batchAt(e: number, k: number): cn.Batch {
        made.push(k);
        return super.batchAt(e, k);
      }
    }
    const loader = new Counting(ds, { batchSize: 8, seed: 2 });
    const got: number[] = [];
    for await (const b of loader) {
      got.push(b.batch);
      expect(made).toEqual(got);
      await new Promise((r) => setImmediate(r)); // the caller waiting on the device
      expect(made.length).toBe(Math.min(got.length + 1, 5));
    }
    expect(got).toEqual([0, 1, 2, 3, 4]);
  });

  it('an early break leaves the state after the last batch taken', async () => {
    const loader = new cn.BatchLoader(ds, { batchSize: 8, seed: 2 });
    for await (const b of loader) if (b.batch === 1) break;
    expect(loader.state()).toEqual({ seed: 2, epoch: 0, batch: 2 });
  });

  it('rejects bad options with ShapeError', () => {
    const bad: [cn.BatchLoaderOptions, string][] = [
      [{ batchSize: 0 }, 'BatchLoader: batchSize must be an integer >= 1, received 0'],
      [{ batchSize: 2, flip: 2 }, 'BatchLoader: flip must be a boolean or a probability in [0, 1], received 2'],
      [{ batchSize: 2, crop: { size: [10, 3] } }, 'BatchLoader: crop.size must be [height, width] of positive integers at most the padded image 9x11, received [10, 3]'],
      [{ batchSize: 2, normalize: { mean: 0, std: 0 } }, 'BatchLoader: normalize must be { mean, std } with finite numbers and std > 0, received { mean: 0, std: 0 }'],
    ];
    for (const [opts, msg] of bad) expect(() => new cn.BatchLoader(ds, opts)).toThrow(new cn.ShapeError(msg));
    const l = new cn.BatchLoader(ds, { batchSize: 8 });
    expect(() => l.batchAt(0, 5)).toThrow(new cn.ShapeError('BatchLoader: batch must be an integer in [0, 5), received 5'));
    expect(() => l.setState({ seed: 1, epoch: 0, batch: 6 })).toThrow(
      new cn.ShapeError('BatchLoader: state.batch must be at most 5 (batches per epoch), received 6'),
    );
  });

  it('turns a batch into tensors on a device', async () => {
    const b = new cn.BatchLoader(ds, { batchSize: 8, seed: 1 }).batchAt(0, 4);
    const { x, labels } = cn.batchToTensors(b, 'cpu');
    expect([x.shape, x.dtype, labels.shape, labels.dtype]).toEqual([[5, 1, 5, 7], 'float32', [5], 'int32']);
    expect(await x.data()).toEqual(b.x);
    expect(await labels.data()).toEqual(b.labels);
    x.dispose();
    labels.dispose();
  });
});
