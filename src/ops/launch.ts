/** Queues a native op whose outputs are fresh tensors; if queueing fails they are freed. */
import { native } from '../native.js';
import { empty, Storage, Tensor, type DType } from '../tensor.js';

export type Arg = Tensor | Storage | null;

function handleOf(op: string, a: Arg) {
  if (a === null) return null;
  if (a instanceof Storage) return a.handle;
  return a._handle(op);
}

/**
 * Runs `op` with tensors [...outputs, ...inputs]. Outputs are created here (shape, dtype) on
 * `device`; they are returned, or disposed when the launch throws.
 */
export function launch(op: string, device: string, outputs: [readonly number[], DType][], inputs: Arg[],
                       ints: number[], floats: number[] = []): Tensor[] {
  const made: Tensor[] = [];
  try {
    for (const [shape, dtype] of outputs) made.push(empty(shape, dtype, device));
    native.launch(op, [...made.map((t) => t._handle(op)), ...inputs.map((a) => handleOf(op, a))], ints, floats);
  } catch (e) {
    for (const t of made) t.dispose();
    throw e;
  }
  return made;
}

/** Runs `op` writing into existing tensors (in-place ops such as sgd and axpy). */
export function launchInPlace(op: string, tensors: Arg[], ints: number[], floats: number[] = []): void {
  native.launch(op, tensors.map((a) => handleOf(op, a)), ints, floats);
}
