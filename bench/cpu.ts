/**
 * The `cpu` suite: AlexNet-mini (width 0.5, batch 128 by default) on our CPU device, beside
 * the same network in PyTorch (peers/torch_cpu.py, run as a child process).
 *
 * Trials:
 *   - one per layer op (conv, relu, lrn, maxpool, linear, dropout, softmax cross-entropy) at the
 *     shapes it has in the network: the forward time of the op alone, and the time of
 *     `y.backward(gradOutput)` through a one-op graph over a leaf input (the gradient tensor is
 *     made and synchronised before the clock starts, so only the backward kernels are timed);
 *   - the SGD update of all parameters (momentum 0.9, weight decay 5e-4, lr 0.01);
 *   - the whole training step: forward, loss, backward, SGD on every parameter, inside
 *     `cn.scope` so each step frees what it made; `cn.memory()` is read after every step and
 *     must not change across steps.
 * Every timed region ends with `await cn.synchronize('cpu:0')`. Medians over --iters timed
 * iterations after --warmup untimed ones. Both drivers use the same thread count: ours reads
 * CONVNET_CPU_THREADS (set by main.ts before the library loads), PyTorch gets --threads.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as cn from '../src/index.js';
import {
  alexnetMini,
  applyLayer,
  describeLayer,
  forwardLoss,
  initParams,
  paramList,
  randomLabels,
  type Layer,
} from './alexnet_mini.js';
import {
  fixed,
  now,
  shapeText,
  stats,
  table,
  type BenchOptions,
  type Driver,
  type Stats,
  type Suite,
  type SuiteReport,
  type TrialResult,
} from './harness.js';
import { runPeer } from './peers.js';

const DEVICE = 'cpu:0';
const SGD = { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 } as const;
const here = path.dirname(fileURLToPath(import.meta.url));

interface OpResult extends TrialResult {
  kind: string;
  inShape: number[];
  outShape: number[];
  fwd: Stats;
  bwd?: Stats;
}

interface StepResult extends TrialResult {
  ms: Stats;
  imagesPerSec: number;
  lossFirst: number;
  lossLast: number;
  params: number;
  threads?: number;
  /** cn.memory() after each timed step, and whether everything was freed at the end. */
  memory?: { stable: boolean; freed: boolean; tensors: number[]; bytes: number[] };
}

type MemorySnapshot = { tensors: number; bytes: number };

function snapshot(): MemorySnapshot {
  const m = cn.memory();
  return { tensors: m.tensors, bytes: m.bytes[DEVICE] ?? 0 };
}

const sync = () => cn.synchronize(DEVICE);

/** The thread count our CPU device reports for itself (its name ends in "(N threads)"). */
function ourThreads(): number | undefined {
  const m = /\((\d+) threads?\)/.exec(cn.devices().find((d) => d.id === DEVICE)?.name ?? '');
  return m ? Number(m[1]) : undefined;
}

/** Forward and backward of one layer alone, at its shapes in the network. */
async function measureOp(l: Layer, first: boolean, opts: BenchOptions): Promise<OpResult> {
  const before = snapshot();
  const labels = randomLabels(opts.batch, opts.seed);
  // The network's input needs no gradient (conv1 computes only dW, db); later inputs do.
  const x = cn.randn(l.inShape, { seed: opts.seed, requiresGrad: !first });
  const p = initParams([l], opts.seed + 1).get(l.name);
  const leaves = [x, ...(p ? [p.w, p.b] : [])];
  const fwd: number[] = [];
  const bwd: number[] = [];
  for (let i = 0; i < opts.warmup + opts.iters; i++) {
    await sync();
    const t0 = now();
    const y = applyLayer(l, x, p, i, labels);
    await sync();
    const t1 = now();
    const g = cn.randn(y.shape, { seed: opts.seed + 100 + i });
    await sync();
    const t2 = now();
    y.backward(g);
    await sync();
    const t3 = now();
    y.dispose();
    g.dispose();
    cn.zeroGrad(leaves);
    if (i >= opts.warmup) {
      fwd.push(t1 - t0);
      bwd.push(t3 - t2);
    }
  }
  leaves.forEach((t) => t.dispose());
  const after = snapshot();
  if (after.tensors !== before.tensors || after.bytes !== before.bytes) {
    throw new Error(`cpu suite: ${l.name} left tensors behind: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`);
  }
  return {
    trial: l.name, driver: 'convnet', kind: describeLayer(l), inShape: l.inShape, outShape: l.outShape,
    fwd: stats(fwd), bwd: stats(bwd),
  };
}

/** One fused SGD update of every parameter of the network. */
async function measureSgd(layers: Layer[], opts: BenchOptions): Promise<OpResult> {
  const params = paramList(initParams(layers, opts.seed));
  const grads = params.map((t, k) => cn.randn(t.shape, { seed: opts.seed + 200 + k }));
  const velocity = params.map((t) => cn.zeros(t.shape));
  const times: number[] = [];
  for (let i = 0; i < opts.warmup + opts.iters; i++) {
    await sync();
    const t0 = now();
    params.forEach((t, k) => cn.sgdUpdate(t, grads[k], velocity[k], SGD));
    await sync();
    if (i >= opts.warmup) times.push(now() - t0);
  }
  const count = params.reduce((a, t) => a + t.size, 0);
  [...params, ...grads, ...velocity].forEach((t) => t.dispose());
  return { trial: 'sgd', driver: 'convnet', kind: 'sgd momentum', inShape: [count], outShape: [count], fwd: stats(times) };
}

/** The whole training step, images per second. */
async function measureStep(layers: Layer[], opts: BenchOptions): Promise<StepResult> {
  const start = snapshot();
  const params = initParams(layers, opts.seed);
  const list = paramList(params);
  const velocity = list.map((t) => cn.zeros(t.shape));
  const times: number[] = [];
  const losses: number[] = [];
  const mem: MemorySnapshot[] = [];
  for (let i = 0; i < opts.warmup + opts.iters; i++) {
    const x = cn.randn(layers[0].inShape, { seed: opts.seed * 1000 + i });
    const labels = randomLabels(opts.batch, opts.seed * 1000 + i);
    await sync();
    const t0 = now();
    const loss = cn.scope(() => {
      const loss = forwardLoss(layers, params, x, labels, i);
      loss.backward();
      list.forEach((t, k) => cn.sgdUpdate(t, t.grad!, velocity[k], SGD));
      cn.zeroGrad(list);
      return loss;
    });
    await sync();
    const t = now() - t0;
    losses.push((await loss.data())[0]);
    loss.dispose();
    x.dispose();
    if (i >= opts.warmup) {
      times.push(t);
      mem.push(snapshot());
    }
  }
  [...list, ...velocity].forEach((t) => t.dispose());
  const end = snapshot();
  const ms = stats(times);
  const stable = mem.every((m) => m.tensors === mem[0].tensors && m.bytes === mem[0].bytes);
  const freed = end.tensors === start.tensors && end.bytes === start.bytes;
  return {
    trial: 'step', driver: 'convnet', ms, imagesPerSec: opts.batch / (ms.median / 1000),
    lossFirst: losses[0], lossLast: losses[losses.length - 1], params: list.reduce((a, t) => a + t.size, 0),
    threads: ourThreads(),
    memory: { stable, freed, tensors: mem.map((m) => m.tensors), bytes: mem.map((m) => m.bytes) },
  };
}

const ours: Driver = {
  name: 'convnet',
  async unavailable() {
    return cn.devices().some((d) => d.id === DEVICE) ? null : `no ${DEVICE} device`;
  },
  async run(opts) {
    const layers = alexnetMini(opts.batch, opts.width);
    const results: TrialResult[] = [];
    for (const [k, l] of layers.entries()) {
      if (l.kind === 'flatten') continue;
      results.push(await measureOp(l, k === 0, opts));
    }
    results.push(await measureSgd(layers, opts));
    results.push(await measureStep(layers, opts));
    return results;
  },
};

/** The Python that has PyTorch: Debian's python3-torch is installed for /usr/bin/python3. */
const PYTHON = process.env.BENCH_PYTHON ?? '/usr/bin/python3';

let torchVersion: string | null = null;
let torchBlas: { info: string; library: string | null } | null = null;

const torch: Driver = {
  name: 'pytorch',
  async unavailable() {
    const r = spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0) {
      torchVersion = r.stdout.trim();
      return null;
    }
    const why = r.error ? `${PYTHON} not found` : `${PYTHON} cannot import torch`;
    return `${why}; install PyTorch with \`apt-get install python3-torch\` (or set BENCH_PYTHON to a python that has torch)`;
  },
  async run(opts) {
    const script = path.join(here, 'peers', 'torch_cpu.py');
    const args = ['--batch', `${opts.batch}`, '--width', `${opts.width}`, '--iters', `${opts.iters}`,
      '--warmup', `${opts.warmup}`, '--threads', `${opts.threads}`, '--seed', `${opts.seed}`];
    const r = (await runPeer(PYTHON, script, args, opts.threads)) as {
      torch: string; threads: number; blas: { info: string; library: string | null };
      ops: { name: string; inShape: number[]; outShape: number[]; fwd: Stats; bwd: Stats }[];
      sgd: { params: number; fwd: Stats };
      step: { ms: Stats; imagesPerSec: number; lossFirst: number; lossLast: number; params: number };
    };
    torchVersion = r.torch;
    torchBlas = r.blas;
    const layers = new Map(alexnetMini(opts.batch, opts.width).map((l) => [l.name, l]));
    const results: TrialResult[] = r.ops.map((o) => {
      const l = layers.get(o.name);
      if (!l || shapeText(l.inShape) !== shapeText(o.inShape) || shapeText(l.outShape) !== shapeText(o.outShape)) {
        throw new Error(`cpu suite: the PyTorch peer's ${o.name} (${shapeText(o.inShape)} -> ${shapeText(o.outShape)}) does not match ours`);
      }
      return { trial: o.name, driver: 'pytorch', kind: describeLayer(l), inShape: o.inShape, outShape: o.outShape, fwd: o.fwd, bwd: o.bwd };
    });
    results.push({ trial: 'sgd', driver: 'pytorch', kind: 'sgd momentum', inShape: [r.sgd.params], outShape: [r.sgd.params], fwd: r.sgd.fwd });
    results.push({ trial: 'step', driver: 'pytorch', ...r.step, threads: r.threads });
    return results;
  },
};

function find<T extends TrialResult>(results: TrialResult[], trial: string, driver: string): T | undefined {
  return results.find((r) => r.trial === trial && r.driver === driver) as T | undefined;
}

/** Short column labels: ours is the reference, peers are named. */
const LABEL: Record<string, string> = { convnet: '', pytorch: 'torch ' };

function report(results: TrialResult[], opts: BenchOptions, log: (line: string) => void): void {
  const drivers = [ours.name, torch.name].filter((d) => results.some((r) => r.driver === d));
  if (drivers.length === 0) return;
  const compare = drivers.includes(ours.name) && drivers.includes(torch.name);
  const trials = alexnetMini(opts.batch, opts.width).filter((l) => l.kind !== 'flatten').map((l) => l.name).concat('sgd');
  const header = ['op', 'what', 'shape (in -> out)'];
  for (const d of drivers) header.push(`${LABEL[d]}fwd ms`, `${LABEL[d]}bwd ms`);
  if (compare) header.push('ours/torch');
  const sums = drivers.map(() => 0);
  const rows: string[][] = [];
  for (const trial of trials) {
    const byDriver = drivers.map((d) => find<OpResult>(results, trial, d));
    const any = byDriver.find((r) => r !== undefined);
    if (!any) continue;
    const shape = trial === 'sgd' ? `${any.inShape[0]} params` : `${shapeText(any.inShape)} -> ${shapeText(any.outShape) || 'scalar'}`;
    const row = [trial, any.kind, shape];
    const totals = byDriver.map((r) => (r ? r.fwd.median + (r.bwd?.median ?? 0) : NaN));
    byDriver.forEach((r, k) => {
      row.push(fixed(r?.fwd.median), fixed(r?.bwd?.median));
      sums[k] += totals[k];
    });
    if (compare) row.push(fixed(totals[0] / totals[1]));
    rows.push(row);
  }
  const total = ['sum fwd+bwd', '', ''];
  for (const s of sums) total.push('', fixed(s));
  if (compare) total.push(fixed(sums[0] / sums[1]));
  rows.push(total);
  log('');
  log(`per-op times in ms, medians of ${opts.iters} after ${opts.warmup} warm-up` +
    (compare ? ' (ours/torch: our fwd+bwd time over PyTorch\'s; below 1 is faster):' : ':'));
  log(table(header, rows, 3));

  log('');
  log(`training step: batch ${opts.batch}, forward + loss + backward + SGD (lr ${SGD.lr}, momentum ${SGD.momentum}, ` +
    `weight decay ${SGD.weightDecay}), medians of ${opts.iters} after ${opts.warmup} warm-up`);
  const stepRows: string[][] = [];
  const steps = drivers.map((d) => find<StepResult>(results, 'step', d));
  steps.forEach((st, k) => {
    if (!st) return;
    const name = drivers[k] === ours.name ? `convnet ${DEVICE}` : `pytorch ${torchVersion ?? ''}`.trim();
    stepRows.push([name, `${st.threads ?? opts.threads}`, fixed(st.ms.median, 1), fixed(st.ms.min, 1), fixed(st.ms.max, 1),
      fixed(st.imagesPerSec, 1), `${fixed(st.lossFirst, 3)} -> ${fixed(st.lossLast, 3)}`]);
  });
  log(table(['driver', 'threads', 'ms/step', 'min', 'max', 'images/s', 'loss first -> last'], stepRows, 1));
  const step = find<StepResult>(results, 'step', ours.name);
  const tstep = find<StepResult>(results, 'step', torch.name);
  if (step && tstep) log(`ours/torch images/s: ${fixed(step.imagesPerSec / tstep.imagesPerSec)}`);
  if (tstep && torchBlas && /\/blas\/libblas\.so/.test(torchBlas.library ?? '')) {
    log(`note: PyTorch's BLAS here is the reference libblas (${torchBlas.library}), so its linear layers are slow ` +
      '(its convolutions use oneDNN); with OpenBLAS installed, libblas.so.3 would point to it instead.');
  }
  if (step?.memory) {
    const m = step.memory;
    log(m.stable
      ? `memory across steps: stable (${m.tensors[0]} live tensors, ${fixed(m.bytes[0] / 2 ** 20, 2)} MiB on ${DEVICE} after each step)`
      : `memory across steps: NOT stable: tensors ${m.tensors.join(', ')}; bytes ${m.bytes.join(', ')}`);
    log(`memory after the run: ${m.freed ? 'all freed' : 'NOT all freed (see cn.memory())'}`);
  }
}

export const cpuSuite: Suite = {
  name: 'cpu',
  describe: 'AlexNet-mini on the CPU: per-op fwd/bwd times and the training step, beside PyTorch',
  drivers: [ours.name, torch.name],
  defaults: { iters: 30, warmup: 3, batch: 128, width: 0.5 },
  async run(opts, log): Promise<SuiteReport> {
    const results: TrialResult[] = [];
    const skipped: { driver: string; reason: string }[] = [];
    const failed: { driver: string; error: string }[] = [];
    const threadInfo = cn.devices().find((d) => d.id === DEVICE)?.name ?? '?';
    log(`devices: ${DEVICE} is "${threadInfo}"; PyTorch gets --threads ${opts.threads}`);
    const all = [ours, torch];
    // One driver at a time: they share the cores.
    for (const d of all.filter((d) => !opts.drivers || opts.drivers.includes(d.name))) {
      const why = await d.unavailable();
      if (why) {
        skipped.push({ driver: d.name, reason: why });
        log(`${d.name}: skipped: ${why}`);
        continue;
      }
      const t0 = now();
      process.stderr.write(`running ${d.name}...\n`);
      try {
        results.push(...(await d.run(opts)));
      } catch (e) {
        const error = e instanceof Error ? e.message : String(e);
        failed.push({ driver: d.name, error });
        log(`${d.name}: FAILED: ${error}`);
        continue;
      }
      process.stderr.write(`${d.name} done in ${fixed((now() - t0) / 1000, 1)} s\n`);
    }
    report(results, opts, log);
    const layers = alexnetMini(opts.batch, opts.width);
    return {
      results,
      skipped,
      failed,
      notes: {
        device: threadInfo,
        torch: torchVersion,
        torchBlas,
        sgd: SGD,
        layers: layers.map((l) => ({ name: l.name, what: describeLayer(l), inShape: l.inShape, outShape: l.outShape, weight: l.weight })),
      },
    };
  },
};
