/**
 * The AlexNet paper's image augmentation and evaluation patches, on 256x256 uint8 CHW RGB images:
 * random 224x224 crops, horizontal flips, PCA colour noise and per-channel mean subtraction for
 * training; the centre crop or the ten patches (four corners and the centre, and their mirrors)
 * for evaluation; and the score of a ten-patch evaluation (softmax averaged over each image's
 * patches, then top-1 and top-5).
 *
 * Every random choice is a counter-based hash of (seed, epoch, stream, position), like the
 * Fashion-MNIST loader's, so the augmentation of the image at position p of epoch e never
 * depends on what was drawn before it.
 *
 * Units: pixel values stay on the 0..255 scale of the stored bytes. The mean and the PCA (the
 * standard deviation along each principal axis of the RGB values, and the axes) are on that
 * scale too.
 */
import { ShapeError } from '../errors.js';
import { hash4, TWO_32 } from './loader.js';

/** Side of the stored images: the shorter side is resized to 256 and the centre 256x256 kept. */
export const STORED_SIZE = 256;
/** Side of the crops the network sees. */
export const CROP_SIZE = 224;

/**
 * The principal axes of the RGB pixel values of a training set, for the paper's colour noise.
 * `eigvec[i]` is the unit axis i as `[r, g, b]`; `eigval[i]` is the standard deviation of the
 * pixels along it (the square root of the covariance's eigenvalue), largest first, on the 0..255
 * scale. The noise added to every pixel of an image is `sum_i alpha_i * eigval[i] * eigvec[i]`
 * with `alpha_i ~ N(0, sigma)`.
 */
export interface ColourPca {
  /** Standard deviation along each axis, largest first (0..255 scale). */
  eigval: [number, number, number];
  /** The three unit axes, each `[r, g, b]`. */
  eigvec: [[number, number, number], [number, number, number], [number, number, number]];
}

/**
 * Per-channel mean of ImageNet's training images on the 0..255 scale (the values in common use,
 * 0.485, 0.456, 0.406 of full scale): the mean subtracted when decoding on the fly without a
 * packed file, whose header carries the data set's own mean.
 *
 * @example
 * ```ts
 * console.log(cn.IMAGENET_MEAN); // [123.675, 116.28, 103.53]
 * ```
 */
export const IMAGENET_MEAN: readonly [number, number, number] = [123.675, 116.28, 103.53];

/**
 * The principal axes of ImageNet's RGB pixels in common use since fb.resnet.torch (axis scales
 * 0.2175, 0.0188, 0.0045 of full scale), on the 0..255 scale: the colour noise used when
 * decoding on the fly without a packed file, whose header carries the data set's own PCA.
 *
 * @example
 * ```ts
 * console.log(cn.IMAGENET_PCA.eigval); // [55.4625, 4.794, 1.1475]
 * ```
 */
export const IMAGENET_PCA: Readonly<ColourPca> = {
  eigval: [0.2175 * 255, 0.0188 * 255, 0.0045 * 255],
  eigvec: [
    [-0.5675, -0.5808, -0.5836],
    [0.7192, -0.0045, -0.6948],
    [0.4009, -0.814, 0.4203],
  ],
};

/** Streams of the hash: one per kind of draw, so no two draws share a counter. */
const STREAM_FLIP = 1;
const STREAM_CROP_Y = 2;
const STREAM_CROP_X = 3;
const STREAM_ALPHA = 10; // 10, 11, 12: alpha of axis 0, 1, 2 (each uses two counters)

/** A standard normal draw from the hash (Box-Muller on two uniform draws). */
export function gaussianAt(seed: number, epoch: number, stream: number, counter: number): number {
  const u1 = (hash4(seed, epoch, stream, 2 * counter) + 0.5) / TWO_32; // in (0, 1)
  const u2 = hash4(seed, epoch, stream, 2 * counter + 1) / TWO_32;
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/**
 * The RGB offset of the paper's colour noise for one image: `sum_i alpha_i * eigval[i] *
 * eigvec[i]`, where `alphas` are the three standard normal draws (scaled by sigma here).
 */
export function pcaOffset(pca: ColourPca, sigma: number, alphas: readonly number[]): [number, number, number] {
  const out: [number, number, number] = [0, 0, 0];
  for (let i = 0; i < 3; i++) {
    const a = sigma * alphas[i] * pca.eigval[i];
    for (let c = 0; c < 3; c++) out[c] += a * pca.eigvec[i][c];
  }
  return out;
}

/** How one image is turned into one training patch. */
export interface AugmentParams {
  /** Top row of the crop in the stored image. */
  y: number;
  /** Left column of the crop in the stored image. */
  x: number;
  /** Mirror left-right. */
  flip: boolean;
  /** The colour noise added to every pixel, `[r, g, b]` on the 0..255 scale. */
  offset: [number, number, number];
}

/** Options of the training augmentation. */
export interface AugmentOptions {
  /** Crop side; default 224. Full-size (256) means no crop. */
  crop?: number;
  /** Probability of a mirror; default 0.5. */
  flip?: number;
  /** Standard deviation of the PCA noise's alphas; default 0.1 (0 for none). */
  pcaSigma?: number;
  /** The principal axes; default {@link IMAGENET_PCA}. */
  pca?: ColourPca;
}

/**
 * The augmentation of the image at position `pos` of epoch `epoch`: a pure function of
 * (seed, epoch, pos).
 */
export function augmentParams(seed: number, epoch: number, pos: number, opts: AugmentOptions = {}): AugmentParams {
  const crop = opts.crop ?? CROP_SIZE;
  const span = STORED_SIZE - crop;
  const y = Math.floor((hash4(seed, epoch, STREAM_CROP_Y, pos) / TWO_32) * (span + 1));
  const x = Math.floor((hash4(seed, epoch, STREAM_CROP_X, pos) / TWO_32) * (span + 1));
  const flip = hash4(seed, epoch, STREAM_FLIP, pos) / TWO_32 < (opts.flip ?? 0.5);
  const sigma = opts.pcaSigma ?? 0.1;
  const offset: [number, number, number] = sigma > 0
    ? pcaOffset(opts.pca ?? IMAGENET_PCA, sigma, [0, 1, 2].map((i) => gaussianAt(seed, epoch, STREAM_ALPHA + i, pos)))
    : [0, 0, 0];
  return { y, x, flip, offset };
}

/** Which window of a stored image, mirrored or not. */
export interface Patch {
  /** Top row. */
  y: number;
  /** Left column. */
  x: number;
  /** Mirror left-right. */
  flip: boolean;
}

/**
 * The patches of an evaluation: `1` is the centre crop; `10` the paper's ten: top-left,
 * top-right, bottom-left, bottom-right, centre, then the same five mirrored (patch p+5 is the
 * mirror of patch p).
 *
 * @example
 * ```ts
 * cn.evaluationPatches(10)[1]; // { y: 0, x: 32, flip: false }: the top-right corner
 * ```
 */
export function evaluationPatches(patches: 1 | 10, crop = CROP_SIZE, size = STORED_SIZE): Patch[] {
  const m = size - crop;
  const c = m >> 1;
  if (patches === 1) return [{ y: c, x: c, flip: false }];
  const five: [number, number][] = [[0, 0], [0, m], [m, 0], [m, m], [c, c]];
  return [...five.map(([y, x]) => ({ y, x, flip: false })), ...five.map(([y, x]) => ({ y, x, flip: true }))];
}

/**
 * Writes one patch of a stored image into `dst` at `dstOffset`: `(src + offset - mean) * scale`
 * for each channel, `[3, crop, crop]` row-major. `src` is `[3, size, size]` uint8.
 */
export function cropInto(
  src: Uint8Array,
  size: number,
  dst: Float32Array,
  dstOffset: number,
  crop: number,
  patch: Patch,
  offset: readonly number[],
  mean: readonly number[],
  scale: number,
): void {
  let o = dstOffset;
  for (let c = 0; c < 3; c++) {
    const bias = offset[c] - mean[c];
    const plane = c * size * size;
    for (let r = 0; r < crop; r++) {
      const row = plane + (patch.y + r) * size + patch.x;
      if (patch.flip) {
        for (let k = crop - 1; k >= 0; k--) dst[o++] = (src[row + k] + bias) * scale;
      } else {
        for (let k = 0; k < crop; k++) dst[o++] = (src[row + k] + bias) * scale;
      }
    }
  }
}

/**
 * The eigen-decomposition of a symmetric 3x3 matrix by Jacobi rotations: eigenvalues largest
 * first, with unit eigenvectors.
 */
export function symmetricEigen3(m: readonly number[][]): { values: number[]; vectors: number[][] } {
  const a = m.map((r) => r.slice());
  const v = [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
  for (let sweep = 0; sweep < 50; sweep++) {
    const off = a[0][1] ** 2 + a[0][2] ** 2 + a[1][2] ** 2;
    if (off < 1e-30 * (a[0][0] ** 2 + a[1][1] ** 2 + a[2][2] ** 2 + 1e-300)) break;
    for (const [p, q] of [[0, 1], [0, 2], [1, 2]]) {
      if (a[p][q] === 0) continue;
      const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
      const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
      const c = 1 / Math.sqrt(t * t + 1);
      const s = t * c;
      for (let k = 0; k < 3; k++) {
        const akp = a[k][p], akq = a[k][q];
        a[k][p] = c * akp - s * akq;
        a[k][q] = s * akp + c * akq;
      }
      for (let k = 0; k < 3; k++) {
        const apk = a[p][k], aqk = a[q][k];
        a[p][k] = c * apk - s * aqk;
        a[q][k] = s * apk + c * aqk;
      }
      for (let k = 0; k < 3; k++) {
        const vkp = v[k][p], vkq = v[k][q];
        v[k][p] = c * vkp - s * vkq;
        v[k][q] = s * vkp + c * vkq;
      }
    }
  }
  const order = [0, 1, 2].sort((i, j) => a[j][j] - a[i][i]);
  return { values: order.map((i) => a[i][i]), vectors: order.map((i) => [v[0][i], v[1][i], v[2][i]]) };
}

/**
 * Accumulates the per-channel mean and the 3x3 covariance of the RGB pixels of many stored
 * images (exact integer sums per image, in float64 across images).
 */
export class RgbStats {
  private n = 0;
  private readonly sum = new Float64Array(3);
  private readonly prod = new Float64Array(9);

  /** Adds every pixel of a `[3, H, W]` uint8 image. */
  add(chw: Uint8Array): void {
    const px = chw.length / 3;
    let r0 = 0, g0 = 0, b0 = 0, rr = 0, rg = 0, rb = 0, gg = 0, gb = 0, bb = 0;
    for (let i = 0; i < px; i++) {
      const r = chw[i], g = chw[px + i], b = chw[2 * px + i];
      r0 += r; g0 += g; b0 += b;
      rr += r * r; rg += r * g; rb += r * b; gg += g * g; gb += g * b; bb += b * b;
    }
    this.n += px;
    this.sum[0] += r0; this.sum[1] += g0; this.sum[2] += b0;
    const p = this.prod;
    p[0] += rr; p[1] += rg; p[2] += rb; p[4] += gg; p[5] += gb; p[8] += bb;
  }

  /** Pixels seen. */
  get pixels(): number {
    return this.n;
  }

  /** The sums so far (exact integers), to save and {@link RgbStats.restore} later. */
  save(): { n: number; sum: number[]; prod: number[] } {
    return { n: this.n, sum: [...this.sum], prod: [...this.prod] };
  }

  /** Continues from sums given by {@link RgbStats.save}. */
  restore(s: { n: number; sum: number[]; prod: number[] }): void {
    this.n = s.n;
    this.sum.set(s.sum);
    this.prod.set(s.prod);
  }

  /** The mean and the PCA of everything added (IMAGENET_MEAN / IMAGENET_PCA when nothing was). */
  result(): { mean: [number, number, number]; pca: ColourPca } {
    if (this.n === 0) return { mean: [...IMAGENET_MEAN], pca: structuredClone(IMAGENET_PCA) as ColourPca };
    const n = this.n;
    const mean = [0, 1, 2].map((c) => this.sum[c] / n) as [number, number, number];
    const p = this.prod;
    const full = [p[0], p[1], p[2], p[1], p[4], p[5], p[2], p[5], p[8]];
    const cov = [0, 1, 2].map((i) => [0, 1, 2].map((j) => full[3 * i + j] / n - mean[i] * mean[j]));
    const { values, vectors } = symmetricEigen3(cov);
    return {
      mean,
      pca: {
        eigval: values.map((l) => Math.sqrt(Math.max(0, l))) as [number, number, number],
        eigvec: vectors as ColourPca['eigvec'],
      },
    };
  }
}

/** What {@link scorePatches} returns. */
export interface PatchScores {
  /** Per image, the softmax probabilities averaged over its patches, `[B, K]`. */
  probs: Float32Array;
  /** Images whose label is the most probable class. */
  correct1: number;
  /** Images whose label is among the five most probable classes. */
  correct5: number;
  /** correct1 / B. */
  top1: number;
  /** correct5 / B. */
  top5: number;
}

/**
 * Scores a multi-patch evaluation batch: the softmax of each patch's logits, averaged over the
 * patches of each image (rows `i*patches .. i*patches+patches-1`, as in `ImageBatch`), then
 * top-1 and top-5 against the labels. Ties count against the label (a class ranks above it
 * when its probability is greater, or equal with a smaller index).
 *
 * @param logits `[B * patches, K]` row-major
 * @param labels B class indices
 * @throws ShapeError when the sizes disagree
 *
 * @example
 * ```ts
 * const logits = await model.forward(cn.tensor(batch.x, batch.shape)).data();
 * const s = cn.scorePatches(logits as Float32Array, batch.labels, batch.patches);
 * console.log(s.top1, s.top5);
 * ```
 */
export function scorePatches(logits: Float32Array, labels: Int32Array, patches: number): PatchScores {
  const b = labels.length;
  if (!Number.isInteger(patches) || patches < 1 || b === 0 || logits.length % (b * patches) !== 0) {
    throw new ShapeError(
      `scorePatches: logits must hold [B * patches, K] = [${b} * ${patches}, K] values, received ${logits.length} values`,
    );
  }
  const k = logits.length / (b * patches);
  const probs = new Float32Array(b * k);
  const row = new Float64Array(k);
  let correct1 = 0, correct5 = 0;
  for (let i = 0; i < b; i++) {
    row.fill(0);
    for (let p = 0; p < patches; p++) {
      const base = (i * patches + p) * k;
      let mx = -Infinity;
      for (let j = 0; j < k; j++) mx = Math.max(mx, logits[base + j]);
      let z = 0;
      for (let j = 0; j < k; j++) z += Math.exp(logits[base + j] - mx);
      for (let j = 0; j < k; j++) row[j] += Math.exp(logits[base + j] - mx) / z / patches;
    }
    const label = labels[i];
    if (!(label >= 0 && label < k)) {
      throw new ShapeError(`scorePatches: labels must be class indices in [0, ${k}), received ${label} for image ${i}`);
    }
    let above = 0;
    for (let j = 0; j < k; j++) {
      probs[i * k + j] = row[j];
      if (row[j] > row[label] || (row[j] === row[label] && j < label)) above++;
    }
    if (above === 0) correct1++;
    if (above < 5) correct5++;
  }
  return { probs, correct1, correct5, top1: correct1 / b, top5: correct5 / b };
}
