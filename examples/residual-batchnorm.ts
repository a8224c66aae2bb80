/**
 * Layers the library does not ship, written with the composition ops (cn.add, cn.mul, cn.sub,
 * cn.mean, cn.sqrt, ...), each differentiable: batch normalisation over (N, H, W) per channel, and
 * a residual block y = relu(x + bn(conv(relu(bn(conv(x)))))). Autograd derives every backward.
 *
 *   npx tsx examples/residual-batchnorm.ts [--steps 30] [--device cpu:0]
 */
import { parseArgs } from 'node:util';

import * as cn from 'convnet-cuda';

const { values } = parseArgs({ options: { steps: { type: 'string' }, device: { type: 'string' } } });
const steps = Number(values.steps ?? 30);
const device = values.device ?? 'cpu:0';

/** Batch normalisation in training mode: per channel over N, H and W, then scale and shift. */
class BatchNorm2d extends cn.nn.Module {
  constructor(channels: number) {
    super();
    this.registerParameter('gamma', cn.full([1, channels, 1, 1], 1, { device }));
    this.registerParameter('beta', cn.zeros([1, channels, 1, 1], { device }));
  }

  forward(x: cn.Tensor): cn.Tensor {
    const mean = cn.mean(x, { axis: [0, 2, 3], keepDims: true });          // [1, C, 1, 1]
    const centred = cn.sub(x, mean);                                          // broadcasts
    const variance = cn.mean(cn.mul(centred, centred), { axis: [0, 2, 3], keepDims: true });
    const normalised = cn.div(centred, cn.sqrt(cn.add(variance, 1e-5)));
    return cn.add(cn.mul(normalised, this.param('gamma')), this.param('beta'));
  }
}

class ResidualBlock extends cn.nn.Module {
  private readonly conv1: cn.nn.Conv2d;
  private readonly bn1: BatchNorm2d;
  private readonly conv2: cn.nn.Conv2d;
  private readonly bn2: BatchNorm2d;

  constructor(channels: number) {
    super();
    this.conv1 = this.registerModule('conv1', new cn.nn.Conv2d(channels, channels, 3, { padding: 1, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(channels));
    this.conv2 = this.registerModule('conv2', new cn.nn.Conv2d(channels, channels, 3, { padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(channels));
  }

  forward(x: cn.Tensor): cn.Tensor {
    const h = cn.relu(this.bn1.forward(this.conv1.forward(x)));
    return cn.relu(cn.add(x, this.bn2.forward(this.conv2.forward(h))));   // the skip connection
  }
}

const model = new cn.nn.Sequential(
  new cn.nn.Conv2d(1, 8, 3, { padding: 1 }),
  new ResidualBlock(8),
  new cn.nn.MaxPool2d(2),                 // 8x6x6
  new cn.nn.Flatten(),
  new cn.nn.Linear(8 * 6 * 6, 2),
).to(device);
const opt = new cn.optim.SGD(model, { lr: 0.05, momentum: 0.9 });

// A toy task: is the bright bar horizontal (0) or vertical (1)?
function batch(seed: number): { x: cn.Tensor; labels: cn.Tensor } {
  const n = 16, data = new Float32Array(n * 144), labels = new Int32Array(n);
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < n; i++) {
    const vertical = rand() < 0.5 ? 1 : 0, at = 2 + Math.floor(rand() * 8);
    labels[i] = vertical;
    for (let k = 0; k < 12; k++) data[i * 144 + (vertical ? k * 12 + at : at * 12 + k)] = 1;
    for (let k = 0; k < 144; k++) data[i * 144 + k] += 0.2 * (rand() - 0.5);
  }
  return { x: cn.tensor(data, [n, 1, 12, 12], { device }), labels: cn.tensor(labels, [n], { device }) };
}

const losses: number[] = [];
for (let step = 1; step <= steps; step++) {
  const { x, labels } = batch(step);
  const loss = cn.scope(() => cn.softmaxCrossEntropy(model.forward(x), labels));
  loss.backward();
  opt.step();
  opt.zeroGrad();
  losses.push((await loss.data())[0]);
  for (const t of [x, labels, loss]) t.dispose();
}
const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const k = Math.max(1, Math.floor(steps / 5));
console.log(`residual block with batch norm: mean loss ${avg(losses.slice(0, k)).toFixed(4)} over the first ${k} steps, ${avg(losses.slice(-k)).toFixed(4)} over the last ${k}`);
opt.dispose();
model.dispose();
