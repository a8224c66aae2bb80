/**
 * Naive float64 references, written straight from the definitions in spec/api.md, for the
 * tests to compare the native ops with. Slow and obviously correct.
 */
export interface ConvParams {
  N: number; C: number; H: number; W: number;
  F: number; KH: number; KW: number;
  sh: number; sw: number; ph: number; pw: number; groups: number;
}

export function convOut(p: ConvParams): [number, number] {
  return [Math.floor((p.H + 2 * p.ph - p.KH) / p.sh) + 1, Math.floor((p.W + 2 * p.pw - p.KW) / p.sw) + 1];
}

export function conv2dRef(p: ConvParams, x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null): Float64Array {
  const [OH, OW] = convOut(p);
  const Cg = p.C / p.groups, Fg = p.F / p.groups;
  const y = new Float64Array(p.N * p.F * OH * OW);
  for (let n = 0; n < p.N; n++)
    for (let f = 0; f < p.F; f++) {
      const g = Math.floor(f / Fg);
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          let s = b ? b[f] : 0;
          for (let c = 0; c < Cg; c++)
            for (let kh = 0; kh < p.KH; kh++)
              for (let kw = 0; kw < p.KW; kw++) {
                const ih = oh * p.sh - p.ph + kh, iw = ow * p.sw - p.pw + kw;
                if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) continue;
                s += x[((n * p.C + g * Cg + c) * p.H + ih) * p.W + iw] * w[((f * Cg + c) * p.KH + kh) * p.KW + kw];
              }
          y[((n * p.F + f) * OH + oh) * OW + ow] = s;
        }
    }
  return y;
}

export interface PoolParams {
  N: number; C: number; H: number; W: number;
  KH: number; KW: number; sh: number; sw: number; ph: number; pw: number;
}

export function poolOut(p: PoolParams): [number, number] {
  return [Math.floor((p.H + 2 * p.ph - p.KH) / p.sh) + 1, Math.floor((p.W + 2 * p.pw - p.KW) / p.sw) + 1];
}

export function maxPoolRef(p: PoolParams, x: ArrayLike<number>): Float64Array {
  const [OH, OW] = poolOut(p);
  const y = new Float64Array(p.N * p.C * OH * OW);
  for (let nc = 0; nc < p.N * p.C; nc++)
    for (let oh = 0; oh < OH; oh++)
      for (let ow = 0; ow < OW; ow++) {
        let m = -Infinity;
        for (let kh = 0; kh < p.KH; kh++)
          for (let kw = 0; kw < p.KW; kw++) {
            const ih = oh * p.sh - p.ph + kh, iw = ow * p.sw - p.pw + kw;
            if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) continue;
            m = Math.max(m, x[(nc * p.H + ih) * p.W + iw]);
          }
        y[(nc * OH + oh) * OW + ow] = m;
      }
  return y;
}

export function lrnRef(shape: number[], x: ArrayLike<number>, size: number, alpha: number, beta: number, k: number): Float64Array {
  const [N, C, H, W] = shape;
  const y = new Float64Array(N * C * H * W);
  const lo = Math.floor(size / 2), hi = Math.floor((size - 1) / 2);
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++)
      for (let i = 0; i < H * W; i++) {
        let s = 0;
        for (let j = c - lo; j <= c + hi; j++) {
          if (j < 0 || j >= C) continue;
          const v = x[(n * C + j) * H * W + i];
          s += v * v;
        }
        const at = (n * C + c) * H * W + i;
        y[at] = x[at] / Math.pow(k + (alpha / size) * s, beta);
      }
  return y;
}

export function linearRef(N: number, K: number, M: number, x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null): Float64Array {
  const y = new Float64Array(N * M);
  for (let n = 0; n < N; n++)
    for (let m = 0; m < M; m++) {
      let s = b ? b[m] : 0;
      for (let k = 0; k < K; k++) s += x[n * K + k] * w[m * K + k];
      y[n * M + m] = s;
    }
  return y;
}

export function softmaxXentRef(N: number, M: number, z: ArrayLike<number>, labels: ArrayLike<number>): number {
  let total = 0;
  for (let n = 0; n < N; n++) {
    let mx = -Infinity;
    for (let m = 0; m < M; m++) mx = Math.max(mx, z[n * M + m]);
    let s = 0;
    for (let m = 0; m < M; m++) s += Math.exp(z[n * M + m] - mx);
    total += Math.log(s) + mx - z[n * M + labels[n]];
  }
  return total / N;
}
