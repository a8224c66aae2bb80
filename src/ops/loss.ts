/**
 * softmaxCrossEntropy(logits [N, M], labels [N]) -> scalar mean loss (native/ops/loss.h).
 * Labels are checked on the host before any device work: integers in [0, M).
 */
import { needsGrad, record } from '../autograd.js';
import { ShapeError } from '../errors.js';
import { formatShape, Storage, Tensor } from '../tensor.js';
import { tensor } from './create.js';
import { launch } from './launch.js';
import { describe, expectRank, expectTensor, sameDevice } from './validate.js';

/**
 * Softmax followed by cross-entropy, averaged over the batch: logits [N, M] and N class
 * indices → a scalar (shape `[]`) mean loss, differentiable in the logits. Labels may be an
 * int32 tensor on the logits' device, an Int32Array or a number array; they are checked on the
 * host before any device work (a label tensor is read back, waiting for its queue).
 *
 * @throws ShapeError for logits that are not float32 [N, M], labels that are not N integers in
 *   [0, M); DeviceError when a label tensor is on another device
 *
 * @example
 * ```ts
 * const loss = cn.softmaxCrossEntropy(logits, cn.tensor([0, 7, 3], [3], { dtype: 'int32' }));
 * loss.backward();
 * console.log((await loss.data())[0]);
 * ```
 */
export function softmaxCrossEntropy(logits: Tensor, labels: Tensor | Int32Array | readonly number[]): Tensor {

  const op = 'softmaxCrossEntropy';
  expectTensor(op, 'logits', logits);
  expectRank(op, 'logits', logits, 2, '[N, M]');
  const [N, M] = logits.shape;
  let values: ArrayLike<number>;
  if (labels instanceof Tensor) {
    expectTensor(op, 'labels', labels, 'int32');
    expectRank(op, 'labels', labels, 1, '[N]');
    sameDevice(op, [['logits', logits], ['labels', labels]]);
    values = labels.dataSync();
  } else if (labels instanceof Int32Array || Array.isArray(labels)) {
    values = labels;
  } else {
    throw new ShapeError(`${op}: labels must be an int32 Tensor, Int32Array or number[], received ${describe(labels)}`);
  }
  if (values.length !== N) {
    throw new ShapeError(`${op}: labels must have N = ${N} entries to match logits ${formatShape(logits.shape)}, received ${values.length}`);
  }
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= M) {
      throw new ShapeError(`${op}: labels[${i}] must be an integer class index in [0, ${M}), received ${describe(v)}`);
    }
  }
  const owned = labels instanceof Tensor ? null : tensor(Int32Array.from(values), [N], { device: logits.device });
  const lab = owned ?? (labels as Tensor);
  try {
    const [loss, probs] = launch('softmax_xent_forward', logits.device, [[[], 'float32'], [[N, M], 'float32']], [logits, lab], [N, M]);
    if (!needsGrad(logits)) {
      probs.dispose();
      return loss;
    }
    const sp: Storage = probs._storage(op).retain();
    const sl: Storage = lab._storage(op).retain();
    probs.dispose();
    return record(loss, op, [logits], (g) => launch('softmax_xent_backward', logits.device, [[[N, M], 'float32']], [sp, sl, g], [N, M]), [sp, sl]);
  } finally {
    owned?.dispose();
  }
}
