/**
 * Stochastic gradient descent with momentum and weight decay, PyTorch's convention (the fused
 * native `sgd` op, in place):
 *   d = grad + weightDecay · param;  v = momentum · v + d;  param -= lr · v
 * Momentum buffers are created lazily, as zeros on each parameter's own device, the first time
 * that parameter has a gradient.
 */
import { noGrad, zeroGrad as zeroGrads } from '../autograd.js';
import { ShapeError } from '../errors.js';
import { zeros } from '../ops/create.js';
import { sgdUpdate } from '../ops/sgd.js';
import { to } from '../ops/shape.js';
import { finiteNumber } from '../ops/validate.js';
import { formatShape, keepFromScopes, Tensor } from '../tensor.js';
import { Module } from '../nn/module.js';

/** Options of {@link SGD}; all must be finite and >= 0. */
export interface SgdConfig {
  /** Learning rate. */
  lr: number;
  /** Default 0. */
  momentum?: number;
  /** L2 penalty added to the gradient (default 0). */
  weightDecay?: number;
}

/** What `SGD.getState()` returns and `setState()` takes. */
export interface SgdState {
  /** The current learning rate. */
  lr: number;
  /** The momentum factor (not restored by `setState`). */
  momentum: number;
  /** The weight decay (not restored by `setState`). */
  weightDecay: number;
  /** Steps taken so far. */
  steps: number;
  /** Momentum buffers by parameter key (its dotted name for a module, else its index). */
  buffers: Record<string, Tensor>;
}

/**
 * SGD over a list of parameters or over a module. Given a module, the optimizer reads
 * `module.namedParameters()` at every step, so it follows the module through `to(device)`, and
 * its buffers are keyed by parameter name (stable across runs, for checkpoints).
 *
 * @throws ShapeError from the constructor for options that are not finite or are negative,
 *   or a parameter list holding something other than tensors
 *
 * @example
 * ```ts
 * const model = cn.models.alexnetMini().to('cuda:0');
 * const opt = new cn.optim.SGD(model, { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
 * cn.scope(() => cn.softmaxCrossEntropy(model.forward(x), labels)).backward();
 * opt.step();
 * opt.zeroGrad();
 * ```
 */
export class SGD {
  /** Learning rate; schedules set it between steps. */
  lr: number;
  /** The momentum factor (0: plain SGD, no buffers). */
  readonly momentum: number;
  /** The L2 penalty added to each gradient. */
  readonly weightDecay: number;

  /** Steps taken so far. */
  steps = 0;
  private readonly source: Module | readonly Tensor[];
  private readonly buffers = new Map<string, Tensor>();

  constructor(params: Module | Iterable<Tensor>, opts: SgdConfig) {
    const op = 'SGD';
    this.lr = finiteNumber(op, 'lr', opts?.lr);
    this.momentum = finiteNumber(op, 'momentum', opts.momentum, 0);
    this.weightDecay = finiteNumber(op, 'weightDecay', opts.weightDecay, 0);
    if (this.lr < 0 || this.momentum < 0 || this.weightDecay < 0) {
      throw new ShapeError(
        `${op}: lr, momentum and weightDecay must be >= 0, received lr ${this.lr}, momentum ${this.momentum}, weightDecay ${this.weightDecay}`,
      );
    }
    if (params instanceof Module) {
      this.source = params;
    } else {
      const list = [...params];
      list.forEach((t, i) => {
        if (!(t instanceof Tensor)) throw new ShapeError(`${op}: params[${i}] must be a Tensor, received ${String(t)}`);
      });
      this.source = list;
    }
  }

  /** The parameters with their keys: dotted names for a module, indices otherwise. */
  namedParameters(): [string, Tensor][] {
    if (this.source instanceof Module) return this.source.namedParameters();
    return this.source.map((t, i) => [String(i), t]);
  }

  /** Updates every parameter that has a gradient; parameters without one are left alone. */
  step(): void {
    const opts = { lr: this.lr, momentum: this.momentum, weightDecay: this.weightDecay };
    for (const [key, p] of this.namedParameters()) {
      if (!p.grad) continue;
      sgdUpdate(p, p.grad, this.momentum !== 0 ? this.buffer(key, p) : null, opts);
    }
    this.steps++;
  }

  /** The momentum buffer of a parameter, made (zeros) or moved to the parameter's device. */
  private buffer(key: string, p: Tensor): Tensor {
    let v = this.buffers.get(key);
    if (v && v.device !== p.device) {
      const moved = noGrad(() => to(v as Tensor, p.device));
      v.dispose();
      v = moved;
    }
    if (!v) v = zeros(p.shape, { device: p.device });
    keepFromScopes(v);
    this.buffers.set(key, v);
    return v;
  }

  /** Frees the gradients of every parameter. */
  zeroGrad(): void {
    zeroGrads(this.namedParameters().map(([, t]) => t));
  }

  /**
   * The optimizer's state for a checkpoint. The buffers are the optimizer's own tensors (not
   * copies): read or save them, don't dispose them.
   */
  getState(): SgdState {
    return {
      lr: this.lr,
      momentum: this.momentum,
      weightDecay: this.weightDecay,
      steps: this.steps,
      buffers: Object.fromEntries(this.buffers),
    };
  }

  /**
   * Restores `getState()`'s lr, step count and momentum buffers (copied, onto each parameter's
   * device; the caller keeps its tensors). Buffers for keys this optimizer lacks are an error.
   */
  setState(state: Pick<SgdState, 'lr' | 'buffers'> & Partial<SgdState>): void {
    const params = new Map(this.namedParameters());
    for (const [key, t] of Object.entries(state.buffers ?? {})) {
      const p = params.get(key);
      if (!p) throw new ShapeError(`SGD.setState: no parameter with key '${key}'`);
      if (formatShape(p.shape) !== formatShape(t.shape)) {
        throw new ShapeError(`SGD.setState: buffer '${key}' must have shape ${formatShape(p.shape)}, received ${formatShape(t.shape)}`);
      }
    }
    this.lr = finiteNumber('SGD.setState', 'lr', state.lr);
    if (state.steps !== undefined) this.steps = state.steps;
    this.disposeBuffers();
    for (const [key, t] of Object.entries(state.buffers ?? {})) {
      const copy = noGrad(() => to(t, (params.get(key) as Tensor).device));
      keepFromScopes(copy);
      this.buffers.set(key, copy);
    }
  }

  private disposeBuffers(): void {
    for (const v of this.buffers.values()) v.dispose();
    this.buffers.clear();
  }

  /** Frees the momentum buffers (the parameters belong to their owner). */
  dispose(): void {
    this.disposeBuffers();
  }
}
