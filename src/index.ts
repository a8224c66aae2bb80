/**
 * convnet-cuda: hand-written CPU and CUDA kernels for the layers of AlexNet, with a typed
 * tensor API and autograd.
 *
 * ```ts
 * import * as cn from 'convnet-cuda';
 * const x = cn.randn([8, 3, 32, 32], { seed: 1 });
 * ```
 */
import './ops/shape.js'; // installs Tensor.prototype.reshape / .to

export { Tensor, memory, scope, type DType, type TensorOptions } from './tensor.js';
export { noGrad, zeroGrad } from './autograd.js';
export {
  devices,
  buildInfo,
  synchronize,
  allocatorStats,
  emptyCache,
  peakMemory,
  resetPeakMemory,
  setMemoryLimit,
  traceStart,
  traceStop,
  type TraceEvent,
  type DeviceInfo,
  type BuildInfo,
  type AllocatorStats,
} from './device.js';
export { type AddonSource } from './native.js';
export {
  ConvnetError,
  ShapeError,
  DeviceError,
  DisposedError,
  OutOfMemoryError,
  CudaError,
  FormatError,
  IOError,
  CompileError,
} from './errors.js';
export { tensor, zeros, full, randn, type CreateOptions, type RandnOptions } from './ops/create.js';
export { conv2d, type Conv2dOptions } from './ops/conv2d.js';
export { setPrecision, getPrecision, type Precision } from './precision.js';
export { relu, dropout, type DropoutOptions } from './ops/activation.js';
export { maxPool2d, type MaxPool2dOptions } from './ops/pool.js';
export { lrn, type LrnOptions } from './ops/lrn.js';
export { linear } from './ops/linear.js';
export { softmaxCrossEntropy } from './ops/loss.js';
export { reshape, flatten, concat, split, to } from './ops/shape.js';
export { sgdUpdate, type SgdOptions } from './ops/sgd.js';
export {
  add,
  sub,
  mul,
  div,
  neg,
  exp,
  log,
  sqrt,
  tanh,
  sigmoid,
  pow,
  sum,
  mean,
  max,
  matmul,
  transpose,
  customOp,
  broadcastShapes,
  type Operand,
  type ReduceOptions,
  type CustomOpDefinition,
  type CustomOpContext,
} from './ops/compose.js';
export { fuse, Expr } from './ops/fuse.js';
export {
  loadFashionMnist,
  fashionMnistFiles,
  FASHION_MNIST_DIR,
  FASHION_MNIST_CLASSES,
  type ImageDataset,
  type FashionMnistOptions,
} from './data/fashion-mnist.js';
export {
  BatchLoader,
  batchToTensors,
  normalizationStats,
  type Batch,
  type BatchLoaderOptions,
  type CropOptions,
  type LoaderState,
  type Normalization,
} from './data/loader.js';
export type { ImageBatch, ImageSource } from './data/source.js';
export {
  listImages,
  decodeImage,
  VAL_LABEL_FILES,
  type ImageList,
  type ImageLayout,
  type ImageSplit,
} from './data/images.js';
export {
  IMAGENET_MEAN,
  IMAGENET_PCA,
  STORED_SIZE,
  CROP_SIZE,
  evaluationPatches,
  scorePatches,
  type ColourPca,
  type Patch,
  type PatchScores,
} from './data/augment.js';
export {
  prepareImages,
  readPackedHeader,
  packedFileName,
  PACK_MAGIC,
  PACK_VERSION,
  type PackedHeader,
  type PrepareOptions,
  type PrepareProgress,
  type PrepareResult,
  type PreparedFile,
  type SkippedImage,
} from './data/packed.js';
export { openImageSource, type ImageSourceOptions, type FolderImageSource } from './data/image-source.js';
export {
  save,
  load,
  saveTensors,
  loadTensors,
  type NamedParameters,
  type HostTensor,
  type LoadedTensors,
  type LoadOptions,
  type SafetensorsDType,
  MAX_HEADER_BYTES,
} from './io/safetensors.js';
export { SyntheticSource, type SyntheticOptions } from './data/synthetic.js';
export { LoaderSource } from './data/open.js';
export * as nn from './nn/index.js';
export * as optim from './optim/index.js';
export * as models from './models/index.js';
export * as cuda from './cuda.js';
export * as bench from './bench.js';
