/**
 * Load a checkpoint written by `convnet train` and classify one image file: a 28x28 greyscale
 * PGM (the plain "P5" format any image tool writes, e.g. `convert shoe.png -resize 28x28! shoe.pgm`).
 *
 *   npx tsx examples/classify-image.ts --checkpoint runs/x/checkpoint.safetensors --image shoe.pgm
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import * as cn from 'convnet-cuda';

const { values } = parseArgs({ options: { checkpoint: { type: 'string' }, image: { type: 'string' }, device: { type: 'string' } } });
if (!values.checkpoint || !values.image) {
  console.error('usage: classify-image.ts --checkpoint FILE --image FILE.pgm [--device cpu:0]');
  process.exit(2);
}
const device = values.device ?? 'cpu:0';

/** A binary PGM: "P5", width, height, maxval, then one byte per pixel. */
function readPgm(file: string): { width: number; height: number; pixels: Uint8Array } {
  const buf = readFileSync(file);
  const header = buf.subarray(0, 64).toString('latin1').match(/^P5\s+(\d+)\s+(\d+)\s+(\d+)\s/);
  if (!header || Number(header[3]) > 255) throw new Error(`${file}: not an 8-bit binary PGM (P5) image`);
  const [width, height] = [Number(header[1]), Number(header[2])];
  return { width, height, pixels: buf.subarray(header[0].length, header[0].length + width * height) };
}

// The checkpoint's metadata says which network it holds and how its inputs were normalised.
const { metadata } = await cn.loadTensors(values.checkpoint);
const state = JSON.parse(metadata.convnet ?? '{}') as {
  config?: { width: number; towers: 1 | 2 }; normalization?: { mean: number; std: number };
};
if (!state.config || !state.normalization) throw new Error(`${values.checkpoint}: not a checkpoint of convnet train`);
const model = cn.models.alexnetMini({ width: state.config.width, towers: state.config.towers,
  devices: state.config.towers === 2 ? ['cpu:0', 'cpu:1'] : [device] });
await cn.load(values.checkpoint, model);
model.eval();

const img = readPgm(values.image);
if (img.width !== 28 || img.height !== 28) throw new Error(`${values.image}: expected 28x28 pixels, received ${img.width}x${img.height}`);
const { mean, std } = state.normalization;
const x = cn.tensor(Float32Array.from(img.pixels, (p) => (p / 255 - mean) / std), [1, 1, 28, 28], { device: model.parameters()[0].device });
const logits = await cn.noGrad(() => model.forward(x)).data();

// Softmax on the host, then the three likeliest classes.
const top = Math.max(...logits);
const e = Array.from(logits, (z) => Math.exp(z - top));
const total = e.reduce((p, q) => p + q, 0);
const ranked = e.map((v, k) => [k, v / total] as const).sort((p, q) => q[1] - p[1]).slice(0, 3);
for (const [k, p] of ranked) console.log(`${cn.FASHION_MNIST_CLASSES[k].padEnd(12)} ${(100 * p).toFixed(1)}%`);
x.dispose();
model.dispose();
