/**
 * Loads the native addon and wraps each of its functions so that errors arrive as the typed
 * classes of errors.ts. When the addon is missing, says which file it tried and what to do.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { fromNative } from './errors.js';

/** An opaque reference to device memory owned by the addon. */
export type NativeHandle = { readonly __native: unique symbol };

export interface NativeDeviceInfo {
  id: string;
  kind: 'cpu' | 'cuda';
  name: string;
  computeCapability?: string;
  memoryBytes: number;
}

export interface NativeAddon {
  devices(): NativeDeviceInfo[];
  buildInfo(): { cuda: boolean; cudaVersion?: string; archs?: string[]; ops: { name: string; cuda: boolean }[] };
  alloc(device: string, bytes: number): NativeHandle;
  release(h: NativeHandle): void;
  upload(h: NativeHandle, data: Float32Array | Int32Array): void;
  download(h: NativeHandle): Promise<ArrayBuffer>;
  downloadSync(h: NativeHandle): ArrayBuffer;
  copy(dst: NativeHandle, src: NativeHandle): void;
  launch(op: string, tensors: (NativeHandle | null)[], ints: number[], floats: number[]): void;
  synchronize(device: string): Promise<void>;
  synchronizeSync(device: string): void;
  memoryStats(device: string): { inUse: number; cached: number; peak: number; blocks: number; inUseAtFailure: number };
  emptyCache(device: string): void;
  resetPeak(device: string): void;
  setMemoryLimit(device: string, bytes: number | null): void;
  traceStart(): void;
  traceStop(): { device: string; op: string; start: number; end: number }[];
  // Benchmark facilities (native/bench/, native/addon/bench_addon.cc).
  timerMark(device: string): NativeMarker;
  timerElapsed(a: NativeMarker, b: NativeMarker): number;
  l2Flush(device: string): number;
  cudnnTryLoad(path: string, preload: string[]): {
    outcome: 'opened' | 'absent' | 'rejected'; path: string; version?: string; versionNumber?: number; reason?: string;
  };
  cudnnPlan(device: string, pass: 'fwd' | 'bwd_data' | 'bwd_filter', ints: number[], math: 'fp32' | 'tf32'): NativeCudnnPlan;
  cudnnFind(plan: NativeCudnnPlan, buffers: NativeHandle[]): void;
  cudnnRun(plan: NativeCudnnPlan, buffers: NativeHandle[]): void;
  cudnnPlanInfo(plan: NativeCudnnPlan): {
    found: boolean; algo: number; findMs: number; workspaceBytes: number; mathType: number; candidates: number;
  };
  cudnnPlanRelease(plan: NativeCudnnPlan): void;
  // Run-time compiled kernels (native/rtc/, native/addon/rtc_addon.cc).
  nvrtcTryLoad(path: string): { outcome: 'opened' | 'absent' | 'rejected'; path: string; version?: string; reason?: string };
  rtcCompile(source: string, name: string, sm: number, options: string[]): NativeCompiled;
  rtcLaunch(device: string, kernel: NativeCompiled, grid: number[], block: number[], sharedBytes: number,
            args: ({ kind: 'ptr'; handle: NativeHandle } | { kind: 'i32' | 'i64' | 'f32' | 'f64'; value: number })[]): void;
}

/** A kernel compiled to PTX by NVRTC: what the driver needs to load and launch it. */
export interface NativeCompiled {
  ptx: string;
  loweredName: string;
  arch: string;
  log: string;
}

/** A timing marker queued on a device. */
export type NativeMarker = { readonly __marker: unique symbol };
/** A cuDNN convolution plan (descriptors, the chosen algorithm, its workspace). */
export type NativeCudnnPlan = { readonly __cudnnPlan: unique symbol };

const here = path.dirname(fileURLToPath(import.meta.url));

/** How the loaded addon came to be: CONVNET_ADDON, built from source here, or prebuilt. */
export type AddonSource = 'CONVNET_ADDON' | 'source' | 'prebuilt';

/**
 * Where the addon may be, in order: CONVNET_ADDON; this package's build folder (a build from
 * source on this machine, next to src/ or dist/); the prebuilt binary for this platform that a
 * packed package carries in prebuilds/<platform>-<arch>/.
 */
function candidates(): [string, AddonSource][] {
  const list: [string, AddonSource][] = [];
  if (process.env.CONVNET_ADDON) list.push([path.resolve(process.env.CONVNET_ADDON), 'CONVNET_ADDON']);
  for (const up of ['..', '../..']) list.push([path.resolve(here, up, 'build', 'Release', 'convnet.node'), 'source']);
  for (const up of ['..', '../..']) {
    list.push([path.resolve(here, up, 'prebuilds', `${process.platform}-${process.arch}`, 'convnet.node'), 'prebuilt']);
  }
  return list;
}

/** The file the addon was loaded from and how it was made (see `buildInfo().addon`). */
export const addonOrigin: { path: string; source: AddonSource } = { path: '', source: 'source' };

function load(): NativeAddon {
  const require = createRequire(import.meta.url);
  const tried = candidates();
  for (const [file, source] of tried) {
    if (!existsSync(file)) continue;
    try {
      const addon = require(file) as NativeAddon;
      addonOrigin.path = file;
      addonOrigin.source = source;
      return addon;
    } catch (e) {
      throw new Error(
        `convnet-cuda: the native addon at ${file} exists but failed to load: ${(e as Error).message}\n` +
          'Rebuild it with `npm run build:native` (or `npm install`) on this machine.',
      );
    }
  }
  throw new Error(
    `convnet-cuda: the native addon is not built and no prebuilt binary fits ${process.platform}-${process.arch}. Looked for:\n  ${tried.map(([f]) => f).join('\n  ')}\n` +
      'Build it from source with `npm rebuild convnet-cuda --allow-scripts=convnet-cuda` in your project ' +
      '(or `npm install` in a clone; needs cmake and a C++17 compiler, plus nvcc for CUDA), ' +
      'or set CONVNET_ADDON to the path of convnet.node.',
  );
}

function wrap(addon: NativeAddon): NativeAddon {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(addon)) {
    if (typeof fn !== 'function') continue;
    out[name] = (...args: unknown[]) => {
      let r: unknown;
      try {
        r = (fn as (...a: unknown[]) => unknown)(...args);
      } catch (e) {
        throw fromNative(e);
      }
      if (r instanceof Promise) {
        return r.catch((e: unknown) => {
          throw fromNative(e);
        });
      }
      return r;
    };
  }
  return out as unknown as NativeAddon;
}

/** The addon, loaded on first use. */
export const native: NativeAddon = wrap(load());
