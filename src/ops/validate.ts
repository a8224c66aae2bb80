/**
 * Argument checks shared by every op, with one message format:
 * `<op>: <argument> must <expectation>, received <value>`.
 * Every op validates all of its arguments before it allocates or queues anything.
 */
import { DeviceError, ShapeError } from '../errors.js';
import { formatShape, Tensor } from '../tensor.js';

export function describe(v: unknown): string {
  if (v instanceof Tensor) return v.toString();
  if (Array.isArray(v)) return `[${v.map(describe).join(', ')}]`;
  if (typeof v === 'string') return `'${v}'`;
  if (v === null) return 'null';
  if (typeof v === 'object') return 'an object';
  return String(v);
}

/** t must be a live tensor of the given dtype. */
export function expectTensor(op: string, arg: string, t: unknown, dtype: 'float32' | 'int32' = 'float32'): Tensor {
  if (!(t instanceof Tensor)) {
    throw new ShapeError(`${op}: ${arg} must be a Tensor, received ${describe(t)}`);
  }
  t._storage(op, arg);
  if (t.dtype !== dtype) {
    throw new ShapeError(`${op}: ${arg} must be ${dtype}, received ${t.dtype}`);
  }
  return t;
}

/** t must have `rank` dims; `dims` names them, e.g. '[N, C, H, W]'. */
export function expectRank(op: string, arg: string, t: Tensor, rank: number, dims: string): void {
  if (t.rank !== rank) {
    throw new ShapeError(`${op}: ${arg} must have ${rank} dims ${dims}, received ${formatShape(t.shape)}`);
  }
}

/** All tensors must be on one device. */
export function sameDevice(op: string, named: [string, Tensor | null | undefined][]): string {
  const present = named.filter((e): e is [string, Tensor] => e[1] instanceof Tensor);
  const [firstName, first] = present[0];
  for (const [name, t] of present.slice(1)) {
    if (t.device !== first.device) {
      throw new DeviceError(
        `${op}: ${firstName} is on ${first.device} but ${name} is on ${t.device}; move one with t.to(device)`,
      );
    }
  }
  return first.device;
}

export function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v);
}

/**
 * The largest integer option or dimension the native kernels take: they compute shapes in
 * 32-bit ints, so every integer that crosses into native code is checked against this here
 * (and again by the native op guards, which throw rather than narrow).
 */
export const INT32_MAX = 2 ** 31 - 1;

/** An integer option in [min, 2^31-1]. */
export function intOption(op: string, arg: string, v: unknown, min: number): number {
  const what = min > 0 ? 'a positive integer' : 'a non-negative integer';
  if (!isInt(v) || v < min) throw new ShapeError(`${op}: ${arg} must be ${what}, received ${describe(v)}`);
  if (v > INT32_MAX) throw new ShapeError(`${op}: ${arg} must be at most 2^31-1 = ${INT32_MAX}, received ${describe(v)}`);
  return v;
}

/** A number or [h, w] pair of integers in [min, 2^31-1] (defaults to `fallback` when undefined). */
export function intPair(op: string, arg: string, v: unknown, min: number, fallback: [number, number]): [number, number] {
  if (v === undefined) return fallback;
  const what = min > 0 ? 'a positive integer' : 'a non-negative integer';
  const ok = (x: unknown) => isInt(x) && x >= min;
  let pair: [number, number] | null = null;
  if (ok(v)) pair = [v as number, v as number];
  else if (Array.isArray(v) && v.length === 2 && ok(v[0]) && ok(v[1])) pair = [v[0], v[1]];
  if (!pair) throw new ShapeError(`${op}: ${arg} must be ${what} or an [h, w] pair of them, received ${describe(v)}`);
  if (pair[0] > INT32_MAX || pair[1] > INT32_MAX) {
    throw new ShapeError(`${op}: ${arg} must be at most 2^31-1 = ${INT32_MAX}, received ${describe(v)}`);
  }
  return pair;
}

/** The input extent plus padding on both sides must stay a 32-bit int for the kernels. */
export function paddedExtents(op: string, H: number, W: number, ph: number, pw: number): void {
  if (H + 2 * ph > INT32_MAX || W + 2 * pw > INT32_MAX) {
    throw new ShapeError(
      `${op}: the padded input ${H + 2 * ph}x${W + 2 * pw} must be at most 2^31-1 = ${INT32_MAX} along each axis, received input ${H}x${W} with padding [${ph}, ${pw}]`,
    );
  }
}

export function finiteNumber(op: string, arg: string, v: unknown, fallback?: number): number {
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new ShapeError(`${op}: ${arg} must be a finite number, received ${describe(v)}`);
  }
  return v;
}

/** Seeds are integers in [0, 2^53). */
export function seedOf(op: string, v: unknown): number {
  if (!isInt(v) || v < 0) {
    throw new ShapeError(`${op}: seed must be a non-negative integer, received ${describe(v)}`);
  }
  return v;
}
