/**
 * Running the Python peers (bench/peers/*.py): which python has PyTorch, where the scripts are
 * (beside this file in the sources, or in the repository when the bench runs compiled from
 * dist-bench/), and one child process that prints one JSON object.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The path of a peer script, from bench/ or from dist-bench/bench/. */
export function peerScript(name: string): string {
  for (const dir of [path.join(here, 'peers'), path.resolve(here, '..', '..', 'bench', 'peers')]) {
    const p = path.join(dir, name);
    if (existsSync(p)) return p;
  }
  throw new Error(`bench: the peer script ${name} is missing (looked in bench/peers)`);
}

/**
 * The first python that imports torch (and, with `cuda`, sees a GPU): BENCH_PYTHON, then
 * python3 on the PATH, then /usr/bin/python3 (Debian's python3-torch).
 */
export function findPython(cuda: boolean): { python: string; torch: string } | { reason: string } {
  const tried: string[] = [];
  const list = [process.env.BENCH_PYTHON, 'python3', '/usr/bin/python3'].filter((p): p is string => !!p);
  for (const python of [...new Set(list)]) {
    const probe = cuda ? 'import torch; print(torch.__version__, torch.cuda.is_available())' : 'import torch; print(torch.__version__, False)';
    const r = spawnSync(python, ['-c', probe], { encoding: 'utf8', timeout: 120_000 });
    if (r.error) {
      tried.push(`${python}: not found`);
      continue;
    }
    if (r.status !== 0) {
      tried.push(`${python}: cannot import torch`);
      continue;
    }
    const [version, gpu] = r.stdout.trim().split(/\s+/);
    if (cuda && gpu !== 'True') {
      tried.push(`${python}: torch ${version} sees no CUDA device`);
      continue;
    }
    return { python, torch: version };
  }
  return { reason: `no python with PyTorch (${tried.join('; ')}); install it with \`apt-get install python3-torch\` or set BENCH_PYTHON` };
}

/** Runs a peer script and parses the one JSON object it prints. */
export async function runPeer(python: string, script: string, args: string[], threads: number): Promise<unknown> {
  const env = { ...process.env, OMP_NUM_THREADS: `${threads}`, MKL_NUM_THREADS: `${threads}` };
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(python, [script, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (c) => resolve({ code: c, stdout: out, stderr: err }));
  });
  if (code !== 0) throw new Error(`${python} ${path.basename(script)} exited with ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  try {
    return JSON.parse(stdout);
  } catch {
    throw new Error(`${python} ${path.basename(script)} printed no JSON: ${stdout.slice(0, 200)}`);
  }
}
