/**
 * Memory the garbage collector can see: tensors dropped without dispose() are reclaimed while
 * the program runs, because the addon reports every allocation to V8 as external memory (so a
 * few hundred MB of forgotten tensors trigger a collection, and the FinalizationRegistry frees
 * them). Run in a child process so that this file's own heap does not blur the numbers.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));

describe('dropped tensors are collected', () => {
  it('3,000 forgotten 256x256 tensors (750 MiB) never hold more than a fraction of it', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(here, 'fixtures', 'gc-pressure.ts'), '3000'], {
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, CONVNET_POISON: '0' },
    });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { count: number; peakInUse: number; peakLive: number };
    expect(out.count).toBe(3000);
    // Without the external-memory report all 3,000 stay alive (750 MiB in use); with it the
    // collector keeps them to a few hundred at most.
    expect(out.peakLive).toBeLessThan(1000);
    expect(out.peakInUse).toBeLessThan(256 * 2 ** 20);
  });
});
