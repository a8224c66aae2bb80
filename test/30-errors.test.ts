/**
 * Bad inputs: each throws the exact error class with the exact message, before any memory is
 * taken or work is queued (memory() is unchanged afterwards).
 */
import { describe, expect, it } from 'vitest';

import * as cn from '../src/index.js';
import { expectError, trackLeaks } from './helpers.js';

trackLeaks();

const { ShapeError, DeviceError, DisposedError } = cn;

function withInputs<T>(fn: (t: { x: cn.Tensor; w: cn.Tensor; b: cn.Tensor }) => T): T {
  const x = cn.zeros([2, 4, 8, 8]);
  const w = cn.zeros([6, 2, 3, 3]);
  const b = cn.zeros([6]);
  try {
    return fn({ x, w, b });
  } finally {
    x.dispose();
    w.dispose();
    b.dispose();
  }
}

describe('conv2d arguments', () => {
  it('wrong rank', () =>
    withInputs(({ x, b }) => {
      const w3 = cn.zeros([64, 3, 11]);
      expectError(() => cn.conv2d(x, w3, null), ShapeError, 'conv2d: w must have 4 dims [F, C/groups, KH, KW], received [64, 3, 11]');
      expectError(() => cn.conv2d(b, w3, null), ShapeError, 'conv2d: x must have 4 dims [N, C, H, W], received [6]');
      w3.dispose();
    }));

  it('C not divisible by groups', () =>
    withInputs(({ x, w }) => {
      expectError(() => cn.conv2d(x, w, null, { groups: 3 }), ShapeError, 'conv2d: x channels (C = 4) must be divisible by groups (3), received x [2, 4, 8, 8]');
    }));

  it('weight channels differ from C/groups', () =>
    withInputs(({ x, w }) => {
      expectError(() => cn.conv2d(x, w, null), ShapeError, 'conv2d: w must have C/groups = 4 input channels in dim 1, received w [6, 2, 3, 3] for x [2, 4, 8, 8] and groups 1');
    }));

  it('F not divisible by groups', () =>
    withInputs(({ x }) => {
      const w = cn.zeros([5, 1, 3, 3]);
      expectError(() => cn.conv2d(x, w, null, { groups: 4 }), ShapeError, 'conv2d: w filters (F = 5) must be divisible by groups (4), received w [5, 1, 3, 3]');
      w.dispose();
    }));

  it('kernel larger than the padded input', () =>
    withInputs(({ x }) => {
      const w = cn.zeros([6, 4, 11, 11]);
      expectError(() => cn.conv2d(x, w, null, { padding: 1 }), ShapeError, 'conv2d: kernel 11x11 must fit the padded input 10x10, received x [2, 4, 8, 8] with padding [1, 1]');
      w.dispose();
    }));

  it('stride zero, negative or not an integer; negative padding; bad groups', () =>
    withInputs(({ x, w }) => {
      for (const stride of [0, -1, 1.5]) {
        expectError(() => cn.conv2d(x, w, null, { stride, groups: 2 }), ShapeError, `conv2d: stride must be a positive integer or an [h, w] pair of them, received ${stride}`);
      }
      expectError(() => cn.conv2d(x, w, null, { stride: [1, 0], groups: 2 }), ShapeError, 'conv2d: stride must be a positive integer or an [h, w] pair of them, received [1, 0]');
      expectError(() => cn.conv2d(x, w, null, { padding: -1, groups: 2 }), ShapeError, 'conv2d: padding must be a non-negative integer or an [h, w] pair of them, received -1');
      expectError(() => cn.conv2d(x, w, null, { groups: 0 }), ShapeError, 'conv2d: groups must be a positive integer, received 0');
    }));

  it('bias of the wrong length', () =>
    withInputs(({ x, w }) => {
      const b = cn.zeros([5]);
      expectError(() => cn.conv2d(x, w, b, { groups: 2 }), ShapeError, 'conv2d: b must have shape [F] = [6], received [5]');
      b.dispose();
    }));

  it('an int32 tensor where float32 is needed', () =>
    withInputs(({ w }) => {
      const xi = cn.zeros([2, 4, 8, 8], { dtype: 'int32' });
      expectError(() => cn.conv2d(xi, w, null, { groups: 2 }), ShapeError, 'conv2d: x must be float32, received int32');
      xi.dispose();
    }));
});

describe('tensor construction', () => {
  it('data length differs from the shape', () => {
    expectError(() => cn.tensor([1, 2, 3, 4, 5], [2, 3]), ShapeError, 'tensor: data has 5 elements but shape [2, 3] needs 6');
  });
  it('negative or non-integer dimensions', () => {
    expectError(() => cn.zeros([2, -1]), ShapeError, 'zeros: shape must hold non-negative integer dimensions, received [2, -1]');
    expectError(() => cn.tensor([1, 2], [1.5, 2]), ShapeError, 'tensor: shape must hold non-negative integer dimensions, received [1.5, 2]');
    expectError(() => cn.randn([NaN], { seed: 1 }), ShapeError, 'randn: shape must hold non-negative integer dimensions, received [NaN]');
  });
  it('int32 data that is not already a 32-bit integer, from any array', () => {
    const msg = (v: string) => `tensor: data[0] must be a 32-bit integer for dtype int32, received ${v}`;
    expectError(() => cn.tensor(new Float32Array([NaN, 1e10, 2.7]), [3], { dtype: 'int32' }), ShapeError, msg('NaN'));
    expectError(() => cn.tensor(new Float32Array([1e10]), [1], { dtype: 'int32' }), ShapeError, msg('10000000000'));
    expectError(() => cn.tensor(new Float32Array([2.5]), [1], { dtype: 'int32' }), ShapeError, msg('2.5'));
    expectError(() => cn.tensor([2 ** 31], [1], { dtype: 'int32' }), ShapeError, msg('2147483648'));
    expectError(() => cn.full([2], 2 ** 32, { dtype: 'int32' }), ShapeError, 'full: value must be a 32-bit integer for dtype int32, received 4294967296');
  });
  it('a shape past 2^31-1 elements', () => {
    expectError(() => cn.zeros([65536, 32768]), ShapeError, 'zeros: shape [65536, 32768] has 2147483648 elements, more than the limit of 2^31-1');
    expectError(() => cn.full([2 ** 31], 1), ShapeError, 'full: shape dimensions must be at most 2^31-1, received [2147483648]');
    expectError(() => cn.zeros([0, 2 ** 32]), ShapeError, 'zeros: shape dimensions must be at most 2^31-1, received [0, 4294967296]');
  });
  it('an op whose output would pass 2^31-1 elements', () => {
    const x = cn.zeros([65536, 1, 1, 1]);
    const w = cn.zeros([32768, 1, 1, 1]);
    expectError(() => cn.conv2d(x, w, null), ShapeError, 'conv2d: the output [65536, 32768, 1, 1] has 2147483648 elements, more than the limit of 2^31-1');
    x.dispose();
    w.dispose();
  });
  it('randn needs a seed', () => {
    expectError(() => cn.randn([2], { seed: -1 }), ShapeError, 'randn: seed must be a non-negative integer, received -1');
    expectError(() => cn.randn([2], { seed: 0.5 }), ShapeError, 'randn: seed must be a non-negative integer, received 0.5');
  });
  it('reshape to another element count', () => {
    const t = cn.zeros([2, 3]);
    expectError(() => t.reshape([4, 2]), ShapeError, 'reshape: shape must hold 6 elements like [2, 3], received [4, 2] (8)');
    t.dispose();
  });
});

describe('softmaxCrossEntropy labels', () => {
  it('out of range, negative, not an integer, wrong count', () => {
    const z = cn.zeros([3, 4]);
    expectError(() => cn.softmaxCrossEntropy(z, [0, 4, 1]), ShapeError, 'softmaxCrossEntropy: labels[1] must be an integer class index in [0, 4), received 4');
    expectError(() => cn.softmaxCrossEntropy(z, [0, 1, -1]), ShapeError, 'softmaxCrossEntropy: labels[2] must be an integer class index in [0, 4), received -1');
    expectError(() => cn.softmaxCrossEntropy(z, [0.5, 1, 1]), ShapeError, 'softmaxCrossEntropy: labels[0] must be an integer class index in [0, 4), received 0.5');
    expectError(() => cn.softmaxCrossEntropy(z, new Int32Array([1, 2])), ShapeError, 'softmaxCrossEntropy: labels must have N = 3 entries to match logits [3, 4], received 2');
    const lt = cn.tensor(new Int32Array([0, 9, 1]), [3]);
    expectError(() => cn.softmaxCrossEntropy(z, lt), ShapeError, 'softmaxCrossEntropy: labels[1] must be an integer class index in [0, 4), received 9');
    const lf = cn.tensor([0, 1, 1], [3]);
    expectError(() => cn.softmaxCrossEntropy(z, lf), ShapeError, 'softmaxCrossEntropy: labels must be int32, received float32');
    for (const t of [z, lt, lf]) t.dispose();
  });
});

describe('dropout p', () => {
  it('outside [0, 1)', () => {
    const x = cn.zeros([4]);
    for (const p of [1, -0.1, 1.5, NaN]) {
      expectError(() => cn.dropout(x, { p, seed: 1 }), ShapeError, `dropout: p must be a number in [0, 1), received ${p}`);
    }
    x.dispose();
  });
});

describe('pool and lrn options', () => {
  it('maxPool2d padding over half the kernel and kernel larger than the input', () => {
    const x = cn.zeros([1, 1, 4, 4]);
    expectError(() => cn.maxPool2d(x, { kernel: 2, padding: 2 }), ShapeError, 'maxPool2d: padding must be at most half the kernel (2x2), received [2, 2]');
    expectError(() => cn.maxPool2d(x, { kernel: 5 }), ShapeError, 'maxPool2d: kernel 5x5 must fit the padded input 4x4, received x [1, 1, 4, 4] with padding [0, 0]');
    expectError(() => cn.maxPool2d(x, { kernel: 0 }), ShapeError, 'maxPool2d: kernel must be a positive integer or an [h, w] pair of them, received 0');
    expectError(() => cn.lrn(x, { size: 0 }), ShapeError, 'lrn: size must be a positive integer, received 0');
    x.dispose();
  });
});

describe('devices', () => {
  it('tensors on two devices: DeviceError naming both', () => {
    const x = cn.zeros([2, 3]);
    const w = cn.zeros([4, 3], { device: 'cpu:1' });
    expectError(() => cn.linear(x, w, null), DeviceError, 'linear: x is on cpu:0 but w is on cpu:1; move one with t.to(device)');
    x.dispose();
    w.dispose();
  });

  it('an unknown device id', () => {
    expectError(() => cn.zeros([2], { device: 'tpu:0' }), DeviceError, "device: unknown device id 'tpu:0': expected 'cpu', 'cpu:N', 'cuda' or 'cuda:N'");
    expectError(() => cn.zeros([2], { device: 'cpu:99' }), DeviceError, "device: no such device 'cpu:99': there are 2 CPU devices (cpu:0 to cpu:1; CONVNET_CPU_DEVICES sets more)");
    expectError(() => cn.zeros([2], { device: 'cpu:01' }), DeviceError, "device: unknown device id 'cpu:01': expected 'cpu', 'cpu:N', 'cuda' or 'cuda:N'");
  });

  it('a CUDA device on a CPU-only build or a machine without a GPU', (ctx) => {
    if (cn.devices().some((d) => d.kind === 'cuda')) {
      console.log('skipped: this machine has a CUDA device');
      ctx.skip();
    }
    const why = cn.buildInfo().cuda
      ? /^device: cannot use 'cuda:0': (no CUDA driver, or one older than CUDA \d+ needs \(cudaErrorInsufficientDriver\)|no CUDA device on this machine.*|the CUDA driver is not usable: .*)$/
      : "device: cannot use 'cuda:0': this build of convnet-cuda has no CUDA support (built without nvcc or with CONVNET_CUDA=0; reinstall on a machine with the CUDA toolkit)";
    expectError(() => cn.zeros([2], { device: 'cuda:0' }), DeviceError, why);
    const t = cn.zeros([2]);
    expectError(() => t.to('cuda'), DeviceError, why);
    t.dispose();
  });
});

describe('use after dispose and backward misuse', () => {
  it('use after dispose; a second dispose is harmless', () => {
    const x = cn.zeros([2, 2]);
    x.dispose();
    x.dispose();
    expectError(() => cn.linear(x, x, null), DisposedError, 'linear: x was disposed and cannot be used');
    expectError(() => cn.flatten(x), DisposedError, 'flatten: tensor was disposed and cannot be used');
  });

  it('backward() on a non-scalar without gradOutput', () => {
    const x = cn.zeros([2, 3], { requiresGrad: true });
    const y = cn.relu(x);
    expectError(() => y.backward(), ShapeError, 'backward: gradOutput is required for a non-scalar tensor, received shape [2, 3]');
    const g = cn.zeros([3, 2]);
    expectError(() => y.backward(g), ShapeError, "backward: gradOutput must have the tensor's shape [2, 3], received [3, 2]");
    y.dispose();
    x.dispose();
    g.dispose();
  });

  it('backward() on a tensor that does not require grad', () => {
    const x = cn.zeros([1]);
    expectError(() => x.backward(), ShapeError, 'backward: the tensor does not require grad (no input had requiresGrad: true)');
    x.dispose();
  });

  it('a second backward through a freed graph', () => {
    const x = cn.full([1, 2], 1, { requiresGrad: true });
    const w = cn.full([1, 2], 1);
    const y = cn.scope(() => cn.linear(x, w, null).reshape([]));
    y.backward();
    expectError(() => y.backward(), DisposedError, 'backward: the graph through reshape was already freed by an earlier backward()');
    cn.zeroGrad([x]);
    cn.scope(() => [x, w, y].forEach((t) => t.dispose()));
  });
});
