/**
 * The layer shapes of the kernel benchmark (`bench conv`), in one table shared by every driver:
 * our kernels, cuDNN, the PyTorch peer (which receives this list as JSON) and the HTML page.
 *
 * AlexNet is timed in the paper's two-tower shapes, one tower's work per row (what each GPU
 * computes): conv1 3->48 11x11 stride 4 pad 2 on 224x224; conv2 48->128 5x5 pad 2 on 27x27 (own
 * tower); conv3 256->192 3x3 pad 1 on 13x13 (reads both towers); conv4 192->192 and conv5
 * 192->128 3x3 pad 1 on 13x13 (own tower). The single-device form runs conv2, conv4 and conv5
 * with groups 2 over both towers' channels, which is the same work twice. fc6 (9216->2048) and
 * fc7 (4096->2048) are per tower too; fc8 (4096->1000) runs on one device.
 * AlexNet-mini is timed in its single-device form at width w: conv1 1->64w 5x5 pad 2 on 28x28,
 * conv2 64w->128w 5x5 pad 2 groups 2 on 13x13, conv3 128w->192w 3x3 pad 1 on 6x6, conv4
 * 192w->192w and conv5 192w->128w 3x3 pad 1 groups 2 on 6x6, then fc6/fc7 (1024w) and fc8 (10).
 *
 * Work counts. A convolution pass (forward, backward-data or backward-filter) costs
 * 2 * N * F * (C/G) * KH * KW * OH * OW floating-point operations; a linear pass 2 * N * K * M.
 * `bytes` is the least memory traffic a pass needs (each tensor read or written once, float32;
 * max-pool indices are int32), so bytes / time is the bandwidth a memory-bound kernel reaches.
 */
import { alexnetMini, DROPOUT_P, LRN, POOL } from './alexnet_mini.js';

export { DROPOUT_P, LRN, POOL };

export type Model = 'alexnet' | 'alexnet-mini';
export const MODELS: Model[] = ['alexnet', 'alexnet-mini'];

/**
 * fwd: forward. bwd_data: the gradient with respect to the input. bwd_filter: the gradient with
 * respect to the weights (conv filter, linear weight). bwd: the one backward of a layer without
 * weights.
 */
export type Pass = 'fwd' | 'bwd_data' | 'bwd_filter' | 'bwd';
export const PASS_LABEL: Record<Pass, string> = { fwd: 'fwd', bwd_data: 'bwd-data', bwd_filter: 'bwd-filter', bwd: 'bwd' };

export type Kind = 'conv' | 'linear' | 'relu' | 'pool' | 'lrn' | 'dropout' | 'xent';

export interface BenchLayer {
  name: string;
  kind: Kind;
  /** A few words for the tables. */
  what: string;
  passes: Pass[];
  /** Input [N, C, H, W] or [N, K]; output likewise ([] for the loss). */
  x: number[];
  y: number[];
  /** conv [F, C/G, KH, KW]; linear [M, K]. */
  w?: number[];
  stride?: number;
  padding?: number;
  groups?: number;
  /** The 14 ints of our conv2d ops: N,C,H,W,F,KH,KW,sh,sw,ph,pw,G,OH,OW. */
  convInts?: number[];
  /** Floating-point operations of each pass (0 for the memory-bound layers). */
  flops: Partial<Record<Pass, number>>;
  /** Least bytes each pass moves. */
  bytes: Partial<Record<Pass, number>>;
}

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

function conv(name: string, x: number[], f: number, k: number, stride: number, pad: number, groups: number): BenchLayer {
  const [N, C, H, W] = x;
  const OH = Math.floor((H + 2 * pad - k) / stride) + 1;
  const OW = Math.floor((W + 2 * pad - k) / stride) + 1;
  const w = [f, C / groups, k, k];
  const y = [N, f, OH, OW];
  const flops = 2 * N * f * (C / groups) * k * k * OH * OW;
  const b = 4 * (size(x) + size(w) + size(y));
  return {
    name, kind: 'conv', x, y, w, stride, padding: pad, groups,
    what: `conv ${k}x${k}${stride > 1 ? `/${stride}` : ''} p${pad}${groups > 1 ? ` g${groups}` : ''} ${C}->${f}`,
    passes: ['fwd', 'bwd_data', 'bwd_filter'],
    convInts: [N, C, H, W, f, k, k, stride, stride, pad, pad, groups, OH, OW],
    flops: { fwd: flops, bwd_data: flops, bwd_filter: flops },
    bytes: { fwd: b, bwd_data: b, bwd_filter: b },
  };
}

function linear(name: string, n: number, k: number, m: number): BenchLayer {
  const flops = 2 * n * k * m;
  const b = 4 * (n * k + m * k + n * m);
  return {
    name, kind: 'linear', what: `linear ${k}->${m}`, x: [n, k], y: [n, m], w: [m, k],
    passes: ['fwd', 'bwd_data', 'bwd_filter'],
    flops: { fwd: flops, bwd_data: flops, bwd_filter: flops },
    bytes: { fwd: b, bwd_data: b, bwd_filter: b },
  };
}

function pointwise(name: string, kind: Kind, x: number[]): BenchLayer {
  const n = size(x);
  switch (kind) {
    case 'relu':
      // fwd reads x, writes y; bwd reads x and dy, writes dx.
      return { name, kind, what: 'relu', x, y: x, passes: ['fwd', 'bwd'], flops: {}, bytes: { fwd: 8 * n, bwd: 12 * n } };
    case 'lrn':
      // fwd reads x, writes y and the saved scale; bwd reads x, y, scale, dy, writes dx.
      return { name, kind, what: `lrn n=${LRN.size}`, x, y: x, passes: ['fwd', 'bwd'], flops: {}, bytes: { fwd: 12 * n, bwd: 20 * n } };
    case 'dropout':
      return { name, kind, what: `dropout ${DROPOUT_P}`, x, y: x, passes: ['fwd', 'bwd'], flops: {}, bytes: { fwd: 8 * n, bwd: 8 * n } };
    default:
      throw new Error(`layers: ${kind} is not a pointwise layer`);
  }
}

function pool(name: string, x: number[]): BenchLayer {
  const [N, C, H, W] = x;
  const o = (d: number) => Math.floor((d - POOL.kernel) / POOL.stride) + 1;
  const y = [N, C, o(H), o(W)];
  // fwd reads x, writes y and the int32 argmax; bwd reads dy and the argmax, writes dx.
  return {
    name, kind: 'pool', what: `maxpool ${POOL.kernel}/${POOL.stride}`, x, y, passes: ['fwd', 'bwd'], flops: {},
    bytes: { fwd: 4 * size(x) + 8 * size(y), bwd: 4 * size(x) + 8 * size(y) },
  };
}

function xent(name: string, n: number, m: number): BenchLayer {
  // fwd reads the logits (and labels), writes the probabilities; bwd reads them, writes dlogits.
  return {
    name, kind: 'xent', what: `softmax xent ${m} classes`, x: [n, m], y: [], passes: ['fwd', 'bwd'], flops: {},
    bytes: { fwd: 8 * n * m + 4 * n, bwd: 8 * n * m + 4 * n },
  };
}

/** AlexNet, one tower's share of each layer (see the header). */
function alexnet(n: number): BenchLayer[] {
  return [
    conv('conv1', [n, 3, 224, 224], 48, 11, 4, 2, 1),
    conv('conv2', [n, 48, 27, 27], 128, 5, 1, 2, 1),
    conv('conv3', [n, 256, 13, 13], 192, 3, 1, 1, 1),
    conv('conv4', [n, 192, 13, 13], 192, 3, 1, 1, 1),
    conv('conv5', [n, 192, 13, 13], 128, 3, 1, 1, 1),
    linear('fc6', n, 9216, 2048),
    linear('fc7', n, 4096, 2048),
    linear('fc8', n, 4096, 1000),
    pointwise('relu1', 'relu', [n, 48, 55, 55]),
    pointwise('lrn1', 'lrn', [n, 48, 55, 55]),
    pool('pool1', [n, 48, 55, 55]),
    pointwise('lrn2', 'lrn', [n, 128, 27, 27]),
    pool('pool2', [n, 128, 27, 27]),
    pool('pool5', [n, 128, 13, 13]),
    pointwise('drop6', 'dropout', [n, 2048]),
    xent('loss', n, 1000),
  ];
}

/** AlexNet-mini in its single-device form, from the same shape table as the cpu suite. */
function mini(n: number, width: number): BenchLayer[] {
  const net = new Map(alexnetMini(n, width).map((l) => [l.name, l]));
  const at = (name: string) => {
    const l = net.get(name);
    if (!l) throw new Error(`layers: AlexNet-mini has no layer ${name}`);
    return l;
  };
  const out: BenchLayer[] = [];
  for (const name of ['conv1', 'conv2', 'conv3', 'conv4', 'conv5']) {
    const l = at(name);
    out.push(conv(name, l.inShape, l.weight![0], l.weight![2], 1, l.padding!, l.groups!));
  }
  for (const name of ['fc6', 'fc7', 'fc8']) {
    const l = at(name);
    out.push(linear(name, n, l.weight![1], l.weight![0]));
  }
  out.push(
    pointwise('relu1', 'relu', at('relu1').inShape),
    pointwise('lrn1', 'lrn', at('lrn1').inShape),
    pool('pool1', at('pool1').inShape),
    pointwise('lrn2', 'lrn', at('lrn2').inShape),
    pool('pool2', at('pool2').inShape),
    pool('pool5', at('pool5').inShape),
    pointwise('drop6', 'dropout', at('drop6').inShape),
    xent('loss', n, at('fc8').outShape[1]),
  );
  return out;
}

export function benchLayers(model: Model, batch: number, width: number): BenchLayer[] {
  return model === 'alexnet' ? alexnet(batch) : mini(batch, width);
}

/** The pool2d ints of our native ops: N,C,H,W,KH,KW,sh,sw,ph,pw,OH,OW. */
export function poolInts(l: BenchLayer): number[] {
  const [N, C, H, W] = l.x;
  return [N, C, H, W, POOL.kernel, POOL.kernel, POOL.stride, POOL.stride, 0, 0, l.y[2], l.y[3]];
}

/** Arithmetic intensity of a pass: FLOPs per byte (0 for memory-bound layers). */
export function intensity(l: BenchLayer, pass: Pass): number {
  return (l.flops[pass] ?? 0) / (l.bytes[pass] ?? 1);
}
