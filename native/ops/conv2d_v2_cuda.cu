// conv2d on CUDA, version 2: implicit-GEMM convolution (see conv2d.h for the contract). No
// im2col buffer: the GEMM's operand tiles are gathered straight from x, dy and the weights into
// shared memory, with the padding taps zero-filled. Version 1 (conv2d_cuda.cu) stays the
// baseline; conv2d_cuda.h says how a call picks a version.
//
// One kernel core, conv_igemm_kernel<View, Tile, kVecA>, computes C [M, N] = A [M, K] * B [K, N]
// for every pass; the View says where A and B come from and where C goes:
//
//   pass             grid z           M     N                 K                A [m, k]                     B [k, n]
//   forward          group g          Fg    N*OH*OW (img,p)   Cg*KH*KW (c,kh,kw)  w[g*Fg+m, k] (wT, k-major)   x[img, g*Cg+c, oh*sh-ph+kh, ow*sw-pw+kw]
//   backward data    group x phase    Cg    N*Hr*Wr (img,i,j) Fg*Th*Tw (f,jh,jw)  w[g*Fg+f, m, kh, kw] (wP)   dy[img, g*Fg+f, oh, ow]
//   backward filter  group x split    Fg    Cg*KH*KW (c,kh,kw) slice of N*P (img,p) dy[img, g*Fg+m, p]        x[img, g*Cg+c, oh*sh-ph+kh, ow*sw-pw+kw]
//
//   forward:         y[img, g*Fg+m, p] = C[m, (img,p)] + b[g*Fg+m]       (bias in the epilogue)
//   backward data:   the sh*sw stride phases (rh, rw) are separate GEMMs: dx rows h with
//                    (h + ph) % sh == rh only receive taps kh = rh + jh*sh, so no K step is
//                    spent on the zeros a strided convolution's gradient would otherwise
//                    multiply (16x for AlexNet's stride-4 conv1). h = h0 + i*sh with
//                    h0 = (rh - ph) mod sh, Hr rows per phase, Th = ceil((KH - rh) / sh) taps,
//                    oh = (h0 + ph - rh)/sh + i - jh (out of [0, OH) reads zero); likewise for
//                    w. Every dx cell belongs to exactly one phase and is overwritten there (a
//                    phase with no taps, K = 0, writes zeros).
//   backward filter: K = N*OH*OW is cut into S splits of kchunk (a multiple of kBK); split s
//                    writes partial[s] (or dw itself when S == 1), and a second kernel adds the
//                    partials in split order: deterministic, no float atomics. db reuses v1's
//                    block reduction.
//   The weights are first rearranged into a small workspace so the A tile is contiguous along m:
//   wT [G][Kc][Fg] (forward) and wP [F][KH][KW][Cg] (backward data).
//
// Tiles (Tile): TileLarge 128 x 128 with 8 x 8 outputs per thread, TileSmall 64 x 64 with
// 4 x 4; both 256 threads and kBK = 8 deep. The launcher takes the large tile when M > 64 and it
// gives at least kLargeTileMinBlocks blocks, the small one otherwise (the late 13x13 AlexNet
// layers, conv1's 48 filters per tower).
// Thread mapping: thread t = ty * (BN/TN) + tx owns C rows m0 + ty*TM + i and columns
// n0 + tx*TN + j (i < TM, j < TN), accumulated in registers; shared tiles As[2][kBK][BM],
// Bs[2][kBK][BN] (k-major, double-buffered: 16 KiB for the large tile) are read with float4
// loads along m and n. Loading, per stage of kBK: element e = t + r*256 of a tile lands at
// (k, mn) = (e % kBK, e / kBK) when the operand's View says consecutive k are contiguous in
// memory (kAFastK / kBFastK: backward filter), else (e / BM, e % BM); each thread keeps the
// decoded m/n coordinate of its elements (APos/BPos) and decodes only k per stage. With kVecA
// (A contiguous along m, M % 4 == 0) the A tile moves in 16-byte pieces instead.
// Pipeline: on sm_80 and newer (and in native/emu) every element is a cp.async
// (__pipeline_memcpy_async; 4 or 16 bytes, zero-filled for padding and tile edges) into the
// buffer not being read; stage kt+1 is committed before stage kt is waited for and computed.
// Older GPUs copy synchronously through registers into the same double buffer.
// Limits: M, N and K must fit in int32 (conv2d_v2_fits); otherwise the call runs version 1.
#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "core/cuda_launch.h"
#include "ops/conv2d.h"
#include "ops/conv2d_cuda.h"
#include "ops/op_args.h"

#if defined(CN_CUDA_EMULATION) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
#define CN_CONV_ASYNC_COPY 1
#else
#define CN_CONV_ASYNC_COPY 0
#endif

namespace cn {
namespace {

constexpr int kBK = 8;                                     // depth of one stage
constexpr int64_t kLargeTileMinBlocks = 256;               // fewer large tiles: use small ones
constexpr int64_t kSmallTileMaxRows = 64;                  // M this small: small tiles
constexpr int64_t kFilterSplitBlocks = 512;                // blocks aimed at in backward filter
constexpr int64_t kFilterSplitDepth = 512;                 // at least this much K per split
constexpr int64_t kFilterPartialFloats = int64_t(64) << 20;  // partial sums budget (256 MiB)

// kMinBlocks: blocks per SM promised to ptxas (__launch_bounds__), which caps the registers at
// 65536 / (kThreads * kMinBlocks): 255 for the large tile (its 64 accumulators need ~130-160),
// 128 for the small one (without the hint ptxas aims at 64 on sm_90 and spills).
struct TileLarge {
  static constexpr int kBM = 128, kBN = 128, kTM = 8, kTN = 8;
  static constexpr int kThreads = (kBM / kTM) * (kBN / kTN);
  static constexpr int kMinBlocks = 1;
};
struct TileSmall {
  static constexpr int kBM = 64, kBN = 64, kTM = 4, kTN = 4;
  static constexpr int kThreads = (kBM / kTM) * (kBN / kTN);
  static constexpr int kMinBlocks = 2;
};

// ---- copies into shared memory --------------------------------------------------------------

// dst (shared) = src[0] (global), or 0 when src is null.
__device__ __forceinline__ void copy4(float* dst, const float* src, const float* any) {
#if CN_CONV_ASYNC_COPY
  __pipeline_memcpy_async(dst, src ? src : any, 4, src ? 0 : 4);
#else
  (void)any;
  *dst = src ? *src : 0.0f;
#endif
}
// dst[0..3] (shared, 16-byte aligned) = src[0..3] (global, 16-byte aligned), or zeros.
__device__ __forceinline__ void copy16(float* dst, const float* src, const float* any) {
#if CN_CONV_ASYNC_COPY
  __pipeline_memcpy_async(dst, src ? src : any, 16, src ? 0 : 16);
#else
  (void)any;
  *reinterpret_cast<float4*>(dst) =
      src ? *reinterpret_cast<const float4*>(src) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#endif
}
__device__ __forceinline__ void copy_commit() {
#if CN_CONV_ASYNC_COPY
  __pipeline_commit();
#endif
}
// Waits until at most `pending` of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void copy_wait() {
#if CN_CONV_ASYNC_COPY
  __pipeline_wait_prior(kPending);
#endif
}

// ---- the three GEMM views -------------------------------------------------------------------

// Forward: A = wT_g [Kc][Fg], B = the taps of x, C -> y (+ bias).
struct ConvForward {
  static constexpr bool kAFastK = false, kBFastK = false;
  ConvView s;
  const float* wt;  // [G][Kc][Fg]
  const float* x;
  const float* b;   // may be null
  float* y;
  // Set by begin() for the block's group.
  int M, N, k_begin, k_end, g;

  __device__ void begin(int z) {
    g = z;
    M = s.Fg;
    N = static_cast<int>(s.N * s.P);
    k_begin = 0;
    k_end = s.Kc;
  }
  using APos = int;  // m, or -1 outside
  __device__ APos a_pos(int m) const { return m < M ? m : -1; }
  __device__ const float* a_src(APos m, int k) const {
    return m >= 0 && k < k_end ? wt + (int64_t(g) * s.Kc + k) * s.Fg + m : nullptr;
  }
  __device__ const float* a_any() const { return wt; }

  struct BPos {
    const float* base;  // x of this image and group; null outside
    int h0, w0;         // top-left tap of the output pixel
  };
  __device__ BPos b_pos(int n) const {
    BPos q{nullptr, 0, 0};
    if (n >= N) return q;
    const int img = static_cast<int>(n / s.P);
    const int p = static_cast<int>(n - img * s.P);
    const int oh = p / s.OW, ow = p - (p / s.OW) * s.OW;
    q.base = x + (int64_t(img) * s.C + int64_t(g) * s.Cg) * s.HW;
    q.h0 = oh * s.sh - s.ph;
    q.w0 = ow * s.sw - s.pw;
    return q;
  }
  __device__ const float* b_src(const BPos& q, int k) const {
    if (!q.base || k >= k_end) return nullptr;
    const int kk = s.KH * s.KW;
    const int c = k / kk, r = k - (k / kk) * kk;
    const int kh = r / s.KW, kw = r - (r / s.KW) * s.KW;
    const int h = q.h0 + kh, w = q.w0 + kw;
    if (h < 0 || h >= s.H || w < 0 || w >= s.W) return nullptr;
    return q.base + c * s.HW + int64_t(h) * s.W + w;
  }
  __device__ const float* b_any() const { return x; }

  __device__ float* out() const { return y; }
  __device__ int64_t row_off(int m) const { return (int64_t(g) * s.Fg + m) * s.P; }
  __device__ int64_t col_off(int n) const {
    const int64_t img = n / s.P;
    return img * s.F * s.P + (n - img * s.P);
  }
  __device__ float bias(int m) const { return b ? b[g * s.Fg + m] : 0.0f; }
};

// Backward data, one stride phase per block row of the grid: A = wP [F][KH][KW][Cg],
// B = dy at the taps of the phase, C -> dx.
struct ConvBackwardData {
  static constexpr bool kAFastK = false, kBFastK = false;
  ConvView s;
  const float* wp;  // [F][KH][KW][Cg]
  const float* dy;
  float* dx;
  int M, N, k_begin, k_end, g;
  int rh, rw, h0, w0, Hr, Wr, Th, Tw, ohb, owb;

  __device__ void begin(int z) {
    const int phases = s.sh * s.sw;
    g = z / phases;
    const int q = z - g * phases;
    rh = q / s.sw;
    rw = q - rh * s.sw;
    h0 = ((rh - s.ph) % s.sh + s.sh) % s.sh;
    w0 = ((rw - s.pw) % s.sw + s.sw) % s.sw;
    Hr = h0 < s.H ? (s.H - 1 - h0) / s.sh + 1 : 0;
    Wr = w0 < s.W ? (s.W - 1 - w0) / s.sw + 1 : 0;
    Th = rh < s.KH ? (s.KH - 1 - rh) / s.sh + 1 : 0;
    Tw = rw < s.KW ? (s.KW - 1 - rw) / s.sw + 1 : 0;
    ohb = (h0 + s.ph - rh) / s.sh;
    owb = (w0 + s.pw - rw) / s.sw;
    M = s.Cg;
    N = s.N * Hr * Wr;
    k_begin = 0;
    k_end = s.Fg * Th * Tw;
  }
  // k = (f, jh, jw) -> the filter f and the tap (kh, kw).
  __device__ void tap(int k, int& f, int& jh, int& jw) const {
    const int tt = Th * Tw;
    f = k / tt;
    const int r = k - f * tt;
    jh = r / Tw;
    jw = r - jh * Tw;
  }
  using APos = int;
  __device__ APos a_pos(int m) const { return m < M ? m : -1; }
  __device__ const float* a_src(APos m, int k) const {
    if (m < 0 || k >= k_end) return nullptr;
    int f, jh, jw;
    tap(k, f, jh, jw);
    const int kh = rh + jh * s.sh, kw = rw + jw * s.sw;
    return wp + ((int64_t(g * s.Fg + f) * s.KH + kh) * s.KW + kw) * s.Cg + m;
  }
  __device__ const float* a_any() const { return wp; }

  struct BPos {
    const float* base;  // dy of this image and group; null outside
    int i, j;           // the phase's row and column
  };
  __device__ BPos b_pos(int n) const {
    BPos q{nullptr, 0, 0};
    if (n >= N) return q;
    const int per = Hr * Wr;
    const int img = n / per;
    const int r = n - img * per;
    q.i = r / Wr;
    q.j = r - q.i * Wr;
    q.base = dy + (int64_t(img) * s.F + int64_t(g) * s.Fg) * s.P;
    return q;
  }
  __device__ const float* b_src(const BPos& q, int k) const {
    if (!q.base || k >= k_end) return nullptr;
    int f, jh, jw;
    tap(k, f, jh, jw);
    const int oh = ohb + q.i - jh, ow = owb + q.j - jw;
    if (oh < 0 || oh >= s.OH || ow < 0 || ow >= s.OW) return nullptr;
    return q.base + f * s.P + int64_t(oh) * s.OW + ow;
  }
  __device__ const float* b_any() const { return dy; }

  __device__ float* out() const { return dx; }
  __device__ int64_t row_off(int m) const { return (int64_t(g) * s.Cg + m) * s.HW; }
  __device__ int64_t col_off(int n) const {
    const int per = Hr * Wr;
    const int img = n / per;
    const int r = n - img * per;
    const int i = r / Wr, j = r - (r / Wr) * Wr;
    return int64_t(img) * s.C * s.HW + int64_t(h0 + i * s.sh) * s.W + (w0 + j * s.sw);
  }
  __device__ float bias(int) const { return 0.0f; }
};

// Backward filter, one K split per block row of the grid: A = dy, B = the taps of x (both read
// along K = (img, p)), C -> partial[split] (or dw).
struct ConvBackwardFilter {
  static constexpr bool kAFastK = true, kBFastK = true;
  ConvView s;
  const float* x;
  const float* dy;
  float* part;        // [S][F*Kc]
  int64_t wsize;      // F*Kc
  int kchunk;         // K per split, a multiple of kBK
  int M, N, k_begin, k_end, g, split;

  __device__ void begin(int z) {
    g = z % s.G;
    split = z / s.G;
    M = s.Fg;
    N = s.Kc;
    const int64_t total = s.N * s.P;
    k_begin = split * kchunk;
    k_end = static_cast<int>(min(total, int64_t(k_begin) + kchunk));
  }
  using APos = const float*;  // dy of filter m (image 0); null outside
  __device__ APos a_pos(int m) const {
    return m < M ? dy + (int64_t(g) * s.Fg + m) * s.P : nullptr;
  }
  __device__ const float* a_src(APos q, int k) const {
    if (!q || k >= k_end) return nullptr;
    const int img = static_cast<int>(k / s.P);
    return q + int64_t(img) * s.F * s.P + (k - img * s.P);
  }
  __device__ const float* a_any() const { return dy; }

  struct BPos {
    const float* base;  // x channel g*Cg + c of image 0; null outside
    int kh, kw;
  };
  __device__ BPos b_pos(int n) const {
    BPos q{nullptr, 0, 0};
    if (n >= N) return q;
    const int kk = s.KH * s.KW;
    const int c = n / kk, r = n - (n / kk) * kk;
    q.kh = r / s.KW;
    q.kw = r - q.kh * s.KW;
    q.base = x + (int64_t(g) * s.Cg + c) * s.HW;
    return q;
  }
  __device__ const float* b_src(const BPos& q, int k) const {
    if (!q.base || k >= k_end) return nullptr;
    const int img = static_cast<int>(k / s.P);
    const int p = static_cast<int>(k - img * s.P);
    const int oh = p / s.OW, ow = p - (p / s.OW) * s.OW;
    const int h = oh * s.sh - s.ph + q.kh, w = ow * s.sw - s.pw + q.kw;
    if (h < 0 || h >= s.H || w < 0 || w >= s.W) return nullptr;
    return q.base + int64_t(img) * s.C * s.HW + int64_t(h) * s.W + w;
  }
  __device__ const float* b_any() const { return x; }

  __device__ float* out() const { return part; }
  __device__ int64_t row_off(int m) const {
    return split * wsize + (int64_t(g) * s.Fg + m) * s.Kc;
  }
  __device__ int64_t col_off(int n) const { return n; }
  __device__ float bias(int) const { return 0.0f; }
};

// ---- the core -----------------------------------------------------------------------------

// C [M, N] = A [M, K] * B [K, N] over k in [k_begin, k_end) for the view's block z, written
// through the view's epilogue. See the file comment for the mapping and the pipeline.
template <class View, class Tile, bool kVecA>
__global__ void __launch_bounds__(Tile::kThreads, Tile::kMinBlocks) conv_igemm_kernel(View view) {
  constexpr int BM = Tile::kBM, BN = Tile::kBN, TM = Tile::kTM, TN = Tile::kTN;
  constexpr int T = Tile::kThreads;
  constexpr int SA = kBK * BM / T;          // scalar A elements per thread per stage
  constexpr int SV = (kBK * BM / 4 + T - 1) / T;  // 16-byte A pieces per thread per stage
  constexpr int SB = kBK * BN / T;          // B elements per thread per stage
  static_assert(SA * T == kBK * BM && SB * T == kBK * BN, "tile not divisible by the threads");
  __shared__ __align__(16) float As[2][kBK][BM];
  __shared__ __align__(16) float Bs[2][kBK][BN];

  View v = view;
  v.begin(static_cast<int>(blockIdx.z));
  if (v.M <= 0 || v.N <= 0) return;  // the whole block: a stride phase with no rows
  const int tiles_n = (v.N + BN - 1) / BN;
  const int m0 = static_cast<int>(blockIdx.x / tiles_n) * BM;
  const int n0 = static_cast<int>(blockIdx.x % tiles_n) * BN;
  if (m0 >= v.M || n0 >= v.N) return;  // the whole block: a shorter phase or split

  const int t = threadIdx.x;
  const int tx = t % (BN / TN), ty = t / (BN / TN);

  // This thread's elements of the A and B tiles: (k offset, decoded m/n) per slot.
  int a_k[kVecA ? SV : SA], a_mn[kVecA ? SV : SA];
  typename View::APos a_at[kVecA ? SV : SA];
  if (kVecA) {
#pragma unroll
    for (int r = 0; r < SV; ++r) {
      const int e = t + r * T;
      a_k[r] = e / (BM / 4);
      a_mn[r] = (e % (BM / 4)) * 4;
      a_at[r] = v.a_pos(e < kBK * BM / 4 ? m0 + a_mn[r] : v.M);
    }
  } else {
#pragma unroll
    for (int r = 0; r < SA; ++r) {
      const int e = t + r * T;
      a_k[r] = View::kAFastK ? e % kBK : e / BM;
      a_mn[r] = View::kAFastK ? e / kBK : e % BM;
      a_at[r] = v.a_pos(m0 + a_mn[r]);
    }
  }
  int b_k[SB], b_mn[SB];
  typename View::BPos b_at[SB];
#pragma unroll
  for (int r = 0; r < SB; ++r) {
    const int e = t + r * T;
    b_k[r] = View::kBFastK ? e % kBK : e / BN;
    b_mn[r] = View::kBFastK ? e / kBK : e % BN;
    b_at[r] = v.b_pos(n0 + b_mn[r]);
  }

  auto load_stage = [&](int k0, int buf) {
    if (kVecA) {
#pragma unroll
      for (int r = 0; r < SV; ++r) {
        if (SV * T > kBK * BM / 4 && t + r * T >= kBK * BM / 4) continue;
        copy16(&As[buf][a_k[r]][a_mn[r]], v.a_src(a_at[r], k0 + a_k[r]), v.a_any());
      }
    } else {
#pragma unroll
      for (int r = 0; r < SA; ++r)
        copy4(&As[buf][a_k[r]][a_mn[r]], v.a_src(a_at[r], k0 + a_k[r]), v.a_any());
    }
#pragma unroll
    for (int r = 0; r < SB; ++r)
      copy4(&Bs[buf][b_k[r]][b_mn[r]], v.b_src(b_at[r], k0 + b_k[r]), v.b_any());
  };

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

  const int stages = (v.k_end - v.k_begin + kBK - 1) / kBK;  // 0 when K is empty
  if (stages > 0) load_stage(v.k_begin, 0);
  copy_commit();
  for (int st = 0; st < stages; ++st) {
    const int buf = st & 1;
    // The other buffer was last read in the previous stage, behind its closing barrier.
    if (st + 1 < stages) load_stage(v.k_begin + (st + 1) * kBK, buf ^ 1);
    copy_commit();
    copy_wait<1>();  // this stage's group has landed (only the one just committed may be pending)
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; i += 4) {
        const float4 q = *reinterpret_cast<const float4*>(&As[buf][kk][ty * TM + i]);
        a[i] = q.x; a[i + 1] = q.y; a[i + 2] = q.z; a[i + 3] = q.w;
      }
#pragma unroll
      for (int j = 0; j < TN; j += 4) {
        const float4 q = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * TN + j]);
        b[j] = q.x; b[j + 1] = q.y; b[j + 2] = q.z; b[j + 3] = q.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();  // everyone is done with `buf` before the next stage refills it
  }
  copy_wait<0>();

  // Epilogue: each column's offset decoded once (col_off divides), then row by row.
  float* out = v.out();
  int64_t col[TN];
#pragma unroll
  for (int j = 0; j < TN; ++j) {
    const int n = n0 + tx * TN + j;
    col[j] = n < v.N ? v.col_off(n) : -1;
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + ty * TM + i;
    if (m >= v.M) break;
    const int64_t row = v.row_off(m);
    const float bias = v.bias(m);
#pragma unroll
    for (int j = 0; j < TN; ++j)
      if (col[j] >= 0) out[row + col[j]] = acc[i][j] + bias;
  }
}

// wT[g][k][m] = w[g*Fg + m][k] (k < Kc): the forward's A, contiguous along m.
// Thread mapping: a grid-stride loop over the F*Kc elements of wT in memory order, one per
// thread per step (256 threads a block). Layout: w [F][Kc], wT [G][Kc][Fg].
__global__ void conv_weights_kmajor_kernel(const float* __restrict__ w, float* __restrict__ wt,
                                           int Fg, int Kc, int64_t total) {
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t per = int64_t(Kc) * Fg;
    const int64_t g = e / per, r = e - g * per;
    const int64_t k = r / Fg, m = r - k * Fg;
    wt[e] = w[(g * Fg + m) * Kc + k];
  }
}

// wP[f][kh][kw][c] = w[f][c][kh][kw]: the backward-data A, contiguous along c.
// Thread mapping: a grid-stride loop over the F*Cg*KH*KW elements of wP in memory order (256
// threads a block). Layout: w [F][Cg][KH*KW], wP [F][KH*KW][Cg].
__global__ void conv_weights_taps_first_kernel(const float* __restrict__ w, float* __restrict__ wp,
                                               int Cg, int KK, int64_t total) {
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t c = e % Cg, r = e / Cg;
    const int64_t kk = r % KK, f = r / KK;
    wp[e] = w[(f * Cg + c) * KK + kk];
  }
}

// dw[i] = partial[0][i] + partial[1][i] + ... + partial[S-1][i], in split order.
// Thread mapping: a grid-stride loop over the wsize elements of dw (256 threads a block).
// Layout: partial [S][wsize], dw [wsize].
__global__ void conv_sum_splits_kernel(const float* __restrict__ partial, float* __restrict__ dw,
                                       int64_t wsize, int S) {
  for (int64_t i = first_index(); i < wsize; i += grid_stride()) {
    float acc = 0.0f;
    for (int s = 0; s < S; ++s) acc += partial[s * wsize + i];
    dw[i] = acc;
  }
}

std::string where(const char* op, const CudaDevice* dev) {
  return std::string(op) + ": launching on " + dev->id() + " (conv2d v2)";
}

StoragePtr workspace(CudaDevice* dev, int64_t floats) {
  return dev->allocate(static_cast<size_t>(std::max<int64_t>(floats, 1)) * sizeof(float));
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <class Tile>
int64_t tiles_of(int64_t M, int64_t N) {
  return ((M + Tile::kBM - 1) / Tile::kBM) * ((N + Tile::kBN - 1) / Tile::kBN);
}

// Launches the core over grid z = Z for the largest M x N of any z; vec: A may move in 16-byte
// pieces (the launcher checked alignment).
template <class View, class Tile>
void launch_tile(const View& v, int64_t M, int64_t N, int Z, bool vec, cudaStream_t st,
                 const std::string& at) {
  const int64_t tiles = tiles_of<Tile>(M, N);
  if (tiles <= 0 || Z <= 0) return;
  const dim3 grid(static_cast<unsigned>(tiles), 1, static_cast<unsigned>(Z));
  if (vec) {
    conv_igemm_kernel<View, Tile, true><<<grid, Tile::kThreads, 0, st>>>(v);
  } else {
    conv_igemm_kernel<View, Tile, false><<<grid, Tile::kThreads, 0, st>>>(v);
  }
  CN_CUDA_CHECK(cudaGetLastError(), at);
}

// The large tile unless M fits the small one's height (a 128-row tile would be half empty:
// AlexNet's conv1 has 48 filters per tower) or it gives too few blocks to fill the GPU.
bool large_tile(int64_t M, int64_t N, int Z) {
  return M > kSmallTileMaxRows && tiles_of<TileLarge>(M, N) * Z >= kLargeTileMinBlocks;
}

template <class View>
void launch_igemm(const View& v, int64_t M, int64_t N, int Z, bool vec, cudaStream_t st,
                  const std::string& at) {
  if (large_tile(M, N, Z)) {
    launch_tile<View, TileLarge>(v, M, N, Z, vec, st, at);
  } else {
    launch_tile<View, TileSmall>(v, M, N, Z, vec, st, at);
  }
}

}  // namespace

bool conv2d_v2_fits(const Conv2dShape& s) {
  const int64_t lim = int64_t(1) << 31;
  const int64_t P = int64_t(s.OH) * s.OW;
  const int64_t Kc = int64_t(s.C / std::max(s.G, 1)) * s.KH * s.KW;
  return int64_t(s.N) * P < lim && int64_t(s.N) * s.H * s.W < lim && Kc < lim &&
         int64_t(s.F) * s.KH * s.KW < lim && int64_t(s.G) * s.sh * s.sw < 65536;
}

void conv2d_forward_cuda_v2(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const Conv2dShape s = conv_shape(c);
  const ConvView vs = conv_view(s);
  if (s.N <= 0 || s.F <= 0 || vs.P <= 0) return;
  dev->activate();
  const std::string at = where("conv2d_forward", dev);
  cudaStream_t st = dev->stream();
  const int64_t wsize = int64_t(s.F) * vs.Kc;
  StoragePtr ws = workspace(dev, wsize);
  float* wt = ws->as<float>();
  if (wsize > 0) {
    conv_weights_kmajor_kernel<<<blocks_for(wsize), kThreads, 0, st>>>(arg(c, 2), wt, vs.Fg, vs.Kc,
                                                                       wsize);
    CN_CUDA_CHECK(cudaGetLastError(), at);
  }
  ConvForward v{};
  v.s = vs;
  v.wt = wt;
  v.x = arg(c, 1);
  v.b = arg(c, 3);
  v.y = arg(c, 0);
  const bool vec = vs.Fg % 4 == 0 && aligned16(wt);
  launch_igemm(v, vs.Fg, int64_t(s.N) * vs.P, s.G, vec, st, at);
}

void conv2d_backward_data_cuda_v2(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const Conv2dShape s = conv_shape(c);
  const ConvView vs = conv_view(s);
  if (s.N <= 0 || vs.HW <= 0 || s.C <= 0) return;
  dev->activate();
  const std::string at = where("conv2d_backward_data", dev);
  cudaStream_t st = dev->stream();
  const int64_t wsize = int64_t(s.F) * vs.Kc;
  StoragePtr ws = workspace(dev, wsize);
  float* wp = ws->as<float>();
  if (wsize > 0) {
    conv_weights_taps_first_kernel<<<blocks_for(wsize), kThreads, 0, st>>>(
        arg(c, 2), wp, vs.Cg, s.KH * s.KW, wsize);
    CN_CUDA_CHECK(cudaGetLastError(), at);
  }
  ConvBackwardData v{};
  v.s = vs;
  v.wp = wp;
  v.dy = arg(c, 1);
  v.dx = arg(c, 0);
  // The widest phase: ceil(H / sh) rows by ceil(W / sw) columns.
  const int64_t N = int64_t(s.N) * ((s.H + s.sh - 1) / s.sh) * ((s.W + s.sw - 1) / s.sw);
  const bool vec = vs.Cg % 4 == 0 && aligned16(wp);
  launch_igemm(v, vs.Cg, N, s.G * s.sh * s.sw, vec, st, at);
}

void conv2d_backward_filter_cuda_v2(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const Conv2dShape s = conv_shape(c);
  const ConvView vs = conv_view(s);
  float *dw = arg(c, 0), *db = arg(c, 1);
  const int64_t wsize = int64_t(s.F) * vs.Kc;
  if (wsize <= 0 && (!db || s.F <= 0)) return;
  dev->activate();
  const std::string at = where("conv2d_backward_filter", dev);
  cudaStream_t st = dev->stream();
  const int64_t K = int64_t(s.N) * vs.P;
  if (wsize > 0 && K <= 0) {
    CN_CUDA_CHECK(cudaMemsetAsync(dw, 0, static_cast<size_t>(wsize) * sizeof(float), st), at);
  } else if (wsize > 0) {
    // Splits: enough blocks to fill the GPU, each at least kFilterSplitDepth deep, the partial
    // sums within their budget.
    const bool large = large_tile(vs.Fg, vs.Kc, s.G);
    const int64_t tiles =
        (large ? tiles_of<TileLarge>(vs.Fg, vs.Kc) : tiles_of<TileSmall>(vs.Fg, vs.Kc)) * s.G;
    int64_t S = std::max<int64_t>(1, (kFilterSplitBlocks + tiles - 1) / tiles);
    S = std::min<int64_t>(S, std::max<int64_t>(1, K / std::max<int64_t>(1, kFilterSplitDepth)));
    S = std::min<int64_t>(S, std::max<int64_t>(1, kFilterPartialFloats / wsize));
    S = std::min<int64_t>(S, std::max<int64_t>(1, 65535 / s.G));
    const int64_t chunk = ((K + S - 1) / S + kBK - 1) / kBK * kBK;
    S = (K + chunk - 1) / chunk;
    StoragePtr ws;
    float* part = dw;
    if (S > 1) {
      ws = workspace(dev, S * wsize);
      part = ws->as<float>();
    }
    ConvBackwardFilter v{};
    v.s = vs;
    v.x = arg(c, 2);
    v.dy = arg(c, 3);
    v.part = part;
    v.wsize = wsize;
    v.kchunk = static_cast<int>(chunk);
    const int Z = static_cast<int>(S) * s.G;
    if (large) {
      launch_tile<ConvBackwardFilter, TileLarge>(v, vs.Fg, vs.Kc, Z, false, st, at);
    } else {
      launch_tile<ConvBackwardFilter, TileSmall>(v, vs.Fg, vs.Kc, Z, false, st, at);
    }
    if (S > 1) {
      conv_sum_splits_kernel<<<blocks_for(wsize), kThreads, 0, st>>>(part, dw, wsize,
                                                                     static_cast<int>(S));
      CN_CUDA_CHECK(cudaGetLastError(), at);
    }
  }
  launch_conv2d_bias_grad(dev, s, arg(c, 3), db, at);
}

}  // namespace cn
