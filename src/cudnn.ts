/**
 * Finding cuDNN at run time. The library never links cuDNN: the benchmark opens it with dlopen
 * (native/bench/cudnn_loader.cc) to time our kernels against it. Search order:
 *   1. CONVNET_CUDNN_PATH: the library file, or a folder holding libcudnn.so.9;
 *   2. libcudnn.so.9 on the dynamic loader's path (LD_LIBRARY_PATH, ldconfig);
 *   3. nvidia/cudnn/lib in python3's site-packages, where PyTorch's pip wheels put it (cuBLAS
 *      from nvidia/cublas/lib beside it, and cuDNN's own parts, are opened first: see PARTS).
 * The first candidate that opens decides: it must be version 9 and export every entry point the
 * benchmark calls, or the status says which check failed. Nothing is searched until asked, and
 * the answer is kept for the life of the process (a library cannot be unloaded safely).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

import { native } from './native.js';

export interface CudnnStatus {
  /** 'found': loaded and usable; 'not found': no candidate opened; 'unusable': one opened but failed a check. */
  status: 'found' | 'not found' | 'unusable';
  /** e.g. '9.1.0', when cudnnGetVersion could be called. */
  version?: string;
  /** The library that was opened. */
  path?: string;
  /** One line: why it is not usable (absent when found). */
  reason?: string;
}

const LIBRARY = 'libcudnn.so.9';

interface Candidate {
  /** How the reason names it. */
  label: string;
  path: string;
  preload: string[];
}

/** @internal Where python3 keeps its packages (site and user site), or why that could not be asked (NVRTC is found the same way). */
export function sitePackages(): { dirs: string[]; why?: string } {
  const python = process.env.CONVNET_PYTHON ?? 'python3';
  const r = spawnSync(python, ['-c', 'import site\nfor d in site.getsitepackages() + [site.getusersitepackages()]: print(d)'], {
    encoding: 'utf8',
    timeout: 15_000,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  if (r.error || r.status !== 0) return { dirs: [], why: `${python} could not list its site-packages` };
  return { dirs: r.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '') };
}

export function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** cuBLAS (and NVRTC) libraries installed beside a pip cuDNN. */
function pipCompanions(nvidia: string): string[] {
  const out: string[] = [];
  for (const [dir, pattern] of [['cublas', /^libcublas(Lt)?\.so\.\d+$/], ['cuda_nvrtc', /^libnvrtc\.so\.\d+$/]] as const) {
    const lib = path.join(nvidia, dir, 'lib');
    if (!isDir(lib)) continue;
    // libcublasLt before libcublas, which needs it.
    out.push(...readdirSync(lib).filter((f) => pattern.test(f)).sort().reverse().map((f) => path.join(lib, f)));
  }
  return out;
}

/**
 * cuDNN 9 is a small front library that opens its parts (libcudnn_graph, _ops, _cnn, the
 * engines...) by name at run time; opened first from the same folder, they are found even where
 * that folder is on no search path (a pip wheel).
 */
const PARTS = ['graph', 'engines_precompiled', 'engines_runtime_compiled', 'heuristic', 'ops', 'cnn', 'adv'];

function cudnnParts(dir: string): string[] {
  return PARTS.map((p) => path.join(dir, `libcudnn_${p}.so.9`)).filter((f) => existsSync(f));
}

function candidates(): { list: Candidate[]; tried: string[] } {
  const list: Candidate[] = [];
  const tried: string[] = [];
  const env = process.env.CONVNET_CUDNN_PATH;
  if (env) {
    const file = isDir(env) ? path.join(env, LIBRARY) : env;
    list.push({ label: `CONVNET_CUDNN_PATH=${env}`, path: file, preload: cudnnParts(path.dirname(file)) });
  }
  list.push({ label: `${LIBRARY} on the loader path`, path: LIBRARY, preload: [] });
  const site = sitePackages();
  let pip = 0;
  for (const dir of site.dirs) {
    const lib = path.join(dir, 'nvidia', 'cudnn', 'lib');
    if (!existsSync(path.join(lib, LIBRARY))) continue;
    pip++;
    list.push({ label: lib, path: path.join(lib, LIBRARY), preload: [...pipCompanions(path.join(dir, 'nvidia')), ...cudnnParts(lib)] });
  }
  if (pip === 0) tried.push(site.why ?? 'nvidia/cudnn/lib in none of python3\'s site-packages');
  return { list, tried };
}

let cached: CudnnStatus | undefined;

/** Looks for cuDNN once (see the search order above) and says what was found, or why not. */
export function cudnnStatus(): CudnnStatus {
  if (cached) return cached;
  const { list, tried } = candidates();
  const labels: string[] = [];
  for (const c of list) {
    const r = native.cudnnTryLoad(c.path, c.preload);
    if (r.outcome === 'opened') return (cached = { status: 'found', version: r.version, path: r.path });
    if (r.outcome === 'rejected') {
      return (cached = { status: 'unusable', version: r.version, path: r.path, reason: r.reason });
    }
    labels.push(c.label);
  }
  return (cached = { status: 'not found', reason: `cuDNN not found (tried ${[...labels, ...tried].join(', ')})` });
}
