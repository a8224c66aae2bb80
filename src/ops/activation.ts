/**
 * relu and dropout (native/ops/elementwise.h).
 * relu: y = max(x, 0), gradient 0 at x = 0; NaN stays NaN (as in PyTorch).
 * dropout: inverted dropout, kept values scaled by 1/(1-p); the mask is a pure function of
 * (seed, element index), the same on every device. `training: false` is the identity.
 */
import { needsGrad, record, save } from '../autograd.js';
import { ShapeError } from '../errors.js';
import { Tensor, view } from '../tensor.js';
import { launch } from './launch.js';
import { describe, expectTensor, seedOf } from './validate.js';

/**
 * max(x, 0) elementwise, any shape; the gradient is 0 at x = 0 and NaN stays NaN.
 *
 * @throws ShapeError for an int32 tensor; DisposedError for a disposed one
 *
 * @example
 * ```ts
 * const y = cn.relu(cn.tensor([-1, 0, 2], [3])); // [0, 0, 2]
 * ```
 */
export function relu(x: Tensor): Tensor {
  expectTensor('relu', 'x', x);
  const [y] = launch('relu_forward', x.device, [[x.shape, 'float32']], [x], [x.size]);
  if (!needsGrad(x)) return y;
  const sx = save(x, 'relu');
  return record(y, 'relu', [x], (g) => launch('relu_backward', x.device, [[x.shape, 'float32']], [sx.storage, g], [x.size]), [sx.storage]);
}

/** Options of {@link dropout}. */
export interface DropoutOptions {
  /** Probability of dropping an element, in [0, 1). */
  p: number;
  /** Names the mask: the same seed gives the same mask. */
  seed: number;
  /** false: the identity (evaluation). Default true. */
  training?: boolean;
}

/**
 * Inverted dropout, any shape: each element is zeroed with probability p and the others are
 * scaled by 1/(1 − p). The mask is a pure function of (seed, element index), the same on every
 * device; the gradient uses the same mask. With `training: false` (or p = 0) the result is x's
 * data unchanged (a new tensor over the same storage).
 *
 * @throws ShapeError for p outside [0, 1), a seed that is not a non-negative integer, or an
 *   int32 tensor
 *
 * @example
 * ```ts
 * const h = cn.dropout(cn.relu(cn.linear(x, w, b)), { p: 0.5, seed: step });
 * const e = cn.dropout(x, { p: 0.5, seed: 0, training: false }); // the identity
 * ```
 */
export function dropout(x: Tensor, opts: DropoutOptions): Tensor {

  expectTensor('dropout', 'x', x);
  const p = opts?.p;
  if (typeof p !== 'number' || !(p >= 0 && p < 1)) {
    throw new ShapeError(`dropout: p must be a number in [0, 1), received ${describe(p)}`);
  }
  const seed = seedOf('dropout', opts.seed);
  if (opts.training === false || p === 0) {
    // The identity, as a new tensor over the same storage, so disposing either is independent.
    const y = view(x._storage('dropout', 'x'), x.shape, 'float32');
    if (!needsGrad(x)) return y;
    return record(y, 'dropout', [x], (g) => [view(g._storage('backward'), g.shape, 'float32')]);
  }
  const [y] = launch('dropout', x.device, [[x.shape, 'float32']], [x], [x.size, seed], [p]);
  if (!needsGrad(x)) return y;
  return record(y, 'dropout', [x], (g) => launch('dropout', x.device, [[x.shape, 'float32']], [g], [x.size, seed], [p]));
}
