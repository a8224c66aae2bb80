/**
 * Checkpoints: safetensors round trips, every malformed header rejected with an exact
 * FormatError, module mismatches named, and atomic saves checked by killing a real process
 * in the middle of one.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { trackLeaks, uniform } from './helpers.js';

trackLeaks();

const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = mkdtempSync(path.join(os.tmpdir(), 'convnet-ckpt-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let fileNo = 0;
const fresh = (name = 'model') => path.join(tmp, `${name}-${++fileNo}.safetensors`);

const hasCuda = cn.devices().some((d) => d.kind === 'cuda');

/** The smallest thing with namedParameters(), standing in for nn.Module. */
class Params implements cn.NamedParameters {
  constructor(readonly params: [string, cn.Tensor][]) {}
  namedParameters(): Iterable<[string, cn.Tensor]> {
    return this.params;
  }
  dispose(): void {
    for (const [, t] of this.params) t.dispose();
  }
}

function model(seed: number, device = 'cpu'): Params {
  return new Params([
    ['conv1.weight', cn.tensor(uniform(4 * 1 * 3 * 3, seed), [4, 1, 3, 3], { device, requiresGrad: true })],
    ['conv1.bias', cn.tensor(uniform(4, seed + 1), [4], { device, requiresGrad: true })],
    ['fc.weight', cn.tensor(uniform(10 * 7, seed + 2), [10, 7], { device, requiresGrad: true })],
    ['fc.bias', cn.tensor(uniform(10, seed + 3), [10], { device, requiresGrad: true })],
  ]);
}

async function values(m: Params): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const [name, t] of m.params) out[name] = [...(await t.data())];
  return out;
}

async function rejection(p: Promise<unknown>, cls: new (...a: never[]) => Error = cn.FormatError): Promise<string> {
  let thrown: unknown;
  try {
    await p;
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `expected a ${cls.name}`).toBeInstanceOf(cls);
  expect((thrown as Error).constructor).toBe(cls);
  return (thrown as Error).message;
}

/** A file: an 8-byte length (the header's, unless given), the header text, the data bytes. */
function rawFile(header: string | object, dataBytes = 0, length?: bigint): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(length ?? BigInt(h.byteLength));
  const file = fresh('bad');
  writeFileSync(file, Buffer.concat([len, h, Buffer.alloc(dataBytes, 7)]));
  return file;
}

describe('round trips', () => {
  it('save then load restores every parameter and returns the metadata', async () => {
    const a = model(1);
    const b = model(100);
    const file = fresh();
    await cn.save(file, a, { epoch: '3', loader: JSON.stringify({ seed: 1, epoch: 3, batch: 0 }) });
    expect(await values(b)).not.toEqual(await values(a));
    const { metadata } = await cn.load(file, b);
    expect({ ...metadata }).toEqual({ epoch: '3', loader: '{"seed":1,"epoch":3,"batch":0}' });
    expect(await values(b)).toEqual(await values(a));
    expect(readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);
    a.dispose();
    b.dispose();
  });

  it('writes the safetensors layout: little-endian length, a padded JSON header, the data in order', async () => {
    const m = model(2);
    const file = fresh();
    await cn.save(file, m);
    const buf = readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    expect(JSON.parse(buf.toString('utf8', 8, 8 + n))).toEqual({
      'conv1.weight': { dtype: 'F32', shape: [4, 1, 3, 3], data_offsets: [0, 144] },
      'conv1.bias': { dtype: 'F32', shape: [4], data_offsets: [144, 160] },
      'fc.weight': { dtype: 'F32', shape: [10, 7], data_offsets: [160, 440] },
      'fc.bias': { dtype: 'F32', shape: [10], data_offsets: [440, 480] },
    });
    expect(buf.byteLength).toBe(8 + n + 480);
    const first = new Float32Array(new Uint8Array(buf.subarray(8 + n, 8 + n + 144)).buffer);
    expect([...first]).toEqual([...(await m.params[0][1].data())]);
    m.dispose();
  });

  it('saveTensors / loadTensors keep float32, int32 and empty tensors', async () => {
    const f = cn.tensor(uniform(6, 5), [2, 3]);
    const i = cn.tensor(new Int32Array([-5, 0, 2147483647]), [3]);
    const e = cn.zeros([0, 4]);
    const file = fresh();
    await cn.saveTensors(file, { f, i, e }, { note: 'hi' });
    const { tensors, metadata } = await cn.loadTensors(file);
    expect(Object.keys(tensors)).toEqual(['f', 'i', 'e']);
    expect(tensors.f).toEqual({ dtype: 'F32', shape: [2, 3], data: await f.data() });
    expect(tensors.i).toEqual({ dtype: 'I32', shape: [3], data: new Int32Array([-5, 0, 2147483647]) });
    expect(tensors.e).toEqual({ dtype: 'F32', shape: [0, 4], data: new Float32Array(0) });
    expect({ ...metadata }).toEqual({ note: 'hi' });
    [f, i, e].forEach((t) => t.dispose());
  });

  it('a second save replaces the first', async () => {
    const file = fresh();
    const a = model(3);
    const b = model(4);
    await cn.save(file, a, { n: '1' });
    await cn.save(file, b, { n: '2' });
    const c = model(5);
    expect((await cn.load(file, c)).metadata.n).toBe('2');
    expect(await values(c)).toEqual(await values(b));
    [a, b, c].forEach((m) => m.dispose());
  });

  it.skipIf(!hasCuda)('saves from and loads into parameters on a GPU', async () => {
    const a = model(6, 'cuda:0');
    const b = model(7, 'cuda:0');
    const file = fresh();
    await cn.save(file, a);
    await cn.load(file, b);
    expect(await values(b)).toEqual(await values(a));
    const onCpu = model(8);
    await cn.load(file, onCpu);
    expect(await values(onCpu)).toEqual(await values(a));
    [a, b, onCpu].forEach((m) => m.dispose());
  });
});

describe('malformed files', () => {
  const f32 = (shape: number[], offsets: number[]) => ({ dtype: 'F32', shape, data_offsets: offsets });
  const cases: [string, () => string, (f: string) => string][] = [
    ['missing', () => path.join(tmp, 'nothing.safetensors'), (f) => `${f} does not exist`],
    ['shorter than the length field', () => {
      const f = fresh('bad');
      writeFileSync(f, Buffer.from([1, 0, 0, 0]));
      return f;
    }, (f) => `${f} is truncated: 4 bytes, too short for the 8-byte header length`],
    ['a huge header length', () => rawFile('{}', 0, 2n ** 40n),
      (f) => `${f} has a header length of 1099511627776 bytes, more than the limit of 100000000`],
    ['a header length past the end', () => rawFile('{}', 48, 200n),
      (f) => `${f} is truncated: the header length says 200 bytes, but only 50 bytes follow`],
    ['a header that is not JSON', () => rawFile('{"w": {"dtype": '), (f) => {
      let why = '';
      try {
        JSON.parse('{"w": {"dtype": ');
      } catch (e) {
        why = (e as Error).message;
      }
      return `${f} has a header that is not valid JSON: ${why}`;
    }],
    ['a header that is an array', () => rawFile('[1, 2]'), (f) => `${f} has a header that must be a JSON object, received an array`],
    ['a header that is null', () => rawFile('null'), (f) => `${f} has a header that must be a JSON object, received null`],
    ['metadata that is not an object', () => rawFile({ __metadata__: 3 }),
      (f) => `${f} has __metadata__ that must be an object of strings, received 3`],
    ['metadata that is not strings', () => rawFile({ __metadata__: { epoch: 3 } }),
      (f) => `${f} has __metadata__ 'epoch' that must be a string, received 3`],
    ['an entry that is not an object', () => rawFile({ w: [1] }),
      (f) => `${f} tensor 'w' must be an object { dtype, shape, data_offsets }, received an array`],
    ['an unknown dtype', () => rawFile({ w: { dtype: 'F16', shape: [2], data_offsets: [0, 4] } }, 4),
      (f) => `${f} tensor 'w' has dtype 'F16'; only F32 and I32 are supported`],
    ['a missing dtype', () => rawFile({ w: { shape: [2], data_offsets: [0, 8] } }, 8),
      (f) => `${f} tensor 'w' has dtype undefined; only F32 and I32 are supported`],
    ['a negative dim', () => rawFile({ w: f32([2, -1], [0, 8]) }, 8),
      (f) => `${f} tensor 'w' has shape [2,-1], expected an array of non-negative integers`],
    ['a fractional dim', () => rawFile({ w: f32([1.5], [0, 8]) }, 8),
      (f) => `${f} tensor 'w' has shape [1.5], expected an array of non-negative integers`],
    ['a missing shape', () => rawFile({ w: { dtype: 'I32', data_offsets: [0, 8] } }, 8),
      (f) => `${f} tensor 'w' has shape undefined, expected an array of non-negative integers`],
    ['data_offsets past the data area', () => rawFile({ w: f32([25], [0, 100]) }, 16),
      (f) => `${f} tensor 'w' has data_offsets [0,100], expected [begin, end] with 0 <= begin <= end <= 16 (the length of the data area)`],
    ['data_offsets backwards', () => rawFile({ w: f32([1], [8, 4]) }, 16),
      (f) => `${f} tensor 'w' has data_offsets [8,4], expected [begin, end] with 0 <= begin <= end <= 16 (the length of the data area)`],
    ['data_offsets negative', () => rawFile({ w: f32([1], [-4, 0]) }, 16),
      (f) => `${f} tensor 'w' has data_offsets [-4,0], expected [begin, end] with 0 <= begin <= end <= 16 (the length of the data area)`],
    ['data_offsets of one number', () => rawFile({ w: f32([1], [4]) }, 16),
      (f) => `${f} tensor 'w' has data_offsets [4], expected [begin, end] with 0 <= begin <= end <= 16 (the length of the data area)`],
    ['a byte length that does not match the shape', () => rawFile({ w: f32([2, 2], [0, 12]) }, 12),
      (f) => `${f} tensor 'w' has 12 bytes at data_offsets [0, 12], but dtype F32 and shape [2, 2] need 16`],
    ['overlapping tensors', () => rawFile({ a: f32([4], [0, 16]), b: f32([4], [8, 24]) }, 24),
      (f) => `${f} has tensors 'a' [0, 16] and 'b' [8, 24] that overlap`],
    ['a gap between tensors', () => rawFile({ b: f32([2], [16, 24]), a: f32([2], [0, 8]) }, 24),
      (f) => `${f} has 8 unused bytes at [8, 16] of the data area, before tensor 'b'`],
    ['a gap before the first tensor', () => rawFile({ a: f32([2], [8, 16]) }, 16),
      (f) => `${f} has 8 unused bytes at [0, 8] of the data area, before tensor 'a'`],
    ['bytes after the last tensor', () => rawFile({ a: f32([2], [0, 8]) }, 16),
      (f) => `${f} has 8 unused bytes at [8, 16] at the end of the data area`],
  ];

  for (const [name, make, message] of cases) {
    it(`rejects ${name}`, async () => {
      const file = make();
      expect(await rejection(cn.loadTensors(file))).toBe(`loadTensors: ${message(file)}`);
      const m = model(9);
      const before = await values(m);
      expect(await rejection(cn.load(file, m))).toBe(`load: ${message(file)}`);
      expect(await values(m)).toEqual(before);
      m.dispose();
    });
  }

  it('accepts a hand-written file with a name such as __proto__ without touching prototypes', async () => {
    const entry = (b: number) => `{"dtype":"F32","shape":[1],"data_offsets":[${b},${b + 4}]}`;
    const file = rawFile(`{"__proto__":${entry(0)},"toString":${entry(4)}}`, 8);
    const { tensors } = await cn.loadTensors(file);
    expect(Object.keys(tensors).sort()).toEqual(['__proto__', 'toString']);
    const name: string = 'toString';
    expect(tensors[name].shape).toEqual([1]);
    expect(Object.getPrototypeOf(tensors)).toBe(null);
    expect(({} as Record<string, unknown>).dtype).toBeUndefined();
  });
});

describe('module mismatches', () => {
  it('names the missing, unexpected, wrongly shaped and wrongly typed tensors; copies nothing', async () => {
    const file = fresh();
    const w = cn.tensor(uniform(6, 1), [2, 3]);
    const b = cn.tensor(uniform(2, 2), [2]);
    const extra = cn.zeros([1]);
    const n = cn.tensor(new Int32Array([1, 2]), [2]);
    await cn.saveTensors(file, { 'fc.weight': w, 'fc.bias': b, extra, 'norm.count': n });
    const m = new Params([
      ['fc.weight', cn.zeros([3, 2])],
      ['fc.bias', cn.zeros([2])],
      ['norm.count', cn.zeros([2])],
      ['head.weight', cn.zeros([4])],
    ]);
    expect(await rejection(cn.load(file, m))).toBe(
      `load: ${file} does not match the module: 'fc.weight' has shape [2, 3] in the file but [3, 2] in the module; ` +
        `'norm.count' is I32 in the file but float32 in the module; missing 'head.weight'; unexpected 'extra'`,
    );
    expect(await values(m)).toEqual({ 'fc.weight': [0, 0, 0, 0, 0, 0], 'fc.bias': [0, 0], 'norm.count': [0, 0], 'head.weight': [0, 0, 0, 0] });
    [w, b, extra, n].forEach((t) => t.dispose());
    m.dispose();
  });

  it('lists at most ten problems', async () => {
    const file = fresh();
    const a = model(10);
    await cn.save(file, a);
    const many = new Params(Array.from({ length: 12 }, (_, i) => [`p${i}`, cn.zeros([1])] as [string, cn.Tensor]));
    const msg = await rejection(cn.load(file, many));
    expect(msg).toBe(
      `load: ${file} does not match the module: ${Array.from({ length: 10 }, (_, i) => `missing 'p${i}'`).join('; ')}; and 6 more`,
    );
    a.dispose();
    many.dispose();
  });
});

describe('bad arguments to save', () => {
  it('rejects reserved, repeated and empty names, non-tensors and non-string metadata', async () => {
    const t = cn.zeros([2]);
    const file = fresh();
    expect(await rejection(cn.saveTensors(file, { __metadata__: t }))).toBe(
      "saveTensors: the name '__metadata__' is reserved by the safetensors format",
    );
    expect(await rejection(cn.save(file, new Params([['a', t], ['a', t]])))).toBe("save: the name 'a' appears twice");
    expect(await rejection(cn.save(file, new Params([['', t]])))).toBe("save: tensor names must be non-empty strings, received ''");
    expect(await rejection(cn.saveTensors(file, { a: [1, 2] as unknown as cn.Tensor }))).toBe(
      "saveTensors: 'a' must be a Tensor, received an array",
    );
    expect(await rejection(cn.save(file, new Params([['a', t]]), { epoch: 3 as unknown as string }))).toBe(
      "save: metadata 'epoch' must be a string, received 3",
    );
    expect(await rejection(cn.save(file, {} as cn.NamedParameters))).toBe('save: module must have namedParameters(), received an object');
    expect(() => statSync(file)).toThrow();
    t.dispose();
  });

  it('a disposed parameter is a DisposedError, on save and on load', async () => {
    const file = fresh();
    const a = model(11);
    await cn.save(file, a);
    a.params[1][1].dispose();
    expect(await rejection(cn.save(fresh(), a), cn.DisposedError)).toBe("save: 'conv1.bias' was disposed and cannot be used");
    expect(await rejection(cn.load(file, a), cn.DisposedError)).toBe("load: parameter 'conv1.bias' was disposed and cannot be used");
    a.dispose();
  });

  it('a save that cannot write leaves no temporary file and rejects with the file system error', async () => {
    const m = model(12);
    const file = path.join(tmp, 'no-such-folder', 'x.safetensors');
    const err = await rejection(cn.save(file, m), Error);
    expect(err).toMatch(/ENOENT/);
    expect(readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);
    m.dispose();
  });
});

describe('atomic saves', () => {
  it('a process killed in the middle of a save leaves the previous checkpoint whole', async () => {
    const dir = mkdtempSync(path.join(tmp, 'kill-'));
    const file = path.join(dir, 'ckpt.safetensors');
    const size = 8 * 1024 * 1024; // 32 MiB: a save takes long enough to land a kill inside one
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'fixtures', 'checkpoint-writer.ts'), file, String(size)], {
      cwd: path.join(here, '..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let errText = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (errText += d.toString()));
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, sig) => resolve(sig ?? code)));
    const lastSaved = () => Math.max(0, ...[...out.matchAll(/saved (\d+)/g)].map((m) => Number(m[1])));
    const temps = () => readdirSync(dir).filter((f) => f.startsWith('.ckpt.safetensors.tmp-'));

    // Wait for two complete saves, then for a temporary file with bytes in it: a save under way.
    const deadline = Date.now() + 90_000;
    let killedMidSave = false;
    while (Date.now() < deadline && child.exitCode === null) {
      if (lastSaved() >= 2) {
        const t = temps();
        if (t.length > 0 && statSync(path.join(dir, t[0]), { throwIfNoEntry: false })?.size) {
          child.kill('SIGKILL');
          killedMidSave = true;
          break;
        }
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    if (!killedMidSave) child.kill('SIGKILL');
    expect(await exited, `child stderr: ${errText}`).toBe('SIGKILL');
    expect(killedMidSave, `child stderr: ${errText}`).toBe(true);

    // The killed save left its temporary file (unless, on a busy machine, the kill landed just
    // after a rename), and the checkpoint at the path is a whole one.
    const left = temps();
    expect(left.length).toBeLessThanOrEqual(1);
    if (left.length === 1) expect(statSync(path.join(dir, left[0])).size).toBeLessThanOrEqual(statSync(file).size);
    const { tensors, metadata } = await cn.loadTensors(file);
    const k = Number(metadata.iteration);
    expect(k).toBeGreaterThanOrEqual(lastSaved());
    expect(k).toBeGreaterThanOrEqual(2);
    expect(tensors.big.shape).toEqual([size]);
    expect(tensors.big.data.every((v) => v === k)).toBe(true);
    expect([...tensors.small.data]).toEqual(new Array(6).fill(-k));
    expect(readdirSync(dir).filter((f) => !f.startsWith('.'))).toEqual(['ckpt.safetensors']);
  });
});
