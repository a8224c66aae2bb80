import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Files run in separate processes, two at a time (the machines have two cores); each file
    // checks that it ends with as many live tensors and bytes as it began with.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 600_000,
    hookTimeout: 120_000,
    execArgv: ['--expose-gc'],
    // Every op output starts as NaN, so unwritten elements fail the comparisons.
    env: { CONVNET_POISON: '1' },
  },
});
