/**
 * The math precision of the GEMM-like kernels (see {@link setPrecision}). Storage is float32
 * everywhere; the precision only chooses how CUDA kernels multiply.
 */
import { ShapeError } from './errors.js';
import { describe } from './ops/validate.js';

/**
 * The math of the GEMM-like CUDA kernels: `'fp32'` (the default: plain float32 multiplies,
 * never tensor cores), `'tf32'` (inputs rounded to TF32, 10 mantissa bits, on tensor cores,
 * float32 accumulation; about 1e-3 relative error) or `'bf16'` (inputs rounded to bfloat16,
 * 7 mantissa bits, float32 accumulation; about 1e-2).
 */
export type Precision = 'fp32' | 'tf32' | 'bf16';

const PRECISIONS: readonly Precision[] = ['fp32', 'tf32', 'bf16'];
let current: Precision = 'fp32';

/** The precision a call asked for: its option if given, else the global one; checked. */
export function resolvePrecision(op: string, p: unknown): Precision {
  if (p === undefined) return current;
  if ((PRECISIONS as readonly unknown[]).includes(p)) return p as Precision;
  throw new ShapeError(`${op}: precision must be 'fp32', 'tf32' or 'bf16', received ${describe(p)}`);
}

/**
 * Sets the default math precision of the GEMM-like kernels for later calls (a per-op
 * `precision` option overrides it). `'fp32'` is the default and never uses reduced-precision
 * tensor-core math; `'tf32'` and `'bf16'` let CUDA kernels that have a tensor-core version use
 * it (conv2d's forward, version 3, on sm_80 and newer GPUs). Kernels without one, and CPU
 * devices, keep computing in float32, which is always allowed: the precision is a bound on how
 * much accuracy may be traded, not a promise of lower accuracy. Storage stays float32.
 *
 * @param precision `'fp32'`, `'tf32'` or `'bf16'`
 * @returns the precision in force before the call
 * @throws ShapeError for any other value
 *
 * @example
 * ```ts
 * const before = cn.setPrecision('tf32'); // conv2d forward on tensor cores where it can
 * // ... train ...
 * cn.setPrecision(before);
 * ```
 */
export function setPrecision(precision: Precision): Precision {
  if (precision === undefined) {
    throw new ShapeError("setPrecision: precision must be 'fp32', 'tf32' or 'bf16', received undefined");
  }
  const p = resolvePrecision('setPrecision', precision);
  const before = current;
  current = p;
  return before;
}

/**
 * The default math precision set by {@link setPrecision} (`'fp32'` until changed).
 *
 * @example
 * ```ts
 * cn.getPrecision(); // 'fp32'
 * ```
 */
export function getPrecision(): Precision {
  return current;
}
