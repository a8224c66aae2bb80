/**
 * `convnet prepare`: decodes an image data set once into packed files that `convnet train`
 * then reads without decoding. Self-contained: it prints its own usage errors (exit 2) and
 * leaves other failures to the caller (exit 1).
 */
import path from 'node:path';
import { parseArgs } from 'node:util';

import type { ImageSplit } from '../data/images.js';

export const PREPARE_USAGE = `usage: convnet prepare --data imagenet|imagefolder --data-dir DIR [options]

Decodes every image once (shorter side to 256, centre 256x256, RGB) into one packed file per
split, <out>/train.convnet-pack and <out>/val.convnet-pack, and computes the training pixels'
mean and colour PCA. convnet train reads these files when they are in the data folder (or
--packed-dir), so an epoch decodes nothing. Unreadable images are skipped with a warning each.
Each file is written under a temporary name and renamed when complete.

options:
  --data NAME          imagenet (train/<wnid>/, val/ as folders or flat with its labels) or
                       imagefolder (train/<class>/, val/<class>/)
  --data-dir DIR       the data folder (required)
  --out DIR            where to write the packed files (default: the data folder)
  --split S            train, val or both (default both; val alone reuses train's mean and PCA)
  --concurrency N      images decoded at once (default 2 x the CPU cores)
  --limit N            only the first N images of each split (a trial run)
  --force              rewrite a split even when its packed file is up to date
  --quiet              no progress

Decoding runs on libuv's thread pool, which has 4 threads unless UV_THREADPOOL_SIZE is set:
UV_THREADPOOL_SIZE=$(nproc) convnet prepare ... uses every core.`;

/** Runs the command; returns the exit code. */
export async function prepareCommand(args: string[]): Promise<number> {
  const usage = (msg: string) => {
    console.error(`convnet: ${msg}`);
    return 2;
  };
  let v: Record<string, string | boolean | undefined>;
  try {
    v = parseArgs({
      args,
      options: {
        data: { type: 'string' }, 'data-dir': { type: 'string' }, out: { type: 'string' }, split: { type: 'string' },
        concurrency: { type: 'string' }, limit: { type: 'string' }, quiet: { type: 'boolean' }, force: { type: 'boolean' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    return usage(`${(e as Error).message.split('\n')[0]}\n\n${PREPARE_USAGE}`);
  }
  if (v.help) {
    console.log(PREPARE_USAGE);
    return 0;
  }
  if (v.data !== 'imagenet' && v.data !== 'imagefolder') {
    return usage(v.data === undefined ? `--data is required (imagenet or imagefolder)\n\n${PREPARE_USAGE}` : `--data must be imagenet or imagefolder, received '${v.data}'`);
  }
  if (typeof v['data-dir'] !== 'string') return usage(`--data-dir is required\n\n${PREPARE_USAGE}`);
  const split = (v.split as string | undefined) ?? 'both';
  if (!['train', 'val', 'both'].includes(split)) return usage(`--split must be train, val or both, received '${split}'`);
  const posInt = (flag: string): number | undefined | null => {
    const s = v[flag] as string | undefined;
    if (s === undefined) return undefined;
    const n = Number(s);
    return s.trim() !== '' && Number.isInteger(n) && n > 0 ? n : null;
  };
  const concurrency = posInt('concurrency');
  if (concurrency === null) return usage(`--concurrency must be a positive integer, received '${v.concurrency}'`);
  const limit = posInt('limit');
  if (limit === null) return usage(`--limit must be a positive integer, received '${v.limit}'`);

  const { prepareImages } = await import('../data/packed.js');
  const cores = (await import('node:os')).availableParallelism();
  if (!process.env.UV_THREADPOOL_SIZE && cores > 4 && !v.quiet) {
    console.error(`convnet: note: images are decoded on libuv's thread pool, 4 threads unless UV_THREADPOOL_SIZE says more; ` +
      `UV_THREADPOOL_SIZE=${cores} convnet prepare ... decodes on all ${cores} cores`);
  }
  const showBar = !v.quiet && process.stderr.isTTY === true;
  const { SingleBar, Presets } = showBar ? (await import('cli-progress')).default : { SingleBar: null, Presets: null };
  let bar: InstanceType<NonNullable<typeof SingleBar>> | null = null;
  let barSplit = '';
  let lastLine = 0;
  let done = 0;
  const announced = new Set<string>();
  let skipped = 0;
  const t0 = performance.now();
  const stopBar = () => {
    bar?.stop();
    bar = null;
  };
  try {
    const r = await prepareImages({
      data: v.data,
      dataDir: v['data-dir'],
      out: v.out as string | undefined,
      splits: split === 'both' ? ['train', 'val'] : [split as ImageSplit],
      concurrency,
      limit,
      force: v.force === true,
      warn: (line) => {
        if (bar) bar.stop();
        console.error(`convnet: ${line}`);
        if (bar) bar.start(bar.getTotal(), done, { skipped: skipped + 1, ips: '?' });
      },
      onProgress: (p) => {
        if (p.resumedFrom > 0 && !announced.has(p.split)) {
          announced.add(p.split);
          if (bar) bar.stop();
          console.log(p.resumedFrom === p.total
            ? `prepare ${p.split}: up to date (${p.total} images)`
            : `prepare ${p.split}: resuming after ${p.resumedFrom} of ${p.total} images`);
          if (bar) bar.start(bar.getTotal(), done, { skipped, ips: '?' });
        }
        done = p.done;
        skipped = p.skipped;
        const secs = (performance.now() - t0) / 1000;
        if (SingleBar && Presets && !v.quiet) {
          if (!bar || barSplit !== p.split) {
            stopBar();
            barSplit = p.split;
            bar = new SingleBar({
              format: `${p.split} [{bar}] {value}/{total} | {skipped} skipped | {ips} img/s | ETA {eta_formatted}`,
              hideCursor: true,
              stream: process.stderr,
            }, Presets.shades_classic);
            bar.start(p.total, 0, { skipped: 0, ips: '?' });
          }
          bar.update(p.done, { skipped: p.skipped, ips: (p.done / Math.max(secs, 1e-3)).toFixed(0) });
        } else if (!v.quiet && (p.done === p.total || secs - lastLine >= 10)) {
          lastLine = secs;
          console.log(`prepare ${p.split}: ${p.done}/${p.total} images, ${p.skipped} skipped`);
        }
      },
    });
    stopBar();
    for (const f of r.files) {
      const name = path.relative(process.cwd(), f.file) || f.file;
      console.log(f.upToDate ? `${name}: up to date, ${f.count} images` : `${name}: ${f.count} images, ${f.skipped.length} skipped`);
    }
    console.log(`training pixels: mean ${r.mean.map((m) => m.toFixed(2)).join(', ')}; colour PCA scales ${r.pca.eigval.map((m) => m.toFixed(3)).join(', ')} (0..255 scale)`);
    return 0;
  } finally {
    stopBar();
  }
}
