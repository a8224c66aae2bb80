/**
 * linear: x [N, K], w [M, K], b [M] -> y [N, M] = x w^T + b (native/ops/loss.h).
 */
import { needsGrad, record, save } from '../autograd.js';
import { ShapeError } from '../errors.js';
import { checkShape, formatShape, Tensor } from '../tensor.js';
import { launch } from './launch.js';
import { expectRank, expectTensor, sameDevice } from './validate.js';

/**
 * A fully connected layer's op: y = x·wᵀ + b, x [N, K], w [M, K], b [M] or null → [N, M].
 * Computes in fp32; differentiable in x, w and b.
 *
 * @throws ShapeError for tensors that are not float32, wrong ranks, or K or M that do not
 *   match; DeviceError when the tensors are on different devices
 *
 * @example
 * ```ts
 * const w = cn.randn([10, 784], { seed: 1, std: 0.01, requiresGrad: true });
 * const logits = cn.linear(cn.flatten(images), w, null); // [N, 10]
 * ```
 */
export function linear(x: Tensor, w: Tensor, b: Tensor | null): Tensor {

  const op = 'linear';
  expectTensor(op, 'x', x);
  expectTensor(op, 'w', w);
  const bias = b ?? null;
  if (bias) expectTensor(op, 'b', bias);
  expectRank(op, 'x', x, 2, '[N, K]');
  expectRank(op, 'w', w, 2, '[M, K]');
  const device = sameDevice(op, [['x', x], ['w', w], ['b', bias]]);
  const [N, K] = x.shape;
  const [M, K2] = w.shape;
  if (K2 !== K) {
    throw new ShapeError(`${op}: w must have K = ${K} columns to match x ${formatShape(x.shape)}, received w ${formatShape(w.shape)}`);
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== M)) {
    throw new ShapeError(`${op}: b must have shape [M] = [${M}], received ${formatShape(bias.shape)}`);
  }
  checkShape(op, 'the output', [N, M]);
  const ints = [N, K, M];
  const [y] = launch('linear_forward', device, [[[N, M], 'float32']], [x, w, bias], ints);
  if (!needsGrad(x, w, bias)) return y;
  const wantWeight = w.requiresGrad || bias?.requiresGrad === true;
  const sx = wantWeight ? save(x, op) : null;
  const sw = x.requiresGrad ? save(w, op) : null;
  return record(y, op, [x, w, bias], (g) => {
    const dx = sw ? launch('linear_backward_data', device, [[x.shape, 'float32']], [g, sw.storage], ints)[0] : null;
    if (!sx) return [dx, null, null];
    const [dw, db] = bias
      ? launch('linear_backward_weight', device, [[w.shape, 'float32'], [bias.shape, 'float32']], [sx.storage, g], ints)
      : launch('linear_backward_weight', device, [[w.shape, 'float32']], [null, sx.storage, g], ints);
    return [dx, dw, db ?? null];
  }, [sx, sw].filter((v) => v !== null).map((v) => v.storage));
}
