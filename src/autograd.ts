/**
 * Reverse-mode autograd over a tape of native ops.
 *
 * Each differentiable op that sees an input requiring grad records a Node: its backward
 * function, the storages it saved, and one edge per input (the producing node, or the leaf
 * tensor that collects `.grad`). Nodes are reference counted by the tensors they produced and
 * by the nodes downstream, so a graph lives exactly as long as some tensor can still reach it,
 * even when a scope has already disposed the intermediate tensors.
 *
 * `backward()` walks the graph once, newest node first (creation order is a topological order,
 * since a node is made after its inputs), and frees each node's saved storage as soon as its
 * gradients are out (a second backward through the same graph throws). Newest-first also keeps
 * the forward pass's interleaving across devices: two towers' backward work alternates between
 * their queues as their forward work did, so both devices stay busy.
 *
 * Gradient convention: native backward kernels overwrite their outputs; accumulation happens
 * here: into the gradient of a node reached along several paths, and into a leaf's `.grad`
 * across backward calls until it is cleared with `zeroGrad`.
 */
import { DisposedError, ShapeError, DeviceError } from './errors.js';
import { native } from './native.js';
import { empty, formatShape, keepFromScopes, scope, setBackward, Storage, Tensor, type DType } from './tensor.js';

/** The node that produced t: always a Node of this module, which alone sets `_state.node`. */
function nodeOf(t: Tensor): Node | null {
  return t._node as Node | null;
}

/** Gradients of the op's inputs from the gradient of its output; null where none is needed. */
export type BackwardFn = (gradOutput: Tensor) => (Tensor | null)[];

interface Edge {
  node: Node | null;
  leaf: Tensor | null;
}

/** A storage saved for backward, with the shape and dtype to read it as. */
export interface Saved {
  storage: Storage;
  shape: readonly number[];
  dtype: DType;
}

let nextSeq = 0;

export class Node {
  readonly op: string;
  /** Creation order: every node is newer than the nodes of its inputs. */
  readonly seq = nextSeq++;
  readonly edges: (Edge | null)[];
  private backwardFn: BackwardFn | null;
  private saved: Storage[];
  private refs = 0;
  private consumed = false;

  constructor(op: string, inputs: (Tensor | null)[], backward: BackwardFn, saved: Storage[]) {
    this.op = op;
    this.backwardFn = backward;
    this.saved = saved;
    this.edges = inputs.map((t) => {
      if (!t || !t.requiresGrad) return null;
      const node = nodeOf(t);
      if (node) {
        node.ref();
        return { node, leaf: null };
      }
      return { node: null, leaf: t };
    });
  }

  ref(): void {
    this.refs++;
  }

  /** Drops one reference; at zero the node frees its saved storage and lets its inputs go. */
  unref(): void {
    if (--this.refs > 0) return;
    this.releaseSaved();
    for (const e of this.edges) e?.node?.unref();
    this.edges.fill(null);
  }

  /** @internal */
  run(g: Tensor): (Tensor | null)[] {
    if (this.consumed || !this.backwardFn) {
      throw new DisposedError(
        `backward: the graph through ${this.op} was already freed by an earlier backward()`,
      );
    }
    const grads = this.backwardFn(g);
    this.consumed = true;
    this.releaseSaved();
    return grads;
  }

  private releaseSaved(): void {
    for (const s of this.saved) s.release();
    this.saved = [];
    this.backwardFn = null;
  }
}

let gradEnabled = true;

/**
 * Runs fn without recording any op for backward and returns its result (for evaluation, and
 * for updates made by hand). Calls nest.
 *
 * @example
 * ```ts
 * const logits = cn.noGrad(() => model.forward(x)); // no graph, logits.requiresGrad is false
 * ```
 */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** True when an op on these inputs must be recorded. */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  return gradEnabled && inputs.some((t) => t?.requiresGrad === true);
}

/** Keeps a reference to t's storage for backward. */
export function save(t: Tensor, op: string): Saved {
  return { storage: t._storage(op).retain(), shape: t.shape, dtype: t.dtype };
}

/**
 * Records `out = op(inputs)` for backward. `saved` storages (from `save`, or fresh internal
 * ones the op made) are owned by the node from here on.
 */
export function record(out: Tensor, op: string, inputs: (Tensor | null)[], backward: BackwardFn,
                       saved: Storage[] = []): Tensor {
  const node = new Node(op, inputs, backward, saved);
  node.ref();
  out._state.node = node;
  out.requiresGrad = true;
  return out;
}

function ones(shape: readonly number[], device: string): Tensor {
  const t = empty(shape, 'float32', device);
  native.launch('fill', [t._handle('backward')], [t.size], [1]);
  return t;
}

/** a += b when a is ours alone; otherwise a fresh sum. Disposes b. Returns the sum. */
function accumulate(a: Tensor, b: Tensor, owned: Set<Tensor>): Tensor {
  let acc = a;
  if (!owned.has(a) || a._storage('backward').refCount > 1) {
    acc = empty(a.shape, 'float32', a.device);
    native.copy(acc._handle('backward'), a._handle('backward'));
    owned.add(acc);
    if (owned.has(a)) {
      owned.delete(a);
      a.dispose();
    }
  }
  native.launch('axpy', [acc._handle('backward'), b._handle('backward')], [acc.size], [1]);
  if (owned.has(b)) {
    owned.delete(b);
    b.dispose();
  }
  return acc;
}

function addToLeaf(leaf: Tensor, g: Tensor, owned: Set<Tensor>): void {
  if (leaf.disposed) {
    if (owned.has(g)) g.dispose();
    return;
  }
  let grad = g;
  if (!owned.has(g) || g._storage('backward').refCount > 1) {
    // The caller's gradOutput, or a view sharing storage with it (reshape's gradient is one):
    // the leaf gets its own copy, so accumulating into .grad never writes into anything else.
    grad = empty(g.shape, 'float32', g.device);
    native.copy(grad._handle('backward'), g._handle('backward'));
  }
  if (grad !== g && owned.has(g)) g.dispose();
  owned.delete(g);
  if (leaf.grad && !leaf.grad.disposed) {
    native.launch('axpy', [leaf.grad._handle('backward'), grad._handle('backward')], [grad.size], [1]);
    grad.dispose();
  } else {
    leaf.grad = grad;
    keepFromScopes(grad);
  }
}

function backward(root: Tensor, gradOutput?: Tensor): void {
  root._storage('backward', 'the tensor');
  if (!root.requiresGrad) {
    throw new ShapeError('backward: the tensor does not require grad (no input had requiresGrad: true)');
  }
  if (gradOutput === undefined) {
    if (root.size !== 1) {
      throw new ShapeError(
        `backward: gradOutput is required for a non-scalar tensor, received shape ${formatShape(root.shape)}`,
      );
    }
  } else {
    gradOutput._storage('backward', 'gradOutput');
    if (formatShape(gradOutput.shape) !== formatShape(root.shape)) {
      throw new ShapeError(
        `backward: gradOutput must have the tensor's shape ${formatShape(root.shape)}, received ${formatShape(gradOutput.shape)}`,
      );
    }
    if (gradOutput.device !== root.device) {
      throw new DeviceError(`backward: gradOutput is on ${gradOutput.device} but the tensor is on ${root.device}`);
    }
  }
  const rootNode = nodeOf(root);
  if (rootNode) {
    // Check the whole graph is still there before doing any work.
    noGrad(() => runGraph(rootNode, root, gradOutput));
  } else {
    noGrad(() => {
      const owned = new Set<Tensor>();
      const g = gradOutput ?? ones(root.shape, root.device);
      if (!gradOutput) owned.add(g);
      addToLeaf(root, g, owned);
    });
  }
}

function runGraph(rootNode: Node, root: Tensor, gradOutput?: Tensor): void {
  // Every node reachable from the root (iteratively: graphs can be deep), newest first.
  const seen = new Set<Node>([rootNode]);
  const stack: Node[] = [rootNode];
  while (stack.length) {
    const node = stack.pop()!;
    for (const e of node.edges) {
      if (e?.node && !seen.has(e.node)) {
        seen.add(e.node);
        stack.push(e.node);
      }
    }
  }
  const order = [...seen].sort((a, b) => b.seq - a.seq);

  const owned = new Set<Tensor>();
  const grads = new Map<Node, Tensor>();
  const start = gradOutput ?? ones(root.shape, root.device);
  if (!gradOutput) owned.add(start);
  grads.set(rootNode, start);
  try {
    for (const node of order) {
      const g = grads.get(node);
      if (!g) continue;
      grads.delete(node);
      // In a scope: a backward that fails half way (out of memory, say) leaves none of the
      // gradients it had already made behind.
      const inGrads = scope(() => node.run(g));
      if (owned.has(g)) {
        owned.delete(g);
        g.dispose();
      }
      node.edges.forEach((edge, i) => {
        const gi = inGrads[i];
        if (!gi) return;
        owned.add(gi);
        if (!edge) {
          owned.delete(gi);
          gi.dispose();
        } else if (edge.node) {
          const prev = grads.get(edge.node);
          grads.set(edge.node, prev ? accumulate(prev, gi, owned) : gi);
        } else if (edge.leaf) {
          addToLeaf(edge.leaf, gi, owned);
        }
      });
    }
  } finally {
    for (const t of owned) t.dispose();
  }
}

setBackward(backward);

/**
 * Clears the gradients of these tensors: each `.grad` is disposed and set to null (the next
 * `backward()` starts from zero).
 *
 * @example
 * ```ts
 * const w = cn.randn([10, 784], { seed: 1, std: 0.01, requiresGrad: true });
 * cn.softmaxCrossEntropy(cn.linear(x, w, null), labels).backward();
 * cn.zeroGrad([w]); // w.grad is null again
 * ```
 */

export function zeroGrad(tensors: Iterable<Tensor>): void {
  for (const t of tensors) {
    t.grad?.dispose();
    t.grad = null;
  }
}
