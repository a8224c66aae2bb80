/**
 * The layers of AlexNet as modules: Conv2d, Linear, ReLU, MaxPool2d, LRN, Dropout, Flatten.
 * Each forward is one op (LRN with groups adds two reshape views); shapes are those of the ops.
 */
import { dropout, relu } from '../ops/activation.js';
import { conv2d } from '../ops/conv2d.js';
import { linear } from '../ops/linear.js';
import { lrn } from '../ops/lrn.js';
import { maxPool2d } from '../ops/pool.js';
import { flatten, reshape } from '../ops/shape.js';
import { ShapeError } from '../errors.js';
import { deviceId, formatShape, type Tensor } from '../tensor.js';
import { describe, isInt } from '../ops/validate.js';
import { constantBias, heStd, mixSeed, normalWeight, type InitOptions } from './init.js';
import { Module, type ModuleState } from './module.js';

function positiveInt(op: string, arg: string, v: unknown): number {
  if (!isInt(v) || v < 1) throw new ShapeError(`${op}: ${arg} must be a positive integer, received ${describe(v)}`);
  return v;
}

/** Options of {@link Conv2d}; a number means the same value for height and width. */
export interface Conv2dLayerOptions {
  /** Default 1. */
  stride?: number | [number, number];
  /** Default 0. */
  padding?: number | [number, number];
  /** Default 1. */
  groups?: number;
  /** Whether the layer has a bias (default true). */
  bias?: boolean;
  /** Where the parameters live (default 'cpu:0'). */
  device?: string;
  /** Initial weights and bias (default He normal, bias 0, seed 0). */
  init?: InitOptions;
}

/**
 * 2-D convolution: weight [outC, inC/groups, KH, KW], bias [outC]; x [N, inC, H, W] ->
 * [N, outC, OH, OW] (see `conv2d`).
 *
 * @throws ShapeError from the constructor for counts that are not positive integers, or
 *   channels not divisible by groups
 *
 * @example
 * ```ts
 * const conv1 = new cn.nn.Conv2d(3, 96, 11, { stride: 4, padding: 2, device: 'cuda:0' });
 * const y = conv1.forward(x); // x [N, 3, 224, 224] -> [N, 96, 55, 55]
 * ```
 */
export class Conv2d extends Module {
  /** Input channels (C). */
  readonly inChannels: number;
  /** Output channels (filters, F). */
  readonly outChannels: number;
  /** [KH, KW]. */
  readonly kernel: [number, number];
  /** As given in the options (default 1). */
  readonly stride: number | [number, number];
  /** As given in the options (default 0). */
  readonly padding: number | [number, number];
  /** Channel groups (default 1). */
  readonly groups: number;

  constructor(inChannels: number, outChannels: number, kernel: number | [number, number], opts: Conv2dLayerOptions = {}) {
    super();
    const op = 'Conv2d';
    this.inChannels = positiveInt(op, 'inChannels', inChannels);
    this.outChannels = positiveInt(op, 'outChannels', outChannels);
    this.kernel = Array.isArray(kernel)
      ? [positiveInt(op, 'kernel', kernel[0]), positiveInt(op, 'kernel', kernel[1])]
      : [positiveInt(op, 'kernel', kernel), kernel as number];
    this.groups = positiveInt(op, 'groups', opts.groups ?? 1);
    if (inChannels % this.groups !== 0 || outChannels % this.groups !== 0) {
      throw new ShapeError(
        `${op}: inChannels (${inChannels}) and outChannels (${outChannels}) must be divisible by groups, received groups ${this.groups}`,
      );
    }
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? 0;
    const device = deviceId(opts.device);
    const shape = [outChannels, inChannels / this.groups, this.kernel[0], this.kernel[1]];
    const fanIn = shape[1] * shape[2] * shape[3];
    const init = opts.init ?? {};
    this.registerParameter('weight', normalWeight(shape, init.std ?? heStd(fanIn), init.seed ?? 0, device));
    if (opts.bias !== false) this.registerParameter('bias', constantBias(outChannels, init.bias ?? 0, device));
  }

  /** [outC, inC/groups, KH, KW]. */
  get weight(): Tensor {
    return this.param('weight');
  }

  /** [outC], or null for a layer built with `bias: false`. */
  get bias(): Tensor | null {
    return this.maybeParam('bias');
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding, groups: this.groups });
  }
}

/** Options of {@link Linear}. */
export interface LinearLayerOptions {
  /** Whether the layer has a bias (default true). */
  bias?: boolean;
  /** Where the parameters live (default 'cpu:0'). */
  device?: string;
  /** Initial weights and bias (default He normal, bias 0, seed 0). */
  init?: InitOptions;
}

/**
 * Fully connected: weight [outF, inF], bias [outF]; x [N, inF] -> [N, outF] (see `linear`).
 *
 * @throws ShapeError from the constructor for counts that are not positive integers
 *
 * @example
 * ```ts
 * const fc = new cn.nn.Linear(784, 10, { init: { std: 0.01, seed: 7 } });
 * const logits = fc.forward(cn.zeros([32, 784])); // [32, 10]
 * ```
 */
export class Linear extends Module {
  /** Input features (K). */
  readonly inFeatures: number;
  /** Output features (M). */
  readonly outFeatures: number;

  constructor(inFeatures: number, outFeatures: number, opts: LinearLayerOptions = {}) {
    super();
    this.inFeatures = positiveInt('Linear', 'inFeatures', inFeatures);
    this.outFeatures = positiveInt('Linear', 'outFeatures', outFeatures);
    const device = deviceId(opts.device);
    const init = opts.init ?? {};
    this.registerParameter('weight', normalWeight([outFeatures, inFeatures], init.std ?? heStd(inFeatures), init.seed ?? 0, device));
    if (opts.bias !== false) this.registerParameter('bias', constantBias(outFeatures, init.bias ?? 0, device));
  }

  /** [outF, inF]. */
  get weight(): Tensor {
    return this.param('weight');
  }

  /** [outF], or null for a layer built with `bias: false`. */
  get bias(): Tensor | null {
    return this.maybeParam('bias');
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/**
 * max(x, 0), elementwise (see `relu`); no parameters.
 *
 * @example
 * ```ts
 * const model = new cn.nn.Sequential(new cn.nn.Linear(784, 128), new cn.nn.ReLU(), new cn.nn.Linear(128, 10));
 * ```
 */
export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return relu(x);
  }
}

/**
 * Max pooling, floor mode (see `maxPool2d`); no parameters. The options are checked when
 * `forward` runs.
 *
 * @example
 * ```ts
 * const pool = new cn.nn.MaxPool2d(3, { stride: 2 }); // AlexNet's overlapping pooling
 * const y = pool.forward(cn.zeros([1, 96, 55, 55])); // [1, 96, 27, 27]
 * ```
 */
export class MaxPool2d extends Module {
  /** The window, as given. */
  readonly kernel: number | [number, number];
  /** As given, or the kernel. */
  readonly stride: number | [number, number];
  /** As given, or 0. */
  readonly padding: number | [number, number];

  /** `stride` defaults to the kernel, `padding` to 0. */
  constructor(kernel: number | [number, number], opts: { stride?: number | [number, number]; padding?: number | [number, number] } = {}) {
    super();
    this.kernel = kernel;
    this.stride = opts.stride ?? kernel;
    this.padding = opts.padding ?? 0;
  }

  forward(x: Tensor): Tensor {
    return maxPool2d(x, { kernel: this.kernel, stride: this.stride, padding: this.padding });
  }
}

/** Options of {@link LRN}. */
export interface LrnLayerOptions {
  /** Default 1e-4. */
  alpha?: number;
  /** Default 0.75. */
  beta?: number;
  /** Default 2 (AlexNet's). */
  k?: number;
  /**
   * The channels form this many equal, contiguous groups and the window never crosses a group
   * boundary (default 1). The single-device AlexNet uses 2 so that, as in the two-tower model,
   * each tower's channels are normalised among themselves.
   */
  groups?: number;
}

/**
 * Local response normalisation across channels (see `lrn`), AlexNet's defaults:
 * size 5, alpha 1e-4, beta 0.75, k 2. No parameters.
 *
 * @throws ShapeError from the constructor for a size or groups that is not a positive integer,
 *   and from `forward` for channels not divisible by groups
 *
 * @example
 * ```ts
 * const norm = new cn.nn.LRN(5, { k: 2 });
 * const y = norm.forward(cn.randn([1, 96, 55, 55], { seed: 1 })); // same shape
 * ```
 */
export class LRN extends Module {
  /** Channels in the window. */
  readonly size: number;
  /** Scale of the sum of squares (divided by size). */
  readonly alpha: number;
  /** Exponent of the denominator. */
  readonly beta: number;
  /** Additive constant of the denominator. */
  readonly k: number;
  /** Channel groups the window stays within. */
  readonly groups: number;

  constructor(size = 5, opts: LrnLayerOptions = {}) {
    super();
    this.size = positiveInt('LRN', 'size', size);
    this.alpha = opts.alpha ?? 1e-4;
    this.beta = opts.beta ?? 0.75;
    this.k = opts.k ?? 2;
    this.groups = positiveInt('LRN', 'groups', opts.groups ?? 1);
  }

  forward(x: Tensor): Tensor {
    const opts = { size: this.size, alpha: this.alpha, beta: this.beta, k: this.k };
    if (this.groups === 1) return lrn(x, opts);
    if (x.rank !== 4 || x.shape[1] % this.groups !== 0) {
      throw new ShapeError(`LRN: x must be [N, C, H, W] with C divisible by groups (${this.groups}), received ${formatShape(x.shape)}`);
    }
    // NCHW: each group's channels are contiguous within a sample, so [N, C, H, W] viewed as
    // [N·groups, C/groups, H, W] puts every group in its own "sample".
    const [N, C, H, W] = x.shape;
    const inner = reshape(x, [N * this.groups, C / this.groups, H, W]);
    const y = lrn(inner, opts);
    inner.dispose();
    const out = reshape(y, [N, C, H, W]);
    y.dispose();
    return out;
  }
}

/** Options of {@link Dropout}. */
export interface DropoutLayerOptions {
  /** The base of the per-call seeds (default 0). */
  seed?: number;
}

/**
 * Inverted dropout. In training mode each forward draws a fresh mask: call number i uses seed
 * `mixSeed(seed, i)`, so the masks are reproducible and the call counter (`calls`, part of
 * `getState()`) is all the state a checkpoint needs. In evaluation mode it is the identity and
 * the counter does not move. No parameters.
 *
 * @throws ShapeError from the constructor for p outside [0, 1) or a seed that is not a
 *   non-negative integer
 *
 * @example
 * ```ts
 * const drop = new cn.nn.Dropout(0.5, { seed: 42 });
 * const y = drop.forward(h); // a fresh mask each training-mode call
 * drop.eval();
 * const same = drop.forward(h); // the identity
 * ```
 */
export class Dropout extends Module {
  /** Probability of dropping an element, in [0, 1). */
  readonly p: number;
  /** The base of the per-call seeds. */
  readonly seed: number;
  /** Training-mode forwards so far. */
  calls = 0;

  constructor(p = 0.5, opts: DropoutLayerOptions = {}) {
    super();
    if (typeof p !== 'number' || !(p >= 0 && p < 1)) {
      throw new ShapeError(`Dropout: p must be a number in [0, 1), received ${describe(p)}`);
    }
    const seed = opts.seed ?? 0;
    if (!isInt(seed) || seed < 0) throw new ShapeError(`Dropout: seed must be a non-negative integer, received ${describe(seed)}`);
    this.p = p;
    this.seed = seed;
  }

  /** The seed of the next training-mode mask; advances the counter. */
  nextSeed(): number {
    return mixSeed(this.seed, this.calls++);
  }

  forward(x: Tensor): Tensor {
    if (!this.training) return dropout(x, { p: this.p, seed: 0, training: false });
    return dropout(x, { p: this.p, seed: this.nextSeed() });
  }

  /**
   * Applies one mask to several tensors of the same shape (copies of one activation on
   * different devices, as in the two-tower AlexNet); the counter advances once.
   */
  forwardShared(xs: readonly Tensor[]): Tensor[] {
    if (!this.training) return xs.map((x) => dropout(x, { p: this.p, seed: 0, training: false }));
    const seed = this.nextSeed();
    return xs.map((x) => dropout(x, { p: this.p, seed }));
  }

  protected ownState(): ModuleState {
    return { calls: this.calls };
  }

  protected loadOwnState(state: ModuleState): void {
    if (state.calls !== undefined) this.calls = state.calls;
  }
}

/**
 * [N, ...] -> [N, product of the rest] (a view, see `flatten`); no parameters.
 *
 * @example
 * ```ts
 * const y = new cn.nn.Flatten().forward(cn.zeros([8, 256, 6, 6])); // [8, 9216]
 * ```
 */
export class Flatten extends Module {

  forward(x: Tensor): Tensor {
    return flatten(x);
  }
}
