/**
 * AlexNet-mini (docs/alexnet.md) as a list of layers, with the
 * shapes each layer sees at a given batch and width. The same list drives the per-op
 * measurements (one layer at a time) and the whole training step, so both use identical shapes.
 * The PyTorch peer (peers/torch_cpu.py) builds the same list; the driver checks that the op
 * names and shapes of both agree.
 *
 * Input 1x28x28, 10 classes. Channels scale with the width factor w:
 *   conv1 5x5 p2 (64w) relu lrn pool3/2 -> 13x13;  conv2 5x5 p2 g2 (128w) relu lrn pool3/2 -> 6x6;
 *   conv3 3x3 p1 (192w) relu;  conv4 3x3 p1 g2 (192w) relu;  conv5 3x3 p1 g2 (128w) relu pool3/2 -> 2x2;
 *   fc6 (1024w) relu dropout 0.5;  fc7 (1024w) relu dropout 0.5;  fc8 (10).
 * He-normal weights, std sqrt(2 / fan_in) with fan_in = C/groups*KH*KW or K; zero biases.
 */
import * as cn from '../src/index.js';

export const LRN = { size: 5, alpha: 1e-4, beta: 0.75, k: 2 } as const;
export const POOL = { kernel: 3, stride: 2 } as const;
export const DROPOUT_P = 0.5;
export const CLASSES = 10;
export const INPUT = [1, 28, 28] as const;

export type LayerKind = 'conv' | 'relu' | 'lrn' | 'pool' | 'flatten' | 'linear' | 'dropout' | 'loss';

export interface Layer {
  name: string;
  kind: LayerKind;
  /** [N, C, H, W] or [N, K]. */
  inShape: number[];
  outShape: number[];
  /** conv: [F, C/groups, KH, KW]; linear: [M, K]. Biases are [F] / [M]. */
  weight?: number[];
  padding?: number;
  groups?: number;
  /** He-normal std of the weight. */
  std?: number;
  /** Index among the dropout layers (names the mask together with the step). */
  dropoutIndex?: number;
}

/** What the op does, in a few words, for the tables. */
export function describeLayer(l: Layer): string {
  switch (l.kind) {
    case 'conv': {
      const [, , kh, kw] = l.weight!;
      return `conv2d ${kh}x${kw} p${l.padding}${l.groups! > 1 ? ` g${l.groups}` : ''}`;
    }
    case 'lrn':
      return `lrn n=${LRN.size}`;
    case 'pool':
      return `maxpool ${POOL.kernel}/${POOL.stride}`;
    case 'linear':
      return `linear ${l.weight![1]}->${l.weight![0]}`;
    case 'dropout':
      return `dropout ${DROPOUT_P}`;
    case 'loss':
      return 'softmax xent';
    default:
      return l.kind;
  }
}

/** The layers of AlexNet-mini, in order, ending with the loss. */
export function alexnetMini(batch: number, width: number): Layer[] {
  const ch = (c: number) => Math.max(2, Math.round(c * width));
  const layers: Layer[] = [];
  let shape: number[] = [batch, ...INPUT];
  let dropouts = 0;
  const add = (l: Omit<Layer, 'inShape' | 'outShape'>, out: number[]) => {
    layers.push({ ...l, inShape: shape, outShape: out });
    shape = out;
  };
  const conv = (n: number, f: number, k: number, pad: number, groups: number) => {
    const [N, C, H, W] = shape;
    const fanIn = (C / groups) * k * k;
    add({ name: `conv${n}`, kind: 'conv', weight: [f, C / groups, k, k], padding: pad, groups, std: Math.sqrt(2 / fanIn) },
      [N, f, H + 2 * pad - k + 1, W + 2 * pad - k + 1]);
    add({ name: `relu${n}`, kind: 'relu' }, shape);
  };
  const pool = (n: number) => {
    const [N, C, H, W] = shape;
    const o = (d: number) => Math.floor((d - POOL.kernel) / POOL.stride) + 1;
    add({ name: `pool${n}`, kind: 'pool' }, [N, C, o(H), o(W)]);
  };
  const fc = (n: number, m: number, last: boolean) => {
    const [N, K] = shape;
    add({ name: `fc${n}`, kind: 'linear', weight: [m, K], std: Math.sqrt(2 / K) }, [N, m]);
    if (last) return;
    add({ name: `relu${n}`, kind: 'relu' }, shape);
    add({ name: `drop${n}`, kind: 'dropout', dropoutIndex: dropouts++ }, shape);
  };

  conv(1, ch(64), 5, 2, 1);
  add({ name: 'lrn1', kind: 'lrn' }, shape);
  pool(1);
  conv(2, ch(128), 5, 2, 2);
  add({ name: 'lrn2', kind: 'lrn' }, shape);
  pool(2);
  conv(3, ch(192), 3, 1, 1);
  conv(4, ch(192), 3, 1, 2);
  conv(5, ch(128), 3, 1, 2);
  pool(5);
  add({ name: 'flatten', kind: 'flatten' }, [shape[0], shape.slice(1).reduce((a, b) => a * b, 1)]);
  fc(6, ch(1024), false);
  fc(7, ch(1024), false);
  fc(8, CLASSES, true);
  add({ name: 'loss', kind: 'loss' }, []);
  return layers;
}

/** The weight and bias of a conv or linear layer. */
export interface LayerParams {
  w: cn.Tensor;
  b: cn.Tensor;
}

/** He-normal weights and zero biases for every layer that has them, keyed by layer name. */
export function initParams(layers: readonly Layer[], seed: number): Map<string, LayerParams> {
  const params = new Map<string, LayerParams>();
  layers.forEach((l, i) => {
    if (!l.weight) return;
    params.set(l.name, {
      w: cn.randn(l.weight, { seed: seed + i, std: l.std, requiresGrad: true }),
      b: cn.zeros([l.weight[0]], { requiresGrad: true }),
    });
  });
  return params;
}

export function paramList(params: Map<string, LayerParams>): cn.Tensor[] {
  return [...params.values()].flatMap((p) => [p.w, p.b]);
}

/** Labels for the loss layer: a seeded stream of class indices in [0, classes). */
export function randomLabels(n: number, seed: number, classes = CLASSES): Int32Array {
  let s = (seed * 2654435761 + 1013904223) >>> 0;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 8) % classes;
  }
  return out;
}

/**
 * Runs one layer. `dropoutSeed` names the step (each step gets fresh masks); `labels` feeds the
 * loss layer.
 */
export function applyLayer(l: Layer, x: cn.Tensor, p: LayerParams | undefined, dropoutSeed: number,
                           labels: Int32Array): cn.Tensor {
  switch (l.kind) {
    case 'conv':
      return cn.conv2d(x, p!.w, p!.b, { padding: l.padding, groups: l.groups });
    case 'relu':
      return cn.relu(x);
    case 'lrn':
      return cn.lrn(x, LRN);
    case 'pool':
      return cn.maxPool2d(x, POOL);
    case 'flatten':
      return cn.flatten(x);
    case 'linear':
      return cn.linear(x, p!.w, p!.b);
    case 'dropout':
      return cn.dropout(x, { p: DROPOUT_P, seed: dropoutSeed * 8 + l.dropoutIndex!, training: true });
    case 'loss':
      return cn.softmaxCrossEntropy(x, labels);
  }
}

/** The whole network, input to scalar loss. */
export function forwardLoss(layers: readonly Layer[], params: Map<string, LayerParams>, x: cn.Tensor,
                            labels: Int32Array, dropoutSeed: number): cn.Tensor {
  let h = x;
  for (const l of layers) h = applyLayer(l, h, params.get(l.name), dropoutSeed, labels);
  return h;
}
