/**
 * A minimal PNG encoder (8-bit grey or RGB, no interlacing) for the images of the training
 * report: the IHDR, one zlib-compressed IDAT and IEND chunks, each with its CRC-32.
 */
import { deflateSync } from 'node:zlib';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** The CRC-32 of PNG (and zlib, gzip): polynomial 0xEDB88320, reflected, inverted. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, body: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.write(type, 4, 'ascii');
  Buffer.from(body.buffer, body.byteOffset, body.length).copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + body.length)), 8 + body.length);
  return out;
}

/**
 * Encodes `pixels` (row-major, `channels` bytes a pixel: 1 grey, 3 RGB) as a PNG file.
 *
 * @throws RangeError when the pixel count does not match width × height × channels
 */
export function encodePng(width: number, height: number, channels: 1 | 3, pixels: Uint8Array): Buffer {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || pixels.length !== width * height * channels) {
    throw new RangeError(`encodePng: pixels must hold ${width} x ${height} x ${channels} bytes, received ${pixels.length}`);
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = channels === 3 ? 2 : 0; // colour type: RGB or grey
  // compression, filter and interlace methods: 0
  const stride = width * channels;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (stride + 1)] = 0; // filter: none
    raw.set(pixels.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  }
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk('IHDR', header), chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0))]);
}

/** A PNG as a `data:` URI for an `<img src>`. */
export function pngDataUri(png: Buffer): string {
  return `data:image/png;base64,${png.toString('base64')}`;
}

/**
 * A grid of images, each `[C, H, W]` float (C = 1 or 3) scaled on its own to [0, 255] by its
 * minimum and maximum, drawn `scale` times larger with a `gap`-pixel white border, `columns` a row.
 */
export function imageGrid(images: { data: ArrayLike<number>; shape: readonly [number, number, number] }[], columns: number, scale = 1, gap = 1): { width: number; height: number; channels: 1 | 3; pixels: Uint8Array } {
  const [C, H, W] = images[0]?.shape ?? [1, 1, 1];
  const channels: 1 | 3 = C === 3 ? 3 : 1;
  const cols = Math.max(1, Math.min(columns, images.length));
  const rows = Math.max(1, Math.ceil(images.length / cols));
  const cw = W * scale + gap, ch = H * scale + gap;
  const width = cols * cw + gap, height = rows * ch + gap;
  const pixels = new Uint8Array(width * height * channels).fill(255);
  images.forEach((img, n) => {
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < C * H * W; i++) {
      const v = img.data[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const range = hi > lo ? hi - lo : 1;
    const ox = gap + (n % cols) * cw, oy = gap + Math.floor(n / cols) * ch;
    for (let y = 0; y < H * scale; y++) {
      for (let x = 0; x < W * scale; x++) {
        const sy = Math.floor(y / scale), sx = Math.floor(x / scale);
        for (let c = 0; c < channels; c++) {
          const v = img.data[(Math.min(c, C - 1) * H + sy) * W + sx];
          pixels[((oy + y) * width + ox + x) * channels + c] = Math.round(((v - lo) / range) * 255);
        }
      }
    }
  });
  return { width, height, channels, pixels };
}
