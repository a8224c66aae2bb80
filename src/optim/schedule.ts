/**
 * Learning-rate schedules. Each one sets `optimizer.lr` when its `step` is called (once per
 * epoch) and exports its state for checkpoints.
 */
import { ShapeError } from '../errors.js';
import { finiteNumber } from '../ops/validate.js';

/** Anything with a settable learning rate. */
export interface HasLr {
  lr: number;
}

export interface StepLrOptions {
  /** Epochs between reductions. */
  stepSize: number;
  /** The factor applied every stepSize epochs (default 0.1). */
  gamma?: number;
}

export interface StepLrState {
  epoch: number;
  baseLr: number;
}

/** lr = baseLr · gamma^floor(epoch / stepSize), where baseLr is the optimizer's lr at construction. */
export class StepLR {
  readonly stepSize: number;
  readonly gamma: number;
  /** Epochs completed (calls to `step`). */
  epoch = 0;
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

  /** Ends an epoch and sets the optimizer's lr for the next one. */
  step(): number {
    this.epoch++;
    this.optimizer.lr = this.baseLr * this.gamma ** Math.floor(this.epoch / this.stepSize);
    return this.optimizer.lr;
  }

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
 */
export class ReduceOnPlateau {
  readonly factor: number;
  readonly patience: number;
  readonly mode: 'max' | 'min';
  readonly threshold: number;
  readonly minLr: number;
  best: number | null = null;
  badEpochs = 0;
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
