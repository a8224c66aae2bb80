/**
 * Local response normalisation across channels (native/ops/lrn.h), PyTorch's convention:
 * y = x / (k + (alpha/size) * sum over the window of x^2)^beta, window
 * [c - floor(size/2), c + floor((size-1)/2)], channels outside [0, C) count as zero.
 */
import { needsGrad, record, save } from '../autograd.js';
import { ShapeError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { launch } from './launch.js';
import { expectRank, expectTensor, finiteNumber, intOption } from './validate.js';

/** Options of {@link lrn}. */
export interface LrnOptions {
  /** Channels in the window, a positive integer (AlexNet uses 5). */
  size: number;
  /** Default 1e-4. */
  alpha?: number;
  /** Default 0.75. */
  beta?: number;
  /** Default 1 (AlexNet uses 2). */
  k?: number;
}

/**
 * Local response normalisation across channels of x [N, C, H, W] (same shape out), PyTorch's
 * convention: y = x / (k + (alpha / size) · Σ x²)^beta, the sum over channels
 * [c − floor(size/2), c + floor((size−1)/2)], channels outside [0, C) counting as zero.
 *
 * @throws ShapeError for a tensor that is not float32 [N, C, H, W], a size that is not a
 *   positive integer, options that are not finite, k ≤ 0 or alpha < 0
 *
 * @example
 * ```ts
 * const y = cn.lrn(h, { size: 5, alpha: 1e-4, beta: 0.75, k: 2 }); // AlexNet's settings
 * ```
 */
export function lrn(x: Tensor, opts: LrnOptions): Tensor {

  const op = 'lrn';
  expectTensor(op, 'x', x);
  expectRank(op, 'x', x, 4, '[N, C, H, W]');
  const size = intOption(op, 'size', opts?.size, 1);
  const alpha = finiteNumber(op, 'alpha', opts.alpha, 1e-4);
  const beta = finiteNumber(op, 'beta', opts.beta, 0.75);
  const k = finiteNumber(op, 'k', opts.k, 1);
  if (k <= 0 || alpha < 0) {
    throw new ShapeError(`${op}: k must be > 0 and alpha >= 0 so the denominator stays positive, received k ${k}, alpha ${alpha}`);
  }
  const [N, C, H, W] = x.shape;
  const ints = [N, C, H, W, size];
  const floats = [alpha, beta, k];
  const [y, scale] = launch('lrn_forward', x.device, [[x.shape, 'float32'], [x.shape, 'float32']], [x], ints, floats);
  if (!needsGrad(x)) {
    scale.dispose();
    return y;
  }
  const sx = save(x, op);
  const sy = y._storage(op).retain();
  const ss = scale._storage(op).retain();
  scale.dispose();
  return record(y, op, [x], (g) => launch('lrn_backward', x.device, [[x.shape, 'float32']], [sx.storage, sy, ss, g], ints, floats), [sx.storage, sy, ss]);
}
