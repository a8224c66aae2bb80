/**
 * Race a convolution of your own against the library's and cuDNN's on the same inputs. Each
 * contender is checked against the CPU reference before it is timed.
 *
 * On a machine with a CUDA device and NVRTC, your kernel is the CUDA C++ below (one thread per
 * output element, the plainest direct convolution), compiled at run time with cn.cuda.compile.
 * Anywhere else it is the same loops in TypeScript on the host, raced against cn.conv2d on the
 * CPU: the harness is the same.
 *
 *   npx tsx examples/race-your-conv.ts [--device cuda:0] [--iters 10]
 */
import { parseArgs } from 'node:util';

import * as cn from 'convnet-cuda';

const { values } = parseArgs({ options: { device: { type: 'string' }, iters: { type: 'string' } } });
const gpu = cn.devices().find((d) => d.kind === 'cuda');
const device = values.device ?? (gpu && cn.buildInfo().nvrtc === 'found' ? gpu.id : 'cpu:0');
const iters = Number(values.iters ?? 10);

// AlexNet-mini's conv3 at width 0.5, batch 16: 64 -> 96 channels, 3x3, padding 1, on 6x6.
const problem = { x: [16, 64, 6, 6], w: [96, 64, 3, 3], padding: 1 };
const [N, C, H, W] = problem.x;
const [F, , K] = problem.w;
const OH = H + 2 - K + 1, OW = W + 2 - K + 1;

const SOURCE = `
extern "C" __global__ void direct_conv(float* y, const float* x, const float* w,
                                       int N, int C, int H, int W, int F, int K, int pad) {
  int OH = H + 2 * pad - K + 1, OW = W + 2 * pad - K + 1;
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;      // one output element per thread
  if (i >= (long)N * F * OH * OW) return;
  int ow = i % OW, oh = (i / OW) % OH, f = (i / ((long)OW * OH)) % F, n = i / ((long)OW * OH * F);
  float s = 0.f;
  for (int c = 0; c < C; ++c)
    for (int kh = 0; kh < K; ++kh)
      for (int kw = 0; kw < K; ++kw) {
        int ih = oh - pad + kh, iw = ow - pad + kw;
        if (ih >= 0 && ih < H && iw >= 0 && iw < W)
          s += x[((n * C + c) * H + ih) * W + iw] * w[((f * C + c) * K + kh) * K + kw];
      }
  y[i] = s;
}`;

let yours: (x: cn.Tensor, w: cn.Tensor) => cn.Tensor | Promise<cn.Tensor>;
if (device.startsWith('cuda')) {
  const kernel = cn.cuda.compile(SOURCE, { name: 'direct_conv' });
  yours = (x, w) => {
    const y = cn.zeros([N, F, OH, OW], { device });
    const total = N * F * OH * OW;
    kernel.launch(device, { grid: Math.ceil(total / 256), block: 256 }, [y, x, w, N, C, H, W, F, K, 1]);
    return y;
  };
} else {
  // The same loops on the host: read the inputs, compute, upload the result.
  yours = async (x, w) => {
    const xs = await x.data(), ws = await w.data();
    const y = new Float32Array(N * F * OH * OW);
    for (let n = 0; n < N; n++)
      for (let f = 0; f < F; f++)
        for (let oh = 0; oh < OH; oh++)
          for (let ow = 0; ow < OW; ow++) {
            let s = 0;
            for (let c = 0; c < C; c++)
              for (let kh = 0; kh < K; kh++)
                for (let kw = 0; kw < K; kw++) {
                  const ih = oh - 1 + kh, iw = ow - 1 + kw;
                  if (ih >= 0 && ih < H && iw >= 0 && iw < W) s += xs[((n * C + c) * H + ih) * W + iw] * ws[((f * C + c) * K + kh) * K + kw];
                }
            y[((n * F + f) * OH + oh) * OW + ow] = s;
          }
    return cn.tensor(y, [N, F, OH, OW], { device });
  };
}

console.log(`racing a direct convolution on ${device}: x [${problem.x}], w [${problem.w}], padding 1`);
const rows = await cn.bench.raceConv(problem, yours, { device, iters, warmup: 2 });
console.log(cn.bench.formatRace(rows));
