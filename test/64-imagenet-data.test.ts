/**
 * Colour-image data: the imagefolder and ImageNet layouts (class folders, flat val with the
 * ground truth and synsets, or the CSV), decoding (PNG, grey, CMYK, a corrupt file), the packed
 * file against on-the-fly decoding, counter-based augmentation (purity, resume, the PCA noise's
 * covariance), the ten evaluation patches and their score, and `convnet prepare`.
 * Images are generated with sharp in a temporary folder.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { augmentParams, cropInto, gaussianAt, RgbStats, symmetricEigen3 } from '../src/data/augment.js';
import { rng } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'convnet-images-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const S = 256;
const C = 224;

/** A JPEG (or PNG) of random pixels, w x h, with `channels` 1 (grey), 3, or 4 (RGBA, PNG only). */
async function image(file: string, w: number, h: number, seed: number, opts: { channels?: 1 | 3 | 4; png?: boolean; cmyk?: boolean } = {}): Promise<void> {
  const ch = opts.channels ?? 3;
  const r = rng(seed);
  const px = Buffer.alloc(w * h * ch);
  // Smooth-ish content (a gradient plus noise) so that resizing keeps structure.
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < ch; c++) {
    px[(y * w + x) * ch + c] = Math.min(255, Math.floor(((x + y * (c + 1)) * 255) / (w + h * 4) * 0.7 + r() * 80));
  }
  mkdirSync(path.dirname(file), { recursive: true });
  let img = sharp(px, { raw: { width: w, height: h, channels: ch } });
  if (opts.png) await img.png().toFile(file);
  else if (opts.cmyk) await img.toColourspace('cmyk').jpeg({ quality: 90 }).toFile(file);
  else await img.jpeg({ quality: 90 }).toFile(file);
}

const folder = path.join(tmp, 'folder');
const inet = path.join(tmp, 'inet');
const inetCsv = path.join(tmp, 'inet-csv');
const corrupt = path.join(folder, 'train', 'cat', 'c9-broken.jpg');
const WNIDS = ['n01440764', 'n02102040', 'n03000134'];
// ILSVRC2012_ID order differs from sorted order: ID 1 is n02102040, ID 2 n03000134, ID 3 n01440764.
const ID_ORDER = ['n02102040', 'n03000134', 'n01440764'];
const VAL_TRUE = ['n03000134', 'n01440764', 'n02102040', 'n03000134']; // wnid of val image 1..4

beforeAll(async () => {
  let seed = 1;
  const jobs: Promise<void>[] = [];
  // imagefolder: 3 classes; PNG (with alpha), grey, CMYK, upper-case extension, a corrupt file, a stray text file.
  for (const cls of ['cat', 'ant', 'dog']) {
    for (let i = 0; i < 3; i++) jobs.push(image(path.join(folder, 'train', cls, `${cls[0]}${i}.jpg`), 100 + 20 * i, 75 + 10 * i, seed++));
    jobs.push(image(path.join(folder, 'val', cls, `v-${cls}.jpg`), 120, 90, seed++));
  }
  jobs.push(image(path.join(folder, 'train', 'ant', 'a3-alpha.PNG'), 90, 120, seed++, { channels: 4, png: true }));
  jobs.push(image(path.join(folder, 'train', 'dog', 'd3-grey.jpeg'), 80, 60, seed++, { channels: 1 }));
  jobs.push(image(path.join(folder, 'train', 'dog', 'd4-cmyk.JPG'), 96, 64, seed++, { cmyk: true }));
  // imagenet: train/<wnid>/*.JPEG, flat val.
  for (const w of WNIDS) {
    for (let i = 0; i < 3; i++) jobs.push(image(path.join(inet, 'train', w, `${w}_${i}.JPEG`), 500, 375, seed++));
  }
  for (let i = 1; i <= 4; i++) jobs.push(image(path.join(inet, 'val', `ILSVRC2012_val_0000000${i}.JPEG`), 375, 500, seed++));
  await Promise.all(jobs);
  writeFileSync(corrupt, Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(200, 7)]));
  writeFileSync(path.join(folder, 'train', 'cat', 'notes.txt'), 'not an image');
  writeFileSync(path.join(inet, 'val', 'ILSVRC2012_validation_ground_truth.txt'), VAL_TRUE.map((w) => ID_ORDER.indexOf(w) + 1).join('\n') + '\n');
  writeFileSync(path.join(inet, 'LOC_synset_mapping.txt'), ID_ORDER.map((w) => `${w} some words, more words`).join('\n') + '\n');
  // The same tree with the CSV instead (rows in another order), sharing the images by copy.
  mkdirSync(inetCsv);
  spawnSync('cp', ['-r', path.join(inet, 'train'), path.join(inet, 'val'), inetCsv]);
  rmSync(path.join(inetCsv, 'val', 'ILSVRC2012_validation_ground_truth.txt'));
  const rows = [3, 1, 4, 2].map((i) => `ILSVRC2012_val_0000000${i},${VAL_TRUE[i - 1]} 1 2 3 4 ${VAL_TRUE[i - 1]} 5 6 7 8`);
  writeFileSync(path.join(inetCsv, 'LOC_val_solution.csv'), ['ImageId,PredictionString', ...rows].join('\n') + '\n');
}, 30_000);

async function thrown(p: Promise<unknown>, cls: new (...a: never[]) => Error): Promise<string> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(cls);
  return (err as Error).message;
}

/** The decoded image by an independent route: sharp's resize + extract, RGB, HWC -> CHW by hand. */
async function reference(file: string): Promise<Uint8Array> {
  const m = await sharp(file).metadata();
  const k = S / Math.min(m.width!, m.height!);
  const w = Math.max(S, Math.round(m.width! * k)), h = Math.max(S, Math.round(m.height! * k));
  const { data } = await sharp(file).resize(w, h).extract({ left: Math.round((w - S) / 2), top: Math.round((h - S) / 2), width: S, height: S })
    .toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const out = new Uint8Array(3 * S * S);
  for (let i = 0; i < S * S; i++) for (let c = 0; c < 3; c++) out[c * S * S + i] = data[3 * i + c];
  return out;
}

describe('layouts', () => {
  it('imagefolder: sorted classes, images of any extension case, other files ignored', async () => {
    const l = await cn.listImages({ data: 'imagefolder', dataDir: folder, split: 'train' });
    expect(l.classes).toEqual(['ant', 'cat', 'dog']);
    expect(l.files).toEqual([
      'train/ant/a0.jpg', 'train/ant/a1.jpg', 'train/ant/a2.jpg', 'train/ant/a3-alpha.PNG',
      'train/cat/c0.jpg', 'train/cat/c1.jpg', 'train/cat/c2.jpg', 'train/cat/c9-broken.jpg',
      'train/dog/d0.jpg', 'train/dog/d1.jpg', 'train/dog/d2.jpg', 'train/dog/d3-grey.jpeg', 'train/dog/d4-cmyk.JPG',
    ]);
    expect([...l.labels]).toEqual([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
    const v = await cn.listImages({ data: 'imagefolder', dataDir: folder, split: 'val' });
    expect(v.files).toEqual(['val/ant/v-ant.jpg', 'val/cat/v-cat.jpg', 'val/dog/v-dog.jpg']);
    expect([...v.labels]).toEqual([0, 1, 2]);
  });

  it('imagenet: flat val with the ground truth (ILSVRC2012_ID order) and the synset mapping', async () => {
    const t = await cn.listImages({ data: 'imagenet', dataDir: inet, split: 'train' });
    expect(t.classes).toEqual(WNIDS);
    expect(t.files.length).toBe(9);
    const v = await cn.listImages({ data: 'imagenet', dataDir: inet, split: 'val' });
    expect(v.files).toEqual([1, 2, 3, 4].map((i) => `val/ILSVRC2012_val_0000000${i}.JPEG`));
    expect([...v.labels]).toEqual(VAL_TRUE.map((w) => WNIDS.indexOf(w)));
  });

  it('imagenet: flat val with LOC_val_solution.csv', async () => {
    const v = await cn.listImages({ data: 'imagenet', dataDir: inetCsv, split: 'val' });
    expect([...v.labels]).toEqual(VAL_TRUE.map((w) => WNIDS.indexOf(w)));
  });

  it('imagenet: val as class folders', async () => {
    const v = await cn.listImages({ data: 'imagenet', dataDir: folder, split: 'val' });
    expect([v.layout, v.files, [...v.labels]]).toEqual(['imagenet', ['val/ant/v-ant.jpg', 'val/cat/v-cat.jpg', 'val/dog/v-dog.jpg'], [0, 1, 2]]);
  });

  it('missing or inconsistent pieces: FormatError naming the file and what was expected', async () => {
    const bad = path.join(tmp, 'bad');
    const nope = path.join(tmp, 'nope');
    expect(await thrown(cn.listImages({ data: 'imagenet', dataDir: nope, split: 'train' }), cn.FormatError))
      .toBe(`imagenet: data folder ${nope} does not exist`);
    mkdirSync(bad);
    expect(await thrown(cn.listImages({ data: 'imagefolder', dataDir: bad, split: 'train' }), cn.FormatError))
      .toBe(`imagefolder: ${path.join(bad, 'train')} must hold one folder per class, but it does not exist`);
    await image(path.join(bad, 'train', 'n01', 'x.JPEG'), 40, 30, 99);
    await image(path.join(bad, 'val', 'ILSVRC2012_val_00000001.JPEG'), 40, 30, 98);
    await image(path.join(bad, 'val', 'ILSVRC2012_val_00000002.JPEG'), 40, 30, 97);
    const valDir = path.join(bad, 'val');
    expect(await thrown(cn.listImages({ data: 'imagenet', dataDir: bad, split: 'val' }), cn.FormatError)).toBe(
      `imagenet: ${valDir} holds 2 images but no labels: expected LOC_val_solution.csv, or ` +
        `ILSVRC2012_validation_ground_truth.txt with synsets.txt or LOC_synset_mapping.txt or synset_words.txt in ${valDir} or ${bad}`,
    );
    const truth = path.join(bad, 'ILSVRC2012_validation_ground_truth.txt');
    writeFileSync(truth, '1\n');
    expect(await thrown(cn.listImages({ data: 'imagenet', dataDir: bad, split: 'val' }), cn.FormatError)).toBe(
      `imagenet: ${valDir} holds 2 images but no labels: expected synsets.txt or LOC_synset_mapping.txt or synset_words.txt in ${valDir} or ${bad}`,
    );
    writeFileSync(path.join(bad, 'synsets.txt'), 'n01\n');
    expect(await thrown(cn.listImages({ data: 'imagenet', dataDir: bad, split: 'val' }), cn.FormatError))
      .toBe(`imagenet: ${truth} has 1 labels, expected one per image of ${valDir} (2)`);
    writeFileSync(truth, '1\n2\n');
    expect(await thrown(cn.listImages({ data: 'imagenet', dataDir: bad, split: 'val' }), cn.FormatError))
      .toBe(`imagenet: ${truth} line 2: expected an ILSVRC2012_ID from 1 to 1 (the lines of synsets.txt), received '2'`);
    writeFileSync(path.join(bad, 'synsets.txt'), 'n01\nn02\n');
    expect(await thrown(cn.listImages({ data: 'imagenet', dataDir: bad, split: 'val' }), cn.FormatError))
      .toBe(`imagenet: ${path.join(bad, 'synsets.txt')} line 2: n02 is not a class of ${path.join(bad, 'train')}`);
    const csv = path.join(valDir, 'LOC_val_solution.csv');
    writeFileSync(csv, 'ImageId,PredictionString\nILSVRC2012_val_00000001,n01 1 2 3 4\n');
    expect(await thrown(cn.listImages({ data: 'imagenet', dataDir: bad, split: 'val' }), cn.FormatError))
      .toBe(`imagenet: ${csv} has no label for val/ILSVRC2012_val_00000002.JPEG`);
    writeFileSync(csv, 'id,label\n');
    expect(await thrown(cn.listImages({ data: 'imagenet', dataDir: bad, split: 'val' }), cn.FormatError))
      .toBe(`imagenet: ${csv} must begin with the header ImageId,PredictionString, received 'id,label'`);
    mkdirSync(path.join(folder, 'val', 'zebra'));
    try {
      expect(await thrown(cn.listImages({ data: 'imagefolder', dataDir: folder, split: 'val' }), cn.FormatError))
        .toBe(`imagefolder: ${path.join(folder, 'val', 'zebra')} is not a class of ${path.join(folder, 'train')} (classes: ant, cat, dog)`);
    } finally {
      rmSync(path.join(folder, 'val', 'zebra'), { recursive: true });
    }
  });
});

describe('decoding', () => {
  it('shorter side to 256, centre crop, CHW RGB: equal to an independent sharp route', async () => {
    for (const f of ['train/ant/a1.jpg', 'train/ant/a3-alpha.PNG']) {
      const file = path.join(folder, f);
      const got = await cn.decodeImage(file);
      expect(got.length).toBe(3 * S * S);
      const want = await reference(file);
      let maxDiff = 0;
      for (let i = 0; i < got.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
      expect(maxDiff).toBe(0);
    }
  });

  it('a grey JPEG becomes three equal channels; a CMYK JPEG becomes RGB', async () => {
    const g = await cn.decodeImage(path.join(folder, 'train/dog/d3-grey.jpeg'));
    const px = S * S;
    let spread = 0;
    for (let i = 0; i < px; i++) spread = Math.max(spread, Math.abs(g[i] - g[px + i]), Math.abs(g[i] - g[2 * px + i]));
    expect(spread).toBe(0);
    const m = await sharp(path.join(folder, 'train/dog/d4-cmyk.JPG')).metadata();
    expect(m.space).toBe('cmyk');
    const c = await cn.decodeImage(path.join(folder, 'train/dog/d4-cmyk.JPG'));
    const mean = [0, 1, 2].map((ch) => c.subarray(ch * px, (ch + 1) * px).reduce((a, b) => a + b, 0) / px);
    expect(mean.every((v) => v > 5 && v < 250)).toBe(true);
  });

  it('a corrupt file rejects with sharp\'s error', async () => {
    await expect(cn.decodeImage(corrupt)).rejects.toThrow();
  });
});

describe('packed file and loaders', () => {
  const out = path.join(tmp, 'packs');
  const warnings: string[] = [];
  let result: cn.PrepareResult;

  beforeAll(async () => {
    result = await cn.prepareImages({ data: 'imagefolder', dataDir: folder, out, warn: (l) => warnings.push(l), concurrency: 3 });
  }, 30_000);

  it('prepare: skips the corrupt file with one warning naming it, counts it, keeps the order', async () => {
    expect(warnings.length).toBe(1);
    expect(warnings[0].startsWith(`prepare: skipped ${corrupt}: `)).toBe(true);
    const [tr, va] = result.files;
    expect([tr.split, tr.count, tr.skipped.map((s) => s.file)]).toEqual(['train', 12, [corrupt]]);
    expect([va.split, va.count, va.skipped.length]).toEqual(['val', 3, 0]);
    const h = await cn.readPackedHeader(tr.file);
    expect([h.count, h.skipped, h.classes]).toEqual([12, 1, ['ant', 'cat', 'dog']]);
    expect(existsSync(`${tr.file}.partial`)).toBe(false);
  });

  it('an interrupted prepare resumes where it stopped and writes the same file; an up-to-date one is kept', async () => {
    const dir = path.join(tmp, 'resume');
    const file = path.join(dir, 'train.convnet-pack');
    const o = { data: 'imagefolder' as const, dataDir: folder, out: dir, splits: ['train' as const], saveEvery: 0, concurrency: 2 };
    let calls = 0;
    const warned: string[] = [];
    await expect(cn.prepareImages({ ...o, warn: (l) => warned.push(l), onProgress: () => {
      if (++calls === 9) throw new Error('interrupted');
    } })).rejects.toThrow('interrupted');
    expect(warned.length).toBe(1); // the corrupt file, position 7
    expect([existsSync(file), existsSync(`${file}.partial`), existsSync(`${file}.partial.json`)]).toEqual([false, true, true]);
    const seen: cn.PrepareProgress[] = [];
    const r = await cn.prepareImages({ ...o, warn: (l) => warned.push(l), onProgress: (p) => seen.push(p) });
    expect(seen[0]).toEqual({ split: 'train', done: 9, total: 13, skipped: 1, resumedFrom: 8 });
    expect(warned.length).toBe(1);
    expect([r.files[0].count, r.files[0].skipped.map((x) => x.file)]).toEqual([12, [corrupt]]);
    expect(Buffer.compare(readFileSync(file), readFileSync(path.join(out, 'train.convnet-pack')))).toBe(0);
    expect([existsSync(`${file}.partial`), existsSync(`${file}.partial.json`)]).toEqual([false, false]);
    const again = await cn.prepareImages({ ...o, warn: (l) => warned.push(l) });
    expect([again.files[0].upToDate, again.files[0].count, again.mean]).toEqual([true, 12, r.mean]);
  }, 20_000);

  it('a damaged packed file is a FormatError naming it', async () => {
    const good = readFileSync(path.join(out, 'val.convnet-pack'));
    const bad = path.join(tmp, 'bad.convnet-pack');
    writeFileSync(bad, good.subarray(0, good.length - 5));
    expect(await thrown(cn.readPackedHeader(bad), cn.FormatError))
      .toBe(`packed file: ${bad} has ${good.length - 5} bytes, expected ${good.length} for 3 images (truncated or corrupt)`);
    writeFileSync(bad, Buffer.concat([Buffer.from('NOTPACK\n'), good.subarray(8)]));
    expect(await thrown(cn.readPackedHeader(bad), cn.FormatError))
      .toBe(`packed file: ${bad} does not begin with the magic bytes CNVPACK (not a packed image file)`);
    const v2 = Buffer.from(good);
    v2.writeUInt32LE(2, 8);
    writeFileSync(bad, v2);
    expect(await thrown(cn.readPackedHeader(bad), cn.FormatError)).toBe(`packed file: ${bad} has version 2, expected 1`);
    const missing = path.join(tmp, 'none.convnet-pack');
    expect(await thrown(cn.openImageSource({ data: 'imagenet', dataDir: inet, split: 'val', batchSize: 1, packed: missing }), cn.FormatError))
      .toBe(`packed file: ${missing} cannot be opened (ENOENT)`);
  });

  it('packed pixels equal on-the-fly decoding; mean and PCA equal a direct computation', async () => {
    const list = await cn.listImages({ data: 'imagefolder', dataDir: folder, split: 'train' });
    const h = await cn.readPackedHeader(result.files[0].file);
    const bytes = readFileSync(result.files[0].file);
    const kept = list.files.filter((f) => !f.includes('broken'));
    const sum = [0, 0, 0];
    const cov = [[0, 0, 0], [0, 0, 0], [0, 0, 0]];
    const all: Uint8Array[] = [];
    for (let i = 0; i < kept.length; i++) {
      const img = await cn.decodeImage(path.join(folder, kept[i]));
      all.push(img);
      const packed = bytes.subarray(h.pixelsOffset + i * 3 * S * S, h.pixelsOffset + (i + 1) * 3 * S * S);
      expect(Buffer.compare(packed, Buffer.from(img))).toBe(0);
      expect(bytes.readInt32LE(h.labelsOffset + 4 * i)).toBe(list.labels[list.files.indexOf(kept[i])]);
      for (let p = 0; p < S * S; p++) for (let c = 0; c < 3; c++) sum[c] += img[c * S * S + p];
    }
    const n = kept.length * S * S;
    const mean = sum.map((s) => s / n);
    for (const img of all) {
      for (let p = 0; p < S * S; p++) {
        const d = [0, 1, 2].map((c) => img[c * S * S + p] - mean[c]);
        for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) cov[a][b] += (d[a] * d[b]) / n;
      }
    }
    for (let c = 0; c < 3; c++) expect(h.mean[c]).toBeCloseTo(mean[c], 6);
    // Rebuild the covariance from the header's PCA: sum_i eigval_i^2 v_i v_i^T.
    for (let a = 0; a < 3; a++) {
      for (let b = 0; b < 3; b++) {
        let r = 0;
        for (let i = 0; i < 3; i++) r += h.pca.eigval[i] ** 2 * h.pca.eigvec[i][a] * h.pca.eigvec[i][b];
        expect(Math.abs(r - cov[a][b])).toBeLessThan(1e-6 * Math.max(1, Math.abs(cov[a][b])));
      }
    }
    expect(h.pca.eigval[0]).toBeGreaterThanOrEqual(h.pca.eigval[1]);
  }, 20_000);

  it('the packed source and the decoding source serve identical batches', async () => {
    const common = { data: 'imagenet' as const, dataDir: inet, split: 'train' as const, batchSize: 4, seed: 7 };
    const packDir = path.join(tmp, 'inet-packs');
    await cn.prepareImages({ data: 'imagenet', dataDir: inet, out: packDir, splits: ['train'], warn: () => {} });
    const packed = await cn.openImageSource({ ...common, packedDir: packDir });
    const decoded = await cn.openImageSource({ ...common, packed: false, mean: packed.mean, pca: packed.pca });
    try {
      expect([packed.kind, decoded.kind, packed.size, packed.batchesPerEpoch]).toEqual(['packed', 'decode', 9, 2]);
      for (const [e, k] of [[0, 0], [0, 1], [3, 1]]) {
        const a = await packed.batchAt(e, k);
        const b = await decoded.batchAt(e, k);
        expect(a.shape).toEqual([4, 3, C, C]);
        expect([...a.indices]).toEqual([...b.indices]);
        expect([...a.labels]).toEqual([...b.labels]);
        expect(Buffer.compare(Buffer.from(a.x.buffer), Buffer.from(b.x.buffer))).toBe(0);
      }
    } finally {
      await packed.close();
      await decoded.close();
    }
  }, 20_000);

  it('training batches: crop, flip and colour noise as drawn, the mean subtracted; pure and resumable', async () => {
    const src = await cn.openImageSource({ data: 'imagefolder', dataDir: folder, split: 'train', batchSize: 5, seed: 3, packedDir: out });
    try {
      expect(src.kind).toBe('packed');
      const b = await src.batchAt(2, 1);
      const again = await src.batchAt(2, 1);
      expect(Buffer.compare(Buffer.from(b.x.buffer), Buffer.from(again.x.buffer))).toBe(0);
      const h = await cn.readPackedHeader(path.join(out, 'train.convnet-pack'));
      const bytes = readFileSync(path.join(out, 'train.convnet-pack'));
      const perm = new Set<number>();
      for (let i = 0; i < 5; i++) {
        const idx = b.indices[i];
        perm.add(idx);
        const img = bytes.subarray(h.pixelsOffset + idx * 3 * S * S, h.pixelsOffset + (idx + 1) * 3 * S * S);
        const a = augmentParams(3, 2, 5 + i, { pca: h.pca });
        // Spot-check pixels by the formula, independently of cropInto.
        for (const [c, r, col] of [[0, 0, 0], [1, 100, 17], [2, 223, 223], [0, 50, 200]]) {
          const sx = a.flip ? a.x + (C - 1 - col) : a.x + col;
          const want = img[c * S * S + (a.y + r) * S + sx] + a.offset[c] - h.mean[c];
          expect(b.x[i * 3 * C * C + c * C * C + r * C + col]).toBeCloseTo(want, 3);
        }
      }
      expect(perm.size).toBe(5);
      // Resume: batches after a saved state are those an uninterrupted run sees.
      const seen: cn.ImageBatch[] = [];
      src.setState({ seed: 3, epoch: 0, batch: 0 });
      let saved: cn.LoaderState | null = null;
      for await (const x of src.prefetch()) {
        seen.push(x);
        if (seen.length === 2) saved = src.state();
        if (seen.length === 5) break;
      }
      expect(seen.map((x) => [x.epoch, x.batch])).toEqual([[0, 0], [0, 1], [1, 0], [1, 1], [2, 0]]);
      expect(saved).toEqual({ seed: 3, epoch: 1, batch: 0 });
      const other = await cn.openImageSource({ data: 'imagefolder', dataDir: folder, split: 'train', batchSize: 5, seed: 99, packedDir: out });
      try {
        other.setState(saved!);
        const resumed: cn.ImageBatch[] = [];
        for await (const x of other.prefetch()) {
          resumed.push(x);
          if (resumed.length === 3) break;
        }
        for (let j = 0; j < 3; j++) {
          expect([resumed[j].epoch, resumed[j].batch]).toEqual([seen[2 + j].epoch, seen[2 + j].batch]);
          expect(Buffer.compare(Buffer.from(resumed[j].x.buffer), Buffer.from(seen[2 + j].x.buffer))).toBe(0);
        }
      } finally {
        await other.close();
      }
    } finally {
      await src.close();
    }
  }, 20_000);

  it('on the fly, a corrupt image is replaced by the next readable one, reported once', async () => {
    const warns: string[] = [];
    const src = await cn.openImageSource({
      data: 'imagefolder', dataDir: folder, split: 'val', train: false, batchSize: 13, packed: false, warn: (l) => warns.push(l),
    });
    await src.close();
    // The val split has no corrupt file; evaluate train in order instead (position 7 is the broken one).
    const tr = await cn.openImageSource({
      data: 'imagefolder', dataDir: folder, split: 'train', train: false, batchSize: 13, packed: false, warn: (l) => warns.push(l),
    });
    try {
      expect(tr.size).toBe(13);
      const b = await tr.batchAt(0, 0);
      expect([...b.indices]).toEqual([0, 1, 2, 3, 4, 5, 6, 8, 8, 9, 10, 11, 12]);
      expect([...b.labels]).toEqual([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
      await tr.batchAt(0, 0);
      expect(warns.length).toBe(1);
      expect(warns[0].startsWith(`convnet: skipped ${corrupt}: `)).toBe(true);
      expect(tr.skipped.map((s) => s.file)).toEqual([corrupt]);
    } finally {
      await tr.close();
    }
  }, 20_000);

  it('worker threads cut the same crops and patches as the JS thread', async () => {
    for (const extra of [{ split: 'train' as const }, { split: 'val' as const, patches: 10 as const }]) {
      const common = { data: 'imagefolder' as const, dataDir: folder, batchSize: 2, seed: 5, packedDir: out, ...extra };
      const inline = await cn.openImageSource({ ...common, workers: 0 });
      const pooled = await cn.openImageSource({ ...common, workers: 2 });
      try {
        for (const k of [0, 1]) {
          const a = await inline.batchAt(1, k);
          const b = await pooled.batchAt(1, k);
          expect(b.shape).toEqual(a.shape);
          expect([...b.indices]).toEqual([...a.indices]);
          expect(Buffer.compare(Buffer.from(a.x.buffer), Buffer.from(b.x.buffer))).toBe(0);
        }
      } finally {
        await inline.close();
        await pooled.close();
      }
    }
  }, 20_000);

  it('ten patches: corners, centre and mirrors, as laid out in ImageBatch', async () => {
    const src = await cn.openImageSource({ data: 'imagefolder', dataDir: folder, split: 'val', batchSize: 2, patches: 10, packedDir: out });
    try {
      expect([src.train, src.patches, src.batchesPerEpoch]).toEqual([false, 10, 2]);
      const b = await src.batchAt(0, 1);
      expect(b.shape).toEqual([10, 3, C, C]);
      expect(b.patches).toBe(10);
      expect([...b.indices]).toEqual([2]);
      const img = await cn.decodeImage(path.join(folder, 'val/dog/v-dog.jpg'));
      const at = (y: number, x: number, c: number) => img[c * S * S + y * S + x] - src.mean[c];
      const m = S - C;
      const corners = [[0, 0], [0, m], [m, 0], [m, m], [m / 2, m / 2]];
      for (let p = 0; p < 10; p++) {
        const [y, x] = corners[p % 5];
        const flip = p >= 5;
        for (const [c, r, col] of [[0, 0, 0], [1, 5, 200], [2, 223, 3]]) {
          const sx = flip ? x + C - 1 - col : x + col;
          expect(b.x[p * 3 * C * C + c * C * C + r * C + col]).toBeCloseTo(at(y + r, sx, c), 4);
        }
      }
    } finally {
      await src.close();
    }
  });
});

describe('augmentation', () => {
  it('PCA colour noise has covariance V diag((0.1 lambda)^2) V^T', () => {
    const pca = cn.IMAGENET_PCA;
    const n = 40000;
    const sum = [0, 0, 0];
    const prod = [[0, 0, 0], [0, 0, 0], [0, 0, 0]];
    for (let p = 0; p < n; p++) {
      const o = augmentParams(5, 1, p, { pca }).offset;
      for (let a = 0; a < 3; a++) {
        sum[a] += o[a];
        for (let b = 0; b < 3; b++) prod[a][b] += o[a] * o[b];
      }
    }
    const scale = (0.1 * pca.eigval[0]) ** 2;
    for (let a = 0; a < 3; a++) {
      expect(Math.abs(sum[a] / n)).toBeLessThan(0.03 * Math.sqrt(scale));
      for (let b = 0; b < 3; b++) {
        let want = 0;
        for (let i = 0; i < 3; i++) want += (0.1 * pca.eigval[i]) ** 2 * pca.eigvec[i][a] * pca.eigvec[i][b];
        const got = prod[a][b] / n - (sum[a] / n) * (sum[b] / n);
        expect(Math.abs(got - want)).toBeLessThan(0.03 * scale);
      }
    }
    // Along the smallest axis alone (projected), the variance is (0.1 * lambda_3)^2, not swamped.
    let s3 = 0;
    for (let p = 0; p < n; p++) {
      const o = augmentParams(5, 1, p, { pca }).offset;
      s3 += (o[0] * pca.eigvec[2][0] + o[1] * pca.eigvec[2][1] + o[2] * pca.eigvec[2][2]) ** 2;
    }
    expect(Math.sqrt(s3 / n) / (0.1 * pca.eigval[2])).toBeCloseTo(1, 1);
  });

  it('draws: flips about half, crops cover [0, 32], standard normal alphas', () => {
    let flips = 0;
    const ys = new Set<number>();
    let m2 = 0;
    for (let p = 0; p < 4000; p++) {
      const a = augmentParams(1, 0, p);
      flips += a.flip ? 1 : 0;
      ys.add(a.y);
      m2 += gaussianAt(1, 0, 10, p) ** 2;
    }
    expect(Math.abs(flips / 4000 - 0.5)).toBeLessThan(0.03);
    expect([Math.min(...ys), Math.max(...ys), ys.size]).toEqual([0, 32, 33]);
    expect(m2 / 4000).toBeCloseTo(1, 1);
  });

  it('symmetricEigen3 and RgbStats against a known covariance', () => {
    const { values, vectors } = symmetricEigen3([[4, 1, 0], [1, 3, 0], [0, 0, 1]]);
    const l1 = (7 + Math.sqrt(5)) / 2;
    expect(values[0]).toBeCloseTo(l1, 10);
    expect(values[2]).toBeCloseTo(1, 10);
    const v = vectors[0];
    expect(4 * v[0] + v[1]).toBeCloseTo(l1 * v[0], 10);
    const st = new RgbStats();
    st.add(Uint8Array.from([0, 2, 10, 10, 20, 0]));
    const r = st.result();
    expect(r.mean).toEqual([1, 10, 10]);
    expect(r.pca.eigval[2]).toBeCloseTo(0, 6); // r and g move together, b against: rank 1
  });

  it('cropInto mirrors rows', () => {
    const src = new Uint8Array(3 * 4 * 4).map((_, i) => i);
    const dst = new Float32Array(3 * 2 * 2);
    cropInto(src, 4, dst, 0, 2, { y: 1, x: 2, flip: true }, [0, 0, 0], [0, 0, 0], 1);
    expect([...dst.subarray(0, 4)]).toEqual([7, 6, 11, 10]);
  });
});

describe('ten-patch score', () => {
  it('averages the patches\' softmax and ranks top-1 / top-5', () => {
    const r = rng(11);
    const B = 3, P = 10, K = 7;
    const logits = Float32Array.from({ length: B * P * K }, () => 4 * r() - 2);
    const labels = Int32Array.from([2, 5, 0]);
    const s = cn.scorePatches(logits, labels, P);
    let c1 = 0, c5 = 0;
    for (let i = 0; i < B; i++) {
      const avg = new Array(K).fill(0);
      for (let p = 0; p < P; p++) {
        const row = Array.from(logits.subarray((i * P + p) * K, (i * P + p + 1) * K));
        const z = row.reduce((a, v) => a + Math.exp(v), 0);
        row.forEach((v, j) => (avg[j] += Math.exp(v) / z / P));
      }
      for (let j = 0; j < K; j++) expect(s.probs[i * K + j]).toBeCloseTo(avg[j], 6);
      const rank = [...avg.keys()].sort((a, b) => avg[b] - avg[a]).indexOf(labels[i]);
      c1 += rank === 0 ? 1 : 0;
      c5 += rank < 5 ? 1 : 0;
    }
    expect([s.correct1, s.correct5, s.top1, s.top5]).toEqual([c1, c5, c1 / B, c5 / B]);
    expect(() => cn.scorePatches(logits.subarray(1), labels, P)).toThrow(
      new cn.ShapeError(`scorePatches: logits must hold [B * patches, K] = [3 * 10, K] values, received ${B * P * K - 1} values`),
    );
  });
});

describe('convnet prepare', () => {
  const cli = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), 'prepare', ...args], {
    encoding: 'utf8', cwd: root, timeout: 60_000,
  });

  it('writes both packed files, reports the skipped image, plain progress lines off a TTY', () => {
    const out = path.join(tmp, 'cli-out');
    const r = cli(['--data', 'imagefolder', '--data-dir', folder, '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr.trim()).toMatch(new RegExp(`^convnet: prepare: skipped ${corrupt.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `));
    expect(r.stdout).toContain('prepare train: 13/13 images, 1 skipped');
    expect(r.stdout).toContain('train.convnet-pack: 12 images, 1 skipped');
    expect(r.stdout).toContain('val.convnet-pack: 3 images, 0 skipped');
  }, 60_000);

  it('usage errors exit 2 with one line', () => {
    const r = cli(['--data', 'coco', '--data-dir', folder]);
    expect([r.status, r.stderr.trim()]).toEqual([2, "convnet: --data must be imagenet or imagefolder, received 'coco'"]);
    const m = cli(['--data', 'imagenet', '--data-dir', path.join(tmp, 'nope')]);
    expect([m.status, m.stderr.trim()]).toEqual([1, `convnet: imagenet: data folder ${path.join(tmp, 'nope')} does not exist`]);
  }, 60_000);
});
