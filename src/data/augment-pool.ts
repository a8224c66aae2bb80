/**
 * Worker threads that cut training crops and evaluation patches, so that the JS thread only
 * reads files and hands bytes over: the augmentation of a batch of 128 AlexNet images is about
 * 20 million float writes, too much for the thread that also drives the GPUs.
 *
 * Each job carries a few decoded `[3, 256, 256]` images (their buffers are transferred, not
 * copied) and the patches to cut from them; the worker returns the patches as one float32 buffer
 * (transferred back), which the caller copies into the batch. The workers run the same
 * `cropInto` as the JS-thread path, so the results are identical.
 */
import { Worker } from 'node:worker_threads';

import { ConvnetError } from '../errors.js';
import { cropInto, type Patch } from './augment.js';

/**
 * The worker's code. `cropInto` is a self-contained function (no free names), so its source is
 * embedded as it is: the same code runs on the JS thread and in the workers, from the compiled
 * package and from the TypeScript sources alike, with no separate worker file to find.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const cropInto = ${cropInto.toString()};
parentPort.on('message', (job) => {
  try {
    const per = 3 * job.crop * job.crop;
    const out = new Float32Array(job.items.length * per);
    job.items.forEach((it, k) => cropInto(job.images[it.img], job.size, out, k * per, job.crop, it, it.offset, job.mean, job.scale));
    parentPort.postMessage({ id: job.id, out }, [out.buffer]);
  } catch (e) {
    parentPort.postMessage({ id: job.id, error: String((e && e.message) || e) });
  }
});
`;

/** One patch to cut: which image of the job, where, mirrored or not, and its colour offset. */
export interface AugmentItem extends Patch {
  /** Index into the job's images. */
  img: number;
  /** RGB offset added to every pixel (the colour noise; zeros in evaluation). */
  offset: number[];
}

/** A unit of work for a worker. */
export interface AugmentJob {
  /** Matches the reply to the job. */
  id: number;
  /** Decoded images, `[3, size, size]` uint8. */
  images: Uint8Array[];
  /** The patches, in output order. */
  items: AugmentItem[];
  /** Side of the stored images. */
  size: number;
  /** Side of a patch. */
  crop: number;
  /** Per-channel mean subtracted. */
  mean: number[];
  /** Multiplies every value after the mean is subtracted. */
  scale: number;
}

interface Pending {
  job: AugmentJob;
  resolve: (out: Float32Array) => void;
  reject: (e: Error) => void;
}

/** A fixed set of worker threads running augmentation jobs, first come first served. */
export class AugmentPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: Pending[] = [];
  private readonly running = new Map<Worker, Pending>();
  private nextId = 0;
  private closed = false;

  constructor(readonly size: number) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(WORKER_SOURCE, { eval: true });
      w.on('message', (m: { id: number; out?: Float32Array; error?: string }) => this.done(w, m));
      w.on('error', (e) => this.fail(w, e));
      w.on('exit', (code) => this.fail(w, new Error(`augmentation worker exited with code ${code}`)));
      w.unref();
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  /** Runs a job (its image buffers are transferred to the worker and become unusable here). */
  run(job: Omit<AugmentJob, 'id'>): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new ConvnetError('AugmentPool: run after close()'));
    return new Promise((resolve, reject) => {
      this.queue.push({ job: { ...job, id: this.nextId++ }, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!;
      const p = this.queue.shift()!;
      this.running.set(w, p);
      w.ref(); // a job in flight keeps the process alive
      const buffers = [...new Set(p.job.images.map((a) => a.buffer as ArrayBuffer))];
      w.postMessage(p.job, buffers);
    }
  }

  private done(w: Worker, m: { id: number; out?: Float32Array; error?: string }): void {
    const p = this.running.get(w);
    this.running.delete(w);
    w.unref();
    if (!this.closed) this.idle.push(w);
    if (p) {
      if (m.out) p.resolve(m.out);
      else p.reject(new ConvnetError(`AugmentPool: a worker failed: ${m.error}`));
    }
    this.dispatch();
  }

  private fail(w: Worker, e: Error): void {
    const p = this.running.get(w);
    this.running.delete(w);
    const i = this.idle.indexOf(w);
    if (i >= 0) this.idle.splice(i, 1);
    const j = this.workers.indexOf(w);
    if (j >= 0) this.workers.splice(j, 1);
    if (this.closed) return;
    p?.reject(new ConvnetError(`AugmentPool: a worker failed: ${e.message}`));
    if (this.workers.length === 0) {
      for (const q of this.queue.splice(0)) q.reject(new ConvnetError('AugmentPool: no worker left'));
    }
  }

  /** Stops the workers; jobs not yet finished are rejected. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const q of this.queue.splice(0)) q.reject(new ConvnetError('AugmentPool: closed'));
    for (const p of this.running.values()) p.reject(new ConvnetError('AugmentPool: closed'));
    this.running.clear();
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
