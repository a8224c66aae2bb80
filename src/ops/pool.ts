/**
 * maxPool2d, floor mode (native/ops/pool.h). Padded cells never win; the gradient goes to the
 * first maximum of each window in row-major order (the forward pass saves its index).
 */
import { needsGrad, record } from '../autograd.js';
import { ShapeError } from '../errors.js';
import { checkShape, formatShape, Tensor } from '../tensor.js';
import { launch } from './launch.js';
import { expectRank, expectTensor, intPair, paddedExtents } from './validate.js';

/** Options of {@link maxPool2d}; a number means the same value for height and width. */
export interface MaxPool2dOptions {
  /** The window, a positive integer or `[kh, kw]`. */
  kernel: number | [number, number];
  /** Defaults to the kernel. */
  stride?: number | [number, number];
  /** At most half the kernel, as in PyTorch, so every window holds a real cell. */
  padding?: number | [number, number];
}

/**
 * Max pooling over windows of x [N, C, H, W] → [N, C, OH, OW], floor mode:
 * OH = floor((H + 2·ph − kh) / sh) + 1 (OW likewise). Padded cells never win; a NaN wins its
 * window; the gradient goes to the first maximum of each window in row-major order.
 *
 * @throws ShapeError for a tensor that is not float32 [N, C, H, W], a missing or bad kernel,
 *   padding over half the kernel, or a window larger than the padded input
 *
 * @example
 * ```ts
 * const y = cn.maxPool2d(cn.zeros([8, 96, 55, 55]), { kernel: 3, stride: 2 }); // [8, 96, 27, 27]
 * ```
 */
export function maxPool2d(x: Tensor, opts: MaxPool2dOptions): Tensor {

  const op = 'maxPool2d';
  expectTensor(op, 'x', x);
  expectRank(op, 'x', x, 4, '[N, C, H, W]');
  const [KH, KW] = intPair(op, 'kernel', opts?.kernel, 1, [0, 0]);
  if (KH === 0) throw new ShapeError(`${op}: kernel must be a positive integer or an [h, w] pair of them, received undefined`);
  const [sh, sw] = intPair(op, 'stride', opts.stride, 1, [KH, KW]);
  const [ph, pw] = intPair(op, 'padding', opts.padding, 0, [0, 0]);
  if (2 * ph > KH || 2 * pw > KW) {
    throw new ShapeError(`${op}: padding must be at most half the kernel (${KH}x${KW}), received [${ph}, ${pw}]`);
  }
  const [N, C, H, W] = x.shape;
  paddedExtents(op, H, W, ph, pw);
  if (KH > H + 2 * ph || KW > W + 2 * pw) {
    throw new ShapeError(
      `${op}: kernel ${KH}x${KW} must fit the padded input ${H + 2 * ph}x${W + 2 * pw}, received x ${formatShape(x.shape)} with padding [${ph}, ${pw}]`,
    );
  }
  const OH = Math.floor((H + 2 * ph - KH) / sh) + 1;
  const OW = Math.floor((W + 2 * pw - KW) / sw) + 1;
  const yShape = [N, C, OH, OW];
  checkShape(op, 'the output', yShape);
  const ints = [N, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW];
  const [y, idx] = launch('maxpool2d_forward', x.device, [[yShape, 'float32'], [yShape, 'int32']], [x], ints);
  if (!needsGrad(x)) {
    idx.dispose();
    return y;
  }
  // The index tensor lives on as storage owned by the graph node, not as a user tensor.
  const saved = idx._storage(op).retain();
  idx.dispose();
  return record(y, op, [x], (g) => launch('maxpool2d_backward', x.device, [[x.shape, 'float32']], [g, saved], ints), [saved]);
}
