/** Devices and build facts. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { nvrtcStatus } from './cuda.js';
import { cudnnStatus } from './cudnn.js';
import { addonOrigin, native, type AddonSource } from './native.js';
import { ShapeError } from './errors.js';
import { devicesUsed } from './tensor.js';

/** One entry of {@link devices}. */
export interface DeviceInfo {
  /** 'cpu:0', 'cpu:1', ..., 'cuda:0', ... */
  id: string;
  /** A CPU queue or a GPU. */
  kind: 'cpu' | 'cuda';
  /** A readable name, e.g. `'CPU queue 0 (2 threads)'` or the GPU's model name. */
  name: string;
  /** CUDA devices only, e.g. '9.0'. */
  computeCapability?: string;
  /** The device's memory in bytes (the host's memory for a CPU queue). */
  memoryBytes: number;
}

/**
 * Every usable device: the CPU queues (CONVNET_CPU_DEVICES, default 2) and the CUDA devices
 * (CONVNET_VIRTUAL_GPUS shows more logical GPUs than there are cards).
 *
 * @example
 * ```ts
 * const gpu = cn.devices().find((d) => d.kind === 'cuda');
 * const device = gpu ? gpu.id : 'cpu:0';
 * ```
 */
export function devices(): DeviceInfo[] {
  return native.devices();
}

/** What {@link buildInfo} returns: how this copy of the addon was built. */
export interface BuildInfo {
  /** Whether the CUDA backend was compiled in. */
  cuda: boolean;
  /** The CUDA toolkit version compiled against, when `cuda` is true. */
  cudaVersion?: string;
  /** CUDA targets of the fat binary, e.g. ['sm_75', 'sm_90']. */
  archs?: string[];
  /**
   * cuDNN is never linked into the library; the benchmark opens it at run time as a driver to
   * race against (src/cudnn.ts): whether it was found, its version and path, or why not.
   */
  cudnn: 'found' | 'not found' | 'unusable';
  /** The cuDNN version found, e.g. `'9.10.2'` (when `cudnn` is `'found'`). */
  cudnnVersion?: string;
  /** The library file that was opened. */
  cudnnPath?: string;
  /** Why cuDNN cannot be used, in one line (when `cudnn` is not `'found'`). */
  cudnnReason?: string;
  /** Whether NVRTC (for `cn.cuda.compile`) was found: `'found' | 'not found' | 'unusable'`. */
  nvrtc: 'found' | 'not found' | 'unusable';
  /** NVRTC's version, e.g. `'12.8'`. */
  nvrtcVersion?: string;
  /** The NVRTC library that was opened. */
  nvrtcPath?: string;
  /** Why NVRTC cannot be used, in one line. */
  nvrtcReason?: string;
  /** The package version. */
  version: string;
  /** The native ops and whether each has a CUDA kernel in this build. */
  ops: {
    /** The native op's name, e.g. `conv2d_forward`. */
    name: string;
    /** Whether the op has a CUDA kernel. */
    cuda: boolean;
  }[];
  /** The addon file in use and how it was made: built from source here, prebuilt, or CONVNET_ADDON. */
  addon: {
    /** The absolute path of the loaded `convnet.node`. */
    path: string;
    /** How the file came to be. */
    source: AddonSource;
  };
}

let version: string | undefined;
function packageVersion(): string {
  if (version) return version;
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const up of ['..', '../..']) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(here, up, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'convnet-cuda' && pkg.version) return (version = pkg.version);
    } catch {
      // try the next folder up
    }
  }
  return (version = 'unknown');
}

/**
 * Facts about this build: whether CUDA was compiled in, its version and target architectures,
 * the native ops, the package version and which addon file was loaded.
 *
 * @example
 * ```ts
 * const info = cn.buildInfo();
 * console.log(info.version, info.cuda ? info.archs : 'CPU only', info.addon.source);
 * ```
 */
export function buildInfo(): BuildInfo {
  const b = native.buildInfo();
  const c = cudnnStatus();
  const r = nvrtcStatus();
  return {
    ...b,
    cudnn: c.status,
    ...(c.version ? { cudnnVersion: c.version } : {}),
    ...(c.path ? { cudnnPath: c.path } : {}),
    ...(c.reason ? { cudnnReason: c.reason } : {}),
    nvrtc: r.status,
    ...(r.version ? { nvrtcVersion: r.version } : {}),
    ...(r.path ? { nvrtcPath: r.path } : {}),
    ...(r.reason ? { nvrtcReason: r.reason } : {}),
    version: packageVersion(),
    addon: { ...addonOrigin },
  };
}

/**
 * @internal The package version and whether CUDA is compiled in, without probing for cuDNN and
 * NVRTC as {@link buildInfo} does (which can take seconds the first time).
 */
export function buildSummary(): { version: string; cuda: boolean } {
  return { version: packageVersion(), cuda: native.buildInfo().cuda };
}

/**
 * Waits until every op queued on the device so far has run; rethrows a deferred device error.
 * `'cpu'` and `'cuda'` mean `'cpu:0'` and `'cuda:0'`.
 *
 * @throws DeviceError for an unknown device; CudaError for an error the device's queue reported
 *
 * @example
 * ```ts
 * const t0 = performance.now();
 * const y = cn.conv2d(x, w, b, { padding: 2 });
 * await cn.synchronize(y.device); // the op has run
 * console.log(performance.now() - t0, 'ms');
 * ```
 */
export function synchronize(device: string): Promise<void> {
  return native.synchronize(device === 'cpu' ? 'cpu:0' : device === 'cuda' ? 'cuda:0' : device);
}

/** What {@link allocatorStats} returns, in bytes except `blocks`. */
export interface AllocatorStats {
  /** Bytes handed out by the device's caching allocator and not yet released. */
  inUse: number;
  /** Bytes held in its free lists for reuse. */
  cached: number;
  /** The most bytes in use at once so far. */
  peak: number;
  /** Blocks in use. */
  blocks: number;
  /** Bytes in use when the allocator last refused an allocation (0 if it never did): with the error's `bytesAsked`, what that allocation needed. */
  inUseAtFailure: number;
}

/**
 * The caching allocator's own counts for a device. They include memory that queued work still
 * holds (after dispose, until the op that reads it has run) and blocks rounded up in size, so
 * they differ from `memory()`, which counts live tensors exactly.
 *
 * @throws DeviceError for an unknown device
 *
 * @example
 * ```ts
 * const { inUse, cached, peak } = cn.allocatorStats('cuda:0');
 * ```
 */
export function allocatorStats(device: string): AllocatorStats {
  return native.memoryStats(device === 'cpu' ? 'cpu:0' : device === 'cuda' ? 'cuda:0' : device);
}

/**
 * Returns a device's cached free blocks to the system (or the GPU). Memory in use is not
 * touched; later allocations are just slower until the cache fills again.
 *
 * @throws DeviceError for an unknown device
 *
 * @example
 * ```ts
 * model.dispose();
 * cn.emptyCache('cuda:0'); // allocatorStats('cuda:0').cached drops
 * ```
 */
export function emptyCache(device: string): void {
  native.emptyCache(device === 'cpu' ? 'cpu:0' : device === 'cuda' ? 'cuda:0' : device);
}

const canonical = (device: string) => (device === 'cpu' ? 'cpu:0' : device === 'cuda' ? 'cuda:0' : device);

/**
 * The most bytes each device's allocator has had in use at once, since the process started or
 * since {@link resetPeakMemory}: what a run needed on each device (blocks rounded up as the
 * allocator rounds them; free blocks it keeps cached are not counted, since it returns them to
 * the device before it ever reports running out). Lists the devices that have held a tensor,
 * or the ones asked for.
 *
 * @throws DeviceError for an unknown device in `devices`
 *
 * @example
 * ```ts
 * cn.resetPeakMemory();
 * // ... a training step on cuda:0 and cuda:1 ...
 * const peak = cn.peakMemory(); // { 'cuda:0': 2.1e9, 'cuda:1': 1.9e9 }
 * ```
 */
export function peakMemory(devices?: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const d of devices ?? devicesUsed()) out[canonical(d)] = native.memoryStats(canonical(d)).peak;
  return out;
}

/**
 * Starts each device's peak ({@link peakMemory}, `allocatorStats(d).peak`) over from the bytes
 * in use now: every device that has held a tensor, or the ones given.
 *
 * @throws DeviceError for an unknown device
 *
 * @example
 * ```ts
 * cn.resetPeakMemory(['cpu:0', 'cpu:1']);
 * model.forward(x).dispose();
 * console.log(cn.peakMemory(['cpu:0'])['cpu:0'] - cn.allocatorStats('cpu:0').inUse, 'bytes of activations');
 * ```
 */
export function resetPeakMemory(devices?: readonly string[]): void {
  for (const d of devices ?? devicesUsed()) native.resetPeak(canonical(d));
}

/**
 * Makes a device's allocator refuse any allocation that would take its bytes in use past
 * `bytes`, with the `OutOfMemoryError` a device of that size would give: a way to check that a
 * run fits a smaller GPU (the paper's 3 GB GTX 580) on a larger one or on a CPU queue. `null`
 * lifts the limit. Bytes already in use stay.
 *
 * @throws ShapeError for bytes that are not a non-negative integer; DeviceError for an unknown device
 *
 * @example
 * ```ts
 * cn.setMemoryLimit('cuda:0', 3 * 2 ** 30);
 * try {
 *   // ... a training step ...
 * } catch (e) {
 *   if (e instanceof cn.OutOfMemoryError) console.log(`needs more than 3 GiB on ${e.device}`);
 * }
 * cn.setMemoryLimit('cuda:0', null);
 * ```
 */
export function setMemoryLimit(device: string, bytes: number | null): void {
  if (bytes !== null && !(typeof bytes === 'number' && Number.isSafeInteger(bytes) && bytes >= 0)) {
    throw new ShapeError(`setMemoryLimit: bytes must be a non-negative integer or null, received ${String(bytes)}`);
  }
  native.setMemoryLimit(canonical(device), bytes);
}

/** One op as its device's queue ran it: times in microseconds on one process-wide clock. */
export interface TraceEvent {
  /** The device whose queue ran the op, e.g. `'cuda:0'`. */
  device: string;
  /**
   * The native op's name, e.g. `conv2d_forward`. A copy between devices shows as two events:
   * `copy_out` on the source device (reading the source: a direct copy, or a snapshot of it)
   * and `copy_in` on the destination (waiting for the source half, then finishing the copy).
   * On CUDA devices host-to-device uploads show as `upload` and device-to-host reads as
   * `download`.
   */
  op: string;
  /** When the op started, in microseconds. */
  start: number;
  /** When it finished, in microseconds. */
  end: number;
}

/**
 * Records every op that any device's queue runs from now until `traceStop()`. On CUDA devices
 * the times are when the queue issued the work to the stream, not when the GPU ran it.
 *
 * @example
 * ```ts
 * cn.traceStart();
 * model.forward(x).dispose();
 * await cn.synchronize('cpu:0');
 * for (const e of cn.traceStop()) console.log(e.device, e.op, e.end - e.start, 'us');
 * ```
 */
export function traceStart(): void {
  native.traceStart();
}

/**
 * Stops recording and returns what was recorded, in the order the ops finished. Ops still in
 * a queue are not included: call {@link synchronize} first.
 *
 * @example
 * ```ts
 * cn.traceStart();
 * cn.relu(x).dispose();
 * await cn.synchronize(x.device);
 * const events = cn.traceStop(); // [{ device: 'cpu:0', op: 'relu_forward', start, end }]
 * ```
 */

export function traceStop(): TraceEvent[] {
  return native.traceStop();
}
