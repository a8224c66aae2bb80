/**
 * Checkpoints: safetensors round trips, every malformed header rejected with an exact
 * FormatError, module mismatches named, atomic saves checked by killing a real process in the
 * middle of one (and the next save clearing its temporary file), non-finite weights warned of,
 * and a seeded fuzz of the parser.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it, vi } from 'vitest';

import * as cn from '../src/index.js';
import { rejection, rng, trackLeaks, uniform } from './helpers.js';

trackLeaks();

const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = mkdtempSync(path.join(os.tmpdir(), 'convnet-ckpt-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let fileNo = 0;
const fresh = (name = 'model') => path.join(tmp, `${name}-${++fileNo}.safetensors`);

const hasCuda = cn.devices().some((d) => d.kind === 'cuda');
if (!hasCuda) console.log('checkpoint on a GPU skipped: no CUDA device here');

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

  it('a save that cannot write leaves no temporary file and rejects with an IOError naming the target', async () => {
    const m = model(12);
    const file = path.join(tmp, 'no-such-folder', 'x.safetensors');
    const err = await rejection(cn.save(file, m), cn.IOError);
    expect(err).toBe(`save: cannot write '${file}': no such file or directory (ENOENT)`);
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

    // The next save of the same file removes the killed writer's temporary file.
    const t = cn.zeros([2]);
    await cn.saveTensors(file, { t });
    t.dispose();
    expect(temps()).toEqual([]);
    expect(readdirSync(dir)).toEqual(['ckpt.safetensors']);
  });

  it('a save removes the temporary files of dead writers only', async () => {
    const dir = mkdtempSync(path.join(tmp, 'stale-'));
    const file = path.join(dir, 'ckpt.safetensors');
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    const names = {
      dead: `.ckpt.safetensors.tmp-${dead}-1-abcdef`,
      mine: `.ckpt.safetensors.tmp-${process.pid}-99-abcdef`,
      live: `.ckpt.safetensors.tmp-${process.ppid}-1-abcdef`,
      other: `.other.safetensors.tmp-${dead}-1-abcdef`,
    };
    for (const n of Object.values(names)) writeFileSync(path.join(dir, n), 'partial');
    const m = model(13);
    await cn.save(file, m);
    m.dispose();
    expect(readdirSync(dir).sort()).toEqual(['ckpt.safetensors', names.live, names.mine, names.other].sort());
  });
});

describe('non-finite weights', () => {
  it('load warns naming the tensors that hold NaN or Inf, and loads them all the same', async () => {
    const file = fresh();
    const w = new Float32Array(uniform(36, 20));
    w[0] = NaN;
    w[5] = NaN;
    w[7] = Infinity;
    const b = new Float32Array([1, -Infinity, 3, 4]);
    const a = new Params([
      ['conv1.weight', cn.tensor(w, [4, 1, 3, 3])],
      ['conv1.bias', cn.tensor(b, [4])],
      ['fc.weight', cn.tensor(uniform(70, 21), [10, 7])],
      ['fc.bias', cn.tensor(uniform(10, 22), [10])],
    ]);
    await cn.save(file, a);
    const into = model(23);
    const warnings: string[] = [];
    await cn.load(file, into, { onWarning: (m) => warnings.push(m) });
    expect(warnings).toEqual([
      `load: ${file} holds non-finite values (a run that diverged?): 'conv1.weight' 2 NaN, 1 Inf; 'conv1.bias' 1 Inf`,
    ]);
    expect(await values(into)).toEqual(await values(a));

    // Without a hook, the warning goes to console.warn; a finite file gives none.
    const spy = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      await cn.load(file, into);
      expect(spy.mock.calls).toEqual([[warnings[0]]]);
      spy.mockClear();
      const good = model(25);
      const goodFile = fresh();
      await cn.save(goodFile, good);
      await cn.load(goodFile, into);
      expect(spy).not.toHaveBeenCalled();
      good.dispose();
    } finally {
      spy.mockRestore();
    }
    a.dispose();
    into.dispose();
  });
});

describe('fuzzing the parser', () => {
  it('500 mutations of a valid file: each loads correctly or is a FormatError, never anything else', async () => {
    const src = new Params([
      ['a', cn.tensor(uniform(6, 30), [2, 3])],
      ['b', cn.tensor(uniform(4, 31), [4])],
      ['c', cn.zeros([0, 4])],
    ]);
    const validFile = fresh('fuzz');
    await cn.save(validFile, src, { note: 'fuzz', convnet: '{"format":1}' });
    const valid = readFileSync(validFile);
    const headerLen = Number(valid.readBigUInt64LE(0));
    const header = JSON.parse(valid.toString('utf8', 8, 8 + headerLen)) as Record<string, Record<string, unknown>>;
    const data = valid.subarray(8 + headerLen);
    const r = rng(14);
    const int = (n: number) => Math.floor(r() * n);
    const pick = <T,>(xs: T[]): T => xs[int(xs.length)];
    /** A file with this header text (its length field right unless given) and data area. */
    const assemble = (text: string, body: Uint8Array = data, length?: bigint) => {
      const h = Buffer.from(text, 'utf8');
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(length ?? BigInt(h.byteLength));
      return Buffer.concat([len, h, body]);
    };
    const oddValues: unknown[] = [-1, 0, 1, 2.5, 1e300, -1e300, 2 ** 53, 'F32', 'F16', '', null, true, [], {}, [1, 2], [0, -4], [2, 3], [-8, 8], [0, 2 ** 40]];
    const mutations: [string, () => Buffer][] = [
      ['flip bytes', () => {
        const b = Buffer.from(valid);
        for (let k = 1 + int(4); k > 0; k--) b[int(b.length)] ^= 1 << int(8);
        return b;
      }],
      ['flip a header byte', () => {
        const b = Buffer.from(valid);
        b[8 + int(headerLen)] = int(256);
        return b;
      }],
      ['truncate', () => valid.subarray(0, int(valid.length))],
      ['append bytes', () => Buffer.concat([valid, Buffer.alloc(1 + int(12), int(256))])],
      ['tamper with the header length', () => {
        const b = Buffer.from(valid);
        const choices = [BigInt(headerLen + int(33) - 16), 0n, 2n ** 63n, BigInt(int(2 ** 31)) * BigInt(int(2 ** 31)), BigInt(valid.length)];
        b.writeBigUInt64LE(pick(choices) < 0n ? 0n : pick(choices), 0);
        return b;
      }],
      ['edit a header field', () => {
        const h = structuredClone(header);
        const name = pick(Object.keys(h));
        const field = pick(['dtype', 'shape', 'data_offsets', 'note', 'extra']);
        const entry = h[name];
        if (r() < 0.2) delete entry[field];
        else entry[field] = pick(oddValues);
        if (r() < 0.2) h[pick(['d', 'a', '__metadata__'])] = pick(oddValues) as Record<string, unknown>;
        return assemble(JSON.stringify(h));
      }],
      ['edit the header text', () => {
        const text = valid.toString('utf8', 8, 8 + headerLen);
        const at = int(text.length);
        const ch = pick([...'{}[]",:0123456789-.e tnfu\\']);
        const edited = r() < 0.5 ? text.slice(0, at) + text.slice(at + 1) : text.slice(0, at) + ch + text.slice(at);
        return assemble(edited);
      }],
      ['shuffle the data area', () => {
        const body = Buffer.from(data);
        body.reverse();
        return assemble(valid.toString('utf8', 8, 8 + headerLen), body.subarray(0, Math.max(0, body.length - int(3) * 4)));
      }],
    ];

    const file = fresh('fuzzed');
    const counts = { loaded: 0, rejected: 0 };
    for (let i = 0; i < 500; i++) {
      const [kind, mutate] = mutations[i % mutations.length];
      const bytes = mutate();
      writeFileSync(file, bytes);
      const what = `mutation ${i} (${kind})`;
      let loaded: cn.LoadedTensors | undefined;
      try {
        loaded = await cn.loadTensors(file);
      } catch (e) {
        expect(e, `${what}: ${(e as Error)?.stack}`).toBeInstanceOf(cn.FormatError);
        counts.rejected++;
      }
      if (loaded) {
        counts.loaded++;
        // A correct load: each tensor's data agrees with its dtype and shape, and the tensors
        // account for every byte after the header.
        let total = 0;
        for (const [name, t] of Object.entries(loaded.tensors)) {
          expect(t.data, `${what}: '${name}'`).toBeInstanceOf(t.dtype === 'F32' ? Float32Array : Int32Array);
          expect(t.data.length, `${what}: '${name}'`).toBe(t.shape.reduce((x, y) => x * y, 1));
          total += t.data.byteLength;
        }
        expect(8 + Number(bytes.readBigUInt64LE(0)) + total, what).toBe(bytes.length);
        for (const v of Object.values(loaded.metadata)) expect(typeof v, what).toBe('string');
      }
      // Loading into a module: the same file either loads or is a FormatError that copies nothing.
      const into = new Params([['a', cn.zeros([2, 3])], ['b', cn.zeros([4])], ['c', cn.zeros([0, 4])]]);
      try {
        await cn.load(file, into, { onWarning: () => undefined });
      } catch (e) {
        expect(e, `${what}: ${(e as Error)?.stack}`).toBeInstanceOf(cn.FormatError);
        expect(await values(into), what).toEqual({ a: [0, 0, 0, 0, 0, 0], b: [0, 0, 0, 0], c: [] });
      }
      into.dispose();
    }
    // Both outcomes happen: the mutations reach past the first checks.
    expect(counts.loaded).toBeGreaterThan(10);
    expect(counts.rejected).toBeGreaterThan(250);
    src.dispose();
  });
});
