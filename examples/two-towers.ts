/**
 * One network split into two towers on two devices, as cuda-convnet split AlexNet across two
 * GPUs: each tower computes half of the channels on its own device, and activations cross
 * between devices (t.to()) only where the towers meet. Both device queues run at the same time.
 *
 *   npx tsx examples/two-towers.ts [--devices cpu:0,cpu:1]     (or cuda:0,cuda:1)
 */
import { parseArgs } from 'node:util';

import * as cn from 'convnet-cuda';

const { values } = parseArgs({ options: { devices: { type: 'string' } } });
const [a, b] = (values.devices ?? 'cpu:0,cpu:1').split(',');

// The library's own two-tower AlexNet-mini: tower A on `a`, tower B on `b`.
const model = cn.models.alexnetMini({ width: 0.25, towers: 2, devices: [a, b] });
const perDevice: Record<string, number> = {};
for (const p of model.parameters()) perDevice[p.device] = (perDevice[p.device] ?? 0) + p.size;
console.log('parameters per device:', perDevice);

const x = cn.randn([8, 1, 28, 28], { seed: 1, device: a });
const labels = cn.tensor([0, 1, 2, 3, 4, 5, 6, 7], [8], { dtype: 'int32', device: a });
cn.traceStart();
const loss = cn.scope(() => cn.softmaxCrossEntropy(model.forward(x), labels));
loss.backward();
console.log(`loss ${(await loss.data())[0].toFixed(4)}`);
await cn.synchronize(b);
const trace = cn.traceStop();

// Which ops ran where: both queues worked, each on its own tower.
const counts: Record<string, number> = {};
for (const e of trace) counts[e.device] = (counts[e.device] ?? 0) + 1;
console.log('ops run per device:', counts);
for (const t of [x, labels, loss]) t.dispose();
model.dispose();
