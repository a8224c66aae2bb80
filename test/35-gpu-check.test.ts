/**
 * The GPU check program (bench/gpu-check/check.mjs) keeps working: run with --cpu it compares
 * cpu:1 with cpu:0 through the very code a GPU run uses, prints its table and writes its JSON;
 * without a CUDA device it says so and exits 0. It runs the compiled dist/, brought up to date
 * first when a source file is newer.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { OPS, compareArrays, runCase, type Case } from '../bench/gpu-check/compare.mjs';
import * as cn from '../src/index.js';
import { ensureDist, trackLeaks } from './helpers.js';

trackLeaks();

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const check = path.join(root, 'bench', 'gpu-check', 'check.mjs');
let tmp: string;

function runCheck(...args: string[]) {
  const r = spawnSync(process.execPath, [check, ...args], { cwd: root, encoding: 'utf8', timeout: 110_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

beforeAll(() => {
  ensureDist(root);
  tmp = mkdtempSync(path.join(tmpdir(), 'gpu-check-'));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('check.mjs', () => {
  it('--cpu --small: every op passes, in the table and in the JSON', () => {
    const out = path.join(tmp, 'cpu');
    const r = runCheck('--cpu', '--small', '--out', out);
    expect(r.status, r.out).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    // The table comes last: a header, a rule, one row per op, the run-time compile row (skipped
    // on a CPU device), the out-of-memory row, the verdict.
    const header = lines.findIndex((l) => /^op +\| cases \| max fwd err \| max grad err \| result$/.test(l));
    expect(header, r.out).toBeGreaterThan(0);
    const rows = lines.slice(header + 2, -1).map((l) => l.split('|').map((s) => s.trim()));
    expect(rows.map((row) => row[0])).toEqual([...OPS, 'cuda.compile', 'copy race', 'out of memory']);
    for (const row of rows) expect(row[4], row.join(' | ')).toBe(row[0] === 'cuda.compile' ? 'skipped' : 'pass');
    expect(lines.at(-1)).toMatch(/^PASS: cpu:1 against cpu:0, \d+ cases$/);

    const report = JSON.parse(readFileSync(path.join(out, 'gpu-check.json'), 'utf8'));
    expect(report.summary.map((s: { op: string }) => s.op)).toEqual(OPS);
    expect(new Set(report.cases.map((c: { op: string }) => c.op))).toEqual(new Set(OPS));
    expect(report.cases.every((c: { status: string }) => c.status === 'pass')).toBe(true);
    expect(report.device.id).toBe('cpu:1');
    expect(report.peer).toBe('cpu:2');
    expect(report.outOfMemory.status).toBe('pass');
    expect(report.copyRace).toMatchObject({ op: 'copy race', label: 'cpu:1 <-> cpu:2', status: 'pass' });
    expect(report.runtimeCompile).toMatchObject({ status: 'skipped', detail: 'cpu:1 is not a CUDA device' });
    expect(report.pass).toBe(true);
    expect(readFileSync(path.join(out, 'gpu-check.log'), 'utf8')).toContain('PASS: cpu:1 against cpu:0');
  });

  it('--all runs the sanitizer passes as child processes (here with a stand-in for compute-sanitizer)', () => {
    const fake = path.join(tmp, 'fake-sanitizer');
    // Drops "--tool MODE --error-exitcode 9" and runs the rest, as compute-sanitizer does.
    writeFileSync(fake, '#!/bin/sh\nshift 4\n"$@"\ns=$?\necho "========= ERROR SUMMARY: 0 errors"\nexit $s\n');
    chmodSync(fake, 0o755);
    const out = path.join(tmp, 'all');
    const r = runCheck('--cpu', '--all', '--small', '--only', 'relu,maxPool2d', '--sanitizer', fake, '--out', out);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/^memcheck \(--small\) +\| +\d+ \| +- \| +- \| pass$/m);
    expect(r.out).toMatch(/^racecheck \(--small\) +\| +\d+ \| +- \| +- \| pass$/m);
    const report = JSON.parse(readFileSync(path.join(out, 'gpu-check.json'), 'utf8'));
    expect(report.sanitizers.map((s: { tool: string; status: string }) => `${s.tool} ${s.status}`)).toEqual(['memcheck pass', 'racecheck pass']);
    expect(existsSync(path.join(out, 'sanitize-memcheck', 'gpu-check.json'))).toBe(true);
  });

  it('without --cpu on a machine with no CUDA device: says why and exits 0', (ctx) => {
    if (cn.devices().some((d) => d.kind === 'cuda')) {
      console.log('skipped: this machine has a CUDA device');
      ctx.skip();
    }
    const r = runCheck('--small', '--out', path.join(tmp, 'none'));
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/^no CUDA device: .+$/m);
  });
});

describe('compare.mjs finds what a broken kernel does', () => {
  const env = { device: 'cpu:1', reference: 'cpu:0' };
  const base = (forward: Case['forward'], exact = false): Case => ({
    op: 'relu', label: 'x[3,5]', seed: 3, exact, inputs: [{ name: 'x', shape: [3, 5], grad: true }], forward,
  });

  it('wrong values, forward and gradient', () => {
    const r = runCase(cn, base((c, [x], ctx) => (ctx.device === 'cpu:1' ? c.dropout(x, { p: 0.5, seed: 1 }) : c.relu(x))), env);
    expect(r.status).toBe('fail');
    expect(r.fwdErr).toBeGreaterThan(1e-4);
    expect(r.gradErr).toBeGreaterThan(1e-4);
  });

  it('an element no kernel wrote (NaN)', () => {
    // The device's result has a first row no one wrote.
    const r = runCase(cn, base((c, [x], ctx) => c.concat([c.full([1, 5], 0, { device: ctx.device }), x], 0), true), env);
    expect(r.status).toBe('pass');
    const broken = runCase(cn, base((c, [x], ctx) => {
      const first = c.tensor([ctx.device === 'cpu:1' ? NaN : 0, 0, 0, 0, 0], [1, 5], { device: ctx.device });
      return c.concat([first, x], 0);
    }, true), env);
    expect(broken.status).toBe('fail');
    expect(broken.detail).toBe('1 NaN (unwritten) elements; 1 elements differ from the reference bit for bit');
    expect(broken.gradErr).toBe(0);
  });

  it('a launch without a CUDA kernel is reported as such', () => {
    const r = runCase(cn, base((c, [x], ctx) => {
      if (ctx.device === 'cpu:1') throw new cn.DeviceError("relu_forward: no CUDA kernel on 'cuda:0'");
      return c.relu(x);
    }), { ...env, noKernel: ['relu_forward'] });
    expect(r.status).toBe('no kernel');
  });

  it('exact cases count differing bits; the error is normwise', () => {
    const a = new Float32Array([1, 2, 3]);
    expect(compareArrays(a, new Float32Array([1, 2, 3]))).toEqual({ err: 0, nan: 0, refNan: 0, mismatches: 0 });
    const r = compareArrays(a, new Float32Array([1, 2, 4]));
    expect(r.mismatches).toBe(1);
    expect(r.err).toBeCloseTo(1 / Math.sqrt(21), 6);
  });
});
