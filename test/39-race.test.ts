/**
 * cn.bench.raceConv: every contender is checked against the CPU reference before it is timed,
 * and the timing method follows what the contender does (queued work: device markers; async
 * host work: the wall clock).
 */
import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { trackLeaks } from './helpers.js';

trackLeaks();

const problem = { x: [2, 4, 7, 7], w: [6, 2, 3, 3], padding: 1, groups: 2 };
const timing = { iters: 2, warmup: 1 };

describe('raceConv', () => {
  it('a correct contender that queues work is timed by device markers, and the table shows every row', async () => {
    const rows = await cn.bench.raceConv(problem, (x, w) => cn.conv2d(x, w, null, { padding: 1, groups: 2 }), timing);
    expect(rows.map((r) => r.driver)).toEqual(['yours', 'convnet', 'cudnn']);
    const [yours, ours, cudnn] = rows;
    expect(yours.correct).toBe(true);
    expect(yours.error).toBe(0);
    expect(yours.note).toBe('device markers');
    expect(yours.samples).toHaveLength(2);
    expect(ours.correct).toBe(true);
    expect(cudnn.ms).toBeNull();
    expect(cudnn.note).toBe('cuDNN needs a CUDA device');
    const table = cn.bench.formatRace(rows).split('\n');
    expect(table).toHaveLength(4);
    expect(table[1]).toMatch(/^yours\s+[\d.]+ ms\s+[\d.]+ GF\/s\s+0\.0e\+0\s+1\.00x\s+device markers$/);
  });

  it('a wrong result, or a wrong shape, is marked, not hidden', async () => {
    const zeros = await cn.bench.raceConv(problem, () => cn.zeros([2, 6, 7, 7]), timing);
    expect(zeros[0].correct).toBe(false);
    expect(zeros[0].error).toBe(1);
    expect(zeros[0].note).toBe('device markers; DIFFERS from the reference');
    const shape = await cn.bench.raceConv(problem, () => cn.zeros([2, 6, 5, 5]), timing);
    expect(shape[0].correct).toBe(false);
    expect(shape[0].note).toBe('returned [2,6,5,5], expected [2,6,7,7]; DIFFERS from the reference');
  });

  it('an async contender is timed by the wall clock', async () => {
    const rows = await cn.bench.raceConv(problem, async (x, w) => {
      await cn.synchronize('cpu:0');
      return cn.conv2d(x, w, null, { padding: 1, groups: 2 });
    }, timing);
    expect(rows[0].correct).toBe(true);
    expect(rows[0].note).toBe('wall clock (async)');
  });

  it('refuses a contender that is not a function', async () => {
    await expect(cn.bench.raceConv(problem, 3 as never)).rejects.toThrow(new cn.ShapeError('raceConv: yours must be a function (x, w) => y, received 3'));
  });
});
