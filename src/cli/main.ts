#!/usr/bin/env node
/** The `convnet` command line. */
import { buildInfo, devices } from '../index.js';

const USAGE = `usage: convnet <command> [options]

commands:
  info     version, build flags (CUDA on/off, target architectures) and the devices

options:
  --help   this text`;

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

async function info(): Promise<void> {
  const b = buildInfo();
  console.log(`convnet-cuda ${b.version}`);
  console.log(`node ${process.version} on ${process.platform}-${process.arch}`);
  if (b.cuda) {
    console.log(`CUDA: on (runtime ${b.cudaVersion}; fat binary for ${(b.archs ?? []).join(', ')})`);
  } else {
    console.log('CUDA: off (CPU-only build)');
  }
  const cudaOps = b.ops.filter((o) => o.cuda).map((o) => o.name);
  console.log(`ops: ${b.ops.length} native ops; with CUDA kernels: ${cudaOps.length ? cudaOps.join(', ') : 'none'}`);
  console.log('devices:');
  for (const d of devices()) {
    const cc = d.computeCapability ? `, compute capability ${d.computeCapability}` : '';
    console.log(`  ${d.id.padEnd(8)} ${d.name}${cc}, ${gib(d.memoryBytes)}`);
  }
  if (!devices().some((d) => d.kind === 'cuda')) {
    try {
      // Say why there is no CUDA device, in the words a request for one would get.
      devices();
      (await import('../index.js')).zeros([1], { device: 'cuda:0' }).dispose();
    } catch (e) {
      console.log(`  (no CUDA devices: ${(e as Error).message.replace(/^device: cannot use 'cuda:0': /, '')})`);
    }
  }
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(USAGE);
    return cmd ? 0 : 1;
  }
  if (cmd === 'info') {
    if (rest.includes('--help')) {
      console.log('usage: convnet info\n\nPrints the version, the build flags and the devices.');
      return 0;
    }
    if (rest.length) {
      console.error(`convnet info: unknown option ${rest[0]}\n\n${USAGE}`);
      return 2;
    }
    await info();
    return 0;
  }
  console.error(`convnet: unknown command '${cmd}'\n\n${USAGE}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`convnet: ${(e as Error).message}`);
    process.exit(1);
  },
);
