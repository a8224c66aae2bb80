/** Optimizers and learning-rate schedules: `cn.optim`. */
export { SGD, type SgdConfig, type SgdState } from './sgd.js';
export {
  StepLR,
  ReduceOnPlateau,
  type HasLr,
  type StepLrOptions,
  type StepLrState,
  type ReduceOnPlateauOptions,
  type ReduceOnPlateauState,
} from './schedule.js';
