/** Devices and build facts. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { cudnnStatus } from './cudnn.js';
import { native } from './native.js';

export interface DeviceInfo {
  /** 'cpu:0', 'cpu:1', ..., 'cuda:0', ... */
  id: string;
  kind: 'cpu' | 'cuda';
  name: string;
  /** CUDA devices only, e.g. '9.0'. */
  computeCapability?: string;
  memoryBytes: number;
}

/** Every usable device: the CPU queues (CONVNET_CPU_DEVICES, default 2) and the CUDA devices. */
export function devices(): DeviceInfo[] {
  return native.devices();
}

export interface BuildInfo {
  /** Whether the CUDA backend was compiled in. */
  cuda: boolean;
  cudaVersion?: string;
  /** CUDA targets of the fat binary, e.g. ['sm_75', 'sm_90']. */
  archs?: string[];
  /**
   * cuDNN is never linked into the library; the benchmark opens it at run time as a driver to
   * race against (src/cudnn.ts): whether it was found, its version and path, or why not.
   */
  cudnn: 'found' | 'not found' | 'unusable';
  cudnnVersion?: string;
  cudnnPath?: string;
  cudnnReason?: string;
  /** The package version. */
  version: string;
  /** The native ops and whether each has a CUDA kernel in this build. */
  ops: { name: string; cuda: boolean }[];
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

export function buildInfo(): BuildInfo {
  const b = native.buildInfo();
  const c = cudnnStatus();
  return {
    ...b,
    cudnn: c.status,
    ...(c.version ? { cudnnVersion: c.version } : {}),
    ...(c.path ? { cudnnPath: c.path } : {}),
    ...(c.reason ? { cudnnReason: c.reason } : {}),
    version: packageVersion(),
  };
}

/** Waits until every op queued on the device so far has run; rethrows a deferred device error. */
export function synchronize(device: string): Promise<void> {
  return native.synchronize(device === 'cpu' ? 'cpu:0' : device === 'cuda' ? 'cuda:0' : device);
}

export interface AllocatorStats {
  /** Bytes handed out by the device's caching allocator and not yet released. */
  inUse: number;
  /** Bytes held in its free lists for reuse. */
  cached: number;
  /** The most bytes in use at once so far. */
  peak: number;
  /** Blocks in use. */
  blocks: number;
}

/**
 * The caching allocator's own counts for a device. They include memory that queued work still
 * holds (after dispose, until the op that reads it has run) and blocks rounded up in size, so
 * they differ from `memory()`, which counts live tensors exactly.
 */
export function allocatorStats(device: string): AllocatorStats {
  return native.memoryStats(device === 'cpu' ? 'cpu:0' : device === 'cuda' ? 'cuda:0' : device);
}

/** Returns a device's cached free blocks to the system (or the GPU). */
export function emptyCache(device: string): void {
  native.emptyCache(device === 'cpu' ? 'cpu:0' : device === 'cuda' ? 'cuda:0' : device);
}

/** One op as its device's queue ran it: times in microseconds on one process-wide clock. */
export interface TraceEvent {
  device: string;
  op: string;
  start: number;
  end: number;
}

/**
 * Records every op that any device's queue runs from now until `traceStop()`. On CUDA devices
 * the times are when the queue issued the work to the stream, not when the GPU ran it.
 */
export function traceStart(): void {
  native.traceStart();
}

/** Stops recording and returns what was recorded, in the order the ops finished. */
export function traceStop(): TraceEvent[] {
  return native.traceStop();
}
