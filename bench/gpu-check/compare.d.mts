/** Types of compare.mjs, for the vitest suites that import it. */
import type * as CN from '../../src/index.js';
import type { NativeAddon } from '../../src/native.js';

type Cn = typeof CN;

export const TOL: number;
export const TOL_TF32: number;
export const TOL_BF16: number;
export const OPS: string[];
export const KERNELS: Record<string, string[]>;

export interface CaseInput {
  name: string;
  shape: number[];
  grad: boolean;
  dataOpts?: { scale?: number; zeros?: number; levels?: number; offset?: number };
}

export interface CaseContext {
  /** The device the inputs are on. */
  device: string;
  target(name: 'reference' | 'device' | 'peer'): string;
}

export interface Case {
  op: string;
  label: string;
  seed: number;
  inputs: CaseInput[];
  forward(cn: Cn, inputs: CN.Tensor[], ctx: CaseContext): CN.Tensor | CN.Tensor[];
  exact?: boolean;
  /** Normwise tolerance of this case when not TOL (reduced-precision math). */
  tol?: number;
  backward?: boolean;
}

export interface CaseResult {
  op: string;
  label: string;
  exact: boolean;
  fwdErr: number | null;
  gradErr: number | null;
  grads: Record<string, number>;
  nan: number;
  mismatches: number;
  status: 'pass' | 'fail' | 'no kernel' | 'error';
  detail: string;
  ms: number;
}

export interface RunEnv {
  device: string;
  reference: string;
  peer?: string | null;
  /** Native ops without a CUDA kernel in this build (buildInfo().ops). */
  noKernel?: string[];
}

export interface SummaryRow {
  op: string;
  cases: number;
  fwdErr: number | null;
  gradErr: number | null;
  status: string;
  pass: boolean;
}

export function rng(seed: number): () => number;
export function randomData(n: number, next: () => number, opts?: CaseInput['dataOpts']): Float32Array;
export function makeCases(opts?: { seed?: number; small?: boolean; peer?: boolean; only?: string[] | null }): Case[];
export function compareArrays(a: Float32Array | Int32Array | null, b: Float32Array | Int32Array | null): {
  err: number;
  nan: number;
  refNan: number;
  mismatches: number;
};
export function runCase(cn: Cn, c: Case, env: RunEnv): CaseResult;
export function checkOutOfMemory(cn: Cn, native: NativeAddon, device: string): {
  op: string;
  label: string;
  status: 'pass' | 'fail';
  detail: string;
  error?: string;
};
export function fmtErr(e: number | null | undefined): string;
export function summarize(results: CaseResult[]): SummaryRow[];

export interface CopyRaceResult {
  op: 'copy race';
  label: string;
  status: 'pass' | 'fail' | 'skipped';
  detail: string;
}
/** Copies between `device` and `peer` racing in-place writes and uploads, against the host. */
export function checkCopyRace(cn: Cn, device: string, peer: string | null, opts?: { seed?: number; small?: boolean }): CopyRaceResult;
