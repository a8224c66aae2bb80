/**
 * The comparisons of the GPU check: random cases for every op, each run on a reference device
 * and on the device under test, forward and backward, and the results compared.
 *
 * Plain JavaScript with no imports, so that both the GPU check (check.mjs, which runs where
 * there is no node_modules and loads the compiled dist/) and the vitest suite (which loads the
 * TypeScript sources) can use it: every function that touches tensors takes the package module
 * `cn` as an argument.
 *
 * A case: inputs are made on the reference device from seeded random data (leaves with
 * requiresGrad where the op has a gradient), copied to the device under test with `.to()`, the
 * op runs on both, then `backward()` runs on every output with the same random gradOutput on
 * both. Outputs and input gradients are compared by the normwise relative error
 * ||a - b|| / max(||b||, tiny), which must be under TOL; NaN anywhere fails (with
 * CONVNET_POISON=1 a NaN is an element no kernel wrote). Ops defined bit for bit (dropout
 * masks, fills, copies) must match exactly; randn to float32 rounding (see creationCases).
 */

/** Normwise relative error allowed between float32 results. */
export const TOL = 1e-4;

/**
 * The same for reduced-precision math (a case's `tol`): TF32 inputs keep 11 significant bits,
 * BF16 inputs 8.
 */
export const TOL_TF32 = 1e-3;
export const TOL_BF16 = 1e-2;

/** The rows of the report, in order. */
export const OPS = [
  'conv2d', 'conv2dV2', 'conv2dV3Tf32', 'conv2dV3Bf16', 'relu', 'maxPool2d', 'lrn', 'dropout', 'linear', 'softmaxCrossEntropy',
  'concat', 'split', 'sgdUpdate', 'randn', 'full', 'zeros', 'to',
  'add', 'sub', 'mul', 'div', 'neg', 'exp', 'log', 'sqrt', 'tanh', 'sigmoid', 'pow',
  'sum', 'mean', 'max', 'matmul', 'transpose', 'customOp', 'fuse',
];

/**
 * The native ops each checked op launches (names as in buildInfo().ops). Every op output also
 * needs 'fill' (the poison), and gradients reaching one leaf twice need 'axpy'.
 */
export const KERNELS = {
  conv2d: ['conv2d_forward', 'conv2d_backward_data', 'conv2d_backward_filter'],
  conv2dV2: ['conv2d_forward', 'conv2d_backward_data', 'conv2d_backward_filter'],
  conv2dV3Tf32: ['conv2d_forward', 'conv2d_backward_data', 'conv2d_backward_filter'],
  conv2dV3Bf16: ['conv2d_forward', 'conv2d_backward_data', 'conv2d_backward_filter'],
  relu: ['relu_forward', 'relu_backward'],
  maxPool2d: ['maxpool2d_forward', 'maxpool2d_backward'],
  lrn: ['lrn_forward', 'lrn_backward'],
  dropout: ['dropout'],
  linear: ['linear_forward', 'linear_backward_data', 'linear_backward_weight'],
  softmaxCrossEntropy: ['softmax_xent_forward', 'softmax_xent_backward'],
  concat: ['copy_blocks'],
  split: ['copy_blocks', 'axpy'],
  sgdUpdate: ['sgd'],
  randn: ['randn'],
  full: [],
  zeros: [],
  to: [],
  // Broadcast gradients are summed back with reduce (after a strided_copy when the summed
  // axes are not adjacent); mean scales with a broadcast binary.
  add: ['binary', 'reduce', 'strided_copy'],
  sub: ['binary', 'reduce', 'strided_copy'],
  mul: ['binary', 'reduce', 'strided_copy'],
  div: ['binary', 'reduce', 'strided_copy'],
  neg: ['unary', 'unary_backward'],
  exp: ['unary', 'unary_backward'],
  log: ['unary', 'unary_backward'],
  sqrt: ['unary', 'unary_backward'],
  tanh: ['unary', 'unary_backward'],
  sigmoid: ['unary', 'unary_backward'],
  pow: ['unary', 'unary_backward'],
  sum: ['reduce', 'strided_copy'],
  mean: ['reduce', 'strided_copy', 'binary'],
  max: ['reduce', 'reduce_max_backward', 'strided_copy'],
  matmul: ['matmul'],
  transpose: ['strided_copy'],
  customOp: ['binary', 'unary', 'unary_backward', 'reduce'],
  fuse: ['fused', 'reduce', 'strided_copy'],
};

/** A small seeded generator (mulberry32): uniform in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Shape and parameter choices drawn from one generator. */
class Draw {
  constructor(seed) {
    this.next = rng(seed);
  }
  /** An integer in [lo, hi]. */
  int(lo, hi) {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  real(lo, hi) {
    return lo + this.next() * (hi - lo);
  }
  pick(list) {
    return list[Math.floor(this.next() * list.length)];
  }
  chance(p) {
    return this.next() < p;
  }
  seed() {
    return this.int(1, 2 ** 31 - 1);
  }
}

const prod = (shape) => shape.reduce((a, b) => a * b, 1);
const fmt = (shape) => `[${shape.join(',')}]`;
const pair = (a, b) => (a === b ? `${a}` : `${a}x${b}`);

/**
 * n values in [-scale, scale) + offset. `zeros`: that fraction of exact zeros (ReLU's kink);
 * `levels`: values from a few levels only, so max-pool windows hold ties.
 */
export function randomData(n, next, { scale = 1, zeros = 0, levels = 0, offset = 0 } = {}) {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = next();
    if (levels > 0) out[i] = (Math.floor(u * levels) / (levels - 1)) * 2 * scale - scale;
    else out[i] = (2 * u - 1) * scale;
    if (zeros > 0 && next() < zeros) out[i] = 0;
    if (offset) out[i] += offset;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Cases. A case: { op, label, seed, inputs: [{ name, shape, grad, data? }], forward(cn, ts, ctx),
// exact?, backward? (default: when some input has grad) }. ctx.device is the device the
// inputs are on; ctx.target(name) maps 'reference' | 'device' | 'peer' to a device id.

// `version` 2: the row conv2dV2, the same op with the implicit-GEMM CUDA kernels (option
// `version: 2`); `version` 3 with `precision` 'tf32' or 'bf16': the rows conv2dV3Tf32 /
// conv2dV3Bf16, the tensor-core forward (gradients: version 2), compared within TOL_TF32 /
// TOL_BF16; otherwise conv2d with the default kernels (version 1).
function conv2dCase(d, p, note = '', version = 0, precision = undefined) {
  const { N, C, H, W, F, KH, KW, sh, sw, ph, pw, groups, bias } = p;
  const inputs = [
    { name: 'x', shape: [N, C, H, W], grad: true },
    { name: 'w', shape: [F, C / groups, KH, KW], grad: true },
  ];
  if (bias) inputs.push({ name: 'b', shape: [F], grad: true });
  const op = version === 3 ? (precision === 'bf16' ? 'conv2dV3Bf16' : 'conv2dV3Tf32') : version === 2 ? 'conv2dV2' : 'conv2d';
  return {
    op,
    label: `${note}x${fmt([N, C, H, W])} w${fmt(inputs[1].shape)} s${pair(sh, sw)} p${pair(ph, pw)} g${groups}${bias ? '' : ' no-bias'}`,
    seed: d.seed(),
    inputs,
    ...(precision ? { tol: precision === 'bf16' ? TOL_BF16 : TOL_TF32 } : {}),
    forward: (cn, [x, w, b]) => cn.conv2d(x, w, b ?? null, {
      stride: [sh, sw], padding: [ph, pw], groups, ...(version ? { version } : {}), ...(precision ? { precision } : {}),
    }),
  };
}

function randomConv(d, big) {
  const groups = d.pick([1, 1, 2, 3]);
  const C = groups * d.int(1, big ? 8 : 3), F = groups * d.int(1, big ? 8 : 3);
  const KH = d.int(1, big ? 7 : 4), KW = d.chance(0.6) ? KH : d.int(1, big ? 7 : 4);
  const sh = d.int(1, 3), sw = d.chance(0.6) ? sh : d.int(1, 4);
  // Padding up to the kernel size: some output cells then see only padding (bias alone).
  const ph = d.int(0, KH), pw = d.chance(0.6) ? Math.min(ph, KW) : d.int(0, KW);
  const H = Math.max(1, KH - 2 * ph) + d.int(0, big ? 20 : 5), W = Math.max(1, KW - 2 * pw) + d.int(0, big ? 20 : 5);
  return { N: d.int(1, big ? 4 : 2), C, H, W, F, KH, KW, sh, sw, ph, pw, groups, bias: d.chance(0.7) };
}

function conv2dCases(d, small, version = 0, precision = undefined) {
  if (small) {
    return [
      { N: 1, C: 3, H: 9, W: 9, F: 4, KH: 3, KW: 3, sh: 1, sw: 1, ph: 1, pw: 1, groups: 1, bias: true },
      { N: 2, C: 4, H: 7, W: 6, F: 6, KH: 3, KW: 2, sh: 2, sw: 1, ph: 1, pw: 0, groups: 2, bias: false },
      { N: 1, C: 3, H: 15, W: 15, F: 2, KH: 11, KW: 11, sh: 4, sw: 4, ph: 2, pw: 2, groups: 1, bias: true },
      { N: 1, C: 2, H: 3, W: 4, F: 3, KH: 1, KW: 1, sh: 2, sw: 3, ph: 1, pw: 2, groups: 1, bias: true },
    ].map((p) => conv2dCase(d, p, '', version, precision));
  }
  const n = () => d.int(1, 2);
  const around = (base, spread) => base + d.int(-spread, spread);
  const alexnet = [
    // AlexNet's five convolutions (two-tower groups), batch and spatial size drawn.
    { N: 1, C: 3, H: around(160, 67), W: 0, F: 96, KH: 11, KW: 11, sh: 4, sw: 4, ph: d.pick([0, 2]), pw: 0, groups: 1, bias: true },
    { N: n(), C: 96, H: around(24, 3), W: 0, F: 256, KH: 5, KW: 5, sh: 1, sw: 1, ph: 2, pw: 2, groups: 2, bias: true },
    { N: n(), C: 256, H: around(12, 2), W: 0, F: 384, KH: 3, KW: 3, sh: 1, sw: 1, ph: 1, pw: 1, groups: 1, bias: true },
    { N: n(), C: 384, H: around(12, 2), W: 0, F: 384, KH: 3, KW: 3, sh: 1, sw: 1, ph: 1, pw: 1, groups: 2, bias: false },
    { N: n(), C: 384, H: around(12, 2), W: 0, F: 256, KH: 3, KW: 3, sh: 1, sw: 1, ph: 1, pw: 1, groups: 2, bias: true },
  ].map((p) => ({ ...p, W: p.H + d.int(-1, 1), pw: p.pw || p.ph }));
  const odd = Array.from({ length: 8 }, () => randomConv(d, true));
  return [
    ...alexnet.map((p, i) => conv2dCase(d, p, `alexnet conv${i + 1} `, version, precision)),
    ...odd.map((p) => conv2dCase(d, p, '', version, precision)),
  ];
}

function unaryCase(op, d, shape, opts, label, forward, dataOpts) {
  return {
    op,
    label: `${label ? `${label} ` : ''}x${fmt(shape)}${opts ? ` ${opts}` : ''}`,
    seed: d.seed(),
    inputs: [{ name: 'x', shape, grad: true, dataOpts }],
    forward,
  };
}

function randomShape(d, rank, maxDim) {
  return Array.from({ length: rank }, () => d.int(1, maxDim));
}

function reluCases(d, small) {
  const f = (cn, [x]) => cn.relu(x);
  const zeros = { zeros: 0.1 };
  if (small) return [unaryCase('relu', d, [2, 3, 5, 7], '', 'with zeros', f, zeros)];
  return [
    unaryCase('relu', d, [d.int(1, 2), 96, 55, 55], '', 'alexnet', f, zeros),
    unaryCase('relu', d, [d.int(1, 16), 4096], '', 'alexnet fc', f, zeros),
    unaryCase('relu', d, [1], '', '', f),
    ...Array.from({ length: 3 }, () => unaryCase('relu', d, randomShape(d, d.int(1, 4), 37), '', '', f, zeros)),
  ];
}

function poolCase(d, [N, C, H, W], KH, KW, sh, sw, ph, pw, note, dataOpts) {
  const opts = { kernel: [KH, KW], stride: [sh, sw], padding: [ph, pw] };
  return unaryCase('maxPool2d', d, [N, C, H, W], `k${pair(KH, KW)} s${pair(sh, sw)} p${pair(ph, pw)}`, note,
    (cn, [x]) => cn.maxPool2d(x, opts), dataOpts);
}

function poolCases(d, small) {
  const ties = { levels: 5 };
  if (small) {
    return [
      poolCase(d, [1, 2, 7, 7], 3, 3, 2, 2, 0, 0, 'overlap'),
      poolCase(d, [1, 2, 6, 5], 3, 2, 2, 1, 1, 1, 'padded ties', ties),
    ];
  }
  const n = () => d.int(1, 3);
  const cases = [
    poolCase(d, [n(), 96, 55, 55], 3, 3, 2, 2, 0, 0, 'alexnet pool1'),
    poolCase(d, [n(), 256, 27, 27], 3, 3, 2, 2, 0, 0, 'alexnet pool2'),
    poolCase(d, [n(), 256, 13, 13], 3, 3, 2, 2, 0, 0, 'alexnet pool5', { zeros: 0.5 }),
    poolCase(d, [n(), 64, 28, 27], 3, 3, 2, 2, 1, 1, 'padded'),
    poolCase(d, [n(), 8, 16, 16], 2, 2, 2, 2, 0, 0, 'ties', ties),
  ];
  for (let i = 0; i < 4; i++) {
    const KH = d.int(1, 5), KW = d.chance(0.5) ? KH : d.int(1, 5);
    const ph = d.int(0, KH >> 1), pw = d.int(0, KW >> 1);
    const H = Math.max(1, KH - 2 * ph) + d.int(0, 12), W = Math.max(1, KW - 2 * pw) + d.int(0, 12);
    cases.push(poolCase(d, [d.int(1, 3), d.int(1, 7), H, W], KH, KW, d.int(1, 4), d.int(1, 4), ph, pw, '',
      d.chance(0.5) ? ties : undefined));
  }
  return cases;
}

function lrnCase(d, shape, size, alpha, beta, k, note) {
  const opts = { size, alpha, beta, k };
  return unaryCase('lrn', d, shape, `size ${size} alpha ${+alpha.toPrecision(3)} beta ${+beta.toPrecision(3)} k ${+k.toPrecision(3)}`,
    note, (cn, [x]) => cn.lrn(x, opts), { scale: 3 });
}

function lrnCases(d, small) {
  if (small) {
    return [lrnCase(d, [1, 7, 3, 4], 5, 0.5, 0.75, 2, ''), lrnCase(d, [2, 3, 2, 3], 4, 1, 0.6, 1, 'even size > C')];
  }
  const n = () => d.int(1, 2);
  const cases = [
    lrnCase(d, [n(), 96, 55, 55], 5, 1e-4, 0.75, 2, 'alexnet lrn1'),
    lrnCase(d, [n(), 256, 27, 27], 5, 1e-4, 0.75, 2, 'alexnet lrn2'),
    lrnCase(d, [n(), 16, 9, 9], 4, 0.5, 0.75, 1, 'even size'),
    lrnCase(d, [n(), 3, 5, 6], 7, 0.8, 0.5, 1, 'size > C'),
    lrnCase(d, [n(), 5, 4, 4], 1, 1, 1, 1, 'size 1'),
  ];
  for (let i = 0; i < 3; i++) {
    cases.push(lrnCase(d, [d.int(1, 3), d.int(1, 24), d.int(1, 11), d.int(1, 11)], d.int(1, 9), d.real(1e-4, 1),
      d.real(0.5, 1), d.real(0.5, 3), ''));
  }
  return cases;
}

function dropoutCase(d, shape, p, seed, note) {
  const c = unaryCase('dropout', d, shape, `p ${+p.toPrecision(3)} seed ${seed}`, note, (cn, [x]) => cn.dropout(x, { p, seed }));
  c.exact = true;
  return c;
}

function dropoutCases(d, small) {
  if (small) return [dropoutCase(d, [3, 37], 0.5, 7, '')];
  return [
    dropoutCase(d, [d.int(1, 64), 4096], 0.5, d.seed(), 'alexnet fc'),
    dropoutCase(d, [d.int(1, 3), 9216], d.real(0.05, 0.95), d.seed(), ''),
    dropoutCase(d, [1], 0.5, d.seed(), ''),
    dropoutCase(d, randomShape(d, 3, 40), d.real(0.05, 0.95), 2 ** 40 + d.seed(), 'seed > 2^32'),
    dropoutCase(d, [1000003], 0.1, d.seed(), ''),
  ];
}

function linearCase(d, N, K, M, bias, note) {
  const inputs = [{ name: 'x', shape: [N, K], grad: true }, { name: 'w', shape: [M, K], grad: true }];
  if (bias) inputs.push({ name: 'b', shape: [M], grad: true });
  return {
    op: 'linear',
    label: `${note ? `${note} ` : ''}x${fmt([N, K])} w${fmt([M, K])}${bias ? '' : ' no-bias'}`,
    seed: d.seed(),
    inputs,
    forward: (cn, [x, w, b]) => cn.linear(x, w, b ?? null),
  };
}

function linearCases(d, small) {
  if (small) return [linearCase(d, 3, 17, 5, true, ''), linearCase(d, 2, 4, 3, false, '')];
  const n = () => d.int(1, 16);
  return [
    linearCase(d, n(), 9216, 4096, true, 'alexnet fc6'),
    linearCase(d, n(), 4096, 4096, true, 'alexnet fc7'),
    linearCase(d, n(), 4096, 1000, false, 'alexnet fc8'),
    linearCase(d, 1, 1, 1, true, ''),
    ...Array.from({ length: 4 }, () => linearCase(d, d.int(1, 9), d.int(1, 300), d.int(1, 300), d.chance(0.7), '')),
  ];
}

function xentCase(d, N, M, scale, note) {
  const seed = d.seed();
  const pickLabels = rng(seed ^ 0x5bd1e995);
  const labels = Int32Array.from({ length: N }, () => Math.floor(pickLabels() * M));
  return {
    op: 'softmaxCrossEntropy',
    label: `${note ? `${note} ` : ''}logits${fmt([N, M])} scale ${scale}`,
    seed,
    inputs: [{ name: 'logits', shape: [N, M], grad: true, dataOpts: { scale } }],
    forward: (cn, [logits]) => cn.softmaxCrossEntropy(logits, labels),
  };
}

function xentCases(d, small) {
  if (small) return [xentCase(d, 3, 10, 1, '')];
  return [
    xentCase(d, d.int(1, 128), 1000, 1, 'alexnet'),
    xentCase(d, d.int(1, 128), 1000, 50, 'large logits'),
    xentCase(d, 4, 1, 1, 'one class'),
    xentCase(d, d.int(1, 70), 2, 3, ''),
    xentCase(d, d.int(1, 70), d.int(1, 1100), d.int(1, 20), ''),
  ];
}

function concatCase(d, shapes, axis) {
  return {
    op: 'concat',
    label: `${shapes.map(fmt).join(' + ')} axis ${axis}`,
    seed: d.seed(),
    inputs: shapes.map((shape, i) => ({ name: `ts[${i}]`, shape, grad: true })),
    forward: (cn, ts) => cn.concat(ts, axis),
  };
}

function splitCase(d, shape, sizes, axis) {
  return {
    op: 'split',
    label: `${fmt(shape)} sizes ${fmt(sizes)} axis ${axis}`,
    seed: d.seed(),
    inputs: [{ name: 'x', shape, grad: true }],
    forward: (cn, [x]) => cn.split(x, sizes, axis),
  };
}

function shapeCases(d, small) {
  if (small) {
    return [concatCase(d, [[2, 3, 4], [2, 1, 4]], 1), splitCase(d, [3, 5, 2], [2, 3], 1)];
  }
  const cases = [
    // The two towers of AlexNet joined along channels, and split again.
    concatCase(d, [[2, 128, 6, 6], [2, 128, 6, 6]], 1),
    splitCase(d, [2, 256, 6, 6], [128, 128], 1),
    splitCase(d, [4, 3], [0, 3, 1], 0),
  ];
  for (let i = 0; i < 4; i++) {
    const rank = d.int(1, 4);
    const base = randomShape(d, rank, 9);
    const axis = d.int(0, rank - 1);
    const k = d.int(2, 4);
    const shapes = Array.from({ length: k }, () => base.map((v, j) => (j === axis ? d.int(1, 6) : v)));
    cases.push(concatCase(d, shapes, d.chance(0.3) ? axis - rank : axis));
    // The first draw allows empty pieces.
    const sizes = Array.from({ length: k }, () => d.int(i === 0 ? 0 : 1, 5));
    if (sizes.every((s) => s === 0)) sizes[0] = 1;
    const total = sizes.reduce((a, b) => a + b, 0);
    cases.push(splitCase(d, base.map((v, j) => (j === axis ? total : v)), sizes, axis));
  }
  return cases;
}

function sgdCase(d, shape, lr, momentum, weightDecay) {
  const opts = { lr, momentum, weightDecay };
  const inputs = [{ name: 'param', shape, grad: false }, { name: 'grad', shape, grad: false }];
  if (momentum) inputs.push({ name: 'velocity', shape, grad: false });
  return {
    op: 'sgdUpdate',
    label: `${fmt(shape)} lr ${+lr.toPrecision(3)} momentum ${momentum} weightDecay ${weightDecay} x3 steps`,
    seed: d.seed(),
    inputs,
    backward: false,
    // Three steps in place; the results are the parameter and the velocity.
    forward: (cn, [param, grad, velocity]) => {
      for (let i = 0; i < 3; i++) cn.sgdUpdate(param, grad, velocity ?? null, opts);
      return velocity ? [param, velocity] : [param];
    },
  };
}

function sgdCases(d, small) {
  if (small) return [sgdCase(d, [5, 7], 0.1, 0.9, 5e-4)];
  return [
    sgdCase(d, [4096, 1 + d.int(0, 1023)], 0.01, 0.9, 5e-4),
    sgdCase(d, [d.int(1, 1000)], d.real(1e-3, 1), 0, 0),
    sgdCase(d, randomShape(d, 3, 30), d.real(1e-3, 1), 0, 5e-4),
    sgdCase(d, randomShape(d, 2, 50), d.real(1e-3, 1), 0.5, 0),
  ];
}

// ---- Composition ops ---------------------------------------------------------------------------

/** Two shapes that broadcast: a suffix of `out` each, some dims set to 1. */
function broadcastPair(d, out) {
  const part = () => out.slice(d.int(0, out.length)).map((v) => (d.chance(0.3) ? 1 : v));
  return [part(), part()];
}

function binaryCase(d, op, as, bs, note = '') {
  // div: the divisor in [0.5, 1.5), away from 0.
  const bOpts = op === 'div' ? { scale: 0.5, offset: 1 } : undefined;
  if (typeof bs === 'number') {
    return unaryCase(op, d, as, `${op} ${bs}`, note, (cn, [x]) => cn[op](x, bs));
  }
  return {
    op,
    label: `${note ? `${note} ` : ''}a${fmt(as)} b${fmt(bs)}`,
    seed: d.seed(),
    inputs: [{ name: 'a', shape: as, grad: true }, { name: 'b', shape: bs, grad: true, dataOpts: bOpts }],
    forward: (cn, [a, b]) => cn[op](a, b),
  };
}

function binaryCases(d, small) {
  return ['add', 'sub', 'mul', 'div'].flatMap((op) => {
    if (small) return [binaryCase(d, op, [3, 1, 4], [5, 1]), binaryCase(d, op, [7], 2)];
    const cases = [
      binaryCase(d, op, [d.int(1, 64), 4096], [4096], 'bias'),
      binaryCase(d, op, [d.int(1, 8), 96, 27, 27], [1, 96, 1, 1], 'per channel'),
      binaryCase(d, op, [1000003], [1000003]),
      binaryCase(d, op, randomShape(d, 3, 20), +d.real(-3, 3).toPrecision(3)),
    ];
    for (let i = 0; i < 4; i++) {
      const [as, bs] = broadcastPair(d, randomShape(d, d.int(1, 6), 7));
      cases.push(binaryCase(d, op, as, bs));
    }
    return cases;
  });
}

function unaryOpCases(d, small) {
  const positive = { scale: 1, offset: 1.5 };
  const ops = [
    ['neg', null, undefined], ['exp', null, { scale: 3 }], ['log', null, positive], ['sqrt', null, positive],
    ['tanh', null, { scale: 3 }], ['sigmoid', null, { scale: 5 }], ['pow', 2, undefined], ['pow', -1.5, positive],
    ['pow', 0.5, positive],
  ];
  return ops.flatMap(([op, p, dataOpts]) => {
    const make = (shape) => unaryCase(op, d, shape, p === null ? '' : `exponent ${p}`, '',
      (cn, [x]) => (p === null ? cn[op](x) : cn.pow(x, p)), dataOpts);
    if (small) return [make([5, 7])];
    return [make([d.int(1, 64), 4096]), make([1000003]), make(randomShape(d, 3, 30))];
  });
}

function reduceCase(d, op, shape, axis, keepDims) {
  return unaryCase(op, d, shape, `axis ${axis === undefined ? 'all' : JSON.stringify(axis)}${keepDims ? ' keepDims' : ''}`, '',
    (cn, [x]) => cn[op](x, { axis, keepDims }));
}

function reduceCases(d, small) {
  return ['sum', 'mean', 'max'].flatMap((op) => {
    if (small) return [reduceCase(d, op, [3, 4, 5], [0, 2], false), reduceCase(d, op, [6, 7], 1, true)];
    const cases = [
      reduceCase(d, op, [1000003], undefined, false),
      reduceCase(d, op, [d.int(1, 64), 4096], 1, true),
      reduceCase(d, op, [d.int(1, 8), 96, 13, 13], [0, 2, 3], true),
      reduceCase(d, op, [4096, d.int(1, 64)], 0, false),
    ];
    for (let i = 0; i < 4; i++) {
      const rank = d.int(1, 5);
      const axes = Array.from({ length: rank }, (_, k) => k).filter(() => d.chance(0.5));
      cases.push(reduceCase(d, op, randomShape(d, rank, 12), axes.length ? axes : undefined, d.chance(0.5)));
    }
    return cases;
  });
}

function matmulCase(d, B, M, K, N, note = '') {
  const as = B ? [B, M, K] : [M, K], bs = B ? [B, K, N] : [K, N];
  return {
    op: 'matmul',
    label: `${note ? `${note} ` : ''}a${fmt(as)} b${fmt(bs)}`,
    seed: d.seed(),
    inputs: [{ name: 'a', shape: as, grad: true }, { name: 'b', shape: bs, grad: true }],
    forward: (cn, [a, b]) => cn.matmul(a, b),
  };
}

function matmulCases(d, small) {
  if (small) return [matmulCase(d, 0, 3, 17, 5), matmulCase(d, 2, 4, 6, 3)];
  return [
    matmulCase(d, 0, d.int(1, 128), 9216, 512, 'fc-sized'),
    matmulCase(d, 8, 197, 64, 197, 'attention-sized'),
    matmulCase(d, 0, 1, 1, 1),
    ...Array.from({ length: 4 }, () => matmulCase(d, d.chance(0.5) ? d.int(1, 6) : 0, d.int(1, 130), d.int(1, 300), d.int(1, 130))),
  ];
}

function transposeCases(d, small) {
  const make = (shape, perm) => {
    const c = unaryCase('transpose', d, shape, `perm ${fmt(perm)}`, '', (cn, [x]) => cn.transpose(x, perm));
    c.exact = true;
    return c;
  };
  const shuffled = (rank) => {
    const p = Array.from({ length: rank }, (_, i) => i);
    for (let i = rank - 1; i > 0; i--) {
      const j = d.int(0, i);
      [p[i], p[j]] = [p[j], p[i]];
    }
    return p;
  };
  if (small) return [make([3, 4, 5], [2, 0, 1])];
  const cases = [make([d.int(1, 16), 96, 27, 27], [0, 2, 3, 1]), make([4096, 1000], [1, 0])];
  for (let i = 0; i < 4; i++) {
    const rank = d.int(2, 6);
    cases.push(make(randomShape(d, rank, 9), shuffled(rank)));
  }
  return cases;
}

function customOpCases(d, small) {
  const make = (shape) => ({
    op: 'customOp',
    label: `gate a${fmt(shape)} b${fmt(shape)}`,
    seed: d.seed(),
    inputs: [{ name: 'a', shape, grad: true }, { name: 'b', shape, grad: true }],
    // f(a, b) = a * sigmoid(b), with its backward written by hand.
    forward: (cn, [a, b]) => cn.customOp({
      name: 'gate',
      forward: (p, q) => cn.mul(p, cn.sigmoid(q)),
      backward: (g, { inputs: [p, q] }) => {
        const s = cn.sigmoid(q);
        return [cn.mul(g, s), cn.mul(cn.mul(g, p), cn.mul(s, cn.sub(1, s)))];
      },
    })(a, b),
  });
  return small ? [make([4, 9])] : [make([d.int(1, 64), 4096]), make(randomShape(d, 3, 20))];
}

function fuseCases(d, small) {
  const make = (label, shapes, build, dataOpts = []) => ({
    op: 'fuse',
    label: `${label} ${shapes.map(fmt).join(' ')}`,
    seed: d.seed(),
    inputs: shapes.map((shape, i) => ({ name: `in${i}`, shape, grad: true, dataOpts: dataOpts[i] })),
    forward: (cn, ts) => cn.fuse(build)(...ts),
  });
  const swish = (x) => x.mul(x.sigmoid());
  const mix = (a, b, c) => a.mul(b).sub(c.tanh().div(b)).add(a.exp().mul(0.5));
  const away = { scale: 0.5, offset: 1 };
  if (small) return [make('swish', [[5, 7]], swish), make('mix', [[2, 3, 4], [3, 1], [4]], mix, [undefined, away])];
  return [
    make('swish', [[d.int(1, 64), 4096]], swish),
    make('mix', [[d.int(1, 8), 96, 13, 13], [96, 1, 1], [13]], mix, [undefined, away]),
    make('mix', [randomShape(d, 3, 20), [1], [1]], mix, [undefined, away]),
    make('pow sqrt', [[1000003], [1000003]], (x, y) => x.pow(3).add(y.sqrt()), [undefined, away]),
  ];
}

function creationCase(op, d, shape, label, make) {
  return { op, label: `${fmt(shape)}${label ? ` ${label}` : ''}`, seed: d.seed(), inputs: [], exact: true, backward: false,
    forward: (cn, _ts, ctx) => make(cn, ctx.device) };
}

function creationCases(d, small) {
  // randn draws the same counters on every device, but CUDA's logf/cosf differ from glibc's in
  // the last bits, so it is compared to float32 rounding rather than bit for bit.
  const randn = (shape, seed, mean, std, note = '') => ({
    ...creationCase('randn', d, shape, `seed ${seed} mean ${+mean.toPrecision(3)} std ${+std.toPrecision(3)}${note}`,
      (cn, device) => cn.randn(shape, { seed, mean, std, device })),
    exact: false,
  });
  const full = (shape, value, dtype = 'float32') => creationCase('full', d, shape, `value ${value} ${dtype}`,
    (cn, device) => cn.full(shape, value, { dtype, device }));
  const zeros = (shape, dtype = 'float32') => creationCase('zeros', d, shape, dtype,
    (cn, device) => cn.zeros(shape, { dtype, device }));
  if (small) {
    return [randn([3, 11], 5, 0, 1), full([2, 9], 1.5), zeros([13]), zeros([3, 2], 'int32')];
  }
  return [
    randn([96, 3, 11, 11], d.seed(), 0, 0.01, ' (conv1 init)'),
    randn([1000003], d.seed(), d.real(-2, 2), d.real(0.1, 3)),
    randn([1], d.seed(), 0, 1),
    randn(randomShape(d, 3, 20), 2 ** 41 + d.seed(), 0, 1, ' (seed > 2^32)'),
    full([d.int(1, 64), 4096], +d.real(-10, 10).toPrecision(5)),
    full([1], -0.25),
    full(randomShape(d, 2, 40), -7, 'int32'),
    zeros([d.int(1, 9), 96, 55, 55]),
    zeros([7]),
    zeros(randomShape(d, 2, 40), 'int32'),
  ];
}

function toCase(d, shape, target, note = '') {
  const c = unaryCase('to', d, shape, '', '', null);
  c.exact = true;
  c.label = `${fmt(shape)} device -> ${target === 'round trip' ? 'reference -> device' : target}${note}`;
  // On the reference run every target is the reference device itself (a same-device copy).
  c.forward = (cn, [x], ctx) => {
    if (target === 'round trip') return x.to(ctx.target('reference')).to(ctx.target('device'));
    return x.to(ctx.target(target));
  };
  return c;
}

function toCases(d, small, hasPeer) {
  const targets = ['reference', 'device', 'round trip', ...(hasPeer ? ['peer'] : [])];
  const sizes = small ? [[3, 5]] : [[1], [1000003], [4, 1024, 1024]];
  return sizes.flatMap((shape) => targets.map((t) => toCase(d, shape, t)));
}

/**
 * Every case for a run: `small` gives one tiny case per kernel variant (for compute-sanitizer),
 * otherwise several AlexNet-like and odd shapes per op, all drawn from `seed`. `peer`: whether
 * a second device of the kind under test exists for the device-to-device copy cases.
 */
export function makeCases({ seed = 1, small = false, peer = false, only = null } = {}) {
  const d = new Draw(seed);
  const all = [
    ...conv2dCases(d, small), ...reluCases(d, small), ...poolCases(d, small), ...lrnCases(d, small),
    ...dropoutCases(d, small), ...linearCases(d, small), ...xentCases(d, small), ...shapeCases(d, small),
    ...sgdCases(d, small), ...creationCases(d, small), ...toCases(d, small, peer),
    ...binaryCases(d, small), ...unaryOpCases(d, small), ...reduceCases(d, small), ...matmulCases(d, small),
    ...transposeCases(d, small), ...customOpCases(d, small), ...fuseCases(d, small),
    // Last, so the draws of the cases above stay what they were before this row existed.
    ...conv2dCases(d, small, 2),
    ...conv2dCases(d, small, 3, 'tf32'),
    ...conv2dCases(d, small, 3, 'bf16'),
  ];
  return only ? all.filter((c) => only.includes(c.op)) : all;
}

// ---------------------------------------------------------------------------------------------
// Comparing.

/**
 * a (device under test) against b (reference): normwise relative error, NaN counts, and the
 * number of elements that differ in their bits.
 */
export function compareArrays(a, b) {
  if (!a || !b || a.length !== b.length) {
    return { err: Infinity, nan: 0, refNan: 0, mismatches: Math.max(a?.length ?? 0, b?.length ?? 0) };
  }
  const ab = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const bb = new Uint32Array(b.buffer, b.byteOffset, b.length);
  const float = a instanceof Float32Array;
  let d2 = 0, n2 = 0, nan = 0, refNan = 0, mismatches = 0;
  for (let i = 0; i < a.length; i++) {
    if (ab[i] !== bb[i]) mismatches++;
    if (float) {
      if (Number.isNaN(a[i])) nan++;
      if (Number.isNaN(b[i])) refNan++;
    }
    const diff = a[i] - b[i];
    d2 += diff * diff;
    n2 += b[i] * b[i];
  }
  const err = nan || refNan ? NaN : Math.sqrt(d2) / Math.max(Math.sqrt(n2), 1e-30);
  return { err, nan, refNan, mismatches };
}

const worst = (errs) => errs.reduce((m, e) => (Number.isNaN(m) || Number.isNaN(e) ? NaN : Math.max(m, e)), 0);

function inputData(c) {
  const next = rng(c.seed);
  return c.inputs.map((inp) => randomData(prod(inp.shape), next, inp.dataOpts));
}

/**
 * Runs one case on env.reference and env.device and compares. Never throws: an error on the
 * device under test becomes the case's status ('no kernel' when a native op it needs has no
 * CUDA kernel in this build). Every tensor it makes is disposed before it returns.
 */
export function runCase(cn, c, env) {
  const started = Date.now();
  const made = [];
  const keep = (t) => {
    made.push(t);
    return t;
  };
  // Tensors the op makes on the way (x.to(a).to(b)) are freed by the scope; the graph keeps
  // what backward needs.
  const list = (run) => {
    const r = cn.scope(run);
    return (Array.isArray(r) ? r : [r]).map(keep);
  };
  const wantsGrad = c.backward !== false && c.inputs.some((i) => i.grad);
  const result = {
    op: c.op, label: c.label, exact: c.exact === true,
    fwdErr: null, gradErr: null, grads: {}, nan: 0, mismatches: 0,
    status: 'pass', detail: '', ms: 0,
  };
  const ctx = (device) => ({
    device,
    target: (name) => (name === 'reference' ? env.reference : name === 'peer' ? env.peer : device),
  });
  let stage = 'reference';
  try {
    const datas = inputData(c);
    const gradNext = rng(c.seed ^ 0x2545f491);
    // Reference: inputs, forward, backward.
    const refIns = c.inputs.map((inp, i) => keep(cn.tensor(datas[i], inp.shape, { device: env.reference, requiresGrad: wantsGrad && inp.grad })));
    // Copied before the reference runs: some ops (sgdUpdate) change their inputs in place.
    stage = 'copy to device';
    const ins = cn.noGrad(() => refIns.map((t) => keep(t.to(env.device))));
    c.inputs.forEach((inp, i) => {
      if (wantsGrad && inp.grad) ins[i].requiresGrad = true;
    });
    stage = 'reference';
    const refOuts = list(() => c.forward(cn, refIns, ctx(env.reference)));
    const refY = refOuts.map((t) => t.dataSync());
    const gdatas = wantsGrad ? refOuts.map((y) => randomData(y.size, gradNext)) : [];
    if (wantsGrad) refOuts.forEach((y, k) => y.backward(keep(cn.tensor(gdatas[k], y.shape, { device: y.device }))));
    const refG = c.inputs.map((inp, i) => (wantsGrad && inp.grad ? refIns[i].grad?.dataSync() ?? null : null));

    // Device under test: forward, the same gradOutput copied over, backward.
    stage = 'forward';
    const outs = list(() => c.forward(cn, ins, ctx(env.device)));
    const y = outs.map((t) => t.dataSync());
    stage = 'backward';
    if (wantsGrad) {
      outs.forEach((o, k) => {
        const g = keep(cn.tensor(gdatas[k], o.shape, { device: env.reference }));
        o.backward(keep(g.to(o.device)));
      });
    }
    const grads = c.inputs.map((inp, i) => (wantsGrad && inp.grad ? ins[i].grad?.dataSync() ?? null : null));
    stage = 'compare';

    const problems = [];
    const fwd = y.map((a, k) => compareArrays(a, refY[k]));
    const bwd = [];
    c.inputs.forEach((inp, i) => {
      if (!refG[i] && !grads[i]) return;
      if (!grads[i] || !refG[i]) problems.push(`${inp.name}: ${grads[i] ? 'the reference' : 'the device'} produced no gradient`);
      const cmp = compareArrays(grads[i], refG[i]);
      result.grads[inp.name] = cmp.err;
      bwd.push(cmp);
    });
    result.fwdErr = worst(fwd.map((r) => r.err));
    result.gradErr = bwd.length ? worst(bwd.map((r) => r.err)) : null;
    const all = [...fwd, ...bwd];
    result.nan = all.reduce((s, r) => s + r.nan, 0);
    result.mismatches = all.reduce((s, r) => s + r.mismatches, 0);
    const refNan = all.reduce((s, r) => s + r.refNan, 0);
    if (fwd.length !== refY.length) problems.push('output count differs');
    if (result.nan) problems.push(`${result.nan} NaN (unwritten) elements`);
    if (refNan) problems.push(`${refNan} NaN elements in the reference`);
    if (c.exact && result.mismatches) problems.push(`${result.mismatches} elements differ from the reference bit for bit`);
    const tol = c.tol ?? TOL;
    if (!c.exact && !(result.fwdErr < tol)) problems.push(`forward error ${fmtErr(result.fwdErr)} >= ${tol}`);
    if (!c.exact && result.gradErr !== null && !(result.gradErr < tol)) problems.push(`gradient error ${fmtErr(result.gradErr)} >= ${tol}`);
    if (problems.length) {
      result.status = 'fail';
      result.detail = problems.join('; ');
    }
  } catch (e) {
    const missing = (KERNELS[c.op] ?? []).concat('fill').filter((k) => env.noKernel?.includes(k));
    const name = e?.name ?? 'Error';
    if (stage !== 'reference' && name === 'DeviceError' && missing.length) {
      result.status = 'no kernel';
      result.detail = `no CUDA kernel for ${missing.join(', ')} in this build: ${e.message}`;
    } else {
      result.status = 'error';
      result.detail = `${stage}: ${name}: ${e?.message ?? String(e)}`;
    }
  } finally {
    for (const t of made) {
      if (t.grad) t.grad.dispose();
      t.dispose();
    }
  }
  result.ms = Date.now() - started;
  return result;
}

/**
 * A 1 EB allocation on the device must throw OutOfMemoryError naming the device and the bytes,
 * and the device must still work afterwards (a relu whose result is checked).
 */
export function checkOutOfMemory(cn, native, device) {
  const bytes = 2 ** 60;
  const result = { op: 'out of memory', label: `alloc 2^60 bytes on ${device}`, status: 'pass', detail: '' };
  const problems = [];
  try {
    const h = native.alloc(device, bytes);
    native.release(h);
    problems.push('the allocation succeeded');
  } catch (e) {
    result.error = `${e?.name}: ${e?.message}`;
    if (!(e instanceof cn.OutOfMemoryError)) problems.push(`threw ${e?.name ?? typeof e}, not OutOfMemoryError: ${e?.message}`);
    else {
      if (!e.message.includes(device)) problems.push(`the message does not name ${device}: ${e.message}`);
      if (!e.message.includes(String(BigInt(bytes)))) problems.push(`the message does not name ${BigInt(bytes)} bytes: ${e.message}`);
      if (e.device !== device) problems.push(`error.device is '${e.device}'`);
      if (e.bytesAsked !== bytes) problems.push(`error.bytesAsked is ${e.bytesAsked}`);
    }
  }
  try {
    const x = cn.tensor([-1, 2, -3, 4], [4], { device });
    const y = cn.relu(x);
    const got = Array.from(y.dataSync());
    x.dispose();
    y.dispose();
    if (got.join() !== '0,2,0,4') problems.push(`the next op on ${device} gave [${got}], expected [0,2,0,4]`);
  } catch (e) {
    problems.push(`the next op on ${device} failed: ${e?.name}: ${e?.message}`);
  }
  if (problems.length) {
    result.status = 'fail';
    result.detail = problems.join('; ');
  }
  return result;
}

/**
 * Copies racing the queues: many copies between `device` and `peer` in both directions, each
 * source overwritten in place right after its copy is queued, and uploads from host data into
 * blocks that queued kernels have just released, all while a large matmul keeps the device busy.
 * Compared with the host bit for bit. 'skipped' without a peer device.
 */
export function checkCopyRace(cn, device, peer, { seed = 1, small = false } = {}) {
  const result = { op: 'copy race', label: `${device} <-> ${peer ?? '-'}`, status: 'pass', detail: '' };
  if (!peer) {
    result.status = 'skipped';
    result.detail = 'no second device';
    return result;
  }
  const f32 = Math.fround;
  const problems = [];
  const next = rng(seed * 7 + 3);
  const live = [];
  const keep = (t) => (live.push(t), t);
  try {
    const m = small ? 64 : 1024;
    const big = keep(cn.tensor(randomData(m * m, next), [m, m], { device }));
    const busy = () => keep(cn.matmul(big, big));
    for (const n of small ? [1, 333] : [1, 4097, 1 << 20]) {
      let ha = randomData(n, next);
      let hb = randomData(n, next);
      let a = cn.tensor(ha, [n], { device });
      let b = cn.tensor(hb, [n], { device: peer });
      const ones = cn.tensor(new Float32Array(n).fill(1), [n], { device });
      for (let step = 0; step < 12; step++) {
        if (step % 4 === 0) busy();
        const bOn = b.to(device);
        const aOn = a.to(peer);
        cn.sgdUpdate(a, ones, null, { lr: 1 }); // overwrites the source of aOn right away
        const a2 = cn.add(a, bOn);
        const b2 = cn.sub(b, aOn);
        for (const t of [a, b, bOn, aOn]) t.dispose();
        [a, b] = [a2, b2];
        const na = ha.map((v, i) => f32(f32(v - 1) + hb[i]));
        const nb = hb.map((v, i) => f32(v - ha[i]));
        [ha, hb] = [na, nb];
      }
      const ga = a.dataSync();
      const gb = b.dataSync();
      const bad = (got, want) => got.findIndex((v, i) => !Object.is(v, want[i]));
      if (bad(ga, ha) >= 0) problems.push(`n=${n}: ${device} side differs from the host at ${bad(ga, ha)}`);
      if (bad(gb, hb) >= 0) problems.push(`n=${n}: ${peer} side differs from the host at ${bad(gb, hb)}`);
      for (const t of [a, b, ones]) t.dispose();
    }
    // Fresh uploads into just-released blocks while the device is busy.
    busy();
    const n = small ? 1000 : 1 << 18;
    for (let k = 0; k < 16; k++) {
      const data = randomData(n, next);
      const x = cn.tensor(data, [n], { device });
      const y = cn.mul(x, 2);
      x.dispose();
      const z = cn.tensor(randomData(n, next), [n], { device }); // likely x's block again
      const got = y.dataSync();
      const i = got.findIndex((v, j) => !Object.is(v, f32(2 * data[j])));
      if (i >= 0) problems.push(`upload ${k}: element ${i} is ${got[i]}, expected ${f32(2 * data[i])}`);
      y.dispose();
      z.dispose();
    }
  } catch (e) {
    problems.push(`${e?.name}: ${e?.message}`);
  } finally {
    for (const t of live) t.dispose();
  }
  if (problems.length) {
    result.status = 'fail';
    result.detail = problems.slice(0, 4).join('; ');
  }
  return result;
}

/**
 * cn.cuda.compile end to end: a saxpy kernel compiled with NVRTC, launched on `device` between
 * two library ops (so stream order is exercised), compared with the host. 'skipped' with the
 * reason when the device is not a CUDA device or NVRTC was not found.
 */
export function checkRuntimeCompile(cn, device) {
  const result = { op: 'cuda.compile', label: `saxpy compiled by NVRTC, launched on ${device}`, status: 'pass', detail: '' };
  const nvrtc = cn.buildInfo();
  if (!device.startsWith('cuda')) return { ...result, status: 'skipped', detail: `${device} is not a CUDA device` };
  if (nvrtc.nvrtc !== 'found') return { ...result, status: 'skipped', detail: nvrtc.nvrtcReason ?? 'NVRTC not found' };
  const n = 4099;
  const made = [];
  try {
    const saxpy = cn.cuda.compile(`extern "C" __global__ void saxpy(float* y, const float* x, float a, int n) {
      int i = blockIdx.x * blockDim.x + threadIdx.x;
      if (i < n) y[i] = a * x[i] + y[i];
    }`, { name: 'saxpy' });
    const x = cn.randn([n], { seed: 3, device });
    const y0 = cn.randn([n], { seed: 4, device });
    made.push(x, y0);
    const y = cn.relu(y0);  // queued before the launch: the kernel must see its result
    made.push(y);
    saxpy.launch(device, { grid: Math.ceil(n / 128), block: 128 }, [y, x, 0.5, n]);
    const z = cn.neg(y);  // queued after: it must see the kernel's result
    made.push(z);
    const xs = x.dataSync(), ys = y0.dataSync(), zs = z.dataSync();
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(zs[i] + (0.5 * xs[i] + Math.max(ys[i], 0))));
    result.fwdErr = worst;
    if (!(worst <= 1e-5)) {
      result.status = 'fail';
      result.detail = `max abs error ${worst} against the host`;
    }
  } catch (e) {
    result.status = 'fail';
    result.detail = `${e?.name}: ${e?.message}`;
  } finally {
    for (const t of made) t.dispose();
  }
  return result;
}

export function fmtErr(e) {
  if (e === null || e === undefined) return '-';
  if (Number.isNaN(e)) return 'NaN';
  if (e === Infinity) return 'inf';
  return e === 0 ? '0' : e.toExponential(1);
}

/** One row per op: cases, worst errors, and pass unless some case did not pass. */
export function summarize(results) {
  return OPS.map((op) => {
    const rs = results.filter((r) => r.op === op);
    const statuses = new Set(rs.map((r) => r.status));
    const status = rs.length === 0 ? 'no cases' : statuses.size === 1 ? [...statuses][0] : [...statuses].filter((s) => s !== 'pass').join('+');
    const errs = (key) => {
      const v = rs.map((r) => r[key]).filter((e) => e !== null && e !== undefined);
      return v.length ? worst(v) : null;
    };
    return { op, cases: rs.length, fwdErr: errs('fwdErr'), gradErr: errs('gradErr'), status, pass: status === 'pass' };
  });
}
