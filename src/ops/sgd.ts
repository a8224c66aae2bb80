/**
 * The fused SGD update (native sgd op), in place, PyTorch's convention:
 *   d = grad + weightDecay * param;  v = momentum * v + d;  param -= lr * v
 * (with momentum 0 and no velocity: param -= lr * d). Not recorded for backward.
 */
import { ShapeError } from '../errors.js';
import { formatShape, Tensor } from '../tensor.js';
import { launchInPlace } from './launch.js';
import { describe, expectTensor, finiteNumber, sameDevice } from './validate.js';

/** Options of {@link sgdUpdate}. */
export interface SgdOptions {
  /** Learning rate. */
  lr: number;
  /** Momentum factor; default 0 (then no velocity is needed). */
  momentum?: number;
  /** L2 penalty: weightDecay · param is added to the gradient; default 0. */
  weightDecay?: number;
}

/**
 * One fused SGD step, in place, PyTorch's convention: d = grad + weightDecay · param;
 * v = momentum · v + d; param −= lr · v (with momentum 0: param −= lr · d). Updates `param`
 * (and `velocity`) on their device; not recorded for backward.
 *
 * @param velocity the momentum buffer, param's shape (start with zeros); null when momentum is 0
 * @throws ShapeError for a grad or velocity of another shape, options that are not finite, or
 *   a missing velocity with momentum; DeviceError when the tensors are on different devices
 *
 * @example
 * ```ts
 * const v = cn.zeros(w.shape);
 * loss.backward();
 * cn.sgdUpdate(w, w.grad!, v, { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
 * cn.zeroGrad([w]);
 * ```
 */
export function sgdUpdate(param: Tensor, grad: Tensor, velocity: Tensor | null, opts: SgdOptions): void {

  const op = 'sgdUpdate';
  expectTensor(op, 'param', param);
  expectTensor(op, 'grad', grad);
  if (velocity) expectTensor(op, 'velocity', velocity);
  sameDevice(op, [['param', param], ['grad', grad], ['velocity', velocity]]);
  for (const [name, t] of [['grad', grad], ['velocity', velocity]] as const) {
    if (t && formatShape(t.shape) !== formatShape(param.shape)) {
      throw new ShapeError(`${op}: ${name} must have param's shape ${formatShape(param.shape)}, received ${formatShape(t.shape)}`);
    }
  }
  const lr = finiteNumber(op, 'lr', opts?.lr);
  const momentum = finiteNumber(op, 'momentum', opts.momentum, 0);
  const weightDecay = finiteNumber(op, 'weightDecay', opts.weightDecay, 0);
  if (momentum !== 0 && !velocity) {
    throw new ShapeError(`${op}: velocity must be a tensor when momentum is ${momentum}, received ${describe(velocity)}`);
  }
  launchInPlace('sgd', [param, grad, momentum !== 0 ? velocity : null], [param.size], [lr, momentum, weightDecay]);
}
