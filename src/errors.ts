/**
 * The error classes of convnet-cuda. Every message names the op, the argument, what was
 * expected and what was received, e.g.
 * `conv2d: w must have 4 dims [F, C/groups, KH, KW], received [64, 3, 11]`.
 */

/**
 * Base class of every error this package throws on purpose; `name` is the subclass's name.
 *
 * @example
 * ```ts
 * try {
 *   cn.zeros([2, -1]);
 * } catch (e) {
 *   if (e instanceof cn.ConvnetError) console.error(e.name, e.message); // ShapeError zeros: shape must hold ...
 *   else throw e;
 * }
 * ```
 */
export class ConvnetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * A tensor of the wrong rank, size, dtype, or an option out of range. Thrown before the op
 * allocates or queues anything.
 *
 * @example
 * ```ts
 * const x = cn.zeros([1, 3, 8, 8]);
 * const w = cn.zeros([4, 3, 3]);
 * cn.conv2d(x, w, null); // throws ShapeError: conv2d: w must have 4 dims [F, C/groups, KH, KW], received [4, 3, 3]
 * ```
 */
export class ShapeError extends ConvnetError {}

/**
 * An unknown device, a device this build or machine lacks, or tensors on two devices. Nothing
 * falls back to the CPU silently.
 *
 * @example
 * ```ts
 * const a = cn.zeros([2, 2], { device: 'cpu:0' });
 * const b = cn.zeros([2, 2], { device: 'cpu:1' });
 * cn.linear(a, b, null); // throws DeviceError: the tensors are on two devices
 * cn.zeros([1], { device: 'cuda:9' }); // throws DeviceError: no such device
 * ```
 */
export class DeviceError extends ConvnetError {}

/**
 * A tensor used after `dispose()`, or a graph used after backward freed it.
 *
 * @example
 * ```ts
 * const t = cn.zeros([3]);
 * t.dispose();
 * t.dataSync(); // throws DisposedError: dataSync: tensor was disposed and cannot be used
 * ```
 */
export class DisposedError extends ConvnetError {}

/**
 * A device ran out of memory. The next op still works once memory is freed.
 *
 * @example
 * ```ts
 * try {
 *   logits = model.forward(x);
 * } catch (e) {
 *   if (!(e instanceof cn.OutOfMemoryError)) throw e;
 *   console.error(`${e.device}: asked ${e.bytesAsked} bytes, ${e.bytesFree} free`); // try a smaller batch
 * }

 * ```
 */
export class OutOfMemoryError extends ConvnetError {
  /** The device that said no, e.g. `cuda:0`. */
  readonly device: string;
  /** Bytes the allocation asked for. */
  readonly bytesAsked: number;
  /** Bytes the device reported free at the time. */
  readonly bytesFree: number;
  constructor(message: string, device = '', bytesAsked = 0, bytesFree = 0) {
    super(message);
    this.device = device;
    this.bytesAsked = bytesAsked;
    this.bytesFree = bytesFree;
  }
}

/**
 * A CUDA runtime error; `cudaError` is its name, e.g. `cudaErrorIllegalAddress`. An error from
 * queued work may surface at a later op on that device or at {@link synchronize}.
 *
 * @example
 * ```ts
 * try {
 *   await cn.synchronize('cuda:0');
 * } catch (e) {
 *   if (e instanceof cn.CudaError) console.error(e.cudaError, e.message);
 *   else throw e;
 * }
 * ```
 */
export class CudaError extends ConvnetError {
  /** The CUDA runtime's name for the error, e.g. `cudaErrorIllegalAddress`; '' when unknown. */
  readonly cudaError: string;
  constructor(message: string, cudaError = '') {
    super(message);
    this.cudaError = cudaError;
  }
}

/**
 * A malformed model or data file (or a missing one); the message names the file and the fault.
 *
 * @example
 * ```ts
 * try {
 *   await cn.load('model.safetensors', model);
 * } catch (e) {
 *   if (e instanceof cn.FormatError) console.error(e.message); // load: model.safetensors does not exist
 *   else throw e;
 * }
 * ```
 */
export class FormatError extends ConvnetError {}

/**
 * A file or folder that cannot be written or created: a checkpoint save, an output folder.
 * The message names the target (not a temporary file) and the system's reason; `code` is the
 * system's error code (e.g. `EACCES`, `ENOSPC`) when there is one.
 *
 * @example
 * ```ts
 * try {
 *   await cn.save('/read-only/model.safetensors', model);
 * } catch (e) {
 *   if (e instanceof cn.IOError) console.error(e.code, e.message); // EACCES save: cannot write ...
 *   else throw e;
 * }
 * ```
 */
export class IOError extends ConvnetError {
  /** The system's error code, e.g. `EACCES` or `ENOSPC`; '' when there is none. */
  readonly code: string;

  constructor(message: string, code = '') {
    super(message);
    this.code = code;
  }
}

/**
 * CUDA C++ given to `cn.cuda.compile` that NVRTC does not compile; `log` is the compiler's
 * output (also in the message).
 *
 * @example
 * ```ts
 * try {
 *   cn.cuda.compile('__global__ void k(float* x) { x[0] = undefined_name; }', { name: 'k' });
 * } catch (e) {
 *   if (e instanceof cn.CompileError) console.error(e.log);
 * }
 * ```
 */
export class CompileError extends ConvnetError {
  /** NVRTC's log: file, line and message of each error and warning. */
  readonly log: string;
  constructor(message: string, log = '') {
    super(message);
    this.log = log;
  }
}

interface NativeErrorFields {
  convnetClass?: string;
  message: string;
  cudaError?: string;
  device?: string;
  bytesAsked?: number;
  bytesFree?: number;
  log?: string;
}

/** Turns an error thrown by the addon into the matching typed class. */
export function fromNative(e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  const n = e as Error & NativeErrorFields;
  switch (n.convnetClass) {
    case 'ShapeError':
      return new ShapeError(n.message);
    case 'DeviceError':
      return new DeviceError(n.message);
    case 'DisposedError':
      return new DisposedError(n.message);
    case 'OutOfMemoryError':
      return new OutOfMemoryError(n.message, n.device ?? '', n.bytesAsked ?? 0, n.bytesFree ?? 0);
    case 'CudaError':
      return new CudaError(n.message, n.cudaError ?? '');
    case 'FormatError':
      return new FormatError(n.message);
    case 'CompileError':
      return new CompileError(n.message, n.log ?? '');
    default:
      return e;
  }
}
