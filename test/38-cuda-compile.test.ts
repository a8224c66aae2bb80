/**
 * Kernels compiled at run time (cn.cuda.compile, src/cuda.ts, native/rtc/). Without a GPU or the
 * CUDA toolkit's NVRTC, the compile path is driven through a stand-in NVRTC built here from
 * test/fixtures/fake_nvrtc.cc (same C entry points; it fails on `#error` lines with a
 * compiler-style log and logs every compilation), in child processes because NVRTC is opened
 * once per process. The signature reader and the argument checks are tested directly; the real
 * compile-and-launch test needs a GPU and NVRTC and says so when skipped.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { kernelSignature, nvrtcStatus, packArguments } from '../src/cuda.js';
import { expectError, trackLeaks } from './helpers.js';

trackLeaks();

const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'convnet-rtc-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function buildFake(dir: string, major = 12): string {
  mkdirSync(dir, { recursive: true });
  const lib = path.join(dir, 'libnvrtc.so.12');
  const r = spawnSync('g++', ['-shared', '-fPIC', '-O1', `-DFAKE_MAJOR=${major}`, path.join(here, 'fixtures', 'fake_nvrtc.cc'), '-o', lib], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return lib;
}

function probe(scenario: string, env: Record<string, string> = {}): { ok?: unknown; error?: string; message?: string; log?: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(here, 'fixtures', 'cuda-compile-probe.ts'), scenario], {
    encoding: 'utf8', timeout: 120_000, env: { ...process.env, CONVNET_PYTHON: 'python3-not-here', ...env },
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

describe('cn.cuda.compile with a stand-in NVRTC', () => {
  let fake = '';
  let log = '';
  beforeAll(() => {
    fake = path.dirname(buildFake(path.join(tmp, 'fake')));
    log = path.join(tmp, 'compilations.log');
  });
  const env = () => ({ CONVNET_NVRTC_PATH: fake, FAKE_NVRTC_LOG: log });

  it('buildInfo reports it found, with its version and path', () => {
    expect(probe('buildInfo', env()).ok).toEqual({ nvrtc: 'found', nvrtcVersion: '12.8', nvrtcPath: path.join(fake, 'libnvrtc.so.12') });
  });

  it('compiles for the highest architecture NVRTC has up to the device, once per source and architecture', () => {
    rmSync(log, { force: true });
    const out = probe('compile', env()).ok as { name: string; signature: unknown[]; same: number; newer: string };
    expect(out.name).toBe('saxpy');
    expect(out.signature).toEqual([
      { text: 'float* y', kind: 'tensor', dtype: 'float32' },
      { text: 'const float* __restrict__ x', kind: 'tensor', dtype: 'float32' },
      { text: 'float a', kind: 'f32' },
      { text: 'int n', kind: 'i32' },
    ]);
    // sm_90 twice (the second from the cache), then sm_120, which this NVRTC compiles as compute_90.
    expect(readFileSync(log, 'utf8')).toBe('saxpy compute_90\nsaxpy compute_90\n');
  });

  it('a source that does not compile is a CompileError carrying the compiler log', () => {
    const r = probe('compile-error', env());
    expect(r.error).toBe('CompileError');
    expect(r.log).toBe('k.cu(1): error: expected a ";"\n');
    expect(r.message).toBe('cuda.compile: \'k\' does not compile for compute_80 (NVRTC_ERROR_COMPILATION):\nk.cu(1): error: expected a ";"\n');
  });

  it('a name the source does not define is a CompileError', () => {
    expect(probe('no-such-kernel', env())).toEqual({ error: 'CompileError', message: "cuda.compile: the source compiles but defines no __global__ function named 'saxpy2'", log: '' });
  });

  it('without a GPU, compiling needs an explicit arch, and launching names why there is no device', () => {
    expect(probe('no-device', env())).toEqual({ error: 'DeviceError', message: "cuda.compile: there is no CUDA device to compile 'saxpy' for; pass { arch: 'sm_90' } to compile for one that is not here" });
    expect(probe('launch-cpu', env())).toEqual({ error: 'DeviceError', message: "kernel.launch: device must be a CUDA device id like 'cuda:0', received 'cpu:0'" });
    const noGpu = probe('launch-no-gpu', env());
    expect(noGpu.error).toBe('DeviceError');
    if (!cn.devices().some((d) => d.id === 'cuda:0')) expect(noGpu.message).toMatch(/^device: cannot use 'cuda:0': /);
  });

  it('an NVRTC older than 11.2 is reported unusable, with the reason', () => {
    const old = path.dirname(buildFake(path.join(tmp, 'old'), 10));
    expect(probe('buildInfo', { CONVNET_NVRTC_PATH: old }).ok).toEqual({
      nvrtc: 'unusable', nvrtcVersion: '10.8', nvrtcPath: path.join(old, 'libnvrtc.so.12'),
      nvrtcReason: `NVRTC at ${path.join(old, 'libnvrtc.so.12')} is version 10.8; 11.2 or later is needed`,
    });
  });
});

describe('without NVRTC', () => {
  it('buildInfo says where it looked, and compile throws DeviceError saying why', () => {
    const env = { CONVNET_NVRTC_PATH: path.join(tmp, 'nothing-here') };
    const b = probe('buildInfo', env).ok as { nvrtc: string; nvrtcReason: string };
    expect(b.nvrtc).toBe('not found');
    expect(b.nvrtcReason).toMatch(/^NVRTC not found \(tried CONVNET_NVRTC_PATH=.*nothing-here, libnvrtc\.so\.13 on the loader path, /);
    const r = probe('compile', env);
    expect(r.error).toBe('DeviceError');
    expect(r.message).toBe(`cuda.compile: ${b.nvrtcReason}`);
  });
});

describe('the kernel signature, read from the source', () => {
  it('pointers, integer and floating parameters, qualifiers and comments', () => {
    const src = `/* a comment with __global__ void k(int) in it */
      extern "C" __global__ void __launch_bounds__(256) k(const float* __restrict__ a, int* idx, // ints
        unsigned n, int64_t big, size_t len, double d, float f, half* h) {}`;
    expect(kernelSignature(src, 'k')).toEqual([
      { text: 'const float* __restrict__ a', kind: 'tensor', dtype: 'float32' },
      { text: 'int* idx', kind: 'tensor', dtype: 'int32' },
      { text: 'unsigned n', kind: 'i32' },
      { text: 'int64_t big', kind: 'i64' },
      { text: 'size_t len', kind: 'i64' },
      { text: 'double d', kind: 'f64' },
      { text: 'float f', kind: 'f32' },
      { text: 'half* h', kind: 'tensor' },
    ]);
    expect(kernelSignature('__global__ void none() {}', 'none')).toEqual([]);
    expect(kernelSignature('__global__ void b(bool flag) {}', 'b')).toBeNull();
    expect(kernelSignature('template <typename T> __global__ void t(T* x) {}', 't<float>')).toBeNull();
  });
});

describe('launch arguments against the signature', () => {
  const sig = kernelSignature('__global__ void k(float* y, const int* i, float a, int n, long long m) {}', 'k');
  const pack = (args: cn.cuda.KernelArg[], s = sig) => packArguments('kernel.launch', 'k', s, 'cpu:0', args);
  it('converts tensors to pointers and numbers to the declared C types', () => {
    const y = cn.zeros([2]);
    const i = cn.zeros([2], { dtype: 'int32' });
    const out = pack([y, i, 0.5, 7, 2 ** 40]);
    expect(out.map((a) => a.kind)).toEqual(['ptr', 'ptr', 'f32', 'i32', 'i64']);
    expect(out.slice(2).map((a) => (a as { value: number }).value)).toEqual([0.5, 7, 2 ** 40]);
    expect(pack([y, i, { float: 1 }, { int: 3 }, { int: 4 }]).map((a) => a.kind)).toEqual(['ptr', 'ptr', 'f32', 'i32', 'i64']);
    y.dispose();
    i.dispose();
  });
  it('refuses what does not fit, naming the parameter', () => {
    const { ShapeError, DeviceError } = cn;
    const y = cn.zeros([2]);
    const i = cn.zeros([2], { dtype: 'int32' });
    const other = cn.zeros([2], { device: 'cpu:1' });
    expectError(() => pack([y, i, 0.5]), ShapeError, "kernel.launch: 'k' takes 5 arguments (float* y, const int* i, float a, int n, long long m), received 3");
    expectError(() => pack([1, i, 0.5, 7, 8]), ShapeError, "kernel.launch: args[0] must be a Tensor for 'float* y', received 1");
    expectError(() => pack([i, i, 0.5, 7, 8]), ShapeError, "kernel.launch: args[0] must be a float32 tensor for 'float* y', received int32");
    expectError(() => pack([y, i, y, 7, 8]), ShapeError, "kernel.launch: args[2] must be a number for 'float a', received Tensor([2], float32, cpu:0)");
    expectError(() => pack([y, i, 0.5, 7.5, 8]), ShapeError, "kernel.launch: args[3] must be a 32-bit integer for 'int n', received 7.5");
    expectError(() => pack([y, i, 0.5, 2 ** 33, 8]), ShapeError, "kernel.launch: args[3] must be a 32-bit integer for 'int n', received 8589934592");
    expectError(() => pack([other, i, 0.5, 7, 8]), DeviceError, "kernel.launch: args[0] is on cpu:1, not on cpu:0; move it with t.to('cpu:0')");
    expectError(() => pack([y, 2], null), ShapeError, "kernel.launch: args[1] is a plain number but the signature of 'k' could not be read; pass { int: n } or { float: x }");
    [y, i, other].forEach((t) => t.dispose());
  });
});

const gpu = cn.devices().some((d) => d.kind === 'cuda');
const haveNvrtc = gpu && nvrtcStatus().status === 'found';
if (!haveNvrtc) console.log(`cuda.compile on a GPU skipped: ${gpu ? nvrtcStatus().reason : 'no CUDA device'}`);

describe.skipIf(!haveNvrtc)('on a GPU with NVRTC', () => {
  it('compiles saxpy and runs it in order with the other ops on cuda:0', async () => {
    const saxpy = cn.cuda.compile(`extern "C" __global__ void saxpy(float* y, const float* x, float a, int n) {
      int i = blockIdx.x * blockDim.x + threadIdx.x;
      if (i < n) y[i] = a * x[i] + y[i];
    }`, { name: 'saxpy' });
    const n = 1000;
    const x = cn.randn([n], { seed: 1, device: 'cuda:0' });
    const y = cn.full([n], 1, { device: 'cuda:0' });
    saxpy.launch('cuda:0', { grid: Math.ceil(n / 256), block: 256 }, [y, x, 2, n]);
    const xs = await x.data();
    const ys = await y.data();
    for (let k = 0; k < n; k++) expect(ys[k]).toBeCloseTo(2 * xs[k] + 1, 5);
    x.dispose();
    y.dispose();
  });
});
