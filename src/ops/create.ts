/** Tensor constructors: tensor, zeros, full, randn. */
import { ShapeError } from '../errors.js';
import { native } from '../native.js';
import { checkShape, deviceId, formatShape, Storage, Tensor, type DType, type TensorOptions } from '../tensor.js';
import { describe, finiteNumber, seedOf } from './validate.js';

/** Options of {@link tensor}, {@link zeros} and {@link full}. */
export interface CreateOptions extends TensorOptions {
  /**
   * The element type. Default: `int32` for an Int32Array's data, else `float32`. int32 values
   * must be integers in [-2^31, 2^31); nothing is rounded or wrapped.
   */
  dtype?: DType;
}

function dtypeOf(op: string, v: unknown, fallback: DType): DType {
  if (v === undefined) return fallback;
  if (v !== 'float32' && v !== 'int32') {
    throw new ShapeError(`${op}: dtype must be 'float32' or 'int32', received ${describe(v)}`);
  }
  return v;
}

function leaf(op: string, shape: readonly number[], dtype: DType, opts: TensorOptions | undefined): Tensor {
  const requiresGrad = opts?.requiresGrad === true;
  if (requiresGrad && dtype !== 'float32') {
    throw new ShapeError(`${op}: requiresGrad needs a float32 tensor, received dtype ${dtype}`);
  }
  const size = shape.reduce((a, b) => a * b, 1);
  return new Tensor(new Storage(deviceId(opts?.device), size * 4), shape, dtype, requiresGrad);
}

/** Runs the write that fills a new tensor; frees the tensor if it fails. */
function filled(t: Tensor, write: () => void): Tensor {
  try {
    write();
  } catch (e) {
    t.dispose();
    throw e;
  }
  return t;
}

/**
 * Conversion to int32 never rounds, wraps or turns NaN into 0: every value must already be an
 * integer in [-2^31, 2^31), whichever array it comes from.
 */
function checkInt32(op: string, data: ArrayLike<unknown>): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isInteger(v) || (v as number) < -(2 ** 31) || (v as number) >= 2 ** 31) {
      throw new ShapeError(`${op}: data[${i}] must be a 32-bit integer for dtype int32, received ${describe(v)}`);
    }
  }
}

/**
 * A tensor holding a copy of `data` (row-major) with the given shape.
 *
 * @param data the values; their count must equal the product of `shape`
 * @throws ShapeError for a bad shape, a length that does not match it, a non-number, an int32
 *   value that is not a 32-bit integer, or `requiresGrad` on an int32 tensor; DeviceError for
 *   an unknown device
 *
 * @example
 * ```ts
 * const x = cn.tensor(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3], { device: 'cpu:0' });
 * const labels = cn.tensor([0, 7, 3], [3], { dtype: 'int32' });
 * ```
 */
export function tensor(data: Float32Array | Int32Array | readonly number[], shape: readonly number[],
                       opts: CreateOptions = {}): Tensor {
  const size = checkShape('tensor', 'shape', shape);
  let dtype: DType;
  let typed: Float32Array | Int32Array;
  if (data instanceof Float32Array) {
    dtype = dtypeOf('tensor', opts.dtype, 'float32');
    if (dtype === 'int32') checkInt32('tensor', data);
    typed = dtype === 'float32' ? data : Int32Array.from(data);
  } else if (data instanceof Int32Array) {
    dtype = dtypeOf('tensor', opts.dtype, 'int32');
    typed = dtype === 'int32' ? data : Float32Array.from(data);
  } else if (Array.isArray(data)) {
    dtype = dtypeOf('tensor', opts.dtype, 'float32');
    if (dtype === 'int32') {
      checkInt32('tensor', data);
      typed = Int32Array.from(data);
    } else {
      const bad = data.findIndex((v) => typeof v !== 'number');
      if (bad >= 0) throw new ShapeError(`tensor: data[${bad}] must be a number, received ${describe(data[bad])}`);
      typed = Float32Array.from(data);
    }
  } else {
    throw new ShapeError(`tensor: data must be a Float32Array, Int32Array or number[], received ${describe(data)}`);
  }
  if (typed.length !== size) {
    throw new ShapeError(`tensor: data has ${typed.length} elements but shape ${formatShape(shape)} needs ${size}`);
  }
  const t = leaf('tensor', shape, dtype, opts);
  return filled(t, () => native.upload(t._handle('tensor'), typed));
}

/**
 * A tensor filled with `value`.
 *
 * @throws ShapeError for a bad shape, a value that is not finite, or not a 32-bit integer for
 *   int32; DeviceError for an unknown device
 *
 * @example
 * ```ts
 * const bias = cn.full([256], 1, { device: 'cuda:0', requiresGrad: true });
 * ```
 */
export function full(shape: readonly number[], value: number, opts: CreateOptions = {}): Tensor {
  checkShape('full', 'shape', shape);
  const dtype = dtypeOf('full', opts.dtype, 'float32');
  finiteNumber('full', 'value', value);
  if (dtype === 'int32' && !(Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31)) {
    throw new ShapeError(`full: value must be a 32-bit integer for dtype int32, received ${value}`);
  }
  const t = leaf('full', shape, dtype, opts);
  return filled(t, () => {
    if (dtype === 'int32' && value !== 0) {
      native.upload(t._handle('full'), new Int32Array(t.size).fill(value));
    } else {
      native.launch('fill', [t._handle('full')], [t.size], [value]);
    }
  });
}

/**
 * A tensor of zeros (float32 unless `dtype` says otherwise).
 *
 * @throws ShapeError for a bad shape; DeviceError for an unknown device
 *
 * @example
 * ```ts
 * const z = cn.zeros([2, 3]);
 * const counts = cn.zeros([10], { dtype: 'int32', device: 'cpu:1' });
 * ```
 */
export function zeros(shape: readonly number[], opts: CreateOptions = {}): Tensor {
  checkShape('zeros', 'shape', shape);
  return full(shape, 0, opts);
}

/** Options of {@link randn}. */
export interface RandnOptions extends TensorOptions {
  /** Names the stream of numbers: the same seed gives the same tensor on every device. */
  seed: number;
  /** Standard deviation; default 1. */
  std?: number;
  /** Mean; default 0. */
  mean?: number;
}

/**
 * Normal random numbers from the counter-based generator: element i is a pure function of
 * (seed, i), the same on every device. Always float32.
 *
 * @throws ShapeError for a bad shape, a seed that is not a non-negative integer, or a std or
 *   mean that is not finite; DeviceError for an unknown device
 *
 * @example
 * ```ts
 * const w = cn.randn([64, 3, 11, 11], { seed: 1, std: 0.01, requiresGrad: true });
 * ```
 */

export function randn(shape: readonly number[], opts: RandnOptions): Tensor {
  checkShape('randn', 'shape', shape);
  const seed = seedOf('randn', opts?.seed);
  const std = finiteNumber('randn', 'std', opts.std, 1);
  const mean = finiteNumber('randn', 'mean', opts.mean, 0);
  const t = leaf('randn', shape, 'float32', opts);
  return filled(t, () => native.launch('randn', [t._handle('randn')], [t.size, seed], [mean, std]));
}
