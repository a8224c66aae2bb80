/**
 * Checkpoints in the safetensors format (https://github.com/huggingface/safetensors):
 *
 *   [8 bytes]  N, the header's length, unsigned little-endian
 *   [N bytes]  a JSON object { name: { dtype, shape, data_offsets: [begin, end] }, ...,
 *              "__metadata__"?: { key: string value } }, padded with spaces to 8 bytes
 *   [rest]     the data area: each tensor's bytes, little-endian, row-major, at
 *              [begin, end) relative to the start of the data area, with no gaps or overlaps
 *
 * Only F32 and I32 tensors are written and read (the two dtypes of this package).
 *
 * Saving is atomic: the file is written under a temporary name in the same folder, flushed to
 * disk (fsync) and renamed over the target, so a process killed during a save leaves the
 * previous checkpoint whole. The killed save's temporary file, `.NAME.tmp-PID-N-R`, stays until
 * the next save of the same file, which removes every such file whose writer process is gone.
 * Loading checks every field of the header before anything is copied, and copies into a
 * module's parameters only once every name and shape matches.
 */
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { FormatError, IOError } from '../errors.js';
import { native } from '../native.js';
import { formatShape, Tensor, type DType } from '../tensor.js';

/** The dtypes of safetensors that this package reads and writes. */
export type SafetensorsDType = 'F32' | 'I32';

/** A tensor as read from a file, on the host. */
export interface HostTensor {
  /** The file's dtype. */
  dtype: SafetensorsDType;
  /** The dimensions. */
  shape: number[];
  /** The values, row-major: a Float32Array for F32, an Int32Array for I32. */
  data: Float32Array | Int32Array;
}

/** What {@link loadTensors} returns. */
export interface LoadedTensors {
  /** The tensors by name (an object without a prototype). */
  tensors: Record<string, HostTensor>;
  /** The `__metadata__` strings ({} when the file has none). */
  metadata: Record<string, string>;
}

/** What `save` and `load` need of a module: its parameters by name (as `nn.Module` gives them). */
export interface NamedParameters {
  /** Every parameter with its unique name, e.g. `['conv1.weight', t]`. */
  namedParameters(): Iterable<[string, Tensor]>;
}

/** The largest header accepted when loading. */
export const MAX_HEADER_BYTES = 100_000_000;

const DTYPE_OF: Record<DType, SafetensorsDType> = { float32: 'F32', int32: 'I32' };
const DTYPE_BYTES: Record<SafetensorsDType, number> = { F32: 4, I32: 4 };
const PACKAGE_DTYPE: Record<SafetensorsDType, DType> = { F32: 'float32', I32: 'int32' };

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

function show(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `'${v}'`;
  if (typeof v === 'object') return 'an object';
  return String(v);
}

// ---------------------------------------------------------------------------------------------
// Writing

let tempCounter = 0;

async function writeAll(fh: FileHandle, buf: Uint8Array): Promise<void> {
  let done = 0;
  while (done < buf.byteLength) {
    const { bytesWritten } = await fh.write(buf, done, buf.byteLength - done);
    done += bytesWritten;
  }
}

/** The prefix of the temporary files of saves of `target` (an absolute path). */
function tempPrefix(target: string): string {
  return `.${path.basename(target)}.tmp-`;
}

/** Whether a process with this id is running (one that exists but is not ours counts). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary files that interrupted saves of `file` left in its folder: those whose
 * writer (the process id in the name) is no longer running. Saves under way in this or another
 * live process are left alone. Returns the names removed; never throws.
 */
export async function removeStaleTemps(file: string): Promise<string[]> {
  const target = path.resolve(file);
  const dir = path.dirname(target);
  const prefix = tempPrefix(target);
  const removed: string[] = [];
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(/^(\d+)-/.exec(name.slice(prefix.length))?.[1]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || alive(pid)) continue;
    try {
      await unlink(path.join(dir, name));
      removed.push(name);
    } catch {
      // gone already, or not ours to remove
    }
  }
  return removed;
}

/** The file system's reason without the path it names: 'permission denied (EACCES)'. */
function reason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (!err || typeof err.message !== 'string') return String(e);
  const m = /^[A-Z0-9_]+: ([^,]+)/.exec(err.message);
  return m && err.code ? `${m[1]} (${err.code})` : err.message;
}

/** Checks the metadata argument; returns a copy. */
function checkMetadata(op: string, metadata: unknown): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  if (metadata === undefined) return out;
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
    throw new FormatError(`${op}: metadata must be an object of strings, received ${show(metadata)}`);
  }
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new FormatError(`${op}: metadata '${k}' must be a string, received ${show(v)}`);
    out[k] = v;
  }
  return out;
}

/**
 * Writes entries to `file` atomically: a temporary file in the same folder, fsync, rename, and
 * an fsync of the folder so the rename itself survives a crash.
 */
async function writeSafetensors(op: string, file: string, entries: [string, Tensor][], metadata: Record<string, string>): Promise<void> {
  const seen = new Set<string>();
  for (const [name, t] of entries) {
    if (typeof name !== 'string' || name === '') throw new FormatError(`${op}: tensor names must be non-empty strings, received ${show(name)}`);
    if (name === '__metadata__') throw new FormatError(`${op}: the name '__metadata__' is reserved by the safetensors format`);
    if (seen.has(name)) throw new FormatError(`${op}: the name '${name}' appears twice`);
    seen.add(name);
    if (!(t instanceof Tensor)) throw new FormatError(`${op}: '${name}' must be a Tensor, received ${show(t)}`);
    t._handle(op, `'${name}'`); // throws DisposedError before anything is written
  }
  // Reading every tensor waits for its device's queue without blocking the event loop.
  const datas = await Promise.all(entries.map(([, t]) => t.data()));

  const header: Record<string, unknown> = Object.create(null);
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  entries.forEach(([name, t], i) => {
    const bytes = datas[i].byteLength;
    header[name] = { dtype: DTYPE_OF[t.dtype], shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  });
  let json = JSON.stringify(header);
  const jsonBytes = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (jsonBytes % 8)) % 8);
  const headerBuf = Buffer.from(json, 'utf8');
  const lengthBuf = Buffer.alloc(8);
  lengthBuf.writeBigUInt64LE(BigInt(headerBuf.byteLength));

  const target = path.resolve(file);
  const dir = path.dirname(target);
  await removeStaleTemps(target);
  const temp = path.join(dir, `${tempPrefix(target)}${process.pid}-${++tempCounter}-${randomBytes(3).toString('hex')}`);
  let fh: FileHandle | null = null;
  try {
    fh = await open(temp, 'wx', 0o644);
    await writeAll(fh, lengthBuf);
    await writeAll(fh, headerBuf);
    for (const d of datas) await writeAll(fh, new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    await fh.sync();
    await fh.close();
    fh = null;
    await rename(temp, target);
  } catch (e) {
    if (fh) await fh.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw new IOError(`${op}: cannot write '${file}': ${reason(e)}`, (e as NodeJS.ErrnoException)?.code ?? '');
  }
  // Make the rename durable. Some file systems refuse to fsync a folder; the file is already whole.
  try {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    // best effort
  }
}

/**
 * Saves tensors by name to a safetensors file, atomically (see the module comment).
 *
 * @param file the path to write; an existing file is replaced only once the new one is complete
 * @param tensors float32 or int32 tensors on any device
 * @param metadata strings stored in the header's `__metadata__`
 * @throws FormatError for a reserved, empty or repeated name, a non-tensor, or non-string metadata;
 *   IOError naming the file and the system's reason when it cannot be written (the previous
 *   file is untouched, and no temporary file is left); DisposedError for a disposed tensor
 *
 * @example
 * ```ts
 * const w = cn.randn([10, 784], { seed: 1 });
 * await cn.saveTensors('weights.safetensors', { w }, { note: 'linear probe' });
 * ```
 */
export async function saveTensors(file: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): Promise<void> {
  const op = 'saveTensors';
  if (tensors === null || typeof tensors !== 'object') {
    throw new FormatError(`${op}: tensors must be an object of tensors by name, received ${show(tensors)}`);
  }
  await writeSafetensors(op, file, Object.entries(tensors), checkMetadata(op, metadata));
}

/**
 * Saves a module's parameters (`namedParameters()`) to a safetensors file, atomically.
 *
 * @param extra strings stored in the header's `__metadata__` (epoch, optimiser or loader state...)
 * @throws FormatError or IOError as {@link saveTensors}
 *
 * @example
 * ```ts
 * const model = cn.models.alexnetMini();
 * await cn.save('alexnet.safetensors', model, { epoch: '3' });
 * ```
 */
export async function save(file: string, module: NamedParameters, extra?: Record<string, string>): Promise<void> {
  const op = 'save';
  if (!module || typeof module.namedParameters !== 'function') {
    throw new FormatError(`${op}: module must have namedParameters(), received ${show(module)}`);
  }
  await writeSafetensors(op, file, [...module.namedParameters()], checkMetadata(op, extra));
}

// ---------------------------------------------------------------------------------------------
// Reading

interface Entry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  begin: number;
  end: number;
}

/** Reads and checks a file; the tensors' bytes are copied out of the file's buffer. */
async function readSafetensors(op: string, file: string): Promise<LoadedTensors> {
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new FormatError(`${op}: ${file} does not exist`);
    throw new FormatError(`${op}: ${file} cannot be read: ${err.message}`);
  }
  const fail = (what: string): never => {
    throw new FormatError(`${op}: ${file} ${what}`);
  };
  if (buf.byteLength < 8) fail(`is truncated: ${buf.byteLength} bytes, too short for the 8-byte header length`);
  const n = buf.readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_BYTES)) fail(`has a header length of ${n} bytes, more than the limit of ${MAX_HEADER_BYTES}`);
  const headerBytes = Number(n);
  if (headerBytes > buf.byteLength - 8) {
    fail(`is truncated: the header length says ${headerBytes} bytes, but only ${buf.byteLength - 8} bytes follow`);
  }
  const text = buf.toString('utf8', 8, 8 + headerBytes);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    fail(`has a header that is not valid JSON: ${(e as Error).message}`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    fail(`has a header that must be a JSON object, received ${show(header)}`);
  }
  const dataStart = 8 + headerBytes;
  const dataBytes = buf.byteLength - dataStart;

  const metadata: Record<string, string> = Object.create(null);
  const entries: Entry[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        fail(`has __metadata__ that must be an object of strings, received ${show(value)}`);
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`has __metadata__ '${k}' that must be a string, received ${show(v)}`);
        metadata[k] = v as string;
      }
      continue;
    }
    const t = `tensor '${name}'`;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      fail(`${t} must be an object { dtype, shape, data_offsets }, received ${show(value)}`);
    }
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (dtype !== 'F32' && dtype !== 'I32') fail(`${t} has dtype ${show(dtype)}; only F32 and I32 are supported`);
    if (!Array.isArray(shape) || !shape.every((d) => isInt(d) && d >= 0)) {
      fail(`${t} has shape ${JSON.stringify(shape) ?? show(shape)}, expected an array of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isInt)
        || offsets[0] < 0 || offsets[0] > offsets[1] || offsets[1] > dataBytes) {
      fail(`${t} has data_offsets ${JSON.stringify(offsets) ?? show(offsets)}, expected [begin, end] with ` +
        `0 <= begin <= end <= ${dataBytes} (the length of the data area)`);
    }
    const [begin, end] = offsets as [number, number];
    const dims = shape as number[];
    const need = DTYPE_BYTES[dtype as SafetensorsDType] * dims.reduce((a, b) => a * b, 1);
    if (end - begin !== need) {
      fail(`${t} has ${end - begin} bytes at data_offsets [${begin}, ${end}], but dtype ${dtype} and shape ${formatShape(dims)} need ${need}`);
    }
    entries.push({ name, dtype: dtype as SafetensorsDType, shape: dims, begin, end });
  }

  // The tensors must tile the data area exactly: no overlaps, no gaps, nothing after the last.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let prev: Entry | null = null;
  for (const e of sorted) {
    if (e.begin < at && prev) {
      fail(`has tensors '${prev.name}' [${prev.begin}, ${prev.end}] and '${e.name}' [${e.begin}, ${e.end}] that overlap`);
    }
    if (e.begin > at) fail(`has ${e.begin - at} unused bytes at [${at}, ${e.begin}] of the data area, before tensor '${e.name}'`);
    at = e.end;
    if (e.end > e.begin) prev = e;
  }
  if (at < dataBytes) fail(`has ${dataBytes - at} unused bytes at [${at}, ${dataBytes}] at the end of the data area`);

  const tensors: Record<string, HostTensor> = Object.create(null);
  for (const e of entries) {
    // A copy: the file's buffer may not be 4-byte aligned at this offset.
    const bytes = new Uint8Array(buf.subarray(dataStart + e.begin, dataStart + e.end));
    const data = e.dtype === 'F32' ? new Float32Array(bytes.buffer) : new Int32Array(bytes.buffer);
    tensors[e.name] = { dtype: e.dtype, shape: e.shape, data };
  }
  return { tensors, metadata };
}

/**
 * Reads every tensor and the metadata of a safetensors file, on the host.
 *
 * @throws FormatError naming the file and the problem: missing or unreadable, shorter than the
 *   8-byte length, a header length over {@link MAX_HEADER_BYTES} or past the end of the file, a
 *   header that is not a JSON object, metadata that is not strings, an unknown dtype, a shape
 *   that is not non-negative integers, data_offsets outside the data area, a byte length that
 *   does not match dtype and shape, tensors that overlap or leave gaps.
 *
 * @example
 * ```ts
 * const { tensors, metadata } = await cn.loadTensors('weights.safetensors');
 * const w = tensors.w;
 * const t = cn.tensor(w.data, w.shape, { device: 'cuda:0' });
 * ```
 */
export async function loadTensors(file: string): Promise<LoadedTensors> {
  return readSafetensors('loadTensors', file);
}

/** At most this many mismatches are listed in one message. */
const MAX_LISTED = 10;

/** Options of {@link load}. */
export interface LoadOptions {
  /**
   * Tensors in the file that the module has no parameter for: an error (default), or left out
   * (a training checkpoint also holds optimizer state) and returned in `rest`.
   */
  unexpected?: 'error' | 'return';
  /**
   * Told when the file holds NaN or infinite values (a run that diverged): one line naming
   * the tensors and their counts. The weights load all the same. Default: `console.warn`.
   */
  onWarning?: (message: string) => void;
}

/** 'fc.weight' 3 NaN, 1 Inf; ... for the F32 tensors that hold non-finite values; '' when none. */
function nonFinite(tensors: Record<string, HostTensor>): string {
  const parts: string[] = [];
  let count = 0;
  for (const [name, t] of Object.entries(tensors)) {
    if (t.dtype !== 'F32') continue;
    let nan = 0, inf = 0;
    const d = t.data;
    for (let i = 0; i < d.length; i++) {
      const v = d[i];
      if (v !== v) nan++;
      else if (v === Infinity || v === -Infinity) inf++;
    }
    if (nan + inf === 0) continue;
    count++;
    if (parts.length < MAX_LISTED) parts.push(`'${name}' ${[nan ? `${nan} NaN` : '', inf ? `${inf} Inf` : ''].filter(Boolean).join(', ')}`);
  }
  if (count === 0) return '';
  return parts.join('; ') + (count > parts.length ? `; and ${count - parts.length} more tensors` : '');
}

/**
 * Loads a checkpoint written by {@link save} into a module: every parameter gets the file's
 * values, copied into its existing storage on its device (in queue order, like any op). Nothing
 * is copied unless the whole file is valid and every name, shape and dtype matches.
 *
 * @returns the checkpoint's metadata (the `extra` given to `save`), and with
 *   `unexpected: 'return'` the file's other tensors
 * @throws FormatError as {@link loadTensors}, or naming the parameters that are missing from the
 *   file, the tensors the module has no parameter for, and those whose shape or dtype differs;
 *   DisposedError for a disposed parameter
 *
 * @example
 * ```ts
 * const model = cn.models.alexnetMini().to('cuda:0');
 * const { metadata } = await cn.load('alexnet.safetensors', model);
 * console.log(metadata.epoch); // '3'
 * ```
 */
export async function load(file: string, module: NamedParameters, opts: LoadOptions = {}): Promise<{
  /** The file's `__metadata__` strings ({} when it has none). */
  metadata: Record<string, string>;
  /** With `unexpected: 'return'`, the file's tensors the module has no parameter for; else {}. */
  rest: Record<string, HostTensor>;
}> {

  const op = 'load';
  if (!module || typeof module.namedParameters !== 'function') {
    throw new FormatError(`${op}: module must have namedParameters(), received ${show(module)}`);
  }
  const params = [...module.namedParameters()];
  params.forEach(([name, p]) => p._handle(op, `parameter '${name}'`));
  const { tensors, metadata } = await readSafetensors(op, file);

  const problems: string[] = [];
  const wanted = new Set<string>();
  for (const [name, p] of params) {
    wanted.add(name);
    const t = tensors[name];
    if (!t) {
      problems.push(`missing '${name}'`);
    } else if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
      problems.push(`'${name}' has shape ${formatShape(t.shape)} in the file but ${formatShape(p.shape)} in the module`);
    } else if (PACKAGE_DTYPE[t.dtype] !== p.dtype) {
      problems.push(`'${name}' is ${t.dtype} in the file but ${p.dtype} in the module`);
    }
  }
  const rest: Record<string, HostTensor> = {};
  for (const name of Object.keys(tensors)) {
    if (wanted.has(name)) continue;
    if (opts.unexpected === 'return') rest[name] = tensors[name];
    else problems.push(`unexpected '${name}'`);
  }
  if (problems.length > 0) {
    const listed = problems.slice(0, MAX_LISTED).join('; ');
    const more = problems.length > MAX_LISTED ? `; and ${problems.length - MAX_LISTED} more` : '';
    throw new FormatError(`${op}: ${file} does not match the module: ${listed}${more}`);
  }
  const bad = nonFinite(tensors);
  if (bad) (opts.onWarning ?? console.warn)(`${op}: ${file} holds non-finite values (a run that diverged?): ${bad}`);
  // Checked again: a parameter may have been disposed while the file was read.
  const handles = params.map(([name, p]) => p._handle(op, `parameter '${name}'`));
  params.forEach(([name], i) => native.upload(handles[i], tensors[name].data));
  return { metadata, rest };
}
