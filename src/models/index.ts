/** Model constructors: `cn.models`. */
export {
  alexnet,
  alexnetMini,
  alexnetSpec,
  alexnetMiniSpec,
  copyAlexNetWeights,
  AlexNetGrouped,
  AlexNetTwoTower,
  AlexNetTower,
  type AlexNet,
  type AlexNetSpec,
  type ConvStage,
  type ConvInput,
  type AlexNetOptions,
  type AlexNetMiniOptions,
} from './alexnet.js';
