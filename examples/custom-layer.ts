/**
 * A new layer written from existing ops, with autograd doing the backward pass: a densely
 * connected block (as in DenseNet), y = concat([x, relu(conv3x3(x))]) along channels, repeated.
 * Every op records itself, so the block trains with no backward code of its own.
 *
 *   npx tsx examples/custom-layer.ts [--steps 20] [--device cpu:0]
 */
import { parseArgs } from 'node:util';

import * as cn from 'convnet-cuda';

const { values } = parseArgs({ options: { steps: { type: 'string' }, device: { type: 'string' } } });
const steps = Number(values.steps ?? 20);
const device = values.device ?? 'cpu:0';

/** `layers` conv layers; each one sees every earlier feature map and adds `growth` channels. */
class DenseBlock extends cn.nn.Module {
  private readonly convs: cn.nn.Conv2d[] = [];

  constructor(inChannels: number, growth: number, layers: number) {
    super();
    for (let i = 0; i < layers; i++) {
      this.convs.push(this.registerModule(`conv${i}`, new cn.nn.Conv2d(inChannels + i * growth, growth, 3, { padding: 1 })));
    }
  }

  forward(x: cn.Tensor): cn.Tensor {
    let features = x;
    for (const conv of this.convs) features = cn.concat([features, cn.relu(conv.forward(features))], 1);
    return features;
  }
}

const model = new cn.nn.Sequential(
  new DenseBlock(1, 4, 3),           // 1 -> 13 channels at 12x12
  new cn.nn.MaxPool2d(2),            // 13x6x6
  new cn.nn.Flatten(),
  new cn.nn.Linear(13 * 6 * 6, 3),
).to(device);
const opt = new cn.optim.SGD(model, { lr: 0.05, momentum: 0.9 });

// A toy task the block can learn: which third of the image holds a bright square.
function batch(seed: number): { x: cn.Tensor; labels: cn.Tensor } {
  const n = 16, data = new Float32Array(n * 144), labels = new Int32Array(n);
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < n; i++) {
    const third = Math.floor(rand() * 3);
    labels[i] = third;
    for (let h = 4; h < 8; h++) for (let w = third * 4; w < third * 4 + 4; w++) data[i * 144 + h * 12 + w] = 1;
    for (let k = 0; k < 144; k++) data[i * 144 + k] += 0.1 * (rand() - 0.5);
  }
  return { x: cn.tensor(data, [n, 1, 12, 12], { device }), labels: cn.tensor(labels, [n], { device }) };
}

let first = 0, last = 0;
for (let step = 1; step <= steps; step++) {
  const { x, labels } = batch(step);
  const loss = cn.scope(() => cn.softmaxCrossEntropy(model.forward(x), labels));
  loss.backward();
  opt.step();
  opt.zeroGrad();
  last = (await loss.data())[0];
  if (step === 1) first = last;
  for (const t of [x, labels, loss]) t.dispose();
}
console.log(`DenseBlock: ${model.parameters().length} parameter tensors; loss ${first.toFixed(4)} at step 1, ${last.toFixed(4)} at step ${steps}`);
opt.dispose();
model.dispose();
