/**
 * Kernels of your own, compiled at run time: `cn.cuda.compile(source, { name })` compiles CUDA
 * C++ with NVRTC (opened at run time, see {@link nvrtcStatus}) and returns a kernel whose
 * `launch(device, { grid, block, sharedBytes }, args)` queues it on that device's stream, in
 * order with every other op there. Compiled code is cached by source, name, options and
 * architecture for the life of the process.
 *
 * Arguments follow the kernel's signature, which is read from the source: a pointer parameter
 * takes a tensor on the launch device (`float*` a float32 tensor, `int*` an int32 one), an
 * integer parameter (`int`, `unsigned`, `int64_t`, `size_t`...) a whole number, a `float` or
 * `double` parameter any number. Where the signature cannot be read (templates, macros), pass
 * numbers as `{ int: n }` or `{ float: x }`.
 *
 * NVRTC is searched for in this order: CONVNET_NVRTC_PATH (the library, or a folder holding it);
 * libnvrtc.so.13, .so.12 and .so on the dynamic loader's path; the `nvidia/<package>/lib` folders
 * of python3's site-packages, where the CUDA pip wheels put it.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';

import { isDir, sitePackages } from './cudnn.js';
import { DeviceError, ShapeError } from './errors.js';
import { native, type NativeCompiled } from './native.js';
import { describe } from './ops/validate.js';
import { deviceId, Tensor } from './tensor.js';

/** Whether NVRTC was found: what `cn.buildInfo()` reports as `nvrtc`. */
export interface NvrtcStatus {
  /** 'found': loaded and usable; 'not found': no candidate opened; 'unusable': one opened but failed a check. */
  status: 'found' | 'not found' | 'unusable';
  /** NVRTC's version, e.g. `'12.8'`. */
  version?: string;
  /** The library file that was opened. */
  path?: string;
  /** One line: why it cannot be used (absent when found). */
  reason?: string;
}

const NAMES = ['libnvrtc.so.13', 'libnvrtc.so.12', 'libnvrtc.so'];
let status: NvrtcStatus | undefined;

/**
 * Looks for NVRTC once (see the module's search order) and says what was found, or why not.
 *
 * @example
 * ```ts
 * const s = cn.cuda.nvrtcStatus();
 * console.log(s.status === 'found' ? `NVRTC ${s.version} at ${s.path}` : s.reason);
 * ```
 */
export function nvrtcStatus(): NvrtcStatus {
  if (status) return status;
  const tried: string[] = [];
  const candidates: [string, string][] = [];
  const env = process.env.CONVNET_NVRTC_PATH;
  if (env) {
    const files = isDir(env) ? NAMES.map((n) => path.join(env, n)).filter((f) => existsSync(f)) : [env];
    for (const f of files.length ? files : [path.join(env, NAMES[0])]) candidates.push([`CONVNET_NVRTC_PATH=${env}`, f]);
  }
  for (const n of NAMES) candidates.push([`${n} on the loader path`, n]);
  const site = sitePackages();
  let pip = 0;
  for (const dir of site.dirs) {
    const nvidia = path.join(dir, 'nvidia');
    if (!isDir(nvidia)) continue;
    for (const pkg of readdirSync(nvidia).sort()) {
      const lib = path.join(nvidia, pkg, 'lib');
      if (!isDir(lib)) continue;
      for (const f of readdirSync(lib).filter((x) => /^libnvrtc\.so\.\d+$/.test(x)).sort().reverse()) {
        candidates.push([lib, path.join(lib, f)]);
        pip++;
      }
    }
  }
  if (pip === 0) tried.push(site.why ?? "nvidia/*/lib in none of python3's site-packages");
  const labels: string[] = [];
  for (const [label, file] of candidates) {
    const r = native.nvrtcTryLoad(file);
    if (r.outcome === 'opened') return (status = { status: 'found', version: r.version, path: r.path });
    if (r.outcome === 'rejected') return (status = { status: 'unusable', version: r.version, path: r.path, reason: r.reason });
    if (!labels.includes(label)) labels.push(label);
  }
  return (status = { status: 'not found', reason: `NVRTC not found (tried ${[...labels, ...tried].join(', ')})` });
}

// ---- the kernel's signature --------------------------------------------------------------------

/** One parameter of a kernel, as read from its source. */
export interface KernelParam {
  /** The declaration as written, e.g. `const float* x`. */
  text: string;
  /** What it takes: a tensor (with the dtype its pointer type implies, if any) or a number. */
  kind: 'tensor' | 'i32' | 'i64' | 'f32' | 'f64';
  /** The tensor dtype a `float*` or `int*` pointer needs (absent for other pointer types). */
  dtype?: 'float32' | 'int32';
}

const SCALARS: Record<string, KernelParam['kind']> = {
  int: 'i32', 'signed int': 'i32', unsigned: 'i32', 'unsigned int': 'i32', int32_t: 'i32', uint32_t: 'i32',
  long: 'i64', 'long long': 'i64', 'unsigned long': 'i64', 'unsigned long long': 'i64', 'long int': 'i64',
  int64_t: 'i64', uint64_t: 'i64', size_t: 'i64', ptrdiff_t: 'i64',
  float: 'f32', double: 'f64',
};

/**
 * The parameters of the `__global__` function `name`, or null when they cannot be read.
 *
 * @example
 * ```ts
 * cn.cuda.kernelSignature('__global__ void k(float* y, int n) {}', 'k');
 * // [{ text: 'float* y', kind: 'tensor', dtype: 'float32' }, { text: 'int n', kind: 'i32' }]
 * ```
 */
export function kernelSignature(source: string, name: string): KernelParam[] | null {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/\/\/[^\n]*/g, ' ');
  const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const bounds = String.raw`(?:__launch_bounds__\s*\([^)]*\)\s*)?`;
  const m = new RegExp(String.raw`__global__\s+${bounds}void\s+${bounds}${esc}\s*\(([^)]*)\)`).exec(code);
  if (!m) return null;
  const list = m[1].trim();
  if (list === '' || list === 'void') return [];
  const params: KernelParam[] = [];
  for (const raw of list.split(',')) {
    const text = raw.trim().replace(/\s+/g, ' ');
    const words = text.replace(/\b(const|volatile|__restrict__|__restrict|restrict)\b/g, ' ').replace(/\*/g, ' * ').trim().split(/\s+/);
    const pointer = words.includes('*');
    const type = words.filter((w) => w !== '*');
    if (type.length > 1) type.pop(); // the parameter's name
    const base = type.join(' ');
    if (pointer) {
      const dtype = base === 'float' ? 'float32' : ['int', 'int32_t', 'unsigned', 'unsigned int', 'uint32_t'].includes(base) ? 'int32' : undefined;
      params.push({ text, kind: 'tensor', ...(dtype ? { dtype } : {}) });
    } else if (SCALARS[base]) {
      params.push({ text, kind: SCALARS[base] });
    } else {
      return null;
    }
  }
  return params;
}

// ---- compile and launch ------------------------------------------------------------------------

/** Options of {@link compile}. */
export interface CompileOptions {
  /** The `__global__` function to launch (C++ names work too; NVRTC finds the mangled symbol). */
  name: string;
  /**
   * Compile for this architecture now, e.g. `'sm_90'` (or `90`), even without a GPU. By default
   * the kernel is compiled for every CUDA device present, and for others on first launch.
   */
  arch?: string | number;
  /** More NVRTC options, e.g. `['-use_fast_math']`. */
  options?: string[];
}

/** The launch configuration of {@link CudaKernel.launch}. */
export interface LaunchConfig {
  /** Blocks: a number or [x, y?, z?]. */
  grid: number | number[];
  /** Threads per block: a number or [x, y?, z?] (at most 1024 in all). */
  block: number | number[];
  /** Dynamic shared memory in bytes (default 0). */
  sharedBytes?: number;
}

/** A kernel argument: a tensor, a number, or a number with its C type made explicit. */
export type KernelArg = Tensor | number | {
  /** A whole number passed as the integer type the kernel declares (int32 where unknown). */
  int: number;
} | {
  /** A number passed as float (or double where the kernel declares one). */
  float: number;
};

const cache = new Map<string, NativeCompiled>();

function smOf(op: string, arch: string | number): number {
  const m = typeof arch === 'number' ? [String(arch), String(arch)] : /^(?:sm_|compute_)?(\d{2,3})$/.exec(arch);
  const sm = m ? Number(m[1]) : NaN;
  if (!Number.isInteger(sm) || sm < 50 || sm > 200) {
    throw new ShapeError(`${op}: arch must be like 'sm_90' or 90, received ${describe(arch)}`);
  }
  return sm;
}

function nvrtcOrThrow(op: string): void {
  const s = nvrtcStatus();
  if (s.status !== 'found') throw new DeviceError(`${op}: ${s.reason}`);
}

/**
 * A kernel compiled by {@link compile}: its name, the signature read from its source, and
 * `launch`.
 *
 * @example
 * ```ts
 * const k = cn.cuda.compile('extern "C" __global__ void zero(float* x) { x[threadIdx.x] = 0; }', { name: 'zero' });
 * console.log(k.name, k.signature);   // 'zero' [{ text: 'float* x', kind: 'tensor', dtype: 'float32' }]
 * ```
 */
export class CudaKernel {
  /** The `__global__` function's name. */
  readonly name: string;
  /** The parameters read from the source, or null where they could not be read. */
  readonly signature: KernelParam[] | null;
  /** The compiler's warnings of the first compilation (empty when there were none). */
  log = '';
  private readonly source: string;
  private readonly options: string[];

  /** @internal Use `cn.cuda.compile`. */
  constructor(source: string, name: string, options: string[]) {
    this.source = source;
    this.name = name;
    this.options = options;
    this.signature = kernelSignature(source, name);
  }

  /** @internal The PTX for compute capability `sm` (compiled once per source and architecture). */
  compiledFor(sm: number): NativeCompiled {
    const key = `${sm}\n${this.name}\n${this.options.join(' ')}\n${this.source}`;
    let c = cache.get(key);
    if (!c) {
      nvrtcOrThrow('cuda.compile');
      c = native.rtcCompile(this.source, this.name, sm, this.options);
      cache.set(key, c);
      if (!this.log) this.log = c.log;
    }
    return c;
  }

  /**
   * Queues the kernel on `device` (a CUDA device) with the given grid, block and arguments.
   * Returns at once; read results with `await t.data()` as after any op.
   *
   * @throws DeviceError for a device that is not a CUDA device, or tensors on another device;
   *   ShapeError for arguments that do not fit the kernel's signature or a bad configuration
   *
   * @example
   * ```ts
   * const scale = cn.cuda.compile(`extern "C" __global__ void scale(float* x, float a, int n) {
   *   int i = blockIdx.x * blockDim.x + threadIdx.x;
   *   if (i < n) x[i] *= a;
   * }`, { name: 'scale' });
   * const x = cn.full([1000], 2, { device: 'cuda:0' });
   * scale.launch('cuda:0', { grid: 4, block: 256 }, [x, 1.5, 1000]);
   * console.log((await x.data())[0]);  // 3
   * ```
   */
  launch(device: string, config: LaunchConfig, args: readonly KernelArg[]): void {
    const op = 'kernel.launch';
    if (typeof device !== 'string') throw new DeviceError(`${op}: device must be a CUDA device id like 'cuda:0', received ${describe(device)}`);
    const id = deviceId(device);
    if (!id.startsWith('cuda:')) throw new DeviceError(`${op}: device must be a CUDA device id like 'cuda:0', received '${device}'`);
    const grid = dims(op, 'grid', config?.grid, [2 ** 31 - 1, 65535, 65535]);
    const block = dims(op, 'block', config?.block, [1024, 1024, 64]);
    if (block[0] * block[1] * block[2] > 1024) {
      throw new ShapeError(`${op}: block must hold at most 1024 threads, received [${block.join(', ')}] (${block[0] * block[1] * block[2]})`);
    }
    const shared = config.sharedBytes ?? 0;
    if (!Number.isInteger(shared) || shared < 0 || shared > 2 ** 31 - 1) {
      throw new ShapeError(`${op}: sharedBytes must be a non-negative integer, received ${describe(shared)}`);
    }
    const info = native.devices().find((d) => d.id === id);
    if (!info) {
      // Asking the addon for the device names why it is missing (no driver, no such index).
      native.memoryStats(id);
      throw new DeviceError(`${op}: no CUDA device '${id}'`);
    }
    const native_args = packArguments(op, this.name, this.signature, id, args);
    const compiled = this.compiledFor(smOf(op, Number((info.computeCapability ?? '0.0').replace('.', ''))));
    native.rtcLaunch(id, compiled, grid, block, shared, native_args);
  }
}

/**
 * @internal The native argument list of a launch: each argument checked against the kernel's
 * signature (when it could be read) and converted; tensors must be on `device`.
 */
export function packArguments(op: string, name: string, sig: KernelParam[] | null, device: string, args: readonly KernelArg[]) {
  if (!Array.isArray(args)) throw new ShapeError(`${op}: args must be an array, received ${describe(args)}`);
  if (sig && args.length !== sig.length) {
    throw new ShapeError(`${op}: '${name}' takes ${sig.length} argument${sig.length === 1 ? '' : 's'} (${sig.map((p) => p.text).join(', ')}), received ${args.length}`);
  }
  return args.map((a, i) => {
    const p = sig?.[i];
    const what = p ? ` for '${p.text}'` : '';
    if (a instanceof Tensor) {
      if (p && p.kind !== 'tensor') throw new ShapeError(`${op}: args[${i}] must be a number${what}, received ${a.toString()}`);
      if (p?.dtype && a.dtype !== p.dtype) throw new ShapeError(`${op}: args[${i}] must be a ${p.dtype} tensor${what}, received ${a.dtype}`);
      if (a.device !== device) throw new DeviceError(`${op}: args[${i}] is on ${a.device}, not on ${device}; move it with t.to('${device}')`);
      return { kind: 'ptr' as const, handle: a._handle(op, `args[${i}]`) };
    }
    if (p?.kind === 'tensor') throw new ShapeError(`${op}: args[${i}] must be a Tensor${what}, received ${describe(a)}`);
    let kind = p?.kind as 'i32' | 'i64' | 'f32' | 'f64' | undefined;
    let value: unknown = a;
    if (a && typeof a === 'object' && 'int' in a) {
      value = a.int;
      kind = kind && kind !== 'f32' && kind !== 'f64' ? kind : 'i32';
    } else if (a && typeof a === 'object' && 'float' in a) {
      value = a.float;
      kind = kind === 'f64' ? 'f64' : 'f32';
    } else if (!kind) {
      throw new ShapeError(`${op}: args[${i}] is a plain number but the signature of '${name}' could not be read; pass { int: n } or { float: x }`);
    }
    if (typeof value !== 'number' || Number.isNaN(value) && (kind === 'i32' || kind === 'i64')) {
      throw new ShapeError(`${op}: args[${i}] must be a number${what}, received ${describe(a)}`);
    }
    if (kind === 'i32' && !(Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 32)) {
      throw new ShapeError(`${op}: args[${i}] must be a 32-bit integer${what}, received ${describe(value)}`);
    }
    if (kind === 'i64' && !Number.isSafeInteger(value)) {
      throw new ShapeError(`${op}: args[${i}] must be an integer of at most 2^53 in magnitude${what}, received ${describe(value)}`);
    }
    return { kind: kind!, value };
  });
}

function dims(op: string, arg: string, v: unknown, max: number[]): number[] {
  const list = typeof v === 'number' ? [v] : Array.isArray(v) ? [...v] : null;
  if (!list || list.length < 1 || list.length > 3 || !list.every((d, k) => Number.isInteger(d) && d >= 1 && d <= max[k])) {
    throw new ShapeError(`${op}: ${arg} must be a positive integer or [x, y?, z?] of them (at most [${max.join(', ')}]), received ${describe(v)}`);
  }
  while (list.length < 3) list.push(1);
  return list as number[];
}

/**
 * Compiles CUDA C++ at run time with NVRTC into a kernel to launch on CUDA devices.
 *
 * @throws CompileError with NVRTC's log when the source does not compile, or has no
 *   `__global__` function of that name; DeviceError when NVRTC is not found, or there is no CUDA
 *   device to compile for and no `arch` was given
 *
 * @example
 * ```ts
 * const add1 = cn.cuda.compile(`extern "C" __global__ void add1(float* x, int n) {
 *   int i = blockIdx.x * blockDim.x + threadIdx.x;
 *   if (i < n) x[i] += 1.0f;
 * }`, { name: 'add1' });
 * const x = cn.zeros([256], { device: 'cuda:0' });
 * add1.launch('cuda:0', { grid: 1, block: 256 }, [x, 256]);
 * ```
 */
export function compile(source: string, opts: CompileOptions): CudaKernel {
  const op = 'cuda.compile';
  if (typeof source !== 'string' || source.trim() === '') throw new ShapeError(`${op}: source must be a non-empty string, received ${describe(source)}`);
  const name = opts?.name;
  if (typeof name !== 'string' || !/^[A-Za-z_][\w:<>, ]*$/.test(name)) {
    throw new ShapeError(`${op}: name must be the name of a __global__ function, received ${describe(name)}`);
  }
  const options = opts.options ?? [];
  if (!Array.isArray(options) || !options.every((o) => typeof o === 'string')) {
    throw new ShapeError(`${op}: options must be an array of strings, received ${describe(options)}`);
  }
  const kernel = new CudaKernel(source, name, options);
  let archs: number[];
  if (opts.arch !== undefined) {
    archs = [smOf(op, opts.arch)];
  } else {
    archs = [...new Set(native.devices().filter((d) => d.kind === 'cuda').map((d) => smOf(op, Number((d.computeCapability ?? '').replace('.', '')))))];
    if (archs.length === 0) {
      nvrtcOrThrow(op);
      throw new DeviceError(`${op}: there is no CUDA device to compile '${name}' for; pass { arch: 'sm_90' } to compile for one that is not here`);
    }
  }
  for (const sm of archs) kernel.compiledFor(sm);
  return kernel;
}
