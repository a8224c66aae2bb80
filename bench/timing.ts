/**
 * Timing on our devices, the same for every driver that queues work there (ours, cuDNN): each
 * timed iteration is `flush the cache, marker, the work, marker`, all queued back to back, and
 * the device is synchronized once at the end. On a CUDA device the markers are CUDA events on the
 * device's stream, so the time is GPU time, and the flush (a memset over twice the L2) keeps the
 * stream busy while the queue thread issues the marker and the kernel, so launch latency does not
 * fall inside the timed region. On a CPU device the markers are host timestamps taken by the
 * queue thread, which runs the ops itself: the wall time of the work (native/bench/timer.h).
 */
import * as cn from '../src/index.js';
import { native } from '../src/native.js';

export { timeQueued, type TimingOptions } from '../src/bench.js';
import { timeQueued } from '../src/bench.js';

/** Device-to-device copy bandwidth in GB/s (bytes read plus bytes written, per second). */
export async function copyBandwidth(device: string, bytes: number, iters = 5): Promise<number> {
  const n = Math.floor(bytes / 4);
  const src = cn.zeros([n], { device });
  const dst = cn.zeros([n], { device });
  try {
    const ms = await timeQueued(device, { iters, warmup: 1, flush: false }, () =>
      native.copy(dst._handle('bench'), src._handle('bench')));
    ms.sort((a, b) => a - b);
    return (2 * 4 * n) / (ms[ms.length >> 1] / 1000) / 1e9;
  } finally {
    src.dispose();
    dst.dispose();
  }
}
