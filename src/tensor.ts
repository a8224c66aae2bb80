/**
 * Tensors: a shape and a dtype over reference-counted device storage.
 *
 * Memory model. A Storage owns one native allocation and counts references: the tensor that
 * created it, tensors that view it (reshape), and autograd nodes that saved it for backward.
 * `t.dispose()` drops the tensor's reference; the memory goes back to the device's caching
 * allocator when the last reference drops. Tensors the program forgets are released by a
 * FinalizationRegistry when garbage-collected (a safety net, not a schedule: dispose or use
 * `scope`). `memory()` counts live tensors and the bytes of live storage per device.
 */
import { DisposedError, ShapeError } from './errors.js';
import { native, type NativeHandle } from './native.js';

/** The element type of a tensor: `float32` for data, `int32` for labels and indices. */
export type DType = 'float32' | 'int32';
export type TypedArrayOf<D extends DType> = D extends 'int32' ? Int32Array : Float32Array;

const MAX_ELEMENTS = 2 ** 31 - 1;

const liveBytes = new Map<string, number>();
let liveTensors = 0;

/** One native allocation, shared by the tensors and graph nodes that reference it. */
export class Storage {
  handle: NativeHandle | null;
  readonly device: string;
  readonly bytes: number;
  private refs = 1;

  constructor(device: string, bytes: number) {
    // Allocation is the first thing that can fail for lack of memory; nothing is counted
    // before it succeeds.
    this.handle = native.alloc(device, bytes);
    this.device = device;
    this.bytes = bytes;
    liveBytes.set(device, (liveBytes.get(device) ?? 0) + bytes);
  }

  retain(): this {
    this.refs++;
    return this;
  }

  release(): void {
    if (this.refs <= 0) return;
    if (--this.refs === 0 && this.handle) {
      native.release(this.handle);
      this.handle = null;
      liveBytes.set(this.device, (liveBytes.get(this.device) ?? 0) - this.bytes);
    }
  }

  get refCount(): number {
    return this.refs;
  }
}

/**
 * What this module needs of the autograd node that produced a tensor (autograd.ts defines the
 * node; this module does not import it, so tensor.ts depends on nothing above it).
 */
export interface GraphNode {
  /** Drops the tensor's reference to its node. */
  unref(): void;
}

/** What a tensor holds that must be released with it; kept apart so the finaliser can see it. */
interface TensorState {
  storage: Storage;
  node: GraphNode | null;
  disposed: boolean;
}

const finalizer = new FinalizationRegistry<TensorState>((s) => releaseState(s));

function releaseState(s: TensorState): void {
  if (s.disposed) return;
  s.disposed = true;
  liveTensors--;
  s.storage.release();
  if (s.node) s.node.unref();
  s.node = null;
}

// Scopes: each open scope collects the tensors created while it is open.
const scopes: Set<Tensor>[] = [];

/** Options shared by tensor constructors. */
export interface TensorOptions {
  /** Where the tensor lives: `'cpu:0'` (default; `'cpu'` means the same), `'cpu:1'`, `'cuda:0'`, ... */
  device?: string;
  /** Make a leaf that collects `.grad` in `backward()`; float32 only. Default false. */
  requiresGrad?: boolean;
}

/** Normalises a device id: `'cpu'` is `'cpu:0'` and `'cuda'` is `'cuda:0'`. */
export function deviceId(d: string | undefined): string {
  if (d === undefined || d === 'cpu') return 'cpu:0';
  if (d === 'cuda') return 'cuda:0';
  return d;
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Checks a shape and returns its element count. */
export function checkShape(op: string, arg: string, shape: readonly number[]): number {
  if (!Array.isArray(shape)) {
    throw new ShapeError(`${op}: ${arg} must be an array of dimensions, received ${String(shape)}`);
  }
  let size = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) {
      throw new ShapeError(
        `${op}: ${arg} must hold non-negative integer dimensions, received ${formatShape(shape)}`,
      );
    }
    if (d > MAX_ELEMENTS) {
      throw new ShapeError(`${op}: ${arg} dimensions must be at most 2^31-1, received ${formatShape(shape)}`);
    }
    size *= d;
  }
  if (size > MAX_ELEMENTS) {
    throw new ShapeError(
      `${op}: ${arg} ${formatShape(shape)} has ${size} elements, more than the limit of 2^31-1`,
    );
  }
  return size;
}

/**
 * An n-dimensional array of float32 or int32 on one device: dense, row-major (NCHW for images).
 * Make tensors with {@link tensor}, {@link zeros}, {@link full}, {@link randn} or an op; free
 * them with `dispose()` or {@link scope}. Methods that read a disposed tensor throw
 * `DisposedError`.
 *
 * @example
 * ```ts
 * const x = cn.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
 * console.log(x.shape, x.dtype, x.device, x.size); // [2, 3] 'float32' 'cpu:0' 6
 * console.log(await x.array());                    // [[1, 2, 3], [4, 5, 6]]
 * x.dispose();
 * ```
 */
export class Tensor {
  /** The dimensions, outermost first (frozen); `[]` for a scalar. */
  readonly shape: readonly number[];
  /** The element type. */
  readonly dtype: DType;
  /** The normalised device id, e.g. `'cpu:0'` or `'cuda:1'`. */
  readonly device: string;
  /** The number of elements: the product of `shape` (1 for a scalar). */
  readonly size: number;
  /** True for leaves that collect gradients and for results of ops on such tensors. */
  requiresGrad: boolean;
  /** The accumulated gradient of a leaf, after `backward()`; cleared by `zeroGrad()`. */
  grad: Tensor | null = null;
  /** @internal */
  readonly _state: TensorState;

  /** @internal Use `tensor()`, `zeros()`... or an op to make tensors. */
  constructor(storage: Storage, shape: readonly number[], dtype: DType, requiresGrad = false) {
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.device = storage.device;
    this.size = shape.reduce((a, b) => a * b, 1);
    this.requiresGrad = requiresGrad;
    this._state = { storage, node: null, disposed: false };
    liveTensors++;
    finalizer.register(this, this._state, this._state);
    const top = scopes[scopes.length - 1];
    if (top) top.add(this);
  }

  /** @internal The storage, after checking the tensor is alive. */
  _storage(op: string, arg = 'tensor'): Storage {
    if (this._state.disposed) {
      throw new DisposedError(`${op}: ${arg} was disposed and cannot be used`);
    }
    return this._state.storage;
  }

  /** @internal */
  _handle(op: string, arg = 'tensor'): NativeHandle {
    return this._storage(op, arg).handle as NativeHandle;
  }

  /** @internal The autograd node that produced this tensor, if any. */
  get _node(): GraphNode | null {
    return this._state.node;
  }

  /** True once `dispose()` has run (directly, through `scope`, or by the garbage collector). */
  get disposed(): boolean {
    return this._state.disposed;
  }

  /** The number of dimensions, `shape.length`. */
  get rank(): number {
    return this.shape.length;
  }

  /** Frees the tensor's memory (when nothing else references it). A second call is harmless. */
  dispose(): void {
    if (this._state.disposed) return;
    finalizer.unregister(this._state);
    releaseState(this._state);
    for (const s of scopes) s.delete(this);
  }

  /** A copy of the data on the host; waits for the device's queue without blocking the event loop. */
  async data(): Promise<Float32Array | Int32Array> {
    const buf = await native.download(this._handle('data'));
    return this.dtype === 'int32' ? new Int32Array(buf, 0, this.size) : new Float32Array(buf, 0, this.size);
  }

  /** The same as `data()`, blocking the calling thread until the queue reaches this tensor. */
  dataSync(): Float32Array | Int32Array {
    const buf = native.downloadSync(this._handle('dataSync'));
    return this.dtype === 'int32' ? new Int32Array(buf, 0, this.size) : new Float32Array(buf, 0, this.size);
  }

  /** Nested arrays, for printing and tests. */
  async array(): Promise<unknown> {
    const d = await this.data();
    const build = (dim: number, offset: number): unknown => {
      if (dim === this.shape.length) return d[offset];
      const stride = this.shape.slice(dim + 1).reduce((a, b) => a * b, 1);
      return Array.from({ length: this.shape[dim] }, (_, k) => build(dim + 1, offset + k * stride));
    };
    return build(0, 0);
  }

  /**
   * Computes the gradients of this tensor with respect to every leaf that requires grad and
   * adds them to the leaves' `.grad` (they accumulate until `zeroGrad`). The graph is freed as
   * it goes, so a second `backward()` through it throws `DisposedError`.
   *
   * @param gradOutput the gradient of the final result with respect to this tensor, same shape
   *   and device; required unless the tensor has one element (then 1)
   * @throws ShapeError when the tensor does not require grad, or gradOutput is missing for a
   *   non-scalar or has another shape; DeviceError when gradOutput is on another device
   */

  backward(gradOutput?: Tensor): void {
    // Imported lazily: autograd imports this module.
    backwardImpl(this, gradOutput);
  }

  /** A short description, e.g. `Tensor([2, 3], float32, cpu:0)`; does not read the data. */
  toString(): string {
    return `Tensor(${formatShape(this.shape)}, ${this.dtype}, ${this.device}${this.disposed ? ', disposed' : ''})`;
  }
}

let backwardImpl: (t: Tensor, g?: Tensor) => void = () => {
  throw new Error('autograd not loaded');
};
/** @internal */
export function setBackward(fn: (t: Tensor, g?: Tensor) => void): void {
  backwardImpl = fn;
}

/**
 * With CONVNET_POISON=1 every op output starts as NaN (all bits set for int32), so an element a
 * kernel forgets to write shows up in the tests instead of passing as stale memory.
 */
const poison = process.env.CONVNET_POISON === '1';

/** @internal A new tensor over fresh storage. Nothing is written to it (unless poisoning). */
export function empty(shape: readonly number[], dtype: DType, device: string): Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const t = new Tensor(new Storage(device, size * 4), shape, dtype);
  if (poison && size > 0) {
    try {
      native.launch('fill', [t._handle('poison')], [size], [NaN]);
    } catch (e) {
      t.dispose();
      throw e;
    }
  }
  return t;
}

/** @internal A tensor over storage already referenced by the caller (takes one reference). */
export function view(storage: Storage, shape: readonly number[], dtype: DType): Tensor {
  return new Tensor(storage.retain(), shape, dtype);
}

/**
 * Live tensors and bytes of live storage per device. Views share storage, so their bytes count
 * once; storage saved by autograd for backward counts until the graph is freed.
 *
 * @example
 * ```ts
 * const before = cn.memory().tensors;
 * cn.zeros([1024]).dispose();
 * console.log(cn.memory().tensors === before); // true
 * ```
 */
export function memory(): {
  /** Tensors created and not yet disposed. */
  tensors: number;
  /** Bytes of live storage by device id. */
  bytes: Record<string, number>;
} {
  const bytes: Record<string, number> = {};
  for (const [d, b] of liveBytes) bytes[d] = b;
  return { tensors: liveTensors, bytes };
}

/** @internal The devices that have held a tensor in this process, in first-use order. */
export function devicesUsed(): string[] {
  return [...liveBytes.keys()];
}

/**
 * Runs fn and disposes every tensor created inside it, except those it returns (a tensor, or
 * tensors inside a returned array or plain object, one level deep). fn must be synchronous.
 * Scopes nest: the tensors kept move to the enclosing scope.
 *
 * @throws TypeError when fn returns a Promise (everything made inside is disposed first)
 *
 * @example
 * ```ts
 * const y = cn.scope(() => {
 *   const h = cn.relu(cn.randn([4, 8], { seed: 1 }));
 *   return cn.flatten(h); // h is disposed on return; y is kept
 * });
 * ```
 */

export function scope<T>(fn: () => T): T {
  const created = new Set<Tensor>();
  scopes.push(created);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of created) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result && typeof (result as { then?: unknown }).then === 'function') {
    for (const t of created) t.dispose();
    throw new TypeError('scope: fn must be synchronous; it returned a Promise');
  }
  const keep = new Set<Tensor>();
  const visit = (v: unknown) => {
    if (v instanceof Tensor) keep.add(v);
  };
  if (Array.isArray(result)) result.forEach(visit);
  else if (result instanceof Tensor) visit(result);
  else if (result && typeof result === 'object') Object.values(result).forEach(visit);
  const outer = scopes[scopes.length - 1];
  for (const t of created) {
    if (keep.has(t)) {
      if (outer) outer.add(t);
    } else {
      t.dispose();
    }
  }
  return result;
}

/** @internal Takes t out of every open scope (a gradient stored on a leaf outlives them). */
export function keepFromScopes(t: Tensor): void {
  for (const s of scopes) s.delete(t);
}
