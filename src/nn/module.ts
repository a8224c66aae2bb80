/**
 * Module: the base of every layer and model. A module owns named parameters (leaf tensors that
 * require grad) and named child modules; `namedParameters()` walks them depth-first and names
 * each parameter by its dotted path, e.g. `conv1.weight` or `a.conv3.bias`.
 *
 * Ownership: parameters belong to the module. They are taken out of any open `scope` when they
 * are registered or moved, so building or moving a model inside `scope` is safe, and
 * `dispose()` frees them and their gradients.
 */
import { noGrad, zeroGrad as zeroGrads } from '../autograd.js';
import { DeviceError, ShapeError } from '../errors.js';
import { native } from '../native.js';
import { deviceId, formatShape, keepFromScopes, scope, Tensor } from '../tensor.js';
import { to } from '../ops/shape.js';

/** Plain numeric state a module keeps besides its parameters (e.g. a dropout call counter). */
export type ModuleState = Record<string, number>;

/**
 * The base class of layers and models: register parameters and child modules in the
 * constructor, then write `forward` with the ops (autograd does the backward pass).
 * Parameters are named by dotted path (`fc1.weight`) and belong to the module: `dispose()`
 * frees them.
 *
 * @example
 * ```ts
 * class TwoLayer extends cn.nn.Module {
 *   private readonly fc1: cn.nn.Linear;
 *   private readonly fc2: cn.nn.Linear;
 *   constructor(inF: number, hidden: number, outF: number) {
 *     super();
 *     this.fc1 = this.registerModule('fc1', new cn.nn.Linear(inF, hidden));
 *     this.fc2 = this.registerModule('fc2', new cn.nn.Linear(hidden, outF));
 *   }
 *   forward(x: cn.Tensor): cn.Tensor {
 *     return this.fc2.forward(cn.relu(this.fc1.forward(x)));
 *   }
 * }
 * const net = new TwoLayer(784, 128, 10).to('cpu:1');
 * net.namedParameters().map(([name]) => name); // ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']
 * ```
 */
export abstract class Module {
  /** Training mode (dropout active) when true; see `train()` and `eval()`. */
  training = true;
  private readonly params = new Map<string, Tensor>();
  private readonly children = new Map<string, Module>();
  private deviceName: string | undefined;

  /** Computes the module's output. Intermediate tensors are the module's business. */
  abstract forward(x: Tensor): Tensor;

  /**
   * Registers (or replaces) the parameter `name`. The tensor becomes a leaf that requires grad
   * and belongs to the module from now on.
   */
  protected registerParameter(name: string, t: Tensor): Tensor {
    if (name.includes('.')) throw new ShapeError(`Module: parameter name must not contain '.', received '${name}'`);
    const old = this.params.get(name);
    if (old && old !== t) {
      old.grad?.dispose();
      old.dispose();
    }
    t.requiresGrad = true;
    keepFromScopes(t);
    this.params.set(name, t);
    this.deviceName ??= t.device;
    return t;
  }

  /** Registers a child module under `name` and returns it. */
  protected registerModule<M extends Module>(name: string, m: M): M {
    if (name.includes('.')) throw new ShapeError(`Module: module name must not contain '.', received '${name}'`);
    this.children.set(name, m);
    return m;
  }

  /** The module's own parameter `name` (not a child's). */
  protected param(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new ShapeError(`Module: no parameter named '${name}'`);
    return t;
  }

  /** The module's own parameter `name`, or null when it has none by that name. */
  protected maybeParam(name: string): Tensor | null {
    return this.params.get(name) ?? null;
  }

  /** The direct children, by name. */
  namedChildren(): [string, Module][] {
    return [...this.children];
  }

  /** Every parameter with its dotted name, own parameters first, then each child in order. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.params) out.push([prefix + n, t]);
    for (const [n, m] of this.children) out.push(...m.namedParameters(`${prefix}${n}.`));
    return out;
  }

  /** Every parameter, in the order of `namedParameters()`. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** The number of parameter elements. */
  parameterCount(): number {
    return this.parameters().reduce((a, t) => a + t.size, 0);
  }

  /** The parameter at a dotted path, e.g. `conv1.weight`. */
  getParameter(path: string): Tensor {
    const [owner, leaf] = this.resolve(path);
    return owner.param(leaf);
  }

  /**
   * Copies `value`'s data into the parameter at `path` (same shape; any device: the copy crosses
   * devices when needed). The parameter keeps its identity, so optimizers holding it still see it.
   */
  assignParameter(path: string, value: Tensor): void {
    const p = this.getParameter(path);
    if (formatShape(p.shape) !== formatShape(value.shape)) {
      throw new ShapeError(`assignParameter: ${path} has shape ${formatShape(p.shape)}, received ${formatShape(value.shape)}`);
    }
    native.copy(p._handle('assignParameter', path), value._handle('assignParameter', 'value'));
  }

  private resolve(path: string): [Module, string] {
    const parts = path.split('.');
    let m: Module = this;
    for (const p of parts.slice(0, -1)) {
      const c = m.children.get(p);
      if (!c) throw new ShapeError(`Module: no parameter named '${path}'`);
      m = c;
    }
    const leaf = parts[parts.length - 1];
    if (!m.params.has(leaf)) throw new ShapeError(`Module: no parameter named '${path}'`);
    return [m, leaf];
  }

  /**
   * The device the module was last moved to, else that of its first parameter (its own, or its
   * first child's that has one); undefined for a module that never had parameters or a device.
   */
  get device(): string | undefined {
    if (this.deviceName !== undefined) return this.deviceName;
    for (const m of this.children.values()) {
      const d = m.device;
      if (d !== undefined) return d;
    }
    return undefined;
  }

  /**
   * Moves every parameter (and its gradient) to `device`; the old tensors are disposed. Tensors
   * obtained from `parameters()` before the move are stale afterwards: build optimizers after
   * moving, or give them the module itself.
   */
  to(device: string): this {
    if (typeof device !== 'string') {
      throw new DeviceError(`Module.to: device must be a device id string like 'cpu:1' or 'cuda:0', received ${String(device)}`);
    }
    const d = deviceId(device);
    for (const [name, p] of this.params) {
      if (p.device === d) continue;
      const moved = noGrad(() => to(p, d));
      if (p.grad) {
        moved.grad = noGrad(() => to(p.grad as Tensor, d));
        keepFromScopes(moved.grad);
      }
      this.registerParameter(name, moved);
    }
    this.deviceName = d;
    for (const m of this.children.values()) m.to(d);
    return this;
  }

  /** Sets training mode (dropout active) on this module and every descendant. */
  train(mode = true): this {
    this.training = mode;
    for (const m of this.children.values()) m.train(mode);
    return this;
  }

  /** Sets evaluation mode (dropout is the identity) on this module and every descendant. */
  eval(): this {
    return this.train(false);
  }

  /** Frees every parameter's gradient. */
  zeroGrad(): void {
    zeroGrads(this.parameters());
  }

  /** This module's own numeric state; modules with state override it (see `Dropout`). */
  protected ownState(): ModuleState {
    return {};
  }

  /** Restores what `ownState()` returned. */
  protected loadOwnState(_state: ModuleState): void {
    // Stateless by default.
  }

  /**
   * The numeric state of the module and its descendants by dotted name (e.g. `drop6.calls`),
   * for checkpoints next to the parameters. JSON-serialisable.
   */
  getState(prefix = ''): ModuleState {
    const out: ModuleState = {};
    for (const [k, v] of Object.entries(this.ownState())) out[prefix + k] = v;
    for (const [n, m] of this.children) Object.assign(out, m.getState(`${prefix}${n}.`));
    return out;
  }

  /** Restores state from `getState()`; names this module does not have are ignored. */
  setState(state: ModuleState, prefix = ''): void {
    const own: ModuleState = {};
    for (const k of Object.keys(this.ownState())) {
      if (typeof state[prefix + k] === 'number') own[k] = state[prefix + k];
    }
    this.loadOwnState(own);
    for (const [n, m] of this.children) m.setState(state, `${prefix}${n}.`);
  }

  /** Frees every parameter and gradient of the module and its descendants. */
  dispose(): void {
    for (const p of this.params.values()) {
      p.grad?.dispose();
      p.grad = null;
      p.dispose();
    }
    for (const m of this.children.values()) m.dispose();
  }
}

/**
 * Applies its modules in order. Children are named by position ('0', '1', ...) or explicitly with
 * `[name, module]` pairs: `new Sequential(['conv1', conv], ['relu1', new ReLU()])`.
 * Intermediate activations are freed on return (the autograd graph keeps what backward needs).
 *
 * @example
 * ```ts
 * const model = new cn.nn.Sequential(
 *   new cn.nn.Conv2d(1, 16, 5, { padding: 2 }), new cn.nn.ReLU(), new cn.nn.MaxPool2d(2),
 *   new cn.nn.Flatten(), new cn.nn.Linear(16 * 14 * 14, 10),
 * ).to('cpu:0');
 * const logits = model.forward(cn.zeros([8, 1, 28, 28])); // [8, 10]
 * ```
 */
export class Sequential extends Module {
  private readonly layers: Module[] = [];

  constructor(...modules: (Module | [string, Module])[]) {
    super();
    modules.forEach((m, i) => this.append(m, i));
  }

  private append(entry: Module | [string, Module], i: number): void {
    const [name, m] = Array.isArray(entry) ? entry : [String(i), entry];
    this.layers.push(this.registerModule(name, m));
  }

  /** The modules in order. */
  get modules(): readonly Module[] {
    return this.layers;
  }

  /** The module at position i. */
  at(i: number): Module {
    return this.layers[i];
  }

  /** The number of modules. */
  get length(): number {

    return this.layers.length;
  }

  forward(x: Tensor): Tensor {
    return scope(() => this.layers.reduce((h, m) => m.forward(h), x));
  }
}
