// conv2d on the CPU with the batch in the vector lanes (AVX-512, or AVX2 + FMA): no im2col, no
// packing of activations. See conv2d.h for the contract.
//
// Layout. A block of kNB = 32 images is converted once per pass into "CHWn32": element
// (n0 + i, c, h, w) of x lives at xb[((c * H + h) * W + w) * 32 + i]. In this layout the 32
// images of one (channel, pixel) are consecutive (two 16-float or four 8-float vectors), so
// every operand that a GEMM would have to im2col-and-pack is read straight from the block through
// a pointer: this is the indirect convolution of XNNPACK, with images instead of channels in the
// lanes.
//
// Passes, for one group g (Cg = C/G input channels, Fg = F/G filters, T = KH*KW taps):
//   forward        yb[f, p, :]  = sum over valid taps t of p, channels c:  w[f, c, t] * xb[c, pixel(p, t), :]
//   backward data  dxb[c, q, :] = sum over taps t that reach input pixel q, filters f:
//                                 w[f, c, t] * dyb[f, position(q, t), :]
//   backward filter dw[f, c, t] = sum over positions p, images n:  dyb[f, p, n] * xb[c, pixel(p, t), n]
// A tap that falls into the zero padding (or, for backward data, between strided positions) is
// left out of the tap list, so no work is spent on padding and stride 4 costs no more than
// stride 1.
//
// Micro-kernels: the instruction set is the SGEMM's (sgemm_kernel_name(): "avx512" or "avx2";
// CN_SGEMM_ISA=avx2 caps both), and the passes are templates on a trait struct (Avx512, Avx2)
// that holds the kernels and the tile height kMR; everything else is shared.
//   fwd / bwd-data  kMR output rows (filters, or input channels) x 32 images: per reduction step
//                   vector loads of the block and kMR broadcasts of the packed weights. Weights
//                   are packed once per call as [row panel][tap][inner][kMR].
//                   AVX-512 (32 zmm): 8 rows x 32 images = 16 accumulators.
//                   AVX2 (16 ymm): 6 rows x 16 images = 12 accumulators, twice per call (the two
//                   halves of the block), the shape of the 6x16 SGEMM tile.
//   bwd-filter      a GEMM over k = (position, image): kMR filter columns (c, kh, kw) x a panel
//                   of filters; per step vector loads of dy, converted to [position][image]
//                   [filter] per block, and kMR broadcasts from the columns' image rows (a zero
//                   row where the tap is padding). The transposed gradient [column][filter] is
//                   the GEMM's C, reloaded once per chunk of positions that keeps the chunk's dy
//                   in L1.
//                   AVX-512: 8 columns x 32 filters (16 for a narrow last panel).
//                   AVX2: 6 columns x 16 filters = 12 accumulators.
// Both sets sum every output element in the same order, so they give the same bits.
//
// Threads: image blocks are split into contiguous ranges, one per pool worker; each worker
// converts its own blocks (scratch per thread, reused across calls). The filter gradient of each
// image block goes to its own buffer and the buffers are added in block order. Every output
// element is computed by one kernel call with a fixed summation order, so results do not depend
// on the number of threads.
#include "ops/conv2d_blocked.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "ops/cpu_scratch.h"
#include "ops/gemm.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define CN_BLOCKED_X86 1
#else
#define CN_BLOCKED_X86 0
#endif

namespace cn {

#if CN_BLOCKED_X86
namespace {

constexpr int kNB = 32;  // images per block

using Buf = AlignedScratch;  // ops/cpu_scratch.h

// NCHW rows of 32 images -> CHWn32. src points at image n0; `len` floats per image (C*H*W).
void to_blocked(const float* src, int64_t len, float* dst) {
  constexpr int64_t E = 16;
  for (int64_t e0 = 0; e0 < len; e0 += E) {
    const int64_t e1 = std::min(len, e0 + E);
    for (int i = 0; i < kNB; ++i) {
      const float* s = src + i * len;
      for (int64_t e = e0; e < e1; ++e) dst[e * kNB + i] = s[e];
    }
  }
}

// CHWn32 -> NCHW rows of 32 images; `bias` (per channel of `hw` elements, may be null) added.
void from_blocked(const float* src, int64_t channels, int64_t hw, const float* bias, float* dst) {
  const int64_t len = channels * hw;
  constexpr int64_t E = 16;
  for (int64_t c = 0; c < channels; ++c) {
    const float bc = bias ? bias[c] : 0.0f;
    for (int64_t e0 = c * hw; e0 < (c + 1) * hw; e0 += E) {
      const int64_t e1 = std::min((c + 1) * hw, e0 + E);
      for (int i = 0; i < kNB; ++i) {
        float* d = dst + i * len;
        for (int64_t e = e0; e < e1; ++e) d[e] = src[e * kNB + i] + bc;
      }
    }
  }
}

// The micro-kernels of one instruction set. The passes below are templates on this trait; kMR
// is the row count of the fwd / bwd-data tile (and so of the weight panels) and the column count
// of the bwd-filter tile (and so of xcol), kVW the floats per vector (the bwd-filter tile is
// NV * kVW filters wide). Both sets sum every element in the same order (taps, then inner; or
// positions, then images).
//
//   rows(ntaps, tap, base, inner, istride, apanel, out, ldo, nrows):
//     acc[kMR rows][32 images] = sum over taps t < ntaps, inner i < inner of
//       a[(tap[t] * inner + i) * kMR + r] * b_t[i * istride + 0..31],  b_t = base[t].
//     Rows r < nrows are stored at out + r * ldo (32 floats each).
//   filter<NV>(np, xcol, dyt, pstride, nstride, c, ldc, load):
//     the filter-gradient tile, transposed: acc[kMR columns j][NV * kVW filters f] over
//     positions q < np and the 32 images of each:
//       acc[r][f] += xcol[q * kMR + r][n] * dyt[q * pstride + n * nstride + f].
//     xcol gives, per position, the columns' image rows (a zero row where the tap is padding).
//     The tile sums from zero and is then added into c (ldc floats per row), or stored when
//     !load: sums of one chunk of positions, then across chunks, which keeps the rounding error
//     of long reductions (positions x images) near that of a blocked GEMM.
//   sum_lanes(a, n): the sum of n floats in 16 running lanes (a fixed order), then across the
//     lanes.

// AVX-512 (32 zmm): fwd / bwd-data 8 rows x 32 images = 16 accumulators, two vector loads of
// the block and eight broadcasts per step; bwd-filter 8 columns x 32 filters (16 for a narrow
// last panel).
struct Avx512 {
  static constexpr int kMR = 8, kVW = 16;

  __attribute__((target("avx512f"))) static void rows(int ntaps, const int* tap,
                                                      const float* const* base, int inner,
                                                      int64_t istride, const float* apanel,
                                                      float* out, int64_t ldo, int nrows) {
    __m512 acc[kMR][2];
    for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int t = 0; t < ntaps; ++t) {
      const float* a = apanel + int64_t(tap[t]) * inner * kMR;
      const float* b = base[t];
#pragma GCC unroll 2
      for (int i = 0; i < inner; ++i) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        for (int r = 0; r < kMR; ++r) {
          const __m512 ar = _mm512_set1_ps(a[r]);
          acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
          acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
        }
        a += kMR;
        b += istride;
      }
    }
    for (int r = 0; r < nrows; ++r) {
      _mm512_store_ps(out + r * ldo, acc[r][0]);
      _mm512_store_ps(out + r * ldo + 16, acc[r][1]);
    }
  }

  template <int NV>
  __attribute__((target("avx512f"))) static void filter(int np, const float* const* xcol,
                                                        const float* dyt, int64_t pstride,
                                                        int64_t nstride, float* c, int64_t ldc,
                                                        bool load) {
    __m512 acc[kMR][NV];
    for (int r = 0; r < kMR; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
    for (int q = 0; q < np; ++q) {
      const float* const* xp = xcol + int64_t(q) * kMR;
      const float* x0 = xp[0];
      const float* x1 = xp[1];
      const float* x2 = xp[2];
      const float* x3 = xp[3];
      const float* x4 = xp[4];
      const float* x5 = xp[5];
      const float* x6 = xp[6];
      const float* x7 = xp[7];
      const float* b = dyt + q * pstride;
#pragma GCC unroll 2
      for (int n = 0; n < kNB; ++n, b += nstride) {
        __m512 bv[NV];
        for (int v = 0; v < NV; ++v) bv[v] = _mm512_load_ps(b + 16 * v);
        const float xs[kMR] = {x0[n], x1[n], x2[n], x3[n], x4[n], x5[n], x6[n], x7[n]};
        for (int r = 0; r < kMR; ++r) {
          const __m512 ar = _mm512_set1_ps(xs[r]);
          for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
        }
      }
    }
    for (int r = 0; r < kMR; ++r)
      for (int v = 0; v < NV; ++v) {
        float* o = c + r * ldc + 16 * v;
        _mm512_store_ps(o, load ? _mm512_add_ps(_mm512_load_ps(o), acc[r][v]) : acc[r][v]);
      }
  }

  __attribute__((target("avx512f"))) static float sum_lanes(const float* a, int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) acc = _mm512_add_ps(acc, _mm512_loadu_ps(a + i));
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, acc);
    float s = 0.0f;
    for (int l = 0; l < 16; ++l) s += lanes[l];
    for (; i < n; ++i) s += a[i];
    return s;
  }
};

// AVX2 + FMA (16 ymm): fwd / bwd-data 6 rows x 16 images = 12 accumulators, run twice per call
// for the two halves of the block (two vector loads and six broadcasts per step, as in the 6x16
// SGEMM tile); bwd-filter 6 columns x 16 filters.
struct Avx2 {
  static constexpr int kMR = 6, kVW = 8;

  __attribute__((target("avx2,fma"))) static void rows(int ntaps, const int* tap,
                                                       const float* const* base, int inner,
                                                       int64_t istride, const float* apanel,
                                                       float* out, int64_t ldo, int nrows) {
    for (int h = 0; h < kNB; h += 2 * kVW) {
      __m256 acc[kMR][2];
      for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
      for (int t = 0; t < ntaps; ++t) {
        const float* a = apanel + int64_t(tap[t]) * inner * kMR;
        const float* b = base[t] + h;
#pragma GCC unroll 2
        for (int i = 0; i < inner; ++i) {
          const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
          for (int r = 0; r < kMR; ++r) {
            const __m256 ar = _mm256_set1_ps(a[r]);
            acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
          }
          a += kMR;
          b += istride;
        }
      }
      for (int r = 0; r < nrows; ++r) {
        _mm256_store_ps(out + r * ldo + h, acc[r][0]);
        _mm256_store_ps(out + r * ldo + h + 8, acc[r][1]);
      }
    }
  }

  template <int NV>
  __attribute__((target("avx2,fma"))) static void filter(int np, const float* const* xcol,
                                                         const float* dyt, int64_t pstride,
                                                         int64_t nstride, float* c, int64_t ldc,
                                                         bool load) {
    __m256 acc[kMR][NV];
    for (int r = 0; r < kMR; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
    for (int q = 0; q < np; ++q) {
      const float* const* xp = xcol + int64_t(q) * kMR;
      const float* x0 = xp[0];
      const float* x1 = xp[1];
      const float* x2 = xp[2];
      const float* x3 = xp[3];
      const float* x4 = xp[4];
      const float* x5 = xp[5];
      const float* b = dyt + q * pstride;
#pragma GCC unroll 2
      for (int n = 0; n < kNB; ++n, b += nstride) {
        __m256 bv[NV];
        for (int v = 0; v < NV; ++v) bv[v] = _mm256_load_ps(b + 8 * v);
        const float xs[kMR] = {x0[n], x1[n], x2[n], x3[n], x4[n], x5[n]};
        for (int r = 0; r < kMR; ++r) {
          const __m256 ar = _mm256_set1_ps(xs[r]);
          for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(ar, bv[v], acc[r][v]);
        }
      }
    }
    for (int r = 0; r < kMR; ++r)
      for (int v = 0; v < NV; ++v) {
        float* o = c + r * ldc + 8 * v;
        _mm256_store_ps(o, load ? _mm256_add_ps(_mm256_load_ps(o), acc[r][v]) : acc[r][v]);
      }
  }

  // Two 8-lane accumulators hold the 16 running lanes of the AVX-512 version: the same sums.
  __attribute__((target("avx2,fma"))) static float sum_lanes(const float* a, int64_t n) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(a + i));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(a + i + 8));
    }
    alignas(32) float lanes[16];
    _mm256_store_ps(lanes, lo);
    _mm256_store_ps(lanes + 8, hi);
    float s = 0.0f;
    for (int l = 0; l < 16; ++l) s += lanes[l];
    for (; i < n; ++i) s += a[i];
    return s;
  }
};

// dy of 32 images, NCHW rows (F*P floats each) -> per group [p][n][Fgp] (Fgp = Fg rounded up
// to 16, the extra filters zero).
void to_position_major(const float* src, int F, int G, int64_t P, int Fgp, float* dst) {
  const int Fg = F / G;
  const int64_t len = int64_t(F) * P, gsize = P * kNB * Fgp;
  constexpr int E = 16;  // 16 x 16 tiles: the strided side stays in L1
  for (int g = 0; g < G; ++g) {
    float* dg = dst + g * gsize;
    for (int n = 0; n < kNB; ++n) {
      const float* sn = src + n * len + int64_t(g) * Fg * P;
      for (int f0 = 0; f0 < Fgp; f0 += E)
        for (int64_t p0 = 0; p0 < P; p0 += E) {
          const int64_t p1 = std::min<int64_t>(P, p0 + E);
          for (int64_t p = p0; p < p1; ++p) {
            float* d = dg + (p * kNB + n) * Fgp;
            for (int f = f0; f < f0 + E; ++f) d[f] = f < Fg ? sn[f * P + p] : 0.0f;
          }
        }
    }
  }
}

// Packs rows of a [rows_total, T, inner] view into panels [panel][T][inner][MR], zero rows
// added. elem(row, t, i) reads the weight.
template <int MR, class Elem>
void pack_panels(int rows_total, int T, int inner, const Elem& elem, float* dst) {
  const int panels = (rows_total + MR - 1) / MR;
  for (int pn = 0; pn < panels; ++pn)
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < inner; ++i)
        for (int r = 0; r < MR; ++r) {
          const int row = pn * MR + r;
          *dst++ = row < rows_total ? elem(row, t, i) : 0.0f;
        }
}

// Runs body(block0, block1, worker) over the image blocks.
template <class Body>
void over_blocks(ThreadPool* pool, int blocks, const Body& body) {
  parallel_for(pool, blocks, [&](int64_t b, int64_t e, int worker) { body(b, e, worker); });
}

// The micro-kernels follow the SGEMM's choice of instruction set (CN_SGEMM_ISA caps both):
// "avx512", "avx2", or "" where the path is off (SSE or portable kernels, CN_CONV_BLOCKED=0).
const char* blocked_isa() {
  static const char* const name = [] {
    const char* e = std::getenv("CN_CONV_BLOCKED");
    if (e && std::strcmp(e, "0") == 0) return "";
    const char* k = sgemm_kernel_name();
    return std::strcmp(k, "avx512") == 0 ? "avx512" : std::strcmp(k, "avx2") == 0 ? "avx2" : "";
  }();
  return name;
}

// Runs fn(Avx512{}) or fn(Avx2{}): the passes are instantiated once per instruction set.
template <class Fn>
void with_isa(const Fn& fn) {
  if (std::strcmp(blocked_isa(), "avx512") == 0)
    fn(Avx512{});
  else
    fn(Avx2{});
}

}  // namespace

const char* conv2d_blocked_isa() { return blocked_isa(); }

bool conv2d_blocked_applies(const Conv2dShape& s, bool filter_grad) {
  if (!*blocked_isa()) return false;
  // Decided by the shape alone, never by the thread count, so that a result does not depend on
  // how many cores were free. Two blocks or more keep two cores busy.
  if (s.N < 2 * kNB || s.N % kNB != 0) return false;
  const int Cg = s.C / s.G, Fg = s.F / s.G;
  // Narrow layers (conv1's 1 or 3 input channels) fill the 8- or 6-row tiles of the forward and
  // data-gradient passes badly: im2col wins there. The filter gradient's tile rows are the
  // columns (c, kh, kw), which a 5x5 kernel fills even from one channel.
  if (Fg < 8 || (Cg < 8 && !filter_grad)) return false;
  // Scratch per worker: one block of x, y and the packed weights must stay modest.
  const int64_t xb = int64_t(s.C) * s.H * s.W * kNB, yb = int64_t(s.F) * s.OH * s.OW * kNB;
  return xb + yb <= (int64_t(64) << 20);
}

namespace {

// The forward pass and the data gradient are the same indirect GEMM with the roles swapped:
//   forward        src = x  (C channels of H x W),  dst = y  (F of OH x OW), rows = filters,
//                  inner = input channels;
//   backward data  src = dy (F of OH x OW),  dst = dx (C of H x W),  rows = input channels,
//                  inner = filters.
// Per group the weights are packed once as [row panel][tap][inner][kMR] (elem(row, tap, inner)
// reads them); per image block src is converted to CHWn32, and for every dst pixel
// taps_of(src_group, dh, dw, taps, bases) lists the taps that reach it.
struct Side {
  int channels;      // per image: C or F
  int h, w;          // spatial size
  int64_t hw() const { return int64_t(h) * w; }
  int64_t len() const { return channels * hw(); }
};

template <class I, class Elem, class TapsOf>
void indirect_pass(ThreadPool* pool, const Conv2dShape& s, const float* src, Side in,
                   float* dst, Side out, const float* bias, const Elem& elem,
                   const TapsOf& taps_of) {
  const int T = s.KH * s.KW;
  constexpr int MR = I::kMR;
  const int rows = out.channels / s.G, inner = in.channels / s.G;
  const int panels = (rows + MR - 1) / MR;
  const int64_t gsize = int64_t(panels) * MR * T * inner;
  static thread_local Buf wbuf;  // on the queue thread: reused, no allocation per call
  float* const wpk = wbuf.get(size_t(gsize) * s.G);
  for (int g = 0; g < s.G; ++g)
    pack_panels<MR>(rows, T, inner, [&](int r, int t, int i) { return elem(g, r, t, i); },
                wpk + g * gsize);
  over_blocks(pool, s.N / kNB, [&](int64_t b0, int64_t b1, int) {
    static thread_local Buf inbuf, outbuf;
    static thread_local std::vector<int> taps;
    static thread_local std::vector<const float*> bases;
    float* ib = inbuf.get(size_t(in.len()) * kNB);
    float* ob = outbuf.get(size_t(out.len()) * kNB);
    taps.resize(T);
    bases.resize(T);
    for (int64_t blk = b0; blk < b1; ++blk) {
      to_blocked(src + blk * kNB * in.len(), in.len(), ib);
      for (int g = 0; g < s.G; ++g) {
        const float* ig = ib + int64_t(g) * inner * in.hw() * kNB;
        for (int dh = 0; dh < out.h; ++dh)
          for (int dw = 0; dw < out.w; ++dw) {
            const int nt = taps_of(ig, dh, dw, taps.data(), bases.data());
            const int64_t q = int64_t(dh) * out.w + dw;
            for (int pn = 0; pn < panels; ++pn) {
              const int r0 = pn * MR;
              I::rows(nt, taps.data(), bases.data(), inner, in.hw() * kNB,
                      wpk + g * gsize + int64_t(pn) * MR * T * inner,
                      ob + ((int64_t(g) * rows + r0) * out.hw() + q) * kNB, out.hw() * kNB,
                      std::min(MR, rows - r0));
            }
          }
      }
      from_blocked(ob, out.channels, out.hw(), bias, dst + blk * kNB * out.len());
    }
  });
}

}  // namespace

void conv2d_forward_blocked(ThreadPool* pool, const Conv2dShape& s, const float* x,
                            const float* w, const float* b, float* y) {
  const int Cg = s.C / s.G, Fg = s.F / s.G, T = s.KH * s.KW;
  const auto elem = [&](int g, int f, int t, int c) {
    return w[((int64_t(g) * Fg + f) * Cg + c) * T + t];
  };
  // Output pixel (oh, ow): the taps that fall inside the input.
  const auto taps_of = [&](const float* xg, int oh, int ow, int* taps, const float** bases) {
    int nt = 0;
    for (int kh = 0; kh < s.KH; ++kh) {
      const int ih = oh * s.sh - s.ph + kh;
      if (ih < 0 || ih >= s.H) continue;
      for (int kw = 0; kw < s.KW; ++kw) {
        const int iw = ow * s.sw - s.pw + kw;
        if (iw < 0 || iw >= s.W) continue;
        taps[nt] = kh * s.KW + kw;
        bases[nt++] = xg + (int64_t(ih) * s.W + iw) * kNB;
      }
    }
    return nt;
  };
  with_isa([&](auto isa) {
    indirect_pass<decltype(isa)>(pool, s, x, Side{s.C, s.H, s.W}, y, Side{s.F, s.OH, s.OW}, b,
                                 elem, taps_of);
  });
}

void conv2d_backward_data_blocked(ThreadPool* pool, const Conv2dShape& s, const float* dy,
                                  const float* w, float* dx) {
  const int Cg = s.C / s.G, Fg = s.F / s.G, T = s.KH * s.KW;
  const auto elem = [&](int g, int c, int t, int f) {
    return w[((int64_t(g) * Fg + f) * Cg + c) * T + t];
  };
  // Input pixel (ih, iw): the taps whose output position lands on the stride grid.
  const auto taps_of = [&](const float* dyg, int ih, int iw, int* taps, const float** bases) {
    int nt = 0;
    for (int kh = 0; kh < s.KH; ++kh) {
      const int th = ih + s.ph - kh;  // = oh * sh
      if (th < 0 || th % s.sh != 0 || th / s.sh >= s.OH) continue;
      for (int kw = 0; kw < s.KW; ++kw) {
        const int tw = iw + s.pw - kw;
        if (tw < 0 || tw % s.sw != 0 || tw / s.sw >= s.OW) continue;
        taps[nt] = kh * s.KW + kw;
        bases[nt++] = dyg + (int64_t(th / s.sh) * s.OW + tw / s.sw) * kNB;
      }
    }
    return nt;
  };
  with_isa([&](auto isa) {
    indirect_pass<decltype(isa)>(pool, s, dy, Side{s.F, s.OH, s.OW}, dx, Side{s.C, s.H, s.W},
                                 nullptr, elem, taps_of);
  });
}

namespace {

template <class I>
void filter_pass(ThreadPool* pool, const Conv2dShape& s, const float* x, const float* dy,
                 float* dw, float* db) {
  constexpr int MR = I::kMR, FW = 2 * I::kVW;  // tile: MR columns x FW filters (FW/2 at the end)
  const int Cg = s.C / s.G, Fg = s.F / s.G, T = s.KH * s.KW;
  const int Fgp = (Fg + 15) / 16 * 16;
  const int64_t HW = int64_t(s.H) * s.W, P = int64_t(s.OH) * s.OW;
  const int64_t xlen = s.C * HW, ylen = s.F * P;
  const int Kc = Cg * T, Kcp = (Kc + MR - 1) / MR * MR;
  const int64_t tsize = int64_t(Kcp) * Fgp;  // one group's transposed gradient [Kcp][Fgp]
  const int blocks = s.N / kNB;
  // Positions per chunk: the chunk's dy ([q][n][Fgp]) stays about 32 KiB, in L1.
  const int PC = int(std::max<int64_t>(1, std::min<int64_t>(P, 8192 / (int64_t(kNB) * Fgp / 4))));
  // Column j = (c, kh, kw) of the filter, decoded once.
  // Thread-local storage of the calling (queue) thread, reached by the workers through plain
  // pointers (a thread_local named inside the lambda would be the worker's own).
  static thread_local std::vector<int> jkh_buf, jkw_buf;
  static thread_local std::vector<int64_t> joff_buf;
  jkh_buf.resize(Kcp);
  jkw_buf.resize(Kcp);
  joff_buf.resize(Kcp);
  int* const jkh = jkh_buf.data();
  int* const jkw = jkw_buf.data();
  int64_t* const joff = joff_buf.data();
  for (int j = 0; j < Kcp; ++j) {
    const int jj = std::min(j, Kc - 1);
    joff[j] = int64_t(jj / T) * HW * kNB;
    jkh[j] = (jj % T) / s.KW;
    jkw[j] = jj % s.KW;
  }
  // Every image block sums into its own [G][Kcp][Fgp] (+ [F] for db) buffer, and the buffers
  // are added in block order: the result does not depend on how many workers there were.
  const int64_t psize = s.G * tsize + s.F + 16;
  static thread_local Buf pbuf;
  float* const partial = pbuf.get(size_t(blocks) * psize);
  auto part = [&](int64_t blk) {
    uintptr_t p = reinterpret_cast<uintptr_t>(partial + blk * psize);
    return reinterpret_cast<float*>((p + 63) & ~uintptr_t(63));
  };
  static const float zeros[kNB] __attribute__((aligned(64))) = {};
  over_blocks(pool, blocks, [&](int64_t b0, int64_t b1, int) {
    static thread_local Buf xbuf, ybuf;
    static thread_local std::vector<const float*> xcol;
    float* xb = xbuf.get(size_t(xlen) * kNB);
    float* dyt = ybuf.get(size_t(s.G) * P * kNB * Fgp);
    xcol.resize(size_t(PC) * MR);
    for (int64_t blk = b0; blk < b1; ++blk) {
      float* acc = part(blk);
      float* dbp = acc + s.G * tsize;
      to_blocked(x + blk * kNB * xlen, xlen, xb);
      to_position_major(dy + blk * kNB * ylen, s.F, s.G, P, Fgp, dyt);
      for (int g = 0; g < s.G; ++g) {
        const float* xg = xb + int64_t(g) * Cg * HW * kNB;
        const float* dg = dyt + int64_t(g) * P * kNB * Fgp;
        float* ag = acc + g * tsize;
        for (int64_t p0 = 0; p0 < P; p0 += PC) {
          const int np = int(std::min<int64_t>(PC, P - p0));
          const bool load = p0 != 0;
          for (int j0 = 0; j0 < Kcp; j0 += MR) {
            int oh = int(p0 / s.OW), ow = int(p0 % s.OW);
            for (int q = 0; q < np; ++q) {
              const int h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
              for (int r = 0; r < MR; ++r) {
                const int j = j0 + r;
                const int ih = h0 + jkh[j], iw = w0 + jkw[j];
                const bool in = j < Kc && unsigned(ih) < unsigned(s.H) && unsigned(iw) < unsigned(s.W);
                xcol[q * MR + r] = in ? xg + joff[j] + (int64_t(ih) * s.W + iw) * kNB : zeros;
              }
              if (++ow == s.OW) {
                ow = 0;
                ++oh;
              }
            }
            for (int f0 = 0; f0 < Fgp; f0 += FW) {
              float* c = ag + int64_t(j0) * Fgp + f0;
              const float* d = dg + p0 * kNB * Fgp + f0;
              if (Fgp - f0 >= FW)
                I::template filter<2>(np, xcol.data(), d, kNB * Fgp, Fgp, c, Fgp, load);
              else
                I::template filter<1>(np, xcol.data(), d, kNB * Fgp, Fgp, c, Fgp, load);
            }
          }
        }
      }
      if (db) {
        for (int f = 0; f < s.F; ++f) {
          float sum = 0.0f;
          for (int n = 0; n < kNB; ++n) sum += I::sum_lanes(dy + (blk * kNB + n) * ylen + int64_t(f) * P, P);
          dbp[f] = sum;
        }
      }
    }
  });
  for (int g = 0; g < s.G; ++g)
    for (int f = 0; f < Fg; ++f)
      for (int j = 0; j < Kc; ++j) {
        float v = part(0)[g * tsize + int64_t(j) * Fgp + f];
        for (int t = 1; t < blocks; ++t) v += part(t)[g * tsize + int64_t(j) * Fgp + f];
        dw[(int64_t(g) * Fg + f) * Kc + j] = v;
      }
  if (db)
    for (int f = 0; f < s.F; ++f) {
      float v = part(0)[s.G * tsize + f];
      for (int t = 1; t < blocks; ++t) v += part(t)[s.G * tsize + f];
      db[f] = v;
    }
}

}  // namespace

void conv2d_backward_filter_blocked(ThreadPool* pool, const Conv2dShape& s, const float* x,
                                    const float* dy, float* dw, float* db) {
  with_isa([&](auto isa) { filter_pass<decltype(isa)>(pool, s, x, dy, dw, db); });
}

#else  // not x86: the im2col path runs everywhere else.

const char* conv2d_blocked_isa() { return ""; }
bool conv2d_blocked_applies(const Conv2dShape&, bool) { return false; }
void conv2d_forward_blocked(ThreadPool*, const Conv2dShape&, const float*, const float*,
                            const float*, float*) {}
void conv2d_backward_data_blocked(ThreadPool*, const Conv2dShape&, const float*, const float*,
                                  float*) {}
void conv2d_backward_filter_blocked(ThreadPool*, const Conv2dShape&, const float*, const float*,
                                    float*, float*) {}

#endif

}  // namespace cn
