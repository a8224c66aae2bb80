/** Layers and containers: `cn.nn`. */
export { Module, Sequential, type ModuleState } from './module.js';
export {
  Conv2d,
  Linear,
  ReLU,
  MaxPool2d,
  LRN,
  Dropout,
  Flatten,
  type Conv2dLayerOptions,
  type LinearLayerOptions,
  type LrnLayerOptions,
  type DropoutLayerOptions,
} from './layers.js';
export { heStd, mixSeed, normalWeight, constantBias, PAPER_STD, type InitOptions } from './init.js';
