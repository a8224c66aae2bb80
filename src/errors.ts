/**
 * The error classes of convnet-cuda. Every message names the op, the argument, what was
 * expected and what was received, e.g.
 * `conv2d: w must have 4 dims [F, C/groups, KH, KW], received [64, 3, 11]`.
 */

/** Base class of every error this package throws on purpose. */
export class ConvnetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A tensor of the wrong rank, size, dtype, or an option out of range. */
export class ShapeError extends ConvnetError {}

/** An unknown device, a device this build or machine lacks, or tensors on two devices. */
export class DeviceError extends ConvnetError {}

/** A tensor used after `dispose()`, or a graph used after backward freed it. */
export class DisposedError extends ConvnetError {}

/** A device ran out of memory. The next op still works once memory is freed. */
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

/** A CUDA runtime error; `cudaError` is its name, e.g. `cudaErrorIllegalAddress`. */
export class CudaError extends ConvnetError {
  readonly cudaError: string;
  constructor(message: string, cudaError = '') {
    super(message);
    this.cudaError = cudaError;
  }
}

/** A malformed model or data file. */
export class FormatError extends ConvnetError {}

/**
 * A file or folder that cannot be written or created: a checkpoint save, an output folder.
 * The message names the target (not a temporary file) and the system's reason; `code` is the
 * system's error code (e.g. `EACCES`, `ENOSPC`) when there is one.
 */
export class IOError extends ConvnetError {
  readonly code: string;
  constructor(message: string, code = '') {
    super(message);
    this.code = code;
  }
}

interface NativeErrorFields {
  convnetClass?: string;
  message: string;
  cudaError?: string;
  device?: string;
  bytesAsked?: number;
  bytesFree?: number;
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
    default:
      return e;
  }
}
