/**
 * Benchmark driver: `tsx bench/main.ts <suite> [options]` (or `npm run bench -- <suite>`).
 *
 * A suite measures a list of trials (an op at given shapes, a training step) with a list of
 * drivers (our library, a peer such as PyTorch or cuDNN), one driver at a time, and prints
 * them side by side. Every timing is the median of --iters timed iterations after --warmup
 * untimed ones; timed regions of our library end with `await cn.synchronize(device)` because
 * its ops only queue work on a device thread (see harness.ts). The header names the machine,
 * the date, the git commit and the versions; --json FILE writes every number.
 *
 * Suites are loaded only when chosen: the library reads CONVNET_CPU_THREADS when it loads, so
 * --threads is applied to the environment first.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { environment, type BenchOptions, type Suite } from './harness.js';

const SUITES: Record<string, { describe: string; load: () => Promise<Suite> }> = {
  cpu: {
    describe: 'AlexNet-mini on the CPU: per-op fwd/bwd and training images/s, beside PyTorch',
    load: async () => (await import('./cpu.js')).cpuSuite,
  },
  conv: {
    describe: 'every AlexNet (or -mini) layer, fwd / bwd-data / bwd-filter: ours vs cuDNN vs PyTorch',
    load: async () => (await import('./conv.js')).convSuite,
  },
  alexnet: {
    describe: 'the whole training step in images/s, one tower and two towers',
    load: async () => (await import('./alexnet.js')).alexnetSuite,
  },
};

const USAGE = `usage: tsx bench/main.ts <suite> [--iters N] [--warmup N] [--batch N] [--width W]
                         [--threads N] [--seed N] [--drivers A,B] [--json FILE] [--rounds N]
                         [--model M] [--device D] [--precision P] [--html FILE]
       npm run bench -- <suite> [options]
       npx convnet bench <suite> [options]
       node dist-bench/bench/main.js <suite> [options]   (compiled: npm run build:bench)

suites:
${Object.entries(SUITES).map(([k, s]) => `  ${k.padEnd(8)} ${s.describe}`).join('\n')}
  data     decode + augment images/s per core (--data-dir DIR, --images N, --threads T; default: generated JPEGs)

options:
  --iters N     timed iterations per measurement (default 30; conv: 20 on a GPU, 5 on a CPU)
  --warmup N    untimed iterations before them (default 3)
  --batch N     batch size (default 128; conv on a CPU: 8 for alexnet, 64 for alexnet-mini)
  --width W     width factor of AlexNet-mini (default 0.5; conv: 1)
  --model M     conv, alexnet suites: alexnet (default) or alexnet-mini
  --device D    conv, alexnet suites: where our kernels run (default cuda:0 when there is one, else cpu:0;
                alexnet: a comma-separated pair for two towers, e.g. cuda:0,cuda:1)
  --precision P conv suite: fp32 (default: no tensor-core math on any side), tf32 or bf16 for cuDNN and
                PyTorch; our kernels are fp32 only and say so
  --html FILE   conv suite: the HTML page (default: beside --json, same name, .html)
  --threads N   CPU threads for every driver (default CONVNET_CPU_THREADS, else the core count)
  --seed N      seed of the weights and the random data (default 1)
  --rounds N    conv suite: run every driver over all layers N times (ours, then the peers, per
                round) and report each row's best round; for machines whose speed drifts (default 1)
  --drivers A,B only these drivers (cpu, alexnet: convnet, pytorch; conv: convnet, cudnn, pytorch; default all)
  --json FILE   also write every number to FILE
  --help        this text`;

class UsageError extends Error {}

type NumericOption = 'iters' | 'warmup' | 'batch' | 'width' | 'threads' | 'seed' | 'rounds';

interface Parsed {
  suite: string;
  opts: Partial<BenchOptions>;
  json: string | null;
  html: string | null;
}

function parse(argv: string[]): Parsed | 'help' {
  if (argv.includes('--help') || argv.includes('-h')) return 'help';
  let suite: string | null = null;
  let json: string | null = null;
  let html: string | null = null;
  const opts: Partial<BenchOptions> = {};
  const numeric: Record<string, [NumericOption, (v: number) => boolean, string]> = {
    '--iters': ['iters', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'],
    '--warmup': ['warmup', (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer'],
    '--batch': ['batch', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'],
    '--width': ['width', (v) => v > 0 && v <= 4, 'a number in (0, 4]'],
    '--threads': ['threads', (v) => Number.isInteger(v) && v >= 1 && v <= 256, 'an integer in [1, 256]'],
    '--seed': ['seed', (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer'],
    '--rounds': ['rounds', (v) => Number.isInteger(v) && v >= 1 && v <= 20, 'an integer in [1, 20]'],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    if (flag in numeric) {
      const [key, ok, what] = numeric[flag];
      const raw = value();
      const v = Number(raw);
      if (raw.trim() === '' || !ok(v)) throw new UsageError(`${flag} must be ${what}, received '${raw}'`);
      opts[key] = v;
    } else if (flag === '--json') {
      json = value();
    } else if (flag === '--html') {
      html = value();
    } else if (flag === '--model') {
      const m = value();
      if (m !== 'alexnet' && m !== 'alexnet-mini') throw new UsageError(`--model must be alexnet or alexnet-mini, received '${m}'`);
      opts.model = m;
    } else if (flag === '--device') {
      const d = value().trim();
      if (!/^(cpu|cuda)(:\d+)?(,(cpu|cuda)(:\d+)?)*$/.test(d)) throw new UsageError(`--device must be like cpu:0 or cuda:0 (or a pair: cuda:0,cuda:1), received '${d}'`);
      opts.device = d;
    } else if (flag === '--precision') {
      const p = value();
      if (p !== 'fp32' && p !== 'tf32' && p !== 'bf16') throw new UsageError(`--precision must be fp32, tf32 or bf16, received '${p}'`);
      opts.precision = p;
    } else if (flag === '--drivers') {
      const list = value().split(',').map((d) => d.trim()).filter((d) => d !== '');
      if (list.length === 0) throw new UsageError('--drivers needs a comma-separated list of driver names');
      opts.drivers = list;
    } else if (flag.startsWith('-')) {
      throw new UsageError(`unknown option ${flag}`);
    } else if (suite === null) {
      suite = flag;
    } else {
      throw new UsageError(`unexpected argument '${flag}' (one suite at a time)`);
    }
  }
  if (suite === null) throw new UsageError('no suite given');
  if (!(suite in SUITES)) throw new UsageError(`unknown suite '${suite}' (suites: ${Object.keys(SUITES).join(', ')})`);
  return { suite, opts, json, html };
}

function defaultThreads(): number {
  const env = Number(process.env.CONVNET_CPU_THREADS);
  return Number.isInteger(env) && env >= 1 ? env : os.cpus().length;
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'data') {
    // The data pipeline is not a drivers x trials suite: its own script, its own options.
    await (await import('./data.js')).dataBench(argv.slice(1));
    return 0;
  }
  let parsed: Parsed | 'help';
  try {
    parsed = parse(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`bench: ${e.message}\n\n${USAGE}`);
    return 2;
  }
  if (parsed === 'help') {
    console.log(USAGE);
    return 0;
  }
  const threads = parsed.opts.threads ?? defaultThreads();
  process.env.CONVNET_CPU_THREADS = `${threads}`;
  const suite = await SUITES[parsed.suite].load();
  const unknown = (parsed.opts.drivers ?? []).filter((d) => !suite.drivers.includes(d));
  if (unknown.length) {
    console.error(`bench: unknown driver ${unknown.join(', ')} for suite ${suite.name} (drivers: ${suite.drivers.join(', ')})\n\n${USAGE}`);
    return 2;
  }
  if ((parsed.opts.rounds ?? 1) > 1 && suite.name !== 'conv') {
    console.error(`bench: --rounds applies to the conv suite only, not ${suite.name}\n\n${USAGE}`);
    return 2;
  }
  const opts: BenchOptions = {
    iters: 30, warmup: 3, batch: 128, width: 0.5, seed: 1, drivers: null, model: 'alexnet-mini', device: null, precision: 'fp32',
    ...suite.defaults,
    ...(suite.resolve?.(parsed.opts) ?? {}),
    ...parsed.opts,
    threads,
  };
  const { buildInfo } = await import('../src/index.js');
  const env = environment(buildInfo().version);
  console.log(`convnet-cuda ${env.version} bench: ${suite.name} (${suite.describe})`);
  console.log(`machine: ${env.cpu}, ${env.cores} cores, ${env.memoryGiB} GiB, ${env.platform}`);
  console.log(`date ${env.date}; commit ${env.commit ?? 'unknown (git rev-parse failed)'}; node ${env.node}`);
  console.log(`options: batch ${opts.batch}, width ${opts.width}, iters ${opts.iters}, warm-up ${opts.warmup}, threads ${opts.threads}, seed ${opts.seed}` +
    (parsed.suite === 'cpu' ? '' : `, model ${opts.model}, device ${opts.device ?? 'default'}, precision ${opts.precision}`) +
    ((opts.rounds ?? 1) > 1 ? `, rounds ${opts.rounds} (each row: its best round)` : ''));
  const t0 = performance.now();
  const report = await suite.run(opts, (line) => console.log(line));
  const seconds = (performance.now() - t0) / 1000;
  console.log(`\n${suite.name} suite finished in ${seconds.toFixed(1)} s`);
  const { html, ...data } = report;
  if (parsed.json) {
    mkdirSync(path.dirname(path.resolve(parsed.json)), { recursive: true });
    writeFileSync(parsed.json, `${JSON.stringify({ suite: suite.name, environment: env, options: opts, seconds, ...data }, null, 2)}\n`);
    console.log(`wrote ${parsed.json}`);
  }
  const htmlFile = parsed.html ?? (parsed.json ? path.join(path.dirname(parsed.json), `${path.basename(parsed.json, '.json')}.html`) : null);
  if (html && htmlFile) {
    mkdirSync(path.dirname(path.resolve(htmlFile)), { recursive: true });
    writeFileSync(htmlFile, html);
    console.log(`wrote ${htmlFile}`);
  }
  return report.failed.length ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exitCode = 1;
  },
);
