/**
 * Weight initialisers, drawn from the counter-based generator (`randn`), so a given seed gives
 * the same weights on every device and in every run.
 *
 * - He normal (the default): weights ~ N(0, 2 / fanIn), fanIn = C/groups·KH·KW for a convolution
 *   and K for a linear layer; biases 0.
 * - The AlexNet paper's scheme: weights ~ N(0, 0.01²); biases 1 in conv2, conv4, conv5 and the
 *   hidden fully connected layers, 0 elsewhere (the models choose the bias per layer).
 *
 * A weight may be drawn as several equal blocks along dim 0, one seed each. The two-tower AlexNet
 * uses this: tower A's half of a layer is block 0 and tower B's half is block 1, and the
 * single-device form draws both blocks, so the two forms start from the same weights.
 */
import { concat } from '../ops/shape.js';
import { full, randn } from '../ops/create.js';
import { noGrad } from '../autograd.js';
import { ShapeError } from '../errors.js';
import type { Tensor } from '../tensor.js';

/** How a layer's parameters start. */
export interface InitOptions {
  /** Standard deviation of the normal weights; default He: sqrt(2 / fanIn). */
  std?: number;
  /** The value every bias starts at (default 0). */
  bias?: number;
  /**
   * The weight's seed (default 0), or one seed per equal block along dim 0: the weight is then
   * the concatenation of the blocks, block k drawn with seeds[k].
   */
  seed?: number | readonly number[];
}

/**
 * The He-normal standard deviation for a layer with this fan-in: sqrt(2 / fanIn).
 *
 * @example
 * ```ts
 * cn.nn.heStd(3 * 11 * 11); // 0.0742..., for conv1 of AlexNet
 * ```
 */
export function heStd(fanIn: number): number {
  return Math.sqrt(2 / fanIn);
}

/** The AlexNet paper's weight standard deviation. */
export const PAPER_STD = 0.01;

/**
 * Mixes a seed with a tag into a new seed in [0, 2^31) (a murmur3-style finaliser), so seeds
 * derived from one base for different layers, blocks or calls give unrelated streams. Pure:
 * the same (seed, tag) always gives the same result.
 *
 * @example
 * ```ts
 * const seeds = [0, 1, 2].map((call) => cn.nn.mixSeed(42, call)); // one seed per dropout call
 * ```
 */
export function mixSeed(seed: number, tag: number): number {
  let h = (Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul((tag >>> 0) + 0x7f4a7c15, 0xc2b2ae35)) >>> 0;
  // The high bits of seeds above 2^32 still count.
  h = (h ^ Math.floor(seed / 2 ** 32)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 1;
}

/**
 * A normal weight of `shape` with mean 0 and standard deviation `std`, drawn with {@link randn}.
 * With several seeds, the weight is the concatenation along dim 0 of equal blocks, block k
 * drawn with seeds[k]. The result is a plain tensor (register it as a parameter to train it).
 *
 * @throws ShapeError when the number of seeds does not divide dim 0
 *
 * @example
 * ```ts
 * const w = cn.nn.normalWeight([256, 48, 5, 5], cn.nn.PAPER_STD, [11, 12], 'cpu:0'); // two blocks of 128 filters
 * ```
 */
export function normalWeight(shape: readonly number[], std: number, seed: number | readonly number[], device: string): Tensor {
  const seeds = typeof seed === 'number' ? [seed] : [...seed];
  if (seeds.length === 0 || shape[0] % seeds.length !== 0) {
    throw new ShapeError(
      `init: seed must be a number or a list of seeds dividing dim 0 of the weight (${shape[0]}), received ${seeds.length} seeds`,
    );
  }
  if (seeds.length === 1) return randn(shape, { seed: seeds[0], std, device });
  const block = [shape[0] / seeds.length, ...shape.slice(1)];
  return noGrad(() => {
    const parts = seeds.map((s) => randn(block, { seed: s, std, device }));
    try {
      return concat(parts, 0);
    } finally {
      parts.forEach((p) => p.dispose());
    }
  });
}

/**
 * A float32 bias of `n` elements, all equal to `value` (see {@link full}).
 *
 * @example
 * ```ts
 * const b = cn.nn.constantBias(256, 1, 'cuda:0'); // the paper's bias for conv2
 * ```
 */

export function constantBias(n: number, value: number, device: string): Tensor {
  return full([n], value, { device });
}
