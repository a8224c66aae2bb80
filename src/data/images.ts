/**
 * Folders of JPEG and PNG images: the two layouts `convnet train` reads (`imagefolder` and
 * ILSVRC-2012's `imagenet`), and the paper's decoding of one image (shorter side to 256, the
 * centre 256x256, RGB) with sharp, whose work runs on libuv's thread pool, off the JS thread.
 *
 * Layouts:
 * - `imagefolder`: `DIR/train/<class>/*` and `DIR/val/<class>/*`; classes are the train folders
 *   sorted by name (code-point order); every val folder must be one of them.
 * - `imagenet`: `DIR/train/<wnid>/*.JPEG`; `DIR/val/` either as `<wnid>/` folders, or flat
 *   (`DIR/val/*.JPEG`) with labels from `LOC_val_solution.csv` (`ImageId,PredictionString`, the
 *   first token of the prediction string is the wnid), or from the devkit's
 *   `ILSVRC2012_validation_ground_truth.txt` (one 1-based ILSVRC2012_ID per line, in sorted
 *   file-name order) with a synset list giving the wnid of each ID (`synsets.txt`,
 *   `LOC_synset_mapping.txt` or `synset_words.txt`: line i is ID i, its first token the wnid).
 *   The label files are looked for in `DIR/val` and then `DIR`.
 *
 * Files are those whose name ends in .jpg, .jpeg or .png in any case; everything else is ignored.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { FormatError } from '../errors.js';
import { STORED_SIZE } from './augment.js';

/** The two folder layouts. */
export type ImageLayout = 'imagefolder' | 'imagenet';
/** The two splits. */
export type ImageSplit = 'train' | 'val';

/** The images of one split, in a fixed order (sorted by class, then by file name). */
export interface ImageList {
  /** The layout it was read as. */
  layout: ImageLayout;
  /** The split. */
  split: ImageSplit;
  /** The data folder; `files` are relative to it. */
  root: string;
  /** Class names (the train split's folders), sorted. */
  classes: string[];
  /** Each image's path relative to root, with '/' separators. */
  files: string[];
  /** Each image's class index. */
  labels: Int32Array;
}

const IMAGE_EXT = /\.(jpe?g|png)$/i;
const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The label file names accepted for a flat ILSVRC-2012 val folder, looked for in `DIR/val`, then `DIR`.
 *
 * @example
 * ```ts
 * console.log(cn.VAL_LABEL_FILES.synsets); // ['synsets.txt', 'LOC_synset_mapping.txt', 'synset_words.txt']
 * ```
 */
export const VAL_LABEL_FILES: {
  /** CSV of `ImageId,PredictionString` (used first when present). */
  readonly csv: readonly string[];
  /** One 1-based ILSVRC2012_ID per line, in sorted file-name order. */
  readonly groundTruth: readonly string[];
  /** The wnid of each ID, one per line in ID order (the first of these names found). */
  readonly synsets: readonly string[];
} = {
  csv: ['LOC_val_solution.csv'],
  groundTruth: ['ILSVRC2012_validation_ground_truth.txt'],
  synsets: ['synsets.txt', 'LOC_synset_mapping.txt', 'synset_words.txt'],
};

async function entries(dir: string): Promise<import('node:fs').Dirent[] | null> {
  try {
    return await fsp.readdir(dir, { withFileTypes: true });
  } catch {
    return null;
  }
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await fsp.stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Sub-folders and image files of a folder (following symbolic links), both sorted. */
async function folderContents(dir: string): Promise<{ dirs: string[]; images: string[] }> {
  const list = (await entries(dir)) ?? [];
  const dirs: string[] = [];
  const images: string[] = [];
  for (const e of list) {
    let d = e.isDirectory();
    let f = e.isFile();
    if (e.isSymbolicLink()) {
      try {
        const s = await fsp.stat(path.join(dir, e.name));
        d = s.isDirectory();
        f = s.isFile();
      } catch {
        continue;
      }
    }
    if (d && !e.name.startsWith('.')) dirs.push(e.name);
    else if (f && IMAGE_EXT.test(e.name)) images.push(e.name);
  }
  return { dirs: dirs.sort(byCodePoint), images: images.sort(byCodePoint) };
}

/** The classes of DIR/train (its sub-folders, sorted); FormatError when there are none. */
async function trainClasses(layout: ImageLayout, root: string): Promise<string[]> {
  const train = path.join(root, 'train');
  if (!(await isDir(root))) throw new FormatError(`${layout}: data folder ${root} does not exist`);
  if (!(await isDir(train))) throw new FormatError(`${layout}: ${train} must hold one folder per class, but it does not exist`);
  const { dirs } = await folderContents(train);
  if (dirs.length === 0) throw new FormatError(`${layout}: ${train} must hold one folder per class, found none`);
  return dirs;
}

/** Every image under DIR/<split>/<class>/ for the given classes. */
async function classFolders(layout: ImageLayout, root: string, split: ImageSplit, classes: string[], folders: string[]): Promise<ImageList> {
  const index = new Map(classes.map((c, i) => [c, i]));
  const files: string[] = [];
  const labels: number[] = [];
  for (const name of folders) {
    const label = index.get(name);
    if (label === undefined) {
      const shown = classes.length > 5 ? `${classes.slice(0, 5).join(', ')}, ... (${classes.length})` : classes.join(', ');
      throw new FormatError(`${layout}: ${path.join(root, split, name)} is not a class of ${path.join(root, 'train')} (classes: ${shown})`);
    }
    const { images } = await folderContents(path.join(root, split, name));
    for (const f of images) {
      files.push(`${split}/${name}/${f}`);
      labels.push(label);
    }
  }
  if (files.length === 0) throw new FormatError(`${layout}: ${path.join(root, split)} holds no .jpg, .jpeg or .png images`);
  return { layout, split, root, classes, files, labels: Int32Array.from(labels) };
}

/** The first of these names that exists in one of the folders, or null. */
async function findFile(folders: string[], names: readonly string[]): Promise<string | null> {
  for (const dir of folders) {
    for (const n of names) {
      const p = path.join(dir, n);
      try {
        if ((await fsp.stat(p)).isFile()) return p;
      } catch {
        // not here
      }
    }
  }
  return null;
}

async function lines(file: string): Promise<string[]> {
  const text = await fsp.readFile(file, 'utf8');
  const out = text.split(/\r?\n/);
  while (out.length > 0 && out[out.length - 1].trim() === '') out.pop();
  return out;
}

/** Labels of a flat ILSVRC-2012 val folder, from the CSV or the ground truth with the synsets. */
async function flatValLabels(root: string, classes: string[], images: string[]): Promise<Int32Array> {
  const valDir = path.join(root, 'val');
  const where = [valDir, root];
  const index = new Map(classes.map((c, i) => [c, i]));
  const labels = new Int32Array(images.length);
  const csv = await findFile(where, VAL_LABEL_FILES.csv);
  if (csv) {
    const rows = await lines(csv);
    if (rows.length === 0 || rows[0].trim() !== 'ImageId,PredictionString') {
      throw new FormatError(`imagenet: ${csv} must begin with the header ImageId,PredictionString, received '${(rows[0] ?? '').slice(0, 60)}'`);
    }
    const byId = new Map<string, number>();
    for (let i = 1; i < rows.length; i++) {
      const comma = rows[i].indexOf(',');
      const id = comma < 0 ? '' : rows[i].slice(0, comma).trim();
      const wnid = comma < 0 ? '' : rows[i].slice(comma + 1).trim().split(/\s+/)[0];
      if (!id || !wnid) throw new FormatError(`imagenet: ${csv} line ${i + 1}: expected ImageId,wnid ..., received '${rows[i].slice(0, 60)}'`);
      const label = index.get(wnid);
      if (label === undefined) throw new FormatError(`imagenet: ${csv} line ${i + 1}: ${wnid} is not a class of ${path.join(root, 'train')}`);
      byId.set(id, label);
    }
    images.forEach((f, i) => {
      const label = byId.get(f.replace(IMAGE_EXT, ''));
      if (label === undefined) throw new FormatError(`imagenet: ${csv} has no label for val/${f}`);
      labels[i] = label;
    });
    return labels;
  }
  const truth = await findFile(where, VAL_LABEL_FILES.groundTruth);
  const synsets = await findFile(where, VAL_LABEL_FILES.synsets);
  if (!truth || !synsets) {
    const missing = !truth && !synsets
      ? `${VAL_LABEL_FILES.csv[0]}, or ${VAL_LABEL_FILES.groundTruth[0]} with ${VAL_LABEL_FILES.synsets.join(' or ')}`
      : !truth ? VAL_LABEL_FILES.groundTruth[0] : VAL_LABEL_FILES.synsets.join(' or ');
    throw new FormatError(`imagenet: ${valDir} holds ${images.length} images but no labels: expected ${missing} in ${valDir} or ${root}`);
  }
  const wnids = (await lines(synsets)).map((l) => l.trim().split(/\s+/)[0]);
  const idToLabel = wnids.map((w, i) => {
    const label = index.get(w);
    if (label === undefined) throw new FormatError(`imagenet: ${synsets} line ${i + 1}: ${w || "''"} is not a class of ${path.join(root, 'train')}`);
    return label;
  });
  const ids = await lines(truth);
  if (ids.length !== images.length) {
    throw new FormatError(`imagenet: ${truth} has ${ids.length} labels, expected one per image of ${valDir} (${images.length})`);
  }
  ids.forEach((s, i) => {
    const id = Number(s.trim());
    if (!Number.isInteger(id) || id < 1 || id > idToLabel.length || s.trim() === '') {
      throw new FormatError(`imagenet: ${truth} line ${i + 1}: expected an ILSVRC2012_ID from 1 to ${idToLabel.length} (the lines of ${path.basename(synsets)}), received '${s.slice(0, 40)}'`);
    }
    labels[i] = idToLabel[id - 1];
  });
  return labels;
}

/**
 * Lists the images of one split of an image folder or ILSVRC-2012 tree: their paths, in a
 * fixed order (sorted by class folder, then file name; a flat val folder by file name), and
 * their labels. Reads folders and label files only, no image.
 *
 * @throws FormatError naming the folder or file when the layout is missing or inconsistent
 *
 * @example
 * ```ts
 * const val = await cn.listImages({ data: 'imagenet', dataDir: '/data/ilsvrc2012', split: 'val' });
 * console.log(val.files.length, val.classes.length); // 50000 1000
 * ```
 */
export async function listImages(opts: { data: ImageLayout; dataDir: string; split: ImageSplit }): Promise<ImageList> {
  const { data, split } = opts;
  const root = path.resolve(opts.dataDir);
  const classes = await trainClasses(data, root);
  if (split === 'train') return classFolders(data, root, 'train', classes, classes);
  const valDir = path.join(root, 'val');
  if (!(await isDir(valDir))) throw new FormatError(`${data}: ${valDir} must hold the validation images, but it does not exist`);
  const { dirs, images } = await folderContents(valDir);
  if (dirs.length > 0 || data === 'imagefolder') {
    if (data === 'imagefolder' && dirs.length === 0) throw new FormatError(`imagefolder: ${valDir} must hold one folder per class, found none`);
    return classFolders(data, root, 'val', classes, dirs);
  }
  if (images.length === 0) throw new FormatError(`imagenet: ${valDir} holds neither class folders nor images`);
  const labels = await flatValLabels(root, classes, images);
  return { layout: data, split, root, classes, files: images.map((f) => `val/${f}`), labels };
}

type Sharp = typeof import('sharp').default;
let sharpModule: Promise<Sharp> | null = null;

/** sharp, loaded on first use (so that importing the library does not load libvips). */
function loadSharp(): Promise<Sharp> {
  sharpModule ??= import('sharp').then((m) => m.default);
  return sharpModule;
}

/**
 * Decodes one image file the paper's way: shorter side resized to `size` (default 256, with
 * libvips' default Lanczos-3 kernel), the centre `size` x `size` kept, converted to sRGB (a
 * grey or CMYK image gets three channels; an alpha channel is dropped), returned as `[3, size,
 * size]` uint8 in CHW order. EXIF orientation is not applied (as PIL and torchvision do not).
 * Runs on libuv's thread pool.
 *
 * @throws Error (sharp's) for a file that is missing, corrupt or not an image
 *
 * @example
 * ```ts
 * const chw = await cn.decodeImage('/data/ilsvrc2012/train/n01440764/n01440764_10026.JPEG');
 * chw.length; // 3 * 256 * 256
 * ```
 */
export async function decodeImage(file: string, size = STORED_SIZE): Promise<Uint8Array> {
  const sharp = await loadSharp();
  const { data, info } = await sharp(file, { failOn: 'error', sequentialRead: true })
    .resize(size, size, { fit: 'cover', position: 'centre' })
    .toColourspace('srgb')
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.width !== size || info.height !== size || info.channels !== 3) {
    throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x3`);
  }
  const px = size * size;
  const out = new Uint8Array(3 * px);
  for (let i = 0, j = 0; i < px; i++, j += 3) {
    out[i] = data[j];
    out[px + i] = data[j + 1];
    out[2 * px + i] = data[j + 2];
  }
  return out;
}
