/**
 * AlexNet and AlexNet-mini (docs/alexnet.md), in two forms that compute the same function:
 *
 * - towers: 1, the single-device form: conv2, conv4 and conv5 with groups 2 and LRN with groups 2
 *   (the LRN window stays inside a tower's channels, as in the two-tower net).
 * - towers: 2, the paper's two-GPU model: every layer split in halves, tower A (the first half of
 *   each layer's filters or units) on devices[0], tower B (the second half) on devices[1]. The
 *   towers exchange activations (t.to()) only where they meet: into conv3, fc6 and fc7 (each
 *   tower takes both halves, in the order [A, B]) and into fc8, computed on devices[0].
 *
 * Correspondence. A towers=1 parameter `X.weight` of shape [F, ...] is the concatenation along
 * dim 0 of `a.X.weight` and `b.X.weight` (likewise biases); `fc8.*` is shared. Initial weights
 * are drawn per half with the same seeds in both forms, so models built with the same seed are
 * equal; `copyAlexNetWeights` copies weights between any two models of the same architecture.
 *
 * Dropout. The mask is a pure function of (seed, element index). The two-tower model applies
 * dropout after the towers meet, to the concatenated [N, 4096] activation each tower reads (and
 * the same seed on both towers), so its masks are element for element those of the single-device
 * form, whose dropout sees the same [N, 4096] tensor. Both forms advance each dropout layer's
 * counter once per training forward.
 */
import { noGrad } from '../autograd.js';
import { DeviceError, ShapeError } from '../errors.js';
import { relu } from '../ops/activation.js';
import { concat, flatten, split } from '../ops/shape.js';
import { describe } from '../ops/validate.js';
import { deviceId, scope, Tensor } from '../tensor.js';
import { mixSeed, PAPER_STD, type InitOptions } from '../nn/init.js';
import { Conv2d, Dropout, Flatten, Linear, LRN, MaxPool2d, ReLU } from '../nn/layers.js';
import { Module, Sequential } from '../nn/module.js';

/** Where a convolution's input comes from in the two-tower model. */
export type ConvInput = 'image' | 'own' | 'both';

/** One convolution stage: conv + ReLU [+ LRN] [+ max-pool 3/2]. Channel counts are totals. */
export interface ConvStage {
  /** The layer's name, `conv1` to `conv5`. */
  name: string;
  /** Output channels, both towers together. */
  out: number;
  /** Square kernel size. */
  kernel: number;
  /** Stride of the convolution. */
  stride: number;
  /** Zero padding on each side. */
  padding: number;
  /** 'own': groups 2 in the single-device form; 'both': the towers meet; 'image': conv1. */
  input: ConvInput;
  /** Whether LRN (size 5) follows the ReLU. */
  lrn: boolean;
  /** Whether max-pooling (kernel 3, stride 2) ends the stage. */
  pool: boolean;
  /** The bias of the paper's initialisation (1 or 0). */
  paperBias: number;
}

/** The architecture: everything both forms are built from. */
export interface AlexNetSpec {
  /** Input [C, H, W]. */
  input: [number, number, number];
  /** The five convolution stages, conv1 to conv5. */
  convs: ConvStage[];
  /** Units of the hidden fully connected layers fc6, fc7 (totals), each followed by ReLU and dropout 0.5. */
  hidden: [number, number];
  /** Outputs of fc8, the logits. */
  numClasses: number;
  /** Inputs of fc6 (C·H·W after the last pool). */
  flatFeatures: number;
}

/** Options of {@link alexnet}. */
export interface AlexNetOptions {
  /** Default 1000 (AlexNet) or 10 (mini). */
  numClasses?: number;
  /** 1: single device, grouped convolutions; 2: two towers on two devices. Default 1. */
  towers?: 1 | 2;
  /** [device] for towers=1 (default ['cpu:0']); [towerA, towerB] for towers=2 (default ['cpu:0', 'cpu:1']). */
  devices?: string[];
  /** Seeds the weights and the dropout masks (default 0): construction is deterministic. */
  seed?: number;
  /** 'he' (default): He-normal weights, zero biases; 'paper': N(0, 0.01) weights, biases 1 in conv2, conv4, conv5, fc6, fc7. */
  init?: 'he' | 'paper';
}

/** Options of {@link alexnetMini}. */
export interface AlexNetMiniOptions extends AlexNetOptions {
  /** Width factor w: channel and unit counts scale by w (rounded to even counts). Default 1. */
  width?: number;
}

const POOL = { kernel: 3, stride: 2 };
const LRN_SIZE = 5;
const DROPOUT_P = 0.5;

function stage(name: string, out: number, kernel: number, stride: number, padding: number, input: ConvInput,
               lrn: boolean, pool: boolean, paperBias: number): ConvStage {
  return { name, out, kernel, stride, padding, input, lrn, pool, paperBias };
}

function finishSpec(input: [number, number, number], convs: ConvStage[], hidden: [number, number], numClasses: number): AlexNetSpec {
  let h = input[1];
  let w = input[2];
  for (const c of convs) {
    h = Math.floor((h + 2 * c.padding - c.kernel) / c.stride) + 1;
    w = Math.floor((w + 2 * c.padding - c.kernel) / c.stride) + 1;
    if (c.pool) {
      h = Math.floor((h - POOL.kernel) / POOL.stride) + 1;
      w = Math.floor((w - POOL.kernel) / POOL.stride) + 1;
    }
  }
  return { input, convs, hidden, numClasses, flatFeatures: convs[convs.length - 1].out * h * w };
}

function checkClasses(op: string, n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
    throw new ShapeError(`${op}: numClasses must be a positive integer, received ${describe(n)}`);
  }
  return n;
}

/**
 * The architecture of the paper's AlexNet for 3×224×224 inputs (conv1 padding 2, as
 * torchvision), without building it.
 *
 * @throws ShapeError for a numClasses that is not a positive integer
 *
 * @example
 * ```ts
 * const spec = cn.models.alexnetSpec();
 * spec.flatFeatures; // 9216 = 256 x 6 x 6, the inputs of fc6
 * ```
 */
export function alexnetSpec(numClasses = 1000): AlexNetSpec {
  checkClasses('alexnet', numClasses);
  return finishSpec([3, 224, 224], [
    stage('conv1', 96, 11, 4, 2, 'image', true, true, 0),
    stage('conv2', 256, 5, 1, 2, 'own', true, true, 1),
    stage('conv3', 384, 3, 1, 1, 'both', false, false, 0),
    stage('conv4', 384, 3, 1, 1, 'own', false, false, 1),
    stage('conv5', 256, 3, 1, 1, 'own', false, true, 1),
  ], [4096, 4096], numClasses);
}

/**
 * The architecture of AlexNet-mini for 1×28×28 inputs with width factor w (channel and unit
 * counts scaled by w and rounded to even numbers), without building it.
 *
 * @throws ShapeError for a width that is not a positive number or a numClasses that is not a
 *   positive integer
 *
 * @example
 * ```ts
 * const spec = cn.models.alexnetMiniSpec(0.5);
 * spec.convs.map((c) => c.out); // [32, 64, 96, 96, 64]
 * ```
 */
export function alexnetMiniSpec(width = 1, numClasses = 10): AlexNetSpec {
  if (typeof width !== 'number' || !Number.isFinite(width) || width <= 0) {
    throw new ShapeError(`alexnetMini: width must be a positive number, received ${describe(width)}`);
  }
  checkClasses('alexnetMini', numClasses);
  // Even counts, so every layer splits into two towers.
  const ch = (c: number) => 2 * Math.max(1, Math.round((c * width) / 2));
  return finishSpec([1, 28, 28], [
    stage('conv1', ch(64), 5, 1, 2, 'image', true, true, 0),
    stage('conv2', ch(128), 5, 1, 2, 'own', true, true, 1),
    stage('conv3', ch(192), 3, 1, 1, 'both', false, false, 0),
    stage('conv4', ch(192), 3, 1, 1, 'own', false, false, 1),
    stage('conv5', ch(128), 3, 1, 1, 'own', false, true, 1),
  ], [ch(1024), ch(1024)], numClasses);
}

/** Layer numbers 1..8 for seeds: conv1..conv5, fc6, fc7, fc8. */
const FC_NAMES = ['fc6', 'fc7'] as const;

/** The per-half seeds of layer number l (1-based), shared by both forms. */
function halfSeeds(seed: number, l: number): [number, number] {
  const s = mixSeed(seed, l);
  return [mixSeed(s, 0), mixSeed(s, 1)];
}

function layerInit(init: 'he' | 'paper', paperBias: number, seed: number | number[]): InitOptions {
  return init === 'paper' ? { std: PAPER_STD, bias: paperBias, seed } : { seed };
}

function dropoutSeed(seed: number, l: number): number {
  return mixSeed(seed, 100 + l);
}

function onDevice(x: Tensor, device: string): Tensor {
  return x.device === device ? x : x.to(device);
}

interface Resolved {
  spec: AlexNetSpec;
  towers: 1 | 2;
  devices: string[];
  seed: number;
  init: 'he' | 'paper';
}

function resolve(op: string, spec: AlexNetSpec, opts: AlexNetOptions): Resolved {
  const towers = opts.towers ?? 1;
  if (towers !== 1 && towers !== 2) throw new ShapeError(`${op}: towers must be 1 or 2, received ${describe(towers)}`);
  const devices = opts.devices ?? (towers === 1 ? ['cpu:0'] : ['cpu:0', 'cpu:1']);
  if (!Array.isArray(devices) || devices.length < towers || devices.some((d) => typeof d !== 'string')) {
    throw new DeviceError(`${op}: devices must list ${towers} device id string${towers === 2 ? 's' : ''}, received ${describe(devices)}`);
  }
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0) throw new ShapeError(`${op}: seed must be a non-negative integer, received ${describe(seed)}`);
  const init = opts.init ?? 'he';
  if (init !== 'he' && init !== 'paper') throw new ShapeError(`${op}: init must be 'he' or 'paper', received ${describe(init)}`);
  return { spec, towers, devices: devices.slice(0, towers).map(deviceId), seed, init };
}

/**
 * The single-device form: a Sequential of conv1, relu1, lrn1, pool1, conv2, ..., pool5, flatten,
 * fc6, relu6, drop6, fc7, relu7, drop7, fc8. The input is copied to the model's device if needed.
 * Made by {@link alexnet} and {@link alexnetMini} with `towers: 1` (the default).
 *
 * @example
 * ```ts
 * const model = cn.models.alexnetMini({ devices: ['cuda:0'] });
 * const logits = model.forward(cn.zeros([8, 1, 28, 28])); // [8, 10] on cuda:0
 * model.getParameter('conv2.weight').shape; // [128, 32, 5, 5]: groups 2
 * ```
 */
export class AlexNetGrouped extends Sequential {
  /** The form: one device. */
  readonly towers = 1 as const;
  /** The architecture the model was built from. */
  readonly spec: AlexNetSpec;

  /** @internal Use `alexnet()` / `alexnetMini()`. */
  constructor(r: Resolved) {
    const { spec, seed, init } = r;
    const device = r.devices[0];
    const layers: [string, Module][] = [];
    let inC = spec.input[0];
    spec.convs.forEach((c, i) => {
      const n = i + 1;
      layers.push([c.name, new Conv2d(inC, c.out, c.kernel, {
        stride: c.stride, padding: c.padding, groups: c.input === 'own' ? 2 : 1, device,
        init: layerInit(init, c.paperBias, halfSeeds(seed, n)),
      })]);
      layers.push([`relu${n}`, new ReLU()]);
      if (c.lrn) layers.push([`lrn${n}`, new LRN(LRN_SIZE, { groups: 2 })]);
      if (c.pool) layers.push([`pool${n}`, new MaxPool2d(POOL.kernel, { stride: POOL.stride })]);
      inC = c.out;
    });
    layers.push(['flatten', new Flatten()]);
    let inF = spec.flatFeatures;
    spec.hidden.forEach((units, j) => {
      const n = spec.convs.length + 1 + j;
      layers.push([FC_NAMES[j], new Linear(inF, units, { device, init: layerInit(init, 1, halfSeeds(seed, n)) })]);
      layers.push([`relu${n}`, new ReLU()]);
      layers.push([`drop${n}`, new Dropout(DROPOUT_P, { seed: dropoutSeed(seed, n) })]);
      inF = units;
    });
    const n8 = spec.convs.length + 3;
    layers.push(['fc8', new Linear(inF, spec.numClasses, { device, init: layerInit(init, 0, mixSeed(seed, n8)) })]);
    super(...layers);
    this.spec = spec;
  }

  /** [device]. */
  get devices(): string[] {
    return [this.device ?? 'cpu:0'];
  }

  /** x [N, C, H, W] -> logits [N, numClasses] on the model's device. */
  forward(x: Tensor): Tensor {
    return scope(() => super.forward(onDevice(x, this.device ?? 'cpu:0')));
  }
}

/**
 * One tower's half of every layer but fc8: the children `a` and `b` of {@link AlexNetTwoTower},
 * which runs them (a tower's own `forward` throws). Its parameters are named like the
 * single-device model's, e.g. `conv1.weight` (`a.conv1.weight` in the whole model).
 *
 * @example
 * ```ts
 * const model = cn.models.alexnet({ towers: 2, devices: ['cuda:0', 'cuda:1'] });
 * model.a.convs[0].weight.shape; // [48, 3, 11, 11]: half of conv1's filters
 * model.b.device; // 'cuda:1'
 * ```
 */
export class AlexNetTower extends Module {
  /** This tower's half of conv1 to conv5. */
  readonly convs: Conv2d[] = [];
  /** The LRN applied after conv1 and conv2 (no parameters). */
  readonly lrn = new LRN(LRN_SIZE);
  /** The 3/2 max-pooling after conv1, conv2 and conv5 (no parameters). */
  readonly pool = new MaxPool2d(POOL.kernel, { stride: POOL.stride });
  /** This tower's half of fc6 and fc7. */
  readonly fcs: Linear[] = [];

  /** @internal Made by AlexNetTwoTower. */
  constructor(r: Resolved, half: 0 | 1) {
    super();
    const { spec, seed, init } = r;
    const device = r.devices[half];
    let inC = spec.input[0];
    spec.convs.forEach((c, i) => {
      // 'own' reads this tower's half of the previous layer; 'image' and 'both' read all of it.
      const inputs = c.input === 'own' ? inC / 2 : inC;
      this.convs.push(this.registerModule(c.name, new Conv2d(inputs, c.out / 2, c.kernel, {
        stride: c.stride, padding: c.padding, device,
        init: layerInit(init, c.paperBias, halfSeeds(seed, i + 1)[half]),
      })));
      inC = c.out;
    });
    let inF = spec.flatFeatures;
    spec.hidden.forEach((units, j) => {
      const n = spec.convs.length + 1 + j;
      this.fcs.push(this.registerModule(FC_NAMES[j], new Linear(inF, units / 2, {
        device, init: layerInit(init, 1, halfSeeds(seed, n)[half]),
      })));
      inF = units;
    });
  }

  /** A tower does not run alone: its model interleaves both towers and their exchanges. */
  forward(_x: Tensor): Tensor {
    throw new ShapeError('AlexNetTower: a tower runs only inside its AlexNetTwoTower model; call the model\'s forward');
  }
}

/**
 * The two-tower form: children `a` (tower A, devices[0]), `b` (tower B, devices[1]), `drop6`,
 * `drop7` and `fc8` (on devices[0]). The forward pass issues each layer's work on both towers
 * before the next layer and reads nothing back, so both devices' queues run at the same time.
 * Made by {@link alexnet} and {@link alexnetMini} with `towers: 2`.
 *
 * @example
 * ```ts
 * const model = cn.models.alexnetMini({ width: 0.5, towers: 2, devices: ['cpu:0', 'cpu:1'] });
 * const logits = model.forward(cn.zeros([8, 1, 28, 28])); // [8, 10] on cpu:0
 * model.to(['cuda:0', 'cuda:1']);
 * ```
 */
export class AlexNetTwoTower extends Module {
  /** The form: two towers. */
  readonly towers = 2 as const;
  /** The architecture the model was built from. */
  readonly spec: AlexNetSpec;
  /** Tower A, on devices[0]. */
  readonly a: AlexNetTower;
  /** Tower B, on devices[1]. */
  readonly b: AlexNetTower;
  /** The dropout layers after fc6 and fc7 (`drop6`, `drop7`), shared by both towers. */
  readonly drops: [Dropout, Dropout];
  /** The output layer, whole, on devices[0]. */
  readonly fc8: Linear;

  /** @internal Use `alexnet({ towers: 2 })` / `alexnetMini({ towers: 2 })`. */
  constructor(r: Resolved) {
    super();
    const { spec, seed, init } = r;
    this.spec = spec;
    this.a = this.registerModule('a', new AlexNetTower(r, 0));
    this.b = this.registerModule('b', new AlexNetTower(r, 1));
    const n6 = spec.convs.length + 1;
    this.drops = [
      this.registerModule('drop6', new Dropout(DROPOUT_P, { seed: dropoutSeed(seed, n6) })),
      this.registerModule('drop7', new Dropout(DROPOUT_P, { seed: dropoutSeed(seed, n6 + 1) })),
    ];
    this.fc8 = this.registerModule('fc8', new Linear(spec.hidden[1], spec.numClasses, {
      device: r.devices[0], init: layerInit(init, 0, mixSeed(seed, n6 + 2)),
    }));
  }

  /** [tower A's device, tower B's device]. */
  get devices(): string[] {
    return [this.a.device ?? 'cpu:0', this.b.device ?? 'cpu:1'];
  }

  /**
   * Moves the model: a device list puts tower A (and fc8) on devices[0] and tower B on
   * devices[1]; a single device puts both towers there (the model still runs as two towers).
   */
  to(device: string | readonly string[]): this {
    const [dA, dB] = typeof device === 'string' ? [device, device] : device;
    if (typeof dA !== 'string' || typeof dB !== 'string') {
      throw new DeviceError(`AlexNetTwoTower.to: device must be a device id or a list of two, received ${describe(device)}`);
    }
    this.a.to(dA);
    this.b.to(dB);
    this.fc8.to(dA);
    return this;
  }

  /** x [N, C, H, W] (any device) -> logits [N, numClasses] on devices[0]. */
  forward(x: Tensor): Tensor {
    return scope(() => {
      const [dA, dB] = this.devices;
      const A = this.a;
      const B = this.b;
      // Where the towers meet, each takes [A's half, B's half] on its own device.
      const meet = (ha: Tensor, hb: Tensor): [Tensor, Tensor] => [concat([ha, onDevice(hb, dA)], 1), concat([onDevice(ha, dB), hb], 1)];
      let a = onDevice(x, dA);
      let b = onDevice(x, dB);
      this.spec.convs.forEach((c, i) => {
        if (c.input === 'both') [a, b] = meet(a, b);
        a = relu(A.convs[i].forward(a));
        b = relu(B.convs[i].forward(b));
        if (c.lrn) {
          a = A.lrn.forward(a);
          b = B.lrn.forward(b);
        }
        if (c.pool) {
          a = A.pool.forward(a);
          b = B.pool.forward(b);
        }
      });
      a = flatten(a);
      b = flatten(b);
      for (let j = 0; j < 2; j++) {
        [a, b] = meet(a, b);
        // Dropout of the previous hidden layer, on the joined activation (see the file comment).
        if (j > 0) [a, b] = this.drops[j - 1].forwardShared([a, b]);
        a = relu(A.fcs[j].forward(a));
        b = relu(B.fcs[j].forward(b));
      }
      const joined = concat([a, onDevice(b, dA)], 1);
      return this.fc8.forward(this.drops[1].forward(joined));
    });
  }
}

/** Either form of AlexNet or AlexNet-mini. */
export type AlexNet = AlexNetGrouped | AlexNetTwoTower;

function build(r: Resolved): AlexNet {
  return r.towers === 1 ? new AlexNetGrouped(r) : new AlexNetTwoTower(r);
}

/**
 * The paper's AlexNet (60,965,224 parameters with 1000 classes), input [N, 3, 224, 224].
 * towers: 1 (default) is the single-device grouped form; towers: 2 runs the two towers on
 * devices[0] and devices[1]. Construction is deterministic for a given `seed`.
 *
 * @throws ShapeError for bad numClasses, towers, seed or init; DeviceError for a devices list
 *   that does not name one device per tower, or an unknown device
 *
 * @example
 * ```ts
 * const model = cn.models.alexnet({ devices: ['cuda:0'] });
 * model.parameterCount(); // 60965224
 * const twoGpu = cn.models.alexnet({ towers: 2, devices: ['cuda:0', 'cuda:1'], seed: 1 });
 * ```
 */
export function alexnet(opts: AlexNetOptions & { towers: 2 }): AlexNetTwoTower;
export function alexnet(opts?: AlexNetOptions & { towers?: 1 }): AlexNetGrouped;
export function alexnet(opts?: AlexNetOptions): AlexNet;
export function alexnet(opts: AlexNetOptions = {}): AlexNet {
  return build(resolve('alexnet', alexnetSpec(opts.numClasses ?? 1000), opts));
}

/**
 * AlexNet-mini, input [N, 1, 28, 28], 10 classes by default (see alexnet.md §2): the same
 * architecture as {@link alexnet} at Fashion-MNIST scale, with width factor `width`.
 *
 * @throws ShapeError for bad width, numClasses, towers, seed or init; DeviceError for a
 *   devices list that does not name one device per tower, or an unknown device
 *
 * @example
 * ```ts
 * const model = cn.models.alexnetMini({ width: 0.5 });
 * model.parameterCount(); // 550538
 * const logits = model.forward(cn.zeros([4, 1, 28, 28])); // [4, 10]
 * ```
 */
export function alexnetMini(opts: AlexNetMiniOptions & { towers: 2 }): AlexNetTwoTower;
export function alexnetMini(opts?: AlexNetMiniOptions & { towers?: 1 }): AlexNetGrouped;
export function alexnetMini(opts?: AlexNetMiniOptions): AlexNet;
export function alexnetMini(opts: AlexNetMiniOptions = {}): AlexNet {
  return build(resolve('alexnetMini', alexnetMiniSpec(opts.width ?? 1, opts.numClasses ?? 10), opts));
}

/** The single-device name of a two-tower parameter and which half it is (null: fc8, whole). */
function groupedName(name: string): [string, 0 | 1 | null] {
  if (name.startsWith('a.')) return [name.slice(2), 0];
  if (name.startsWith('b.')) return [name.slice(2), 1];
  return [name, null];
}

/** The model's parameters in single-device form (two-tower halves joined on tower A's device). */
function groupedParameters(m: AlexNet): Map<string, Tensor> {
  if (m.towers === 1) return new Map(m.namedParameters());
  const out = new Map<string, Tensor>();
  const halves = new Map<string, Tensor[]>();
  for (const [name, t] of m.namedParameters()) {
    const [g, half] = groupedName(name);
    if (half === null) out.set(g, t);
    else halves.set(g, [...(halves.get(g) ?? []), t]);
  }
  const dA = m.devices[0];
  for (const [g, [ta, tb]] of halves) out.set(g, concat([ta, onDevice(tb, dA)], 0));
  return out;
}

/**
 * Copies the weights of `src` into `dst`, two models of the same architecture in either form
 * (towers 1 → 2 splits each layer into halves, 2 → 1 joins them, and 1 → 1 or 2 → 2 copies).
 * The destination's parameters keep their identity; the copies cross devices as needed.
 *
 * @throws ShapeError when the two models have different architectures
 *
 * @example
 * ```ts
 * const one = cn.models.alexnetMini({ seed: 3 });
 * const two = cn.models.alexnetMini({ towers: 2, devices: ['cpu:0', 'cpu:1'] });
 * cn.models.copyAlexNetWeights(one, two); // two now computes what one does
 * ```
 */

export function copyAlexNetWeights(src: AlexNet, dst: AlexNet): void {
  if (JSON.stringify(src.spec) !== JSON.stringify(dst.spec)) {
    throw new ShapeError('copyAlexNetWeights: src and dst must have the same architecture (network, width and numClasses)');
  }
  noGrad(() => scope(() => {
    const full = groupedParameters(src);
    if (dst.towers === 1) {
      for (const [name, t] of full) dst.assignParameter(name, t);
      return;
    }
    for (const [name, p] of dst.namedParameters()) {
      const [g, half] = groupedName(name);
      const t = full.get(g) as Tensor;
      if (half === null) {
        dst.assignParameter(name, t);
      } else {
        const pieces = split(t, [p.shape[0], p.shape[0]], 0);
        dst.assignParameter(name, pieces[half]);
      }
    }
  }));
}
