/**
 * Fused element-wise expressions (the native `fused` op of native/ops/compose.h): an expression
 * over a few broadcast tensors, traced once into a short stack program that one kernel evaluates
 * per element in registers. Forward reads each input once and writes once; backward runs one such
 * kernel per input gradient (its expression derived symbolically here), then sums broadcast
 * gradients back to the input's shape.
 */
import { needsGrad, record, save } from '../autograd.js';
import { ShapeError } from '../errors.js';
import { checkShape, formatShape, scope, Tensor, view } from '../tensor.js';
import * as ops from './compose.js';
import { broadcastShapes, broadcastStrides, coalesce, MAX_RANK, reduceTo } from './compose.js';
import { launch } from './launch.js';
import { describe, expectTensor, sameDevice } from './validate.js';

/** The native program's limits (compose.h): inputs, instructions, stack slots, constants. */
const MAX_INPUTS = 6;
const MAX_PROGRAM = 32;
const MAX_STACK = 8;
const MAX_CONSTS = 8;
const OP = { load: 0, const: 1, bin: 2, un: 3, pow: 4 } as const;
const BIN = { add: 0, sub: 1, mul: 2, div: 3 } as const;
const UN = { neg: 0, exp: 1, log: 2, sqrt: 3, tanh: 4, sigmoid: 5 } as const;
type BinName = keyof typeof BIN;
type UnName = keyof typeof UN;

let nextId = 0;

/**
 * A symbolic element-wise expression, the argument type of the function given to `cn.fuse`:
 * built with the methods below, from the inputs and plain numbers.
 */
export class Expr {
  /** @internal */
  readonly id = nextId++;
  /** @internal */
  constructor(
    /** @internal */ readonly kind: 'in' | 'const' | BinName | UnName | 'pow',
    /** @internal */ readonly args: Expr[],
    /** @internal input index, constant value or exponent */ readonly value = 0,
  ) {}

  /** this + o. */
  add(o: Expr | number): Expr {
    return bin('add', this, o);
  }
  /** this - o. */
  sub(o: Expr | number): Expr {
    return bin('sub', this, o);
  }
  /** this * o. */
  mul(o: Expr | number): Expr {
    return bin('mul', this, o);
  }
  /** this / o. */
  div(o: Expr | number): Expr {
    return bin('div', this, o);
  }
  /** -this. */
  neg(): Expr {
    return new Expr('neg', [this]);
  }
  /** e^this. */
  exp(): Expr {
    return new Expr('exp', [this]);
  }
  /** The natural logarithm. */
  log(): Expr {
    return new Expr('log', [this]);
  }
  /** The square root. */
  sqrt(): Expr {
    return new Expr('sqrt', [this]);
  }
  /** The hyperbolic tangent. */
  tanh(): Expr {
    return new Expr('tanh', [this]);
  }
  /** 1 / (1 + e^-this). */
  sigmoid(): Expr {
    return new Expr('sigmoid', [this]);
  }
  /** this raised to a constant power. */
  pow(exponent: number): Expr {
    if (typeof exponent !== 'number' || !Number.isFinite(exponent)) {
      throw new ShapeError(`fuse: pow's exponent must be a finite number, received ${describe(exponent)}`);
    }
    return new Expr('pow', [this], exponent);
  }
}

const constant = (v: number) => new Expr('const', [], v);

function asExpr(v: unknown, what: string): Expr {
  if (v instanceof Expr) return v;
  if (typeof v === 'number') return constant(v);
  throw new ShapeError(`fuse: ${what} must be an expression or a number, received ${describe(v)}`);
}

function bin(kind: BinName, a: Expr, b: Expr | number): Expr {
  return new Expr(kind, [a, asExpr(b, `the operand of ${kind}`)]);
}

// ---- Compiling to the native program ----------------------------------------------------------

interface Program {
  code: number[];
  consts: number[];
}

/** The stack program of e, or null when it would exceed the native limits. */
function compile(e: Expr): Program | null {
  const code: number[] = [];
  const consts: number[] = [];
  let depth = 0;
  let peak = 0;
  const push = (op: number, arg: number, delta: number) => {
    code.push(op * 256 + arg);
    depth += delta;
    peak = Math.max(peak, depth);
  };
  const constIndex = (v: number) => {
    let k = consts.findIndex((c) => Object.is(c, v));
    if (k < 0) {
      k = consts.length;
      consts.push(v);
    }
    return k;
  };
  const emit = (x: Expr): void => {
    if (code.length > MAX_PROGRAM) return;
    switch (x.kind) {
      case 'in': push(OP.load, x.value, 1); break;
      case 'const': push(OP.const, constIndex(x.value), 1); break;
      case 'pow': emit(x.args[0]); push(OP.pow, constIndex(x.value), 0); break;
      case 'add': case 'sub': case 'mul': case 'div':
        emit(x.args[0]);
        emit(x.args[1]);
        push(OP.bin, BIN[x.kind], -1);
        break;
      default:
        emit(x.args[0]);
        push(OP.un, UN[x.kind], 0);
    }
  };
  emit(e);
  if (code.length > MAX_PROGRAM || peak > MAX_STACK || consts.length > MAX_CONSTS) return null;
  return { code, consts };
}

/** Every node reachable from the roots, in creation order (a topological order). */
function nodesOf(roots: Expr[]): Expr[] {
  const seen = new Map<number, Expr>();
  const stack = [...roots];
  while (stack.length) {
    const x = stack.pop()!;
    if (seen.has(x.id)) continue;
    seen.set(x.id, x);
    stack.push(...x.args);
  }
  return [...seen.values()].sort((p, q) => p.id - q.id);
}

/** d root / d input_i times the adjoint `g`, for each input (null where it does not appear). */
function gradients(root: Expr, g: Expr, inputs: number): (Expr | null)[] {
  const adj = new Map<number, Expr>([[root.id, g]]);
  const addTo = (x: Expr, c: Expr) => {
    const prev = adj.get(x.id);
    adj.set(x.id, prev ? prev.add(c) : c);
  };
  const out: (Expr | null)[] = new Array(inputs).fill(null);
  for (const n of nodesOf([root]).reverse()) {
    const A = adj.get(n.id);
    if (!A) continue;
    const [a, b] = n.args;
    switch (n.kind) {
      case 'in': out[n.value] = A; break;
      case 'const': break;
      case 'add': addTo(a, A); addTo(b, A); break;
      case 'sub': addTo(a, A); addTo(b, A.neg()); break;
      case 'mul': addTo(a, A.mul(b)); addTo(b, A.mul(a)); break;
      case 'div': addTo(a, A.div(b)); addTo(b, A.mul(a).div(b.mul(b)).neg()); break;
      case 'neg': addTo(a, A.neg()); break;
      case 'exp': addTo(a, A.mul(n)); break;
      case 'log': addTo(a, A.div(a)); break;
      case 'sqrt': addTo(a, A.div(n.add(n))); break;
      case 'tanh': addTo(a, A.mul(constant(1).sub(n.mul(n)))); break;
      case 'sigmoid': addTo(a, A.mul(n.mul(constant(1).sub(n)))); break;
      case 'pow': if (n.value !== 0) addTo(a, A.mul(a.pow(n.value - 1).mul(n.value))); break;
    }
  }
  return out;
}

/** Evaluates e op by op with the ordinary tensor ops (recording for autograd as they do). */
function interpret(e: Expr, env: Tensor[]): Tensor | number {
  const memo = new Map<number, Tensor | number>();
  const num = (v: Tensor | number, f: (x: number) => number, t: (x: Tensor) => Tensor) =>
    typeof v === 'number' ? Math.fround(f(v)) : t(v);
  for (const n of nodesOf([e])) {
    const [a, b] = n.args.map((x) => memo.get(x.id)!);
    let v: Tensor | number;
    switch (n.kind) {
      case 'in': v = env[n.value]; break;
      case 'const': v = n.value; break;
      case 'add': case 'sub': case 'mul': case 'div':
        if (typeof a === 'number' && typeof b === 'number') {
          v = Math.fround(n.kind === 'add' ? a + b : n.kind === 'sub' ? a - b : n.kind === 'mul' ? a * b : a / b);
        } else {
          v = ops[n.kind](a, b);
        }
        break;
      case 'neg': v = num(a, (x) => -x, ops.neg); break;
      case 'exp': v = num(a, Math.exp, ops.exp); break;
      case 'log': v = num(a, Math.log, ops.log); break;
      case 'sqrt': v = num(a, Math.sqrt, ops.sqrt); break;
      case 'tanh': v = num(a, Math.tanh, ops.tanh); break;
      case 'sigmoid': v = num(a, (x) => 1 / (1 + Math.exp(-x)), ops.sigmoid); break;
      default: v = num(a, (x) => x ** n.value, (x) => ops.pow(x, n.value));
    }
    memo.set(n.id, v);
  }
  return memo.get(e.id)!;
}

/**
 * @internal One fused kernel: y[out] = program(srcs), each source given as (data, shape) and read
 * broadcast against `out`. Returns null when the shapes need more than 8 dims after merging.
 */
function launchFused(device: string, out: readonly number[], p: Program, srcs: [Tensor, readonly number[]][]): Tensor | null {
  const c = coalesce(out, srcs.map(([, shape]) => broadcastStrides(shape, out)));
  if (!c) return null;
  const pad = (v: number[], n: number, fill: number) => [...v, ...new Array<number>(n - v.length).fill(fill)];
  const strides: number[] = [];
  for (let k = 0; k < MAX_INPUTS; k++) strides.push(...pad(k < srcs.length ? c.strides[k] : [], MAX_RANK, 0));
  const ints = [srcs.length, c.dims.length, out.reduce((a, b) => a * b, 1), ...pad(c.dims, MAX_RANK, 1), ...strides,
    p.code.length, ...pad(p.code, MAX_PROGRAM, 0)];
  const tensors = [...srcs.map(([t]) => t), ...new Array<null>(MAX_INPUTS - srcs.length).fill(null)];
  const [y] = launch('fused', device, [[out, 'float32']], tensors, ints, pad(p.consts, MAX_CONSTS, 0));
  return y;
}

/**
 * The value of an interpreted expression as a new tensor of shape `out`: a constant is filled
 * in, an input is copied, a smaller shape is broadcast. Call inside a scope.
 */
function toShape(v: Tensor | number, out: readonly number[], device: string, env: Tensor[]): Tensor {
  const size = out.reduce((a, b) => a * b, 1);
  if (typeof v === 'number') return launch('fill', device, [[out, 'float32']], [], [size], [v])[0];
  let t = env.includes(v) ? ops.mul(v, 1) : v;
  if (formatShape(t.shape) !== formatShape(out)) t = ops.add(t, launch('fill', device, [[out, 'float32']], [], [size], [0])[0]);
  return t;
}

/**
 * Fuses an element-wise expression into one kernel. `fn` receives one symbolic {@link Expr} per
 * input (1 to 5 of them) and builds the result with `add`, `sub`, `mul`, `div` (by expressions or
 * numbers), `neg`, `exp`, `log`, `sqrt`, `tanh`, `sigmoid` and `pow`. The returned function takes
 * tensors (broadcast together as by `cn.add`) and evaluates the whole expression in one pass:
 * each input read once, the output written once. Its gradient is one fused pass per input,
 * derived from the expression. An expression too long for the kernel (32 instructions, 8 stack
 * slots, 8 constants) runs op by op instead, with the same results up to rounding.
 *
 * @example
 * ```ts
 * const swish = cn.fuse((x) => x.mul(x.sigmoid()));
 * const axpby = cn.fuse((x, y) => x.mul(2).add(y.mul(-0.5)));
 * const h = swish(cn.randn([64, 256], { seed: 1, requiresGrad: true }));
 * ```
 */
export function fuse(fn: (...inputs: Expr[]) => Expr): (...inputs: Tensor[]) => Tensor {
  if (typeof fn !== 'function') throw new ShapeError(`fuse: fn must be a function, received ${describe(fn)}`);
  const n = fn.length;
  if (n < 1 || n > MAX_INPUTS - 1) {
    throw new ShapeError(`fuse: fn must take 1 to ${MAX_INPUTS - 1} arguments, received a function of ${n}`);
  }
  const vars = Array.from({ length: n }, (_, i) => new Expr('in', [], i));
  const root = asExpr(fn(...vars), 'the value fn returns');
  const forward = compile(root);
  const gExpr = new Expr('in', [], n);
  const grads = gradients(root, gExpr, n);
  const gradPrograms = grads.map((e) => (e ? compile(e) : null));

  return (...inputs: Tensor[]): Tensor => {
    const op = 'fuse';
    if (inputs.length !== n) throw new ShapeError(`${op}: expected ${n} tensor(s), received ${inputs.length}`);
    inputs.forEach((t, i) => expectTensor(op, `inputs[${i}]`, t));
    const device = sameDevice(op, inputs.map((t, i) => [`inputs[${i}]`, t] as [string, Tensor]));
    let out: number[] = [];
    for (const t of inputs) out = broadcastShapes(op, out, t.shape);
    checkShape(op, 'the output', out);
    const y = forward ? launchFused(device, out, forward, inputs.map((t) => [t, t.shape])) : null;
    if (!y) return scope(() => toShape(interpret(root, inputs), out, device, inputs));
    if (!needsGrad(...inputs)) return y;
    const saved = inputs.map((t) => save(t, op));
    return record(y, op, inputs, (g) => inputs.map((t, i) => {
      if (!t.requiresGrad) return null;
      const e = grads[i];
      if (e === null) return launch('fill', device, [[t.shape, 'float32']], [], [t.size], [0])[0];
      const env = [...saved.map((s) => view(s.storage, s.shape, 'float32')), g];
      try {
        const full = scope(() => {
          const p = gradPrograms[i];
          const fused = p ? launchFused(device, out, p, env.map((v) => [v, v.shape])) : null;
          return fused ?? toShape(interpret(e, env), out, device, env);
        });
        try {
          return reduceTo(op, full, t.shape);
        } finally {
          full.dispose();
        }
      } finally {
        env.slice(0, -1).forEach((v) => v.dispose());
      }
    }), saved.map((s) => s.storage));
  };
}
