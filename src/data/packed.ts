/**
 * The packed image file: one split of an image data set decoded once (shorter side 256, centre
 * 256x256, RGB) and stored as raw bytes, so that an epoch reads contiguous bytes at known
 * offsets and decodes nothing.
 *
 * Layout (little-endian):
 * ```
 * 0     8 bytes   magic "CNVPACK\n"
 * 8     u32       version (1)
 * 12    u32       header bytes H (a multiple of 4096; the pixels start there)
 * 16    u32       JSON bytes J
 * 20    J bytes   JSON: { split, layout, count, channels, height, width, classes, mean, pca,
 *                         pcaFrom, skipped, labelsOffset }, padded with spaces to H
 * H     N*3*256*256 bytes: image i at H + i*196608, [3, 256, 256] uint8 RGB (CHW)
 * H+N*196608      N int32 labels
 * ```
 * `mean` is the per-channel mean of the training split's pixels and `pca` their principal axes
 * (see {@link ColourPca}), both on the 0..255 scale; a val file carries the train file's.
 *
 * `prepareImages` writes `<out>/<split>.convnet-pack.partial` and renames it into place when it
 * is complete, so a file under the final name is always whole. Every 10 s it saves a resume
 * point beside it (`.partial.json`: images done, labels, skipped files, the pixel sums, after the
 * pixels are flushed to disk); a run that was interrupted continues from there when the list of
 * files is unchanged, and gives the same file as an uninterrupted run.
 */
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { FormatError, IOError } from '../errors.js';
import { RgbStats, STORED_SIZE, type ColourPca } from './augment.js';
import { decodeImage, listImages, type ImageLayout, type ImageList, type ImageSplit } from './images.js';

/** The first 8 bytes of a packed file. */
export const PACK_MAGIC = 'CNVPACK\n';
/** The format version this code writes and reads. */
export const PACK_VERSION = 1;
const PREAMBLE = 20;
const IMAGE_BYTES = 3 * STORED_SIZE * STORED_SIZE;

/** The file name of a split's packed file inside the output folder. */
export function packedFileName(split: ImageSplit): string {
  return `${split}.convnet-pack`;
}

/** What the header of a packed file says. */
export interface PackedHeader {
  /** The split it holds. */
  split: ImageSplit;
  /** The layout it was read from. */
  layout: ImageLayout;
  /** Images stored. */
  count: number;
  /** 3. */
  channels: number;
  /** 256. */
  height: number;
  /** 256. */
  width: number;
  /** Class names; labels index them. */
  classes: string[];
  /** Per-channel mean of the training pixels (0..255 scale). */
  mean: [number, number, number];
  /** Principal axes of the training pixels. */
  pca: ColourPca;
  /** Where mean and pca came from: 'train' (computed by prepare). */
  pcaFrom: string;
  /** Images of the split that could not be decoded and were left out. */
  skipped: number;
  /** Byte offset of the pixels (the header's size). */
  pixelsOffset: number;
  /** Identifies the list of files it was made from (a later prepare of the same list skips it). */
  signature?: string;
  /** Byte offset of the labels. */
  labelsOffset: number;
}

/**
 * Reads and checks the header of a packed file (not the pixels).
 *
 * @throws FormatError naming the file and the fault: missing, wrong magic or version, bad JSON,
 * a size that does not match the count
 *
 * @example
 * ```ts
 * const h = await cn.readPackedHeader('/data/ilsvrc2012/train.convnet-pack');
 * console.log(h.count, h.classes.length, h.mean); // 1281167 1000 [...]
 * ```
 */
export async function readPackedHeader(file: string): Promise<PackedHeader> {
  let fh: import('node:fs/promises').FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (e) {
    throw new FormatError(`packed file: ${file} cannot be opened (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const size = (await fh.stat()).size;
    const pre = Buffer.alloc(PREAMBLE);
    await fh.read(pre, 0, PREAMBLE, 0);
    if (size < PREAMBLE || pre.toString('latin1', 0, 8) !== PACK_MAGIC) {
      throw new FormatError(`packed file: ${file} does not begin with the magic bytes CNVPACK (not a packed image file)`);
    }
    const version = pre.readUInt32LE(8);
    if (version !== PACK_VERSION) throw new FormatError(`packed file: ${file} has version ${version}, expected ${PACK_VERSION}`);
    const headerBytes = pre.readUInt32LE(12);
    const jsonBytes = pre.readUInt32LE(16);
    if (PREAMBLE + jsonBytes > headerBytes || headerBytes > size) {
      throw new FormatError(`packed file: ${file} has a header of ${headerBytes} bytes with ${jsonBytes} bytes of JSON, which does not fit a file of ${size} bytes`);
    }
    const json = Buffer.alloc(jsonBytes);
    await fh.read(json, 0, jsonBytes, PREAMBLE);
    let h: PackedHeader;
    try {
      h = JSON.parse(json.toString('utf8')) as PackedHeader;
    } catch (e) {
      throw new FormatError(`packed file: ${file} has a header that is not JSON (${(e as Error).message})`);
    }
    if (!Number.isInteger(h?.count) || h.count < 0 || h.channels !== 3 || h.height !== STORED_SIZE || h.width !== STORED_SIZE
        || !Array.isArray(h.classes) || !Array.isArray(h.mean) || h.mean.length !== 3 || !h.pca || !Array.isArray(h.pca.eigval)) {
      throw new FormatError(`packed file: ${file} has a header without a valid count, 3x${STORED_SIZE}x${STORED_SIZE} shape, classes, mean and pca`);
    }
    const expected = headerBytes + h.count * IMAGE_BYTES + 4 * h.count;
    if (size !== expected || h.labelsOffset !== headerBytes + h.count * IMAGE_BYTES) {
      throw new FormatError(`packed file: ${file} has ${size} bytes, expected ${expected} for ${h.count} images (truncated or corrupt)`);
    }
    return { ...h, pixelsOffset: headerBytes };
  } finally {
    await fh.close();
  }
}

/** Reads the labels of a packed file. */
export async function readPackedLabels(file: string, h: PackedHeader): Promise<Int32Array> {
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.alloc(4 * h.count);
    await fh.read(buf, 0, buf.length, h.labelsOffset);
    const labels = new Int32Array(h.count);
    for (let i = 0; i < h.count; i++) {
      const l = buf.readInt32LE(4 * i);
      if (l < 0 || l >= h.classes.length) throw new FormatError(`packed file: ${file} label ${i} is ${l}, expected a class index in [0, ${h.classes.length})`);
      labels[i] = l;
    }
    return labels;
  } finally {
    await fh.close();
  }
}

/** Progress of {@link prepareImages}. */
export interface PrepareProgress {
  /** The split being written. */
  split: ImageSplit;
  /** Images handled so far (decoded or skipped). */
  done: number;
  /** Images in the split. */
  total: number;
  /** Images skipped so far. */
  skipped: number;
  /** Images of the split done by an earlier, interrupted run that this one resumed (0 if none). */
  resumedFrom: number;
}

/** Options of {@link prepareImages}. */
export interface PrepareOptions {
  /** The layout. */
  data: ImageLayout;
  /** The data folder. */
  dataDir: string;
  /** Folder for the packed files; default dataDir. */
  out?: string;
  /** Splits to write; default both. The mean and PCA always come from train (read from its packed file when only val is asked for). */
  splits?: ImageSplit[];
  /** Decodes in flight at once; default 2 x the CPU cores. */
  concurrency?: number;
  /** A skipped image: one line naming the file and the reason. Default: console.warn. */
  warn?: (line: string) => void;
  /** Called after every image. */
  onProgress?: (p: PrepareProgress) => void;
  /** Only the first N images of each split (for trials); default all. */
  limit?: number;
  /** Seconds between saves of the resume point; default 10. */
  saveEvery?: number;
  /** Rewrite a split even when its packed file was made from the same list of files; default false. */
  force?: boolean;
}

/** An image left out because it could not be decoded. */
export interface SkippedImage {
  /** The image file. */
  file: string;
  /** The decoder's reason, one line. */
  reason: string;
}

/** One packed file written by {@link prepareImages}. */
export interface PreparedFile {
  /** Its split. */
  split: ImageSplit;
  /** Its path. */
  file: string;
  /** Images stored in it. */
  count: number;
  /** Images of the split left out (empty when the file was up to date). */
  skipped: SkippedImage[];
  /** True when an existing file made from the same list of files was kept as it was. */
  upToDate?: boolean;
}

/** The result of {@link prepareImages}: each written file with its count and skipped images. */
export interface PrepareResult {
  /** One entry per split written. */
  files: PreparedFile[];
  /** The training pixels' mean (0..255 scale). */
  mean: [number, number, number];
  /** The training pixels' principal axes. */
  pca: ColourPca;
}

function ioError(what: string, target: string, e: unknown): IOError {
  const code = (e as NodeJS.ErrnoException).code ?? '';
  return new IOError(`prepare: cannot ${what} ${target} (${code || (e as Error).message})`, code);
}

/** The first line of an error, for a one-line warning. */
function reasonOf(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0];
}

/**
 * Writes one split: decodes every image (up to `concurrency` at once, on libuv's thread pool),
 * writes them in list order, skipping (with a warning) any that cannot be decoded.
 */
async function writeSplit(
  list: ImageList,
  outFile: string,
  stats: RgbStats | null,
  meanPca: () => { mean: [number, number, number]; pca: ColourPca },
  o: PrepareOptions,
): Promise<PreparedFile> {
  const total = o.limit ? Math.min(o.limit, list.files.length) : list.files.length;
  const classesJson = JSON.stringify(list.classes);
  const headerBytes = Math.ceil((PREAMBLE + classesJson.length * 2 + 8192) / 4096) * 4096;
  const partial = `${outFile}.partial`;
  const resumeFile = `${outFile}.partial.json`;
  // What must match for an interrupted run's partial file to be continued.
  let h = 0x811c9dc5;
  for (const f of list.files.slice(0, total)) {
    for (let k = 0; k < f.length; k++) h = Math.imul(h ^ f.charCodeAt(k), 0x01000193) >>> 0;
    h = Math.imul(h ^ 10, 0x01000193) >>> 0;
  }
  const signature = `${PACK_VERSION} ${list.layout} ${list.split} ${total} ${headerBytes} ${h.toString(16)} ${classesJson.length}`;
  interface ResumePoint {
    signature: string;
    done: number;
    written: number;
    labels: number[];
    skipped: SkippedImage[];
    stats: ReturnType<RgbStats['save']> | null;
  }
  if (!o.force) {
    const done = await readPackedHeader(outFile).catch(() => null);
    if (done && done.signature === signature) {
      o.onProgress?.({ split: list.split, done: total, total, skipped: done.skipped, resumedFrom: total });
      return { split: list.split, file: outFile, count: done.count, skipped: [], upToDate: true };
    }
  }
  let resume: ResumePoint | null = null;
  try {
    const r = JSON.parse(await fsp.readFile(resumeFile, 'utf8')) as ResumePoint;
    if (r.signature === signature && existsSync(partial) && Number.isInteger(r.done) && r.labels.length === r.written) resume = r;
  } catch {
    resume = null;
  }
  let fh: import('node:fs/promises').FileHandle;
  try {
    fh = await fsp.open(partial, resume ? 'r+' : 'w');
  } catch (e) {
    throw ioError('write', outFile, e);
  }
  const warn = o.warn ?? ((line: string) => console.warn(line));
  const skipped: SkippedImage[] = resume ? resume.skipped : [];
  const labels: number[] = resume ? resume.labels : [];
  if (resume?.stats && stats) stats.restore(resume.stats);
  const resumedFrom = resume?.done ?? 0;
  let ok = false;
  try {
    const concurrency = Math.max(1, o.concurrency ?? 2 * os.availableParallelism());
    const pending = new Map<number, Promise<Uint8Array | Error>>();
    let next = resumedFrom;
    const launch = () => {
      while (next < total && pending.size < concurrency) {
        const i = next++;
        pending.set(i, decodeImage(path.join(list.root, list.files[i])).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e)))));
      }
    };
    const saveEvery = 1000 * (o.saveEvery ?? 10);
    let lastSave = performance.now();
    const saveResumePoint = async (done: number) => {
      await fh.datasync(); // the pixels first, so the resume point never claims more than the disk holds
      const point: ResumePoint = { signature, done, written, labels, skipped, stats: stats?.save() ?? null };
      await fsp.writeFile(`${resumeFile}.tmp`, JSON.stringify(point));
      await fsp.rename(`${resumeFile}.tmp`, resumeFile);
      lastSave = performance.now();
    };
    let written = resume?.written ?? 0;
    launch();
    for (let i = resumedFrom; i < total; i++) {
      const r = await pending.get(i)!;
      pending.delete(i);
      launch();
      if (r instanceof Error) {
        const file = path.join(list.root, list.files[i]);
        const reason = reasonOf(r);
        skipped.push({ file, reason });
        warn(`prepare: skipped ${file}: ${reason}`);
      } else {
        try {
          await fh.write(r, 0, r.length, headerBytes + written * IMAGE_BYTES);
        } catch (e) {
          throw ioError('write', outFile, e);
        }
        stats?.add(r);
        labels.push(list.labels[i]);
        written++;
      }
      o.onProgress?.({ split: list.split, done: i + 1, total, skipped: skipped.length, resumedFrom });
      if (i + 1 < total && performance.now() - lastSave >= saveEvery) {
        try {
          await saveResumePoint(i + 1);
        } catch (e) {
          throw ioError('write', resumeFile, e);
        }
      }
    }
    const labelBuf = Buffer.alloc(4 * written);
    labels.forEach((l, i) => labelBuf.writeInt32LE(l, 4 * i));
    const { mean, pca } = meanPca();
    const header = {
      split: list.split,
      layout: list.layout,
      count: written,
      channels: 3,
      height: STORED_SIZE,
      width: STORED_SIZE,
      classes: list.classes,
      mean,
      pca,
      pcaFrom: 'train',
      skipped: skipped.length,
      signature,
      labelsOffset: headerBytes + written * IMAGE_BYTES,
    };
    const json = Buffer.from(JSON.stringify(header), 'utf8');
    if (PREAMBLE + json.length > headerBytes) throw new FormatError(`prepare: the header of ${outFile} needs ${PREAMBLE + json.length} bytes, more than the ${headerBytes} reserved`);
    const head = Buffer.alloc(headerBytes, 0x20);
    head.write(PACK_MAGIC, 0, 'latin1');
    head.writeUInt32LE(PACK_VERSION, 8);
    head.writeUInt32LE(headerBytes, 12);
    head.writeUInt32LE(json.length, 16);
    json.copy(head, PREAMBLE);
    try {
      await fh.write(labelBuf, 0, labelBuf.length, header.labelsOffset);
      await fh.write(head, 0, head.length, 0);
      await fh.truncate(header.labelsOffset + labelBuf.length);
      await fh.sync();
    } catch (e) {
      throw ioError('write', outFile, e);
    }
    ok = true;
    return { split: list.split, file: outFile, count: written, skipped };
  } finally {
    await fh.close();
    // Unfinished, the partial file and its resume point stay for the next run to continue.
    if (ok) {
      try {
        await fsp.rename(partial, outFile);
        await fsp.rm(resumeFile, { force: true });
      } catch (e) {
        throw ioError('rename into place', outFile, e);
      }
    }
  }
}

/**
 * `convnet prepare`: decodes each split once into a packed file (`train.convnet-pack`,
 * `val.convnet-pack` in `out`), computing the training pixels' mean and PCA on the way. Images
 * that cannot be decoded are left out with a warning each. Each file is written under a
 * temporary name and renamed into place when complete.
 *
 * @throws FormatError for a missing or inconsistent layout; IOError when a file cannot be written
 *
 * @example
 * ```ts
 * const r = await cn.prepareImages({ data: 'imagefolder', dataDir: 'flowers', onProgress: (p) => {} });
 * console.log(r.files.map((f) => `${f.file}: ${f.count} images, ${f.skipped.length} skipped`));
 * ```
 */
export async function prepareImages(o: PrepareOptions): Promise<PrepareResult> {
  const out = path.resolve(o.out ?? o.dataDir);
  const splits = o.splits ?? ['train', 'val'];
  // Both listings first: a layout fault is reported before anything is written.
  const trainList = splits.includes('train') ? await listImages({ data: o.data, dataDir: o.dataDir, split: 'train' }) : null;
  const valList = splits.includes('val') ? await listImages({ data: o.data, dataDir: o.dataDir, split: 'val' }) : null;
  try {
    await fsp.mkdir(out, { recursive: true });
  } catch (e) {
    throw ioError('create the folder', out, e);
  }
  const files: PrepareResult['files'] = [];
  let train: { mean: [number, number, number]; pca: ColourPca } | null = null;
  const trainFile = path.join(out, packedFileName('train'));
  if (trainList) {
    const list = trainList;
    const stats = new RgbStats();
    const f = await writeSplit(list, trainFile, stats, () => stats.result(), o);
    files.push(f);
    const h = f.upToDate ? await readPackedHeader(trainFile) : null;
    train = h ? { mean: h.mean, pca: h.pca } : stats.result();
  } else {
    const h = await readPackedHeader(trainFile).catch(() => null);
    if (!h) throw new FormatError(`prepare: the val split takes the mean and PCA of the train split's packed file, but ${trainFile} is missing or invalid; prepare train first`);
    train = { mean: h.mean, pca: h.pca };
  }
  if (valList) {
    const t = train;
    files.push(await writeSplit(valList, path.join(out, packedFileName('val')), null, () => t, o));
  }
  return { files, mean: train.mean, pca: train.pca };
}
