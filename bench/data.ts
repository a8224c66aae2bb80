/**
 * Data-pipeline throughput: `npx convnet bench data [--data-dir DIR] [--images N] [--threads T]`
 * (or `npx tsx bench/data.ts ...`).
 *
 * Measures, per CPU core, (1) decoding a JPEG the paper's way (shorter side 256, centre crop;
 * sharp on libuv's thread pool, T decodes in flight) and (2) the training augmentation of a
 * decoded image (random 224 crop, flip, PCA colour noise, mean subtraction, to float32; on the JS
 * thread), and (3) reading images from a packed file. Without --data-dir it generates N JPEGs of
 * 500x375 (ImageNet's typical size) in a temporary folder; with it, it uses the first N images of
 * DIR/train (an imagefolder or ImageNet tree).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import sharp from 'sharp';

import { augmentParams, cropInto, CROP_SIZE, IMAGENET_MEAN, IMAGENET_PCA, STORED_SIZE } from '../src/data/augment.js';
import { decodeImage, listImages } from '../src/data/images.js';
import { openImageSource, prepareImages } from '../src/index.js';

/** Runs the measurement with these command-line arguments and prints the results. */
export async function dataBench(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { 'data-dir': { type: 'string' }, images: { type: 'string' }, threads: { type: 'string' } },
  });
  const n = Number(values.images ?? 200);
  const threads = Number(values.threads ?? os.availableParallelism());
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`data pipeline on ${cpu}, ${os.availableParallelism()} cores, node ${process.version}, sharp ${sharp.versions.sharp} (libvips ${sharp.versions.vips})`);

  let dir = values['data-dir'];
  const tmp = dir ? null : mkdtempSync(path.join(os.tmpdir(), 'convnet-bench-data-'));
  try {
    if (!dir) {
      dir = tmp!;
      // Smooth gradients with texture, so JPEG sizes are realistic (about 60-100 KB at quality 90).
      const w = 500, h = 375;
      for (let i = 0; i < n; i++) {
        const cls = path.join(dir, 'train', `c${i % 10}`);
        mkdirSync(cls, { recursive: true });
        const px = Buffer.alloc(w * h * 3);
        for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) {
          px[(y * w + x) * 3 + c] = (x * (c + 1) + y * (3 - c) + ((x * 7919 + y * 104729 + i * 31 + c) % 97)) & 255;
        }
        await sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(path.join(cls, `img${i}.JPEG`));
      }
      mkdirSync(path.join(dir, 'val', 'c0'), { recursive: true });
    }
    const list = await listImages({ data: 'imagefolder', dataDir: dir, split: 'train' });
    const files = list.files.slice(0, n).map((f) => path.join(list.root, f));

    const rates: Record<string, number> = {};
    for (const t of [1, threads].filter((v, i, a) => a.indexOf(v) === i)) {
      await decodeImage(files[0]); // warm up libvips
      const t0 = performance.now();
      let next = 0;
      await Promise.all(Array.from({ length: t }, async () => {
        while (next < files.length) await decodeImage(files[next++]);
      }));
      const s = (performance.now() - t0) / 1000;
      rates[`decode x${t}`] = files.length / s;
      console.log(`decode (resize to 256, centre crop, CHW), ${t} in flight: ${(files.length / s).toFixed(0)} images/s, ${(files.length / s / t).toFixed(0)} per core`);
    }

    const img = await decodeImage(files[0]);
    const x = new Float32Array(3 * CROP_SIZE * CROP_SIZE);
    const reps = 2000;
    const t1 = performance.now();
    for (let p = 0; p < reps; p++) {
      const a = augmentParams(1, 0, p, { pca: IMAGENET_PCA });
      cropInto(img, STORED_SIZE, x, 0, CROP_SIZE, a, a.offset, IMAGENET_MEAN, 1);
    }
    const aug = reps / ((performance.now() - t1) / 1000);
    console.log(`augment (crop 224, flip, PCA noise, mean, to float32), JS thread: ${aug.toFixed(0)} images/s per core`);

    const out = mkdtempSync(path.join(os.tmpdir(), 'convnet-bench-pack-'));
    try {
      await prepareImages({ data: 'imagefolder', dataDir: dir, out, splits: ['train'], limit: n, warn: () => undefined });
      const src = await openImageSource({ data: 'imagefolder', dataDir: dir, split: 'train', batchSize: Math.min(128, n), packedDir: out, seed: 1 });
      for (let k = 0; k < src.batchesPerEpoch; k++) await src.batchAt(0, k); // warm up: JIT, page cache
      const t2 = performance.now();
      let imgs = 0;
      for (let e = 1; imgs < 4 * n; e++) {
        for (let k = 0; k < src.batchesPerEpoch; k++) imgs += (await src.batchAt(e, k)).labels.length;
      }
      const packed = imgs / ((performance.now() - t2) / 1000);
      await src.close();
      console.log(`training batches from a packed file (read + augment, page cache warm): ${packed.toFixed(0)} images/s on the JS thread`);
      const perCoreOnTheFly = 1 / (1 / (rates['decode x1']) + 1 / aug);
      console.log(`on-the-fly decode + augment: ${perCoreOnTheFly.toFixed(0)} images/s per core`);
      for (const target of [3000, 6000]) {
        console.log(`  ${target} images/s (one fast GPU training AlexNet) needs about ${Math.ceil(target / perCoreOnTheFly)} cores on the fly, ` +
          `${Math.ceil(target / aug)} from a packed file (reading ${(target * 3 * STORED_SIZE * STORED_SIZE / 1e9).toFixed(2)} GB/s)`);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await dataBench(process.argv.slice(2));
