/**
 * The CUDA kernels' logic, checked without a GPU: native/emu/build.sh compiles the unmodified
 * native/ops/*_cuda.cu sources with g++ against a host emulation of the CUDA runtime (threads of
 * a block as fibers, real barriers and warp shuffles, per-block poisoned shared memory), runs its
 * self-test (the harness must catch injected mismatches, a missing __syncthreads, deadlocks,
 * bad shuffles), then runs every op of the op table that has a CUDA launcher against its CPU
 * implementation on random shapes with NaN-poisoned outputs. Every CUDA op of
 * native/ops/registry.cc must come out 'ok', and so must the copies between emulated devices
 * (two logical devices on one GPU, peer-to-peer, staged through host memory, GPU <-> CPU) and
 * the uploads, whose streams the emulation runs newest-first so a missing event wait shows.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The ops registry.cc binds a CUDA launcher to: `{"name", ..., CN_CUDA(name_cuda_op), name_check}`. */
function cudaOpsOfRegistry(): string[] {
  const src = readFileSync(path.join(root, 'native', 'ops', 'registry.cc'), 'utf8');
  const names: string[] = [];
  for (const m of src.matchAll(/\{\s*"(\w+)"[^{}]*?CN_CUDA\(\s*\w+\s*\)\s*(?:,\s*\w+\s*)?\}/g)) names.push(m[1]);
  return names;
}

// The emulation runs a block's threads as ucontext fibers (glibc).
describe.skipIf(process.platform !== 'linux')('CUDA kernels under the host emulation (native/emu)', () => {
  it('build.sh: the self-test passes and every CUDA op matches the CPU', () => {
    const ops = cudaOpsOfRegistry();
    expect(ops.length, 'no CN_CUDA(...) entries found in native/ops/registry.cc').toBeGreaterThan(10);

    const r = spawnSync('bash', [path.join(root, 'native', 'emu', 'build.sh')], {
      cwd: root,
      encoding: 'utf8',
      timeout: 600_000,
      maxBuffer: 64 << 20,
    });
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    const tail = out.split('\n').slice(-80).join('\n');
    expect(r.error, `build.sh could not run: ${r.error?.message}`).toBeUndefined();
    expect(r.status, `native/emu/build.sh exited with ${r.status} (signal ${r.signal}):\n${tail}`).toBe(0);
    expect(out, tail).toMatch(/^self-test: passed$/m);
    expect(out, tail).toMatch(/^PASSED: /m);
    const missing = ops.filter((op) => !new RegExp(`^ok\\s+${op}\\s`, 'm').test(out));
    expect(missing, `ops without an 'ok' line:\n${tail}`).toEqual([]);
    // The copies between emulated devices and the uploads (copy_storage, CudaDevice::upload).
    const links = ['copies-same-gpu', 'copies-peer', 'copies-staged', 'copies-cuda-cpu', 'copies-cpu-cpu', 'copies-upload', 'copies-exit'];
    expect(links.filter((l) => !new RegExp(`^ok\\s+${l}\\s`, 'm').test(out)), tail).toEqual([]);
    // conv2d version 3 (tensor cores), tf32 and bf16: forward by normwise error, gradients via version 2.
    const v3 = ['conv2d_forward@v3-tf32', 'conv2d_forward@v3-bf16', 'conv2d_backward_data@v3-tf32', 'conv2d_backward_filter@v3-bf16'];
    expect(v3.filter((l) => !new RegExp(`^ok\\s+${l}\\s`, 'm').test(out)), tail).toEqual([]);
    expect(out, tail).not.toMatch(/^FAIL /m);
  }, 660_000);
});
