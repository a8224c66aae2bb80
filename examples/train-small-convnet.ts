/**
 * Define a small convnet with cn.nn and train it on Fashion-MNIST for a few hundred steps.
 *
 *   npx tsx examples/train-small-convnet.ts [--steps 300] [--device cpu:0] [--data-dir DIR]
 *
 * The data: Debian's dataset-fashion-mnist package, or a folder with the four .gz IDX files.
 */
import { parseArgs } from 'node:util';

import * as cn from 'convnet-cuda';

const { values } = parseArgs({ options: { steps: { type: 'string' }, device: { type: 'string' }, 'data-dir': { type: 'string' } } });
const steps = Number(values.steps ?? 300);
const device = values.device ?? 'cpu:0';

// conv 5x5 -> relu -> pool, conv 3x3 -> relu -> pool, then two fully connected layers.
const model = new cn.nn.Sequential(
  new cn.nn.Conv2d(1, 16, 5, { padding: 2 }), new cn.nn.ReLU(), new cn.nn.MaxPool2d(2),   // 16x14x14
  new cn.nn.Conv2d(16, 32, 3, { padding: 1 }), new cn.nn.ReLU(), new cn.nn.MaxPool2d(2),  // 32x7x7
  new cn.nn.Flatten(),
  new cn.nn.Linear(32 * 7 * 7, 128), new cn.nn.ReLU(),
  new cn.nn.Linear(128, 10),
).to(device);
const opt = new cn.optim.SGD(model, { lr: 0.05, momentum: 0.9, weightDecay: 5e-4 });

const train = await cn.loadFashionMnist({ split: 'train', dataDir: values['data-dir'] });
const test = await cn.loadFashionMnist({ split: 'test', dataDir: values['data-dir'] });
const loader = new cn.BatchLoader(train, { batchSize: 64, seed: 1, flip: true });
const testLoader = new cn.BatchLoader(test, { batchSize: 500, shuffle: false, normalize: loader.normalization });

let step = 0;
for (const batch of loader.iterate()) {
  if (step === steps) break;
  const { x, labels } = cn.batchToTensors(batch, device);
  // scope() frees every intermediate tensor of the step; the loss is returned and kept.
  const loss = cn.scope(() => cn.softmaxCrossEntropy(model.forward(x), labels));
  loss.backward();
  opt.step();
  opt.zeroGrad();
  if (++step % 50 === 0 || step === steps) console.log(`step ${step}: loss ${(await loss.data())[0].toFixed(4)}`);
  for (const t of [x, labels, loss]) t.dispose();
}

// Accuracy on the first 2,000 test images, in evaluation mode and without recording a graph.
model.eval();
let correct = 0, seen = 0;
for (const batch of testLoader.iterate()) {
  if (seen >= 2000) break;
  const { x, labels } = cn.batchToTensors(batch, device);
  const logits = cn.noGrad(() => model.forward(x));
  const z = await logits.data();
  const want = await labels.data();
  for (let i = 0; i < want.length; i++) {
    const row = z.subarray(i * 10, i * 10 + 10);
    if (row.indexOf(Math.max(...row)) === want[i]) correct++;
  }
  seen += want.length;
  for (const t of [x, labels, logits]) t.dispose();
}
console.log(`test accuracy after ${steps} steps: ${((100 * correct) / seen).toFixed(1)}% of ${seen} images`);
opt.dispose();
model.dispose();
