/**
 * conv2d: cross-correlation with stride, zero padding and groups (NCHW).
 * x [N, C, H, W], w [F, C/groups, KH, KW], b [F] -> y [N, F, OH, OW],
 * OH = floor((H + 2ph - KH) / sh) + 1, OW likewise.
 * Native: conv2d_forward, conv2d_backward_data, conv2d_backward_filter (native/ops/conv2d.h);
 * their last integer argument picks the CUDA kernel version (native/ops/conv2d_cuda.h).
 */
import { needsGrad, record, save } from '../autograd.js';
import { ShapeError } from '../errors.js';
import { resolvePrecision, type Precision } from '../precision.js';
import { checkShape, formatShape, Tensor } from '../tensor.js';
import { launch } from './launch.js';
import { describe, expectRank, expectTensor, intOption, intPair, paddedExtents, sameDevice } from './validate.js';

/** Options of {@link conv2d}; a number means the same value for height and width. */
export interface Conv2dOptions {
  /** Step of the window, a positive integer or `[sh, sw]`; default 1. */
  stride?: number | [number, number];
  /** Zeros added on each side, a non-negative integer or `[ph, pw]`; default 0. */
  padding?: number | [number, number];
  /** Channel groups: input channel group g feeds only output group g; must divide C and F. Default 1. */
  groups?: number;
  /**
   * Which CUDA kernels run this convolution (forward and both gradients): `1`, im2col plus a
   * tiled SGEMM (the default), `2`, implicit GEMM (no im2col buffer), or `3`, implicit GEMM on
   * tensor cores (forward; the gradients run version 2), which needs precision `'tf32'` or
   * `'bf16'`. Without it, the environment variable `CONVNET_CONV_VERSION` (`1`, `2` or `3`)
   * decides, read at each call, and with neither, precision `'tf32'` or `'bf16'` picks version
   * 3. Versions 1 and 2 compute in float32 whatever the precision. CPU devices ignore it.
   */
  version?: 1 | 2 | 3;
  /**
   * The math precision of this call (see {@link setPrecision}, whose setting is the default):
   * `'fp32'`, `'tf32'` or `'bf16'`. Only version 3's forward kernel uses reduced precision;
   * everything else stays float32.
   */
  precision?: Precision;
}

/** The native code of a precision (conv2d_cuda.h): last int = version + 10 * code. */
const PRECISION_CODE: Record<Precision, number> = { fp32: 0, tf32: 1, bf16: 2 };

/**
 * The CUDA kernel version a conv2d asks for: the option, else CONVNET_CONV_VERSION, else 0 (the
 * native default, version 1), or 3 when the precision is reduced and neither names one. An
 * explicit `version: 3` needs a reduced precision; CONVNET_CONV_VERSION=3 applies only to
 * calls with one (fp32 calls then run the default).
 */
function convVersion(op: string, v: unknown, precision: Precision): number {
  const reduced = precision !== 'fp32';
  if (v === undefined) {
    const env = process.env.CONVNET_CONV_VERSION;
    if (env === undefined || env === '') return reduced ? 3 : 0;
    if (env === '1' || env === '2') return Number(env);
    if (env === '3') return reduced ? 3 : 0;
    throw new ShapeError(`${op}: the environment variable CONVNET_CONV_VERSION must be 1, 2 or 3, received ${describe(env)}`);
  }
  if (v === 1 || v === 2) return v;
  if (v === 3) {
    if (reduced) return 3;
    throw new ShapeError(`${op}: version 3 (tensor cores) needs precision 'tf32' or 'bf16', received precision 'fp32'`);
  }
  throw new ShapeError(`${op}: version must be 1, 2 or 3, received ${describe(v)}`);
}

/**
 * The output shape and the native argument list of a conv2d: ints
 * `[N, C, H, W, F, KH, KW, sh, sw, ph, pw, groups, OH, OW, version + 10 * precision]`
 * (version 0: the default; precision 0 fp32, 1 tf32, 2 bf16).
 */
export function conv2dPlan(x: Tensor, w: Tensor, b: Tensor | null, opts: Conv2dOptions = {}) {
  const op = 'conv2d';
  expectTensor(op, 'x', x);
  expectTensor(op, 'w', w);
  if (b !== null && b !== undefined) expectTensor(op, 'b', b);
  expectRank(op, 'x', x, 4, '[N, C, H, W]');
  expectRank(op, 'w', w, 4, '[F, C/groups, KH, KW]');
  const device = sameDevice(op, [['x', x], ['w', w], ['b', b]]);
  const [sh, sw] = intPair(op, 'stride', opts.stride, 1, [1, 1]);
  const [ph, pw] = intPair(op, 'padding', opts.padding, 0, [0, 0]);
  const groups = intOption(op, 'groups', opts.groups ?? 1, 1);
  const precision = resolvePrecision(op, opts.precision);
  const version = convVersion(op, opts.version, precision);
  const [N, C, H, W] = x.shape;
  paddedExtents(op, H, W, ph, pw);
  const [F, Cg, KH, KW] = w.shape;
  if (C % groups !== 0) {
    throw new ShapeError(`${op}: x channels (C = ${C}) must be divisible by groups (${groups}), received x ${formatShape(x.shape)}`);
  }
  if (F % groups !== 0) {
    throw new ShapeError(`${op}: w filters (F = ${F}) must be divisible by groups (${groups}), received w ${formatShape(w.shape)}`);
  }
  if (Cg !== C / groups) {
    throw new ShapeError(
      `${op}: w must have C/groups = ${C / groups} input channels in dim 1, received w ${formatShape(w.shape)} for x ${formatShape(x.shape)} and groups ${groups}`,
    );
  }
  if (KH < 1 || KW < 1) {
    throw new ShapeError(`${op}: w kernel must be at least 1x1, received w ${formatShape(w.shape)}`);
  }
  if (b) {
    if (b.rank !== 1 || b.shape[0] !== F) {
      throw new ShapeError(`${op}: b must have shape [F] = [${F}], received ${formatShape(b.shape)}`);
    }
  }
  if (KH > H + 2 * ph || KW > W + 2 * pw) {
    throw new ShapeError(
      `${op}: kernel ${KH}x${KW} must fit the padded input ${H + 2 * ph}x${W + 2 * pw}, received x ${formatShape(x.shape)} with padding [${ph}, ${pw}]`,
    );
  }
  const OH = Math.floor((H + 2 * ph - KH) / sh) + 1;
  const OW = Math.floor((W + 2 * pw - KW) / sw) + 1;
  const yShape = [N, F, OH, OW];
  checkShape(op, 'the output', yShape);
  const ints = [N, C, H, W, F, KH, KW, sh, sw, ph, pw, groups, OH, OW, version + 10 * PRECISION_CODE[precision]];
  return { device, yShape, ints };
}

/**
 * 2-D cross-correlation (what deep-learning libraries call convolution), NCHW, with stride,
 * zero padding and groups: x [N, C, H, W], w [F, C/groups, KH, KW], b [F] or null →
 * [N, F, OH, OW], OH = floor((H + 2·ph − KH) / sh) + 1 (OW likewise). Computes in fp32
 * unless the `precision` option or {@link setPrecision} allows TF32 / BF16 tensor-core math
 * (CUDA, sm_80+, forward); differentiable in x, w and b.
 *
 * @throws ShapeError for wrong dtypes, ranks or shapes, channels or filters not divisible by groups, a
 *   kernel larger than the padded input, or bad options (a `version` other than 1, 2 or 3, or such a
 *   CONVNET_CONV_VERSION; `version: 3` with precision `'fp32'`; a `precision` other than
 *   `'fp32'`, `'tf32'` or `'bf16'`); DeviceError when the tensors are on
 *   different devices; DisposedError for a disposed tensor
 *
 * @example
 * ```ts
 * const x = cn.randn([8, 3, 32, 32], { seed: 1 });
 * const w = cn.randn([16, 3, 5, 5], { seed: 2, std: 0.1, requiresGrad: true });
 * const b = cn.zeros([16], { requiresGrad: true });
 * const y = cn.conv2d(x, w, b, { padding: 2 }); // [8, 16, 32, 32]
 * const y2 = cn.conv2d(x, w, b, { padding: 2, version: 2 }); // implicit-GEMM kernels on CUDA
 * const y3 = cn.conv2d(x, w, b, { padding: 2, precision: 'tf32' }); // tensor cores on sm_80+
 * ```
 */
export function conv2d(x: Tensor, w: Tensor, b: Tensor | null, opts: Conv2dOptions = {}): Tensor {

  const { device, yShape, ints } = conv2dPlan(x, w, b ?? null, opts);
  const bias = b ?? null;
  const [y] = launch('conv2d_forward', device, [[yShape, 'float32']], [x, w, bias], ints);
  if (!needsGrad(x, w, bias)) return y;
  // Backward-data needs w; backward-filter needs x: save only what will be used.
  const wantFilter = w.requiresGrad || bias?.requiresGrad === true;
  const sx = wantFilter ? save(x, 'conv2d') : null;
  const sw = x.requiresGrad ? save(w, 'conv2d') : null;
  return record(y, 'conv2d', [x, w, bias], (g) => {
    const dx = sw ? launch('conv2d_backward_data', device, [[x.shape, 'float32']], [g, sw.storage], ints)[0] : null;
    if (!sx) return [dx, null, null];
    const [dw, db] = bias
      ? launch('conv2d_backward_filter', device, [[w.shape, 'float32'], [bias.shape, 'float32']], [sx.storage, g], ints)
      : launch('conv2d_backward_filter', device, [[w.shape, 'float32']], [null, sx.storage, g], ints);
    return [dx, dw, db ?? null];
  }, [sx, sw].filter((v) => v !== null).map((v) => v.storage));
}
