/**
 * IDX files (the format of MNIST and Fashion-MNIST), gzip-compressed.
 *
 * Layout after gunzip: a 4-byte big-endian magic number `0x0000TTNN` (TT the element type,
 * 0x08 = unsigned byte; NN the number of dims), then NN big-endian uint32 dims, then the
 * elements, row-major. Only unsigned-byte files are read here: images are `0x00000803`
 * ([N, rows, cols]) and labels `0x00000801` ([N]).
 */
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';

import { FormatError } from '../errors.js';

const gunzipAsync = promisify(gunzip);

/** Magic number of an IDX file of unsigned bytes with 3 dims (images). */
export const IDX_IMAGES_MAGIC = 0x00000803;
/** Magic number of an IDX file of unsigned bytes with 1 dim (labels). */
export const IDX_LABELS_MAGIC = 0x00000801;

/** The contents of one IDX file. */
export interface IdxFile {
  /** The dims from the header, e.g. [60000, 28, 28]. */
  dims: number[];
  /** The elements, row-major; a view over the decompressed bytes. */
  data: Uint8Array;
}

const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

function describeMagic(magic: number): string {
  return magic === IDX_IMAGES_MAGIC ? 'IDX images: unsigned bytes, 3 dims' : 'IDX labels: unsigned bytes, 1 dim';
}

/** What `n` elements of dims [N, ...rest] are called in messages: "60000 images of 28x28". */
function describeCount(magic: number, dims: readonly number[]): string {
  return magic === IDX_IMAGES_MAGIC ? `${dims[0]} images of ${dims.slice(1).join('x')}` : `${dims[0]} labels`;
}

/**
 * Reads a gzip-compressed IDX file of unsigned bytes and checks its header against
 * `expectedMagic` and its length against the dims. Decompression runs off the JS thread.
 *
 * @param file path of the `.gz` file
 * @param expectedMagic {@link IDX_IMAGES_MAGIC} or {@link IDX_LABELS_MAGIC}
 * @param op the prefix of error messages, e.g. `fashion-mnist`
 * @throws FormatError when the file cannot be read, is not gzip, is truncated, has another
 *   magic number, or holds more or fewer bytes than its dims say. A missing file is reported
 *   with `missingHint` appended.
 */
export async function readIdxGz(file: string, expectedMagic: number, op = 'idx', missingHint = ''): Promise<IdxFile> {
  let packed: Buffer;
  try {
    packed = await readFile(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new FormatError(`${op}: ${file} does not exist.${missingHint}`);
    throw new FormatError(`${op}: ${file} cannot be read: ${err.message}`);
  }
  let raw: Buffer;
  try {
    raw = await gunzipAsync(packed);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'Z_BUF_ERROR') {
      throw new FormatError(`${op}: ${file} is truncated: the gzip stream ends early (${err.message})`);
    }
    throw new FormatError(`${op}: ${file} is not a valid gzip file (${err.message})`);
  }
  return parseIdx(raw, file, expectedMagic, op);
}

/** Parses decompressed IDX bytes; see {@link readIdxGz} for the checks. */
export function parseIdx(raw: Uint8Array, file: string, expectedMagic: number, op = 'idx'): IdxFile {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  if (raw.byteLength < 4) {
    throw new FormatError(`${op}: ${file} is truncated: ${raw.byteLength} bytes, too short for the 4-byte IDX magic number`);
  }
  const magic = view.getUint32(0, false);
  if (magic !== expectedMagic) {
    throw new FormatError(`${op}: ${file} has magic number ${hex(magic)}, expected ${hex(expectedMagic)} (${describeMagic(expectedMagic)})`);
  }
  const ndims = expectedMagic & 0xff;
  const headerBytes = 4 + 4 * ndims;
  if (raw.byteLength < headerBytes) {
    throw new FormatError(`${op}: ${file} is truncated: ${raw.byteLength} bytes, too short for the ${headerBytes}-byte header`);
  }
  const dims: number[] = [];
  for (let k = 0; k < ndims; k++) dims.push(view.getUint32(4 + 4 * k, false));
  if (dims.slice(1).some((d) => d === 0)) {
    throw new FormatError(`${op}: ${file} has dims [${dims.join(', ')}]; every dim after the first must be positive`);
  }
  const expected = dims.reduce((a, b) => a * b, 1);
  const held = raw.byteLength - headerBytes;
  if (held < expected) {
    throw new FormatError(
      `${op}: ${file} is truncated: header says ${describeCount(expectedMagic, dims)} (${expected} bytes), file holds ${held} bytes`,
    );
  }
  if (held > expected) {
    throw new FormatError(
      `${op}: ${file} is longer than its header says: ${describeCount(expectedMagic, dims)} (${expected} bytes), file holds ${held} bytes`,
    );
  }
  // A plain Uint8Array (not the Buffer subclass) over the decompressed bytes.
  return { dims, data: new Uint8Array(raw.buffer, raw.byteOffset + headerBytes, expected) };
}
