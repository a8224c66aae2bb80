/**
 * Shape ops: reshape and flatten (views over the same storage), concat and split (copies,
 * all done by the native copy_blocks op), and `to(device)` (a copy between devices).
 */
import { needsGrad, record } from '../autograd.js';
import { DeviceError, ShapeError } from '../errors.js';
import { native } from '../native.js';
import { checkShape, deviceId, empty, formatShape, Tensor, view } from '../tensor.js';
import { launch, launchInPlace } from './launch.js';
import { describe, expectTensor, isInt, sameDevice } from './validate.js';

function anyTensor(op: string, arg: string, t: unknown): Tensor {
  if (t instanceof Tensor) return expectTensor(op, arg, t, t.dtype);
  return expectTensor(op, arg, t);
}

/**
 * The same data with another shape: a view over the same storage (no copy), float32 or
 * int32. One dimension may be -1 (inferred). Also available as `t.reshape(shape)`.
 *
 * @throws ShapeError when the element counts differ, there is more than one -1, or -1 cannot
 *   be inferred
 *
 * @example
 * ```ts
 * const x = cn.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
 * const y = cn.reshape(x, [3, -1]); // [3, 2], sharing x's memory
 * ```
 */
export function reshape(t: Tensor, shape: readonly number[]): Tensor {
  const op = 'reshape';
  anyTensor(op, 'tensor', t);
  if (!Array.isArray(shape)) throw new ShapeError(`${op}: shape must be an array of dimensions, received ${describe(shape)}`);
  const infer = shape.filter((d) => d === -1).length;
  if (infer > 1) throw new ShapeError(`${op}: shape may hold at most one -1, received ${formatShape(shape)}`);
  let target = [...shape];
  if (infer === 1) {
    const known = shape.filter((d) => d !== -1);
    checkShape(op, 'shape', known);
    const rest = known.reduce((a, b) => a * b, 1);
    if (rest === 0 || t.size % rest !== 0) {
      throw new ShapeError(`${op}: cannot infer -1 in ${formatShape(shape)} for ${t.size} elements of ${formatShape(t.shape)}`);
    }
    target = shape.map((d) => (d === -1 ? t.size / rest : d));
  }
  const size = checkShape(op, 'shape', target);
  if (size !== t.size) {
    throw new ShapeError(`${op}: shape must hold ${t.size} elements like ${formatShape(t.shape)}, received ${formatShape(shape)} (${size})`);
  }
  const y = view(t._storage(op), target, t.dtype);
  if (!needsGrad(t)) return y;
  const from = t.shape;
  return record(y, op, [t], (g) => [view(g._storage('backward'), from, 'float32')]);
}

/**
 * [N, ...] → [N, product of the rest], a view (see {@link reshape}); keeps axis 0.
 *
 * @throws ShapeError for a scalar
 *
 * @example
 * ```ts
 * const h = cn.flatten(cn.zeros([8, 256, 6, 6])); // [8, 9216]
 * ```
 */
export function flatten(t: Tensor): Tensor {
  anyTensor('flatten', 'tensor', t);
  if (t.rank < 1) throw new ShapeError(`flatten: tensor must have at least 1 dim, received ${formatShape(t.shape)}`);
  return reshape(t, [t.shape[0], t.shape.slice(1).reduce((a, b) => a * b, 1)]);
}

function axisOf(op: string, axis: unknown, rank: number): number {
  if (!isInt(axis) || axis < -rank || axis >= rank) {
    throw new ShapeError(`${op}: axis must be an integer in [${-rank}, ${rank}), received ${describe(axis)}`);
  }
  return axis < 0 ? axis + rank : axis;
}

/** outer = product of dims before axis, inner = product after. */
function around(shape: readonly number[], axis: number): [number, number] {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  return [outer, inner];
}

/** Copies the slice [start, start+len) along axis of src into a new tensor (split's piece). */
function slice(src: Tensor, axis: number, start: number, len: number): Tensor {
  const shape = [...src.shape];
  shape[axis] = len;
  const [outer, inner] = around(src.shape, axis);
  const [y] = launch('copy_blocks', src.device, [[shape, src.dtype]], [src],
    [outer, len * inner, src.shape[axis] * inner, start * inner, len * inner, 0]);
  return y;
}

/**
 * Joins tensors along axis (default 0; negative counts from the end) into a new tensor; all
 * other dims, the dtype and the device must match.
 *
 * @throws ShapeError for an empty list, mismatched dims or dtypes, or an axis out of range;
 *   DeviceError when the tensors are on different devices
 *
 * @example
 * ```ts
 * const a = cn.zeros([2, 3]);
 * const b = cn.zeros([2, 5]);
 * const c = cn.concat([a, b], 1); // [2, 8]
 * ```
 */
export function concat(ts: readonly Tensor[], axis = 0): Tensor {
  const op = 'concat';
  if (!Array.isArray(ts) || ts.length === 0) throw new ShapeError(`${op}: ts must be a non-empty array of tensors, received ${describe(ts)}`);
  ts.forEach((t, i) => anyTensor(op, `ts[${i}]`, t));
  const first = ts[0];
  const device = sameDevice(op, ts.map((t, i) => [`ts[${i}]`, t] as [string, Tensor]));
  const ax = axisOf(op, axis, first.rank);
  ts.forEach((t, i) => {
    if (t.dtype !== first.dtype) throw new ShapeError(`${op}: ts[${i}] must be ${first.dtype} like ts[0], received ${t.dtype}`);
    const same = t.rank === first.rank && t.shape.every((d: number, k: number) => k === ax || d === first.shape[k]);
    if (!same) {
      throw new ShapeError(`${op}: ts[${i}] must match ts[0] ${formatShape(first.shape)} except along axis ${ax}, received ${formatShape(t.shape)}`);
    }
  });
  const shape = [...first.shape];
  shape[ax] = ts.reduce((a, t) => a + t.shape[ax], 0);
  checkShape(op, 'the output', shape);
  const y = empty(shape, first.dtype, device);
  const [outer, inner] = around(shape, ax);
  let offset = 0;
  try {
    for (const t of ts) {
      launchInPlace('copy_blocks', [y, t], [outer, t.shape[ax] * inner, t.shape[ax] * inner, 0, shape[ax] * inner, offset * inner]);
      offset += t.shape[ax];
    }
  } catch (e) {
    y.dispose();
    throw e;
  }
  if (!needsGrad(...ts)) return y;
  const sizes = ts.map((t) => t.shape[ax]);
  return record(y, op, [...ts], (g) => {
    let start = 0;
    return sizes.map((len, i) => {
      const piece = ts[i].requiresGrad ? slice(g, ax, start, len) : null;
      start += len;
      return piece;
    });
  });
}

/**
 * Splits t along axis (default 0; negative counts from the end) into new tensors of the given
 * sizes, which must add up to the axis length.
 *
 * @throws ShapeError for sizes that are not non-negative integers or do not add up, or an axis
 *   out of range
 *
 * @example
 * ```ts
 * const [a, b] = cn.split(cn.zeros([4, 10]), [3, 7], 1); // [4, 3] and [4, 7]
 * ```
 */
export function split(t: Tensor, sizes: readonly number[], axis = 0): Tensor[] {
  const op = 'split';
  anyTensor(op, 'tensor', t);
  const ax = axisOf(op, axis, t.rank);
  if (!Array.isArray(sizes) || sizes.some((s) => !isInt(s) || s < 0)) {
    throw new ShapeError(`${op}: sizes must be an array of non-negative integers, received ${describe(sizes)}`);
  }
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total !== t.shape[ax]) {
    throw new ShapeError(`${op}: sizes must add up to ${t.shape[ax]} (dim ${ax} of ${formatShape(t.shape)}), received ${formatShape(sizes)} (${total})`);
  }
  const out: Tensor[] = [];
  let start = 0;
  try {
    for (const len of sizes) {
      const piece = slice(t, ax, start, len);
      out.push(piece);
      if (needsGrad(t)) {
        const s0 = start;
        const full = t.shape;
        record(piece, op, [t], (g) => {
          // Place the piece's gradient into zeros of the input's shape.
          const [dx] = launch('fill', t.device, [[full, 'float32']], [], [full.reduce((a, b) => a * b, 1)], [0]);
          const [outer, inner] = around(full, ax);
          launchInPlace('copy_blocks', [dx, g], [outer, len * inner, len * inner, 0, full[ax] * inner, s0 * inner]);
          return [dx];
        });
      }
      start += len;
    }
  } catch (e) {
    out.forEach((p) => p.dispose());
    throw e;
  }
  return out;
}

/**
 * A copy of t on another device (also to the same device); gradients flow back to t's device.
 * Also available as `t.to(device)`. Between GPUs the copy is device to device.
 *
 * @throws DeviceError for a device id that is not a string, or a device this build or machine
 *   lacks
 *
 * @example
 * ```ts
 * const x = cn.randn([4, 4], { seed: 1 });
 * const y = cn.to(x, 'cpu:1'); // or x.to('cpu:1')
 * ```
 */

export function to(t: Tensor, device: string): Tensor {
  const op = 'to';
  anyTensor(op, 'tensor', t);
  if (typeof device !== 'string') throw new DeviceError(`${op}: device must be a device id string like 'cpu:1' or 'cuda:0', received ${describe(device)}`);
  const dst = deviceId(device);
  const y = empty(t.shape, t.dtype, dst);
  try {
    native.copy(y._handle(op), t._handle(op));
  } catch (e) {
    y.dispose();
    throw e;
  }
  if (!needsGrad(t)) return y;
  const src = t.device;
  return record(y, op, [t], (g) => {
    const back = empty(g.shape, 'float32', src);
    native.copy(back._handle('backward'), g._handle('backward'));
    return [back];
  });
}

declare module '../tensor.js' {
  interface Tensor {
    /** A view with another shape (see `reshape`). */
    reshape(shape: readonly number[]): Tensor;
    /** A copy on another device (peer / device-to-device copy between GPUs). */
    to(device: string): Tensor;
  }
}

Tensor.prototype.reshape = function reshapeMethod(this: Tensor, shape: readonly number[]) {
  return reshape(this, shape);
};
Tensor.prototype.to = function toMethod(this: Tensor, device: string) {
  return to(this, device);
};
