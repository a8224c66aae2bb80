/**
 * Learning-rate schedules. Each one sets `optimizer.lr` when its `step` is called (once per
 * epoch) and exports its state for checkpoints.
 */
import { ShapeError } from '../errors.js';
import { finiteNumber } from '../ops/validate.js';

/** Anything with a settable learning rate. */
export interface HasLr {
  /** The learning rate, read and set by the schedule. */
  lr: number;
}

/** Options of {@link StepLR}. */
export interface StepLrOptions {
  /** Epochs between reductions. */
  stepSize: number;
  /** The factor applied every stepSize epochs (default 0.1). */
  gamma?: number;
}

/** What `StepLR.getState()` returns and `setState()` takes. */
export interface StepLrState {
  /** Epochs completed. */
  epoch: number;
  /** The learning rate the decay starts from. */
  baseLr: number;
}

/**
 * lr = baseLr · gamma^floor(epoch / stepSize), where baseLr is the optimizer's lr at construction.
 *
 * @throws ShapeError from the constructor for a stepSize that is not a positive integer or a
 *   gamma that is not finite
 *
 * @example
 * ```ts
 * const opt = new cn.optim.SGD(model, { lr: 0.01, momentum: 0.9 });
 * const schedule = new cn.optim.StepLR(opt, { stepSize: 7, gamma: 0.1 });
 * for (let epoch = 0; epoch < 20; epoch++) {
 *   // ... one epoch of training
 *   schedule.step(); // lr 0.01 for epochs 0-6, 0.001 for 7-13, then 0.0001
 * }
 * ```
 */
export class StepLR {
  /** Epochs between reductions. */
  readonly stepSize: number;
  /** The factor applied every stepSize epochs. */
  readonly gamma: number;
  /** Epochs completed (calls to `step`). */
  epoch = 0;
  /** The learning rate the decay starts from: the optimizer's lr at construction. */
  baseLr: number;

  constructor(private readonly optimizer: HasLr, opts: StepLrOptions) {
    const s = opts?.stepSize;
    if (typeof s !== 'number' || !Number.isInteger(s) || s < 1) {
      throw new ShapeError(`StepLR: stepSize must be a positive integer, received ${String(s)}`);
    }
    this.stepSize = s;
    this.gamma = finiteNumber('StepLR', 'gamma', opts.gamma, 0.1);
    this.baseLr = optimizer.lr;
  }

  /** Ends an epoch and sets the optimizer's lr for the next one, which it returns. */
  step(): number {
    this.epoch++;
    this.optimizer.lr = this.baseLr * this.gamma ** Math.floor(this.epoch / this.stepSize);
    return this.optimizer.lr;
  }

  /** The schedule's state for a checkpoint. */
  getState(): StepLrState {
    return { epoch: this.epoch, baseLr: this.baseLr };
  }

  /** Restores the state and the optimizer's lr for the restored epoch. */
  setState(s: StepLrState): void {
    this.epoch = s.epoch;
    this.baseLr = s.baseLr;
    this.optimizer.lr = this.baseLr * this.gamma ** Math.floor(this.epoch / this.stepSize);
  }
}

/** Options of {@link ReduceOnPlateau}. */
export interface ReduceOnPlateauOptions {
  /** lr is multiplied by this on a plateau (default 0.1: "divide by 10"). */
  factor?: number;
  /** Epochs without improvement tolerated before reducing (default 0). */
  patience?: number;
  /** 'max' for accuracy (default), 'min' for a loss. */
  mode?: 'max' | 'min';
  /** An improvement must beat the best by more than this (absolute, default 0). */
  threshold?: number;
  /** lr never goes below this (default 0). */
  minLr?: number;
}

/** What `ReduceOnPlateau.getState()` returns and `setState()` takes. */
export interface ReduceOnPlateauState {
  /** The best metric so far, null before the first. */
  best: number | null;
  /** Epochs since the last improvement or reduction. */
  badEpochs: number;
  /** Reductions made so far. */
  reductions: number;
}

/**
 * Reduces the learning rate when a validation metric stops improving, as the AlexNet paper did
 * ("divided by 10 when the validation error rate stopped improving"): after more than
 * `patience` epochs without a new best, lr ← max(lr · factor, minLr) and the count restarts.
 *
 * @throws ShapeError from the constructor for a factor outside (0, 1), a patience that is not
 *   a non-negative integer, an unknown mode or options that are not finite; from `step` for a
 *   metric that is not finite
 *
 * @example
 * ```ts
 * const plateau = new cn.optim.ReduceOnPlateau(opt, { factor: 0.1, patience: 2, mode: 'max' });
 * for (let epoch = 0; epoch < 30; epoch++) {
 *   const accuracy = trainAndEvaluate(); // your epoch of training, then the test accuracy
 *   if (plateau.step(accuracy)) console.log('lr is now', opt.lr);
 * }
 * ```
 */
export class ReduceOnPlateau {
  /** lr is multiplied by this on a plateau, in (0, 1). */
  readonly factor: number;
  /** Epochs without improvement tolerated before reducing. */
  readonly patience: number;
  /** 'max': a higher metric is better (accuracy); 'min': lower is better (loss). */
  readonly mode: 'max' | 'min';
  /** The margin by which a metric must beat the best to count as an improvement. */
  readonly threshold: number;
  /** The floor of the learning rate. */
  readonly minLr: number;
  /** The best metric so far, null before the first `step`. */
  best: number | null = null;
  /** Epochs since the last improvement or reduction. */
  badEpochs = 0;
  /** Reductions made so far. */
  reductions = 0;

  constructor(private readonly optimizer: HasLr, opts: ReduceOnPlateauOptions = {}) {
    const op = 'ReduceOnPlateau';
    this.factor = finiteNumber(op, 'factor', opts.factor, 0.1);
    if (!(this.factor > 0 && this.factor < 1)) throw new ShapeError(`${op}: factor must be in (0, 1), received ${this.factor}`);
    const patience = opts.patience ?? 0;
    if (!Number.isInteger(patience) || patience < 0) {
      throw new ShapeError(`${op}: patience must be a non-negative integer, received ${String(patience)}`);
    }
    this.patience = patience;
    const mode = opts.mode ?? 'max';
    if (mode !== 'max' && mode !== 'min') throw new ShapeError(`${op}: mode must be 'max' or 'min', received ${String(mode)}`);
    this.mode = mode;
    this.threshold = finiteNumber(op, 'threshold', opts.threshold, 0);
    this.minLr = finiteNumber(op, 'minLr', opts.minLr, 0);
  }

  /** Records an epoch's metric; returns true when it reduced the learning rate. */
  step(metric: number): boolean {
    finiteNumber('ReduceOnPlateau.step', 'metric', metric);
    const better = this.best === null
      || (this.mode === 'max' ? metric > this.best + this.threshold : metric < this.best - this.threshold);
    if (better) {
      this.best = metric;
      this.badEpochs = 0;
      return false;
    }
    this.badEpochs++;
    if (this.badEpochs <= this.patience) return false;
    this.optimizer.lr = Math.max(this.optimizer.lr * this.factor, this.minLr);
    this.badEpochs = 0;
    this.reductions++;
    return true;
  }

  /** The schedule's state for a checkpoint. */
  getState(): ReduceOnPlateauState {

    return { best: this.best, badEpochs: this.badEpochs, reductions: this.reductions };
  }

  /** Restores the state; the lr itself is the optimizer's state. */
  setState(s: ReduceOnPlateauState): void {
    this.best = s.best;
    this.badEpochs = s.badEpochs;
    this.reductions = s.reductions;
  }
}
