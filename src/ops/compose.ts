/**
 * Composition ops (native/ops/compose.h): element-wise arithmetic with NumPy broadcasting,
 * unary functions, reductions over axes, matmul, transpose, and user-defined ops in autograd.
 *
 * Seven general native ops do all the work: `binary` (add, sub, mul, div over a broadcast
 * iteration space of at most 8 dims, each operand with its own strides, 0 along broadcast dims),
 * `unary` and `unary_backward` (the gradient dy * f'(x) in one fused pass), `reduce` (sum or max
 * over [outer, r, inner] in a fixed order; max also writes the argmax), `reduce_max_backward`,
 * `strided_copy` (transpose and broadcast-expand) and `matmul` (the SGEMM, batched).
 */
import { needsGrad, noGrad, record, save, type Saved } from '../autograd.js';
import { ShapeError } from '../errors.js';
import { native } from '../native.js';
import { checkShape, empty, formatShape, scope, Storage, Tensor, view } from '../tensor.js';
import { launch } from './launch.js';
import { describe, expectTensor, isInt, sameDevice } from './validate.js';

/** The most dims the native element-wise kernels index (after merging contiguous dims). */
export const MAX_RANK = 8;

/** An operand of the element-wise ops: a tensor, or a plain number (broadcast everywhere). */
export type Operand = Tensor | number;

const BIN = { add: 0, sub: 1, mul: 2, div: 3 } as const;
const UN = { neg: 0, exp: 1, log: 2, sqrt: 3, tanh: 4, sigmoid: 5, pow: 6 } as const;
const RED_SUM = 0;
const RED_MAX = 1;

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Row-major element strides of a contiguous tensor of this shape. */
function contiguousStrides(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    st[d] = s;
    s *= shape[d];
  }
  return st;
}

/**
 * The broadcast of two shapes (NumPy rules), or a ShapeError naming both, with `op` at the front
 * of its message.
 *
 * @example
 * ```ts
 * cn.broadcastShapes('myLayer', [8, 1, 5], [4, 1]); // [8, 4, 5]
 * ```
 */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = i - (rank - a.length) >= 0 ? a[i - (rank - a.length)] : 1;
    const db = i - (rank - b.length) >= 0 ? b[i - (rank - b.length)] : 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(`${op}: shapes ${formatShape(a)} and ${formatShape(b)} do not broadcast`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Strides of a contiguous operand of `shape` read over the broadcast `out` shape (0 = broadcast). */
/** @internal */
export function broadcastStrides(shape: readonly number[], out: readonly number[]): number[] {
  const own = contiguousStrides(shape);
  const lead = out.length - shape.length;
  return out.map((_, d) => (d < lead || shape[d - lead] === 1 ? 0 : own[d - lead]));
}

/**
 * Merges dims the operands walk contiguously and drops dims of extent 1, so the kernels see as
 * few dims as possible. Returns null when more than MAX_RANK dims remain.
 */
/** @internal */
export function coalesce(dims: readonly number[], strides: number[][]): { dims: number[]; strides: number[][] } | null {
  const outDims: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = 0; d < dims.length; d++) {
    if (dims[d] === 1) continue;
    const last = outDims.length - 1;
    if (last >= 0 && strides.every((st, k) => outStrides[k][last] === st[d] * dims[d])) {
      outDims[last] *= dims[d];
      strides.forEach((st, k) => (outStrides[k][last] = st[d]));
    } else {
      outDims.push(dims[d]);
      strides.forEach((st, k) => outStrides[k].push(st[d]));
    }
  }
  if (outDims.length > MAX_RANK) return null;
  return { dims: outDims, strides: outStrides };
}

/** dims[8], then each operand's strides[8], padded with 1 / 0. */
function stridedInts(dims: number[], strides: number[][]): number[] {
  const pad = (v: number[], fill: number) => [...v, ...new Array<number>(MAX_RANK - v.length).fill(fill)];
  return [...pad(dims, 1), ...strides.flatMap((s) => pad(s, 0))];
}

function tooManyDims(op: string, what: string): never {
  throw new ShapeError(`${op}: ${what} must have at most ${MAX_RANK} dims after merging contiguous ones`);
}

/** A 0-dim tensor holding v on device (any number, NaN and infinities included). */
function scalarTensor(v: number, device: string): Tensor {
  const t = empty([], 'float32', device);
  try {
    native.launch('fill', [t._handle('scalar')], [1], [v]);
  } catch (e) {
    t.dispose();
    throw e;
  }
  return t;
}

type Src = [Tensor | Storage, readonly number[], (readonly number[])?];

/**
 * @internal y[out] = a op b, each operand given as (data, shape, strides over `out` (default:
 * its own contiguous layout broadcast against `out`)).
 */
function binaryRaw(op: string, code: number, device: string, out: readonly number[], a: Src, b: Src): Tensor {
  const sa = a[2] ? [...a[2]] : broadcastStrides(a[1], out);
  const sb = b[2] ? [...b[2]] : broadcastStrides(b[1], out);
  const c = coalesce(out, [sa, sb]) ?? tooManyDims(op, `the broadcast of ${formatShape(a[1])} and ${formatShape(b[1])}`);
  const [y] = launch('binary', device, [[out, 'float32']], [a[0], b[0]],
    [code, c.dims.length, prod(out), ...stridedInts(c.dims, c.strides)]);
  return y;
}

/** @internal y[out] = x read with `strides` over out (transpose, broadcast-expand). */
function stridedCopy(op: string, device: string, x: Tensor | Storage, out: readonly number[], strides: number[]): Tensor {
  const c = coalesce(out, [strides]) ?? tooManyDims(op, 'the permuted tensor');
  const [y] = launch('strided_copy', device, [[out, 'float32']], [x], [c.dims.length, prod(out), ...stridedInts(c.dims, c.strides)]);
  return y;
}

/** A new tensor over g's storage (gradients are owned and disposed by the autograd tape). */
function alias(g: Tensor, shape: readonly number[]): Tensor {
  return view(g._storage('backward'), shape, 'float32');
}

// ---- Reductions -------------------------------------------------------------------------------

interface ReducePlan {
  /** x's shape; the kept shape with reduced dims as 1 (keepDims). */
  shape: readonly number[];
  keep: number[];
  /** Permutation applied to x first (null: x is read in place). */
  perm: number[] | null;
  outer: number;
  r: number;
  inner: number;
}

function planReduce(shape: readonly number[], axes: readonly number[]): ReducePlan {
  const red = new Set(axes);
  const keep = shape.map((d, i) => (red.has(i) ? 1 : d));
  // Runs of reduced / kept dims, ignoring extent-1 dims (they do not move memory).
  const flags = shape.map((d, i) => (d === 1 ? null : red.has(i)));
  const runs: boolean[] = [];
  for (const f of flags) if (f !== null && runs[runs.length - 1] !== f) runs.push(f);
  const redRuns = runs.filter((f) => f).length;
  const r = prod(shape.filter((_, i) => red.has(i)));
  if (redRuns <= 1) {
    const first = shape.findIndex((d, i) => d !== 1 && red.has(i));
    let last = -1;
    shape.forEach((d, i) => { if (d !== 1 && red.has(i)) last = i; });
    const outer = first < 0 ? prod(keep) : prod(shape.slice(0, first));
    const inner = first < 0 ? 1 : prod(shape.slice(last + 1));
    return { shape, keep, perm: null, outer, r, inner };
  }
  const kept = shape.map((_, i) => i).filter((i) => !red.has(i));
  const reduced = shape.map((_, i) => i).filter((i) => red.has(i));
  return { shape, keep, perm: [...kept, ...reduced], outer: prod(keep), r, inner: 1 };
}

/** @internal Sum (times scale) or max of x over the plan; returns y in the keepDims shape (and idx for max). */
function reduceRaw(op: string, code: number, x: Tensor | Storage, device: string, p: ReducePlan, scale = 1): [Tensor, Tensor | null] {
  let src: Tensor | Storage = x;
  let moved: Tensor | null = null;
  if (p.perm) {
    const st = contiguousStrides(p.shape);
    moved = stridedCopy(op, device, x, p.perm.map((d) => p.shape[d]), p.perm.map((d) => st[d]));
    src = moved;
  }
  try {
    const outs: [readonly number[], 'float32' | 'int32'][] = [[p.keep, 'float32']];
    if (code === RED_MAX) outs.push([p.keep, 'int32']);
    const made = launch('reduce', device, outs, code === RED_MAX ? [src] : [null, src], [code, p.outer, p.r, p.inner], [scale]);
    return [made[0], made[1] ?? null];
  } finally {
    moved?.dispose();
  }
}

/** @internal g (keepDims shape) broadcast back to the plan's input shape, times scale. */
function expandRaw(op: string, g: Tensor, device: string, p: ReducePlan, scale: number): Tensor {
  const st = broadcastStrides(p.keep, p.shape);
  if (scale === 1) return stridedCopy(op, device, g, p.shape, st);
  const s = scalarTensor(scale, device);
  try {
    return binaryRaw(op, BIN.mul, device, p.shape, [g, p.keep, st], [s, [], p.shape.map(() => 0)]);
  } finally {
    s.dispose();
  }
}

/**
 * @internal The gradient of a broadcast operand: g (shape out) summed over the dims the operand
 * was broadcast along, times scale, reshaped to `shape`.
 */
export function reduceTo(op: string, g: Tensor, shape: readonly number[], scale = 1): Tensor {
  const lead = g.rank - shape.length;
  const axes = g.shape.map((_, d) => d).filter((d) => d < lead || (shape[d - lead] === 1 && g.shape[d] !== 1));
  if (axes.length === 0 && scale === 1) return alias(g, shape);
  const [y] = reduceRaw(op, RED_SUM, g, g.device, planReduce(g.shape, axes), scale);
  if (y.rank === shape.length) return y;
  const out = alias(y, shape);
  y.dispose();
  return out;
}

// ---- Element-wise binary ------------------------------------------------------------------------

function operand(op: string, arg: string, v: unknown): Operand {
  if (typeof v === 'number') return v;
  if (v instanceof Tensor) return expectTensor(op, arg, v);
  throw new ShapeError(`${op}: ${arg} must be a Tensor or a number, received ${describe(v)}`);
}

function binary(op: keyof typeof BIN, a: Operand, b: Operand): Tensor {
  const A = operand(op, 'a', a);
  const B = operand(op, 'b', b);
  if (!(A instanceof Tensor) && !(B instanceof Tensor)) {
    throw new ShapeError(`${op}: a or b must be a Tensor, received ${describe(A)} and ${describe(B)}`);
  }
  const ta = A instanceof Tensor ? A : null;
  const tb = B instanceof Tensor ? B : null;
  const device = sameDevice(op, [['a', ta], ['b', tb]]);
  const shapeA = ta ? ta.shape : [];
  const shapeB = tb ? tb.shape : [];
  const out = broadcastShapes(op, shapeA, shapeB);
  checkShape(op, 'the output', out);
  const ra = ta ?? scalarTensor(A as number, device);
  let rb: Tensor;
  try {
    rb = tb ?? scalarTensor(B as number, device);
  } catch (e) {
    if (!ta) ra.dispose();
    throw e;
  }
  let y: Tensor;
  const keep: Saved[] = [];
  let sa: Saved | null = null;
  let sb: Saved | null = null;
  let sy: Saved | null = null;
  const wantA = ta?.requiresGrad === true && needsGrad(ta);
  const wantB = tb?.requiresGrad === true && needsGrad(tb);
  try {
    y = binaryRaw(op, BIN[op], device, out, [ra, shapeA], [rb, shapeB]);
    // What the gradients read: mul the other operand; div b (and y for b's gradient).
    if (op === 'mul' && wantB) keep.push((sa = save(ra, op)));
    if ((op === 'mul' && wantA) || (op === 'div' && (wantA || wantB))) keep.push((sb = save(rb, op)));
    if (op === 'div' && wantB) keep.push((sy = save(y, op)));
  } finally {
    // A queued op holds its own references: the scalars can go now.
    if (!ta) ra.dispose();
    if (!tb) rb.dispose();
  }
  if (!wantA && !wantB) return y;
  return record(y, op, [ta, tb], (g) => {
    const grads: (Tensor | null)[] = [null, null];
    if (op === 'add' || op === 'sub') {
      if (wantA) grads[0] = reduceTo(op, g, shapeA);
      if (wantB) grads[1] = reduceTo(op, g, shapeB, op === 'sub' ? -1 : 1);
    } else if (op === 'mul') {
      if (wantA) grads[0] = productTo(op, g, sb!, shapeA);
      if (wantB) grads[1] = productTo(op, g, sa!, shapeB);
    } else {
      // d/da = g / b;  d/db = -(g / b) * y
      const t = binaryRaw(op, BIN.div, device, g.shape, [g, g.shape], [sb!.storage, sb!.shape]);
      try {
        if (wantA) grads[0] = reduceTo(op, t, shapeA);
        if (wantB) {
          const u = binaryRaw(op, BIN.mul, device, g.shape, [t, g.shape], [sy!.storage, sy!.shape]);
          try {
            grads[1] = reduceTo(op, u, shapeB, -1);
          } finally {
            u.dispose();
          }
        }
      } finally {
        t.dispose();
      }
    }
    return grads;
  }, keep.map((k) => k.storage));
}

/** (g * other) summed back to `shape`. */
function productTo(op: string, g: Tensor, other: Saved, shape: readonly number[]): Tensor {
  const t = binaryRaw(op, BIN.mul, g.device, g.shape, [g, g.shape], [other.storage, other.shape]);
  try {
    return reduceTo(op, t, shape);
  } finally {
    t.dispose();
  }
}

/**
 * a + b, element-wise with NumPy broadcasting; either operand may be a plain number.
 * Gradients of broadcast operands are summed back to their shapes.
 *
 * @example
 * ```ts
 * const y = cn.add(cn.zeros([2, 3]), cn.tensor([1, 2, 3], [3])); // [[1, 2, 3], [1, 2, 3]]
 * const z = cn.add(y, 1);
 * ```
 */
export function add(a: Operand, b: Operand): Tensor {
  return binary('add', a, b);
}

/**
 * a - b, element-wise with NumPy broadcasting; either operand may be a plain number.
 *
 * @example
 * ```ts
 * const centred = cn.sub(x, cn.mean(x, { axis: 1, keepDims: true }));
 * ```
 */
export function sub(a: Operand, b: Operand): Tensor {
  return binary('sub', a, b);
}

/**
 * a * b, element-wise with NumPy broadcasting; either operand may be a plain number.
 *
 * @example
 * ```ts
 * const scaled = cn.mul(x, gamma); // x [N, C], gamma [C]
 * ```
 */
export function mul(a: Operand, b: Operand): Tensor {
  return binary('mul', a, b);
}

/**
 * a / b, element-wise with NumPy broadcasting; either operand may be a plain number.
 *
 * @example
 * ```ts
 * const p = cn.div(e, cn.sum(e, { axis: 1, keepDims: true })); // rows summing to 1
 * ```
 */
export function div(a: Operand, b: Operand): Tensor {
  return binary('div', a, b);
}

// ---- Unary ------------------------------------------------------------------------------------

function unary(op: keyof typeof UN, x: Tensor, p = 0): Tensor {
  expectTensor(op, 'x', x);
  const code = UN[op];
  const [y] = launch('unary', x.device, [[x.shape, 'float32']], [x], [code, x.size], [p]);
  if (!needsGrad(x)) return y;
  const sx = op === 'neg' ? null : save(x, op);
  const sy = op === 'neg' ? null : save(y, op);
  return record(y, op, [x], (g) =>
    launch('unary_backward', x.device, [[x.shape, 'float32']], [sx?.storage ?? g, sy?.storage ?? g, g], [code, x.size], [p]),
  [sx, sy].filter((s) => s !== null).map((s) => s.storage));
}

/**
 * -x, element-wise.
 *
 * @example
 * ```ts
 * const y = cn.neg(cn.tensor([1, -2], [2])); // [-1, 2]
 * ```
 */
export function neg(x: Tensor): Tensor {
  return unary('neg', x);
}

/**
 * e^x, element-wise.
 *
 * @example
 * ```ts
 * const y = cn.exp(cn.zeros([3])); // [1, 1, 1]
 * ```
 */
export function exp(x: Tensor): Tensor {
  return unary('exp', x);
}

/**
 * The natural logarithm, element-wise (NaN below 0, -Infinity at 0).
 *
 * @example
 * ```ts
 * const y = cn.log(cn.exp(x)); // x again
 * ```
 */
export function log(x: Tensor): Tensor {
  return unary('log', x);
}

/**
 * The square root, element-wise (NaN below 0).
 *
 * @example
 * ```ts
 * const std = cn.sqrt(cn.add(variance, 1e-5));
 * ```
 */
export function sqrt(x: Tensor): Tensor {
  return unary('sqrt', x);
}

/**
 * The hyperbolic tangent, element-wise.
 *
 * @example
 * ```ts
 * const h = cn.tanh(cn.matmul(x, w));
 * ```
 */
export function tanh(x: Tensor): Tensor {
  return unary('tanh', x);
}

/**
 * The logistic function 1 / (1 + e^-x), element-wise.
 *
 * @example
 * ```ts
 * const gate = cn.sigmoid(z);
 * ```
 */
export function sigmoid(x: Tensor): Tensor {
  return unary('sigmoid', x);
}

/**
 * x raised to a constant power, element-wise (as C's powf: NaN for a negative x and a
 * fractional exponent). The gradient is exponent * x^(exponent-1); 0 for exponent 0.
 *
 * @example
 * ```ts
 * const sq = cn.pow(x, 2);
 * ```
 */
export function pow(x: Tensor, exponent: number): Tensor {
  expectTensor('pow', 'x', x);
  if (typeof exponent !== 'number' || !Number.isFinite(exponent)) {
    throw new ShapeError(`pow: exponent must be a finite number, received ${describe(exponent)}`);
  }
  return unary('pow', x, exponent);
}

// ---- Reductions (public) --------------------------------------------------------------------------

/** Options of `sum`, `mean` and `max`. */
export interface ReduceOptions {
  /** The axis or axes to reduce (negative counts from the end); default: all of them. */
  axis?: number | number[];
  /** Keep the reduced axes as dims of extent 1 (default false). */
  keepDims?: boolean;
}

function reduceAxes(op: string, x: Tensor, opts: ReduceOptions | undefined): { axes: number[]; keepDims: boolean } {
  if (opts !== undefined && (opts === null || typeof opts !== 'object')) {
    throw new ShapeError(`${op}: options must be an object { axis?, keepDims? }, received ${describe(opts)}`);
  }
  const axis = opts?.axis;
  const keepDims = opts?.keepDims ?? false;
  if (typeof keepDims !== 'boolean') throw new ShapeError(`${op}: keepDims must be a boolean, received ${describe(keepDims)}`);
  if (axis === undefined) return { axes: x.shape.map((_, i) => i), keepDims };
  const list = Array.isArray(axis) ? axis : [axis];
  const rank = x.rank;
  const axes = list.map((a) => {
    if (!isInt(a) || a < -rank || a >= rank) {
      throw new ShapeError(`${op}: axis must be an integer in [${-rank}, ${rank}) or an array of them, received ${describe(axis)}`);
    }
    return a < 0 ? a + rank : a;
  });
  if (new Set(axes).size !== axes.length) {
    throw new ShapeError(`${op}: axis must not name an axis twice, received ${describe(axis)}`);
  }
  return { axes: axes.sort((p, q) => p - q), keepDims };
}

function outShape(x: Tensor, axes: number[], keepDims: boolean): number[] {
  return keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
}

function sumLike(op: 'sum' | 'mean', x: Tensor, opts?: ReduceOptions): Tensor {
  expectTensor(op, 'x', x);
  const { axes, keepDims } = reduceAxes(op, x, opts);
  const p = planReduce(x.shape, axes);
  const scale = op === 'mean' ? 1 / p.r : 1;
  const [y0] = reduceRaw(op, RED_SUM, x, x.device, p, scale);
  const shape = outShape(x, axes, keepDims);
  const y = keepDims ? y0 : alias(y0, shape);
  if (!keepDims) y0.dispose();
  if (!needsGrad(x)) return y;
  return record(y, op, [x], (g) => {
    const gk = alias(g, p.keep);
    try {
      return [expandRaw(op, gk, x.device, p, scale)];
    } finally {
      gk.dispose();
    }
  });
}

/**
 * The sum over the given axes (all of them by default, giving a 0-dim scalar), in a fixed order:
 * the same result on every run.
 *
 * @example
 * ```ts
 * const total = cn.sum(x);                                 // shape []
 * const rows = cn.sum(x, { axis: 1, keepDims: true });      // [N, 1]
 * ```
 */
export function sum(x: Tensor, opts?: ReduceOptions): Tensor {
  return sumLike('sum', x, opts);
}

/**
 * The mean over the given axes (all of them by default).
 *
 * @example
 * ```ts
 * const mu = cn.mean(x, { axis: [0, 2, 3], keepDims: true }); // per channel of [N, C, H, W]
 * ```
 */
export function mean(x: Tensor, opts?: ReduceOptions): Tensor {
  return sumLike('mean', x, opts);
}

/**
 * The maximum over the given axes (all of them by default). A NaN wins; the gradient goes to
 * the first maximum in row-major order of the reduced axes.
 *
 * @example
 * ```ts
 * const m = cn.max(logits, { axis: 1, keepDims: true });
 * ```
 */
export function max(x: Tensor, opts?: ReduceOptions): Tensor {
  const op = 'max';
  expectTensor(op, 'x', x);
  const { axes, keepDims } = reduceAxes(op, x, opts);
  const p = planReduce(x.shape, axes);
  if (p.r === 0 && prod(p.keep) > 0) {
    throw new ShapeError(`${op}: x ${formatShape(x.shape)} has no elements along the reduced axes ${formatShape(axes)}`);
  }
  const [y0, idx] = reduceRaw(op, RED_MAX, x, x.device, p);
  const shape = outShape(x, axes, keepDims);
  const y = keepDims ? y0 : alias(y0, shape);
  if (!keepDims) y0.dispose();
  if (!needsGrad(x)) {
    idx!.dispose();
    return y;
  }
  const sidx = save(idx!, op);
  idx!.dispose();
  return record(y, op, [x], (g) => {
    const permShape = p.perm ? p.perm.map((d) => x.shape[d]) : x.shape;
    const [dx] = launch('reduce_max_backward', x.device, [[permShape, 'float32']], [g, sidx.storage], [p.outer, p.r, p.inner]);
    if (!p.perm) return [dx];
    try {
      return [transposeRaw('max', dx, inverse(p.perm))];
    } finally {
      dx.dispose();
    }
  }, [sidx.storage]);
}

// ---- matmul and transpose ---------------------------------------------------------------------------

function inverse(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return inv;
}

function transposeRaw(op: string, x: Tensor, perm: readonly number[]): Tensor {
  const st = contiguousStrides(x.shape);
  return stridedCopy(op, x.device, x, perm.map((d) => x.shape[d]), perm.map((d) => st[d]));
}

/**
 * A copy of x with its dims permuted: dim i of the result is dim perm[i] of x (default: all
 * dims reversed).
 *
 * @example
 * ```ts
 * const nhwc = cn.transpose(x, [0, 2, 3, 1]); // [N, C, H, W] -> [N, H, W, C]
 * ```
 */
export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  const op = 'transpose';
  expectTensor(op, 'x', x);
  const p = perm === undefined ? x.shape.map((_, i) => x.rank - 1 - i) : perm;
  const ok = Array.isArray(p) && p.length === x.rank && p.every((d) => isInt(d) && d >= 0 && d < x.rank) && new Set(p).size === x.rank;
  if (!ok) {
    throw new ShapeError(`${op}: perm must be a permutation of [0, ..., ${x.rank - 1}] for x ${formatShape(x.shape)}, received ${describe(perm)}`);
  }
  const y = transposeRaw(op, x, p);
  if (!needsGrad(x)) return y;
  const inv = inverse(p);
  return record(y, op, [x], (g) => [transposeRaw(op, g, inv)]);
}

/**
 * The matrix product: `[M, K] x [K, N] -> [M, N]`, or batched `[B, M, K] x [B, K, N] -> [B, M, N]`
 * (each product an SGEMM, on the CPU or the GPU).
 *
 * @example
 * ```ts
 * const y = cn.matmul(cn.randn([4, 3], { seed: 1 }), cn.randn([3, 5], { seed: 2 })); // [4, 5]
 * ```
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  const op = 'matmul';
  expectTensor(op, 'a', a);
  expectTensor(op, 'b', b);
  const device = sameDevice(op, [['a', a], ['b', b]]);
  if (!((a.rank === 2 && b.rank === 2) || (a.rank === 3 && b.rank === 3))) {
    throw new ShapeError(
      `${op}: a and b must both have 2 dims [M, K] x [K, N] or 3 dims [B, M, K] x [B, K, N], received ${formatShape(a.shape)} and ${formatShape(b.shape)}`,
    );
  }
  const batched = a.rank === 3;
  const [B, M, K] = batched ? a.shape : [1, ...a.shape];
  const [B2, K2, N] = batched ? b.shape : [1, ...b.shape];
  if (B2 !== B) {
    throw new ShapeError(`${op}: b must have B = ${B} matrices like a ${formatShape(a.shape)}, received b ${formatShape(b.shape)}`);
  }
  if (K2 !== K) {
    throw new ShapeError(`${op}: b must have K = ${K} rows to match a ${formatShape(a.shape)}, received b ${formatShape(b.shape)}`);
  }
  const shape = batched ? [B, M, N] : [M, N];
  checkShape(op, 'the output', shape);
  const [y] = launch('matmul', device, [[shape, 'float32']], [a, b], [B, M, N, K, 0, 0]);
  if (!needsGrad(a, b)) return y;
  const sa = b.requiresGrad ? save(a, op) : null;
  const sb = a.requiresGrad ? save(b, op) : null;
  return record(y, op, [a, b], (g) => [
    // dA [M, K] = g [M, N] b^T;  dB [K, N] = a^T g
    sb ? launch('matmul', device, [[a.shape, 'float32']], [g, sb.storage], [B, M, K, N, 0, 1])[0] : null,
    sa ? launch('matmul', device, [[b.shape, 'float32']], [sa.storage, g], [B, K, N, M, 1, 0])[0] : null,
  ], [sa, sb].filter((s) => s !== null).map((s) => s.storage));
}

// ---- customOp ---------------------------------------------------------------------------------------

/** What a custom op's backward receives besides the output's gradient. */
export interface CustomOpContext {
  /** The op's inputs as they were in the forward pass. */
  inputs: Tensor[];
  /** The forward pass's output. */
  output: Tensor;
}

/** A user-defined op: its forward and its backward, both written with tensor ops. */
export interface CustomOpDefinition {
  /** Names the op in errors and traces. */
  name: string;
  /** Computes the output from the inputs (nothing inside is recorded for backward). */
  forward: (...inputs: Tensor[]) => Tensor;
  /**
   * The gradients of the inputs from the gradient of the output, one per input (null for an
   * input that needs none); a single tensor for a one-input op. Runs without recording; tensors
   * made inside and not returned are freed.
   */
  backward: (gradOutput: Tensor, ctx: CustomOpContext) => (Tensor | null)[] | Tensor | null;
}

/**
 * Makes a differentiable op from a forward and a backward written by the user: the result is a
 * function of tensors that records itself for autograd like the built-in ops.
 *
 * @example
 * ```ts
 * const square = cn.customOp({
 *   name: 'square',
 *   forward: (x) => cn.mul(x, x),
 *   backward: (g, { inputs: [x] }) => [cn.mul(g, cn.mul(x, 2))],
 * });
 * const y = square(cn.randn([3], { seed: 1, requiresGrad: true }));
 * ```
 */
export function customOp(def: CustomOpDefinition): (...inputs: Tensor[]) => Tensor {
  const op = 'customOp';
  if (!def || typeof def !== 'object') throw new ShapeError(`${op}: the definition must be an object { name, forward, backward }, received ${describe(def)}`);
  if (typeof def.name !== 'string' || def.name.length === 0) {
    throw new ShapeError(`${op}: name must be a non-empty string, received ${describe(def.name)}`);
  }
  if (typeof def.forward !== 'function') throw new ShapeError(`${op}: forward must be a function, received ${describe(def.forward)}`);
  if (typeof def.backward !== 'function') throw new ShapeError(`${op}: backward must be a function, received ${describe(def.backward)}`);
  const name = def.name;
  const forward = def.forward;
  const backward = def.backward;
  return (...inputs: Tensor[]): Tensor => {
    inputs.forEach((t, i) => expectTensor(name, `inputs[${i}]`, t));
    // The output as a new tensor object over forward's result: tensors forward made and did not
    // return are freed by the scope; inputs and tensors from outside it are left alone.
    const y = noGrad(() => scope(() => {
      const raw = forward(...inputs);
      if (!(raw instanceof Tensor) || raw.disposed) {
        throw new ShapeError(`${name}: forward must return a live Tensor, received ${describe(raw)}`);
      }
      return view(raw._storage(name), raw.shape, raw.dtype);
    }));
    if (!needsGrad(...inputs)) return y;
    const saved = inputs.map((t) => save(t, name));
    const sy = save(y, name);
    return record(y, name, inputs, (g) => {
      const ins = saved.map((s) => view(s.storage, s.shape, s.dtype));
      const out = view(sy.storage, sy.shape, sy.dtype);
      try {
        return scope(() => {
          const res = backward(g, { inputs: ins, output: out });
          const list = Array.isArray(res) ? res : [res];
          if (list.length !== inputs.length) {
            throw new ShapeError(`${name}: backward must return ${inputs.length} gradient(s), one per input, received ${list.length}`);
          }
          return list.map((gi, i) => {
            if (gi === null || gi === undefined) return null;
            if (!(gi instanceof Tensor) || gi.disposed) {
              throw new ShapeError(`${name}: backward must return Tensors or null, received ${describe(gi)} for input ${i}`);
            }
            if (formatShape(gi.shape) !== formatShape(inputs[i].shape) || gi.device !== inputs[i].device) {
              throw new ShapeError(
                `${name}: backward must return a gradient of shape ${formatShape(inputs[i].shape)} on ${inputs[i].device} for input ${i}, received ${formatShape(gi.shape)} on ${gi.device}`,
              );
            }
            // A new tensor object over the gradient: the tape owns and frees it.
            return inputs[i].requiresGrad ? view(gi._storage(name), gi.shape, 'float32') : null;
          });
        });
      } finally {
        ins.forEach((t) => t.dispose());
        out.dispose();
      }
    }, [...saved.map((s) => s.storage), sy.storage]);
  };
}
