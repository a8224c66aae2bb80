// conv2d on the CPU for layers with few input channels (conv1), filters in the vector lanes
// (AVX-512 or AVX2 + FMA): no im2col. See conv2d_direct.h for when it runs and conv2d.h for the
// contract.
//
// conv1 reduces over only Cg*KH*KW = 25 (AlexNet-mini) or 363 (AlexNet) terms per output, from
// 1 or 3 channels, so an im2col GEMM spends much of its time writing, packing and re-reading
// columns. Here the filters sit in the lanes instead, and every input value is broadcast once
// per register tile (16 filters per vector with AVX-512, 8 with AVX2; the tiles are written
// once, in conv2d_direct_kernels.inc, and compiled for each).
//
// Layouts, per image: xp = x zero-padded to [C][H+2ph][W+2pw] (plus slack at the end, so a tile
// may read past the last output column), so the kernels never test bounds. Weights are repacked
// once per call as wt[(c, kh, kw)][F] (filters contiguous).
//
// Forward: a register tile is R output pixels of one output row x NV vectors of filters:
//   acc[r][v] += xp[c][oh*sh + kh][(ow0 + r)*sw + kw] * wt[(c, kh, kw)][f0 + v*lanes ..]
// over c, kh, kw of the filters' group in order: per step NV vector loads of weights, R
// broadcasts, R*NV FMAs. The tile is then written to y's rows (transposed, bias added). Images
// are padded in groups; work is split over (chunk of filters, image), chunk-major, so a worker
// keeps one chunk's weights in cache. Every output element is one tile's sum in a fixed order.
//
// Backward filter: dw[f][j], j = (c, kh, kw), is a sum over images n and positions p. A register
// tile is NJ columns j x NV vectors of filters; per position it loads NV vectors of dyt (dy of
// the image transposed to [p][F]) and broadcasts the NJ input values xp[pixel(p) + offset(j)],
// one offset per column. Each tile sums a chunk of output rows from zero and adds that into its
// running total, which keeps the rounding of a reduction over up to N*OH*OW terms near a blocked
// GEMM's.
// Images are taken in groups (padded x and dyt of a group are prepared in parallel, then the
// tiles run over the group); tiles are split among workers, each worker runs a chunk of rows
// through all of its tiles while the chunk is in cache, and each tile visits the images and rows
// in order, so the result does not depend on the number of threads. db is summed per
// filter, images and positions in order.
//
// Tile sizes (accumulators + loads within the 32 zmm or 16 ymm registers) are picked per shape
// from a few instantiations by a small cost model; the sums do not depend on the choice.
#include "ops/conv2d_direct.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "ops/cpu_scratch.h"
#include "ops/gemm.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define CN_DIRECT_X86 1
#else
#define CN_DIRECT_X86 0
#endif

namespace cn {

#if CN_DIRECT_X86
namespace {

constexpr int kV = 16;  // filters per group: a multiple of this; also the dy transpose block
constexpr int64_t kGroupFloats = int64_t(4) << 20;  // padded x + dyt per image group (16 MiB)
constexpr int64_t kChunkPositions = 256;        // bwd-filter: positions summed from zero

using Buf = AlignedScratch;  // ops/cpu_scratch.h

// A zero-padded image: C planes of hp x wp, then `tail` floats of zeros.
struct Padded {
  int hp, wp;
  int64_t plane, floats;
};

Padded padded_of(const Conv2dShape& s, int64_t tail) {
  Padded g;
  g.hp = s.H + 2 * s.ph;
  g.wp = s.W + 2 * s.pw;
  g.plane = int64_t(g.hp) * g.wp;
  g.floats = (s.C * g.plane + tail + 15) / 16 * 16;
  return g;
}

void pad_into(const Conv2dShape& s, const Padded& g, const float* x, float* dst) {
  for (int c = 0; c < s.C; ++c) {
    float* plane = dst + c * g.plane;
    std::fill(plane, plane + int64_t(s.ph) * g.wp, 0.0f);
    for (int h = 0; h < s.H; ++h) {
      float* row = plane + int64_t(h + s.ph) * g.wp;
      std::fill(row, row + s.pw, 0.0f);
      std::memcpy(row + s.pw, x + (int64_t(c) * s.H + h) * s.W, sizeof(float) * s.W);
      std::fill(row + s.pw + s.W, row + g.wp, 0.0f);
    }
    std::fill(plane + int64_t(s.ph + s.H) * g.wp, plane + g.plane, 0.0f);
  }
  std::fill(dst + s.C * g.plane, dst + g.floats, 0.0f);
}

// dst[j * ldd + i] = src[i * lds + j] for i, j < 16: a 16 x 16 block transposed in registers.
// (GCC 12 warns about the undefined pass-through operand inside these intrinsics.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) void transpose16(const float* src, int64_t lds, float* dst,
                                                      int64_t ldd) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
  for (int i = 0; i < 16; i += 2) {  // pairs of rows interleaved
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // then pairs of pairs, within 128-bit lanes
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {  // then the 128-bit lanes, in two rounds
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
  }
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ldd, r[i]);
}
#pragma GCC diagnostic pop

// dy of one image [F][P] -> dyt [P][F] (F a multiple of 16); with AVX-512 (`fast`) in 16 x 16
// register blocks.
void transpose_dy(const float* src, int64_t F, int64_t P, float* dst, bool fast) {
  const int64_t full = fast ? P / kV * kV : 0;
  for (int64_t f0 = 0; f0 < F; f0 += kV) {
    for (int64_t p0 = 0; p0 < full; p0 += kV)
      transpose16(src + f0 * P + p0, P, dst + p0 * F + f0, F);
    for (int64_t p = full; p < P; ++p)
      for (int64_t f = f0; f < f0 + kV; ++f) dst[p * F + f] = src[f * P + p];
  }
}

// ---- register tiles, once per instruction set -----------------------------------------------

using FwdTile = void (*)(const float*, int, int, int, int64_t, int, const float*, int64_t, float*);
using FilterTile = void (*)(const float*, int64_t, const int64_t*, const float*, int64_t, int, int,
                            float*, bool);

struct FwdChoice {
  int nv, r;  // NV vectors of filters x R pixels
  FwdTile fn;
};

struct FilterChoice {
  int nv, nj;  // NV vectors of filters x NJ columns
  FilterTile fn;
};

// The tiles each ISA offers, for a stride of 1, 2 or 4 (accumulators plus the loaded vectors and
// one broadcast within the vector registers).
struct Isa {
  const char* name;
  int lanes;
  std::vector<FwdChoice> (*fwd)(int sw);
  std::vector<FilterChoice> (*filter)(int sw);
};

namespace avx512 {
#pragma GCC push_options
#pragma GCC target("avx512f")
using Vec = __m512;
constexpr int kW = 16;
inline Vec vzero() { return _mm512_setzero_ps(); }
inline Vec vload(const float* p) { return _mm512_load_ps(p); }
inline void vstore(float* p, Vec v) { _mm512_store_ps(p, v); }
inline Vec vset1(float x) { return _mm512_set1_ps(x); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec vadd(Vec a, Vec b) { return _mm512_add_ps(a, b); }
#include "ops/conv2d_direct_kernels.inc"

// 32 zmm registers.
template <int S>
std::vector<FwdChoice> fwd_of() {
  return {{1, 24, fwd_tile<1, 24, S>}, {1, 16, fwd_tile<1, 16, S>}, {2, 12, fwd_tile<2, 12, S>},
          {2, 14, fwd_tile<2, 14, S>}, {3, 8, fwd_tile<3, 8, S>},   {4, 6, fwd_tile<4, 6, S>},
          {4, 5, fwd_tile<4, 5, S>}};
}
template <int S>
std::vector<FilterChoice> filter_of() {
  return {{1, 24, filter_tile<1, 24, S>}, {2, 12, filter_tile<2, 12, S>},
          {2, 13, filter_tile<2, 13, S>}, {3, 8, filter_tile<3, 8, S>},
          {4, 6, filter_tile<4, 6, S>}};
}
#pragma GCC pop_options
}  // namespace avx512

namespace avx2 {
#pragma GCC push_options
#pragma GCC target("avx2,fma")
using Vec = __m256;
constexpr int kW = 8;
inline Vec vzero() { return _mm256_setzero_ps(); }
inline Vec vload(const float* p) { return _mm256_load_ps(p); }
inline void vstore(float* p, Vec v) { _mm256_store_ps(p, v); }
inline Vec vset1(float x) { return _mm256_set1_ps(x); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec vadd(Vec a, Vec b) { return _mm256_add_ps(a, b); }
#include "ops/conv2d_direct_kernels.inc"

// 16 ymm registers.
template <int S>
std::vector<FwdChoice> fwd_of() {
  return {{1, 12, fwd_tile<1, 12, S>}, {1, 8, fwd_tile<1, 8, S>}, {2, 6, fwd_tile<2, 6, S>},
          {2, 5, fwd_tile<2, 5, S>},   {3, 4, fwd_tile<3, 4, S>}, {4, 2, fwd_tile<4, 2, S>}};
}
template <int S>
std::vector<FilterChoice> filter_of() {
  return {{1, 12, filter_tile<1, 12, S>}, {2, 6, filter_tile<2, 6, S>},
          {3, 4, filter_tile<3, 4, S>}, {4, 2, filter_tile<4, 2, S>}};
}
#pragma GCC pop_options
}  // namespace avx2

template <class Choice>
std::vector<Choice> by_stride(int sw, std::vector<Choice> (*s1)(), std::vector<Choice> (*s2)(),
                              std::vector<Choice> (*s4)()) {
  return sw == 1 ? s1() : sw == 2 ? s2() : sw == 4 ? s4() : std::vector<Choice>{};
}

const Isa kAvx512{
    "avx512", avx512::kW,
    [](int sw) { return by_stride(sw, avx512::fwd_of<1>, avx512::fwd_of<2>, avx512::fwd_of<4>); },
    [](int sw) {
      return by_stride(sw, avx512::filter_of<1>, avx512::filter_of<2>, avx512::filter_of<4>);
    }};
const Isa kAvx2{
    "avx2", avx2::kW,
    [](int sw) { return by_stride(sw, avx2::fwd_of<1>, avx2::fwd_of<2>, avx2::fwd_of<4>); },
    [](int sw) {
      return by_stride(sw, avx2::filter_of<1>, avx2::filter_of<2>, avx2::filter_of<4>);
    }};

// The tile with the least estimated time per output row: per step R*NV FMAs plus about half a
// cycle per load, over the tiles that cover OW (padding columns computed and dropped). FV is the
// number of vectors of filters per group.
FwdChoice pick_fwd(const Isa& isa, int sw, int FV, int OW) {
  FwdChoice best{0, 0, nullptr};
  double best_cost = 0;
  for (const FwdChoice& c : isa.fwd(sw)) {
    if (FV % c.nv != 0) continue;
    const double tiles = double(FV / c.nv) * ((OW + c.r - 1) / c.r);
    const double cost = tiles * (c.r * c.nv + 0.5 * (c.r + c.nv));
    if (!best.fn || cost < best_cost) best = c, best_cost = cost;
  }
  return best;
}

// Least estimated time with `workers` splitting the tiles (the sums do not depend on the choice).
FilterChoice pick_filter(const Isa& isa, int sw, int FV, int64_t Kc, int workers) {
  FilterChoice best{0, 0, nullptr};
  double best_cost = 0;
  for (const FilterChoice& c : isa.filter(sw)) {
    if (FV % c.nv != 0) continue;
    const int64_t tiles = (FV / c.nv) * ((Kc + c.nj - 1) / c.nj);
    const double rounds = double((tiles + workers - 1) / workers);
    const double cost = rounds * (c.nj * c.nv + 0.5 * (c.nj + c.nv));
    if (!best.fn || cost < best_cost) best = c, best_cost = cost;
  }
  return best;
}

// The ISA of the tiles, as the SGEMM's choice (CN_SGEMM_ISA caps both), or null where the path is
// off (SSE or portable kernels, other CPUs, CN_CONV_DIRECT=0).
const Isa* direct_isa() {
  static const Isa* isa = []() -> const Isa* {
    const char* e = std::getenv("CN_CONV_DIRECT");
    if (e && std::strcmp(e, "0") == 0) return nullptr;
    if (std::strcmp(sgemm_kernel_name(), "avx512") == 0) return &kAvx512;
    if (std::strcmp(sgemm_kernel_name(), "avx2") == 0) return &kAvx2;
    return nullptr;
  }();
  return isa;
}

}  // namespace

const char* conv2d_direct_isa() { return direct_isa() ? direct_isa()->name : ""; }

bool conv2d_direct_applies(const Conv2dShape& s, bool filter_grad) {
  if (!direct_isa()) return false;
  // The forward pass takes groups of at most 4 channels; the filter gradient one group.
  if (filter_grad && s.G != 1) return false;
  if (s.C / s.G > 4 || (s.F / s.G) % kV != 0 || s.F > 1024) return false;
  if (s.sw != 1 && s.sw != 2 && s.sw != 4) return false;
  if (s.N < 1 || s.OH < 1 || s.OW < 1) return false;
  const int64_t padded = int64_t(s.C) * (s.H + 2 * s.ph) * (s.W + 2 * s.pw);
  const int64_t kc = int64_t(s.C / s.G) * s.KH * s.KW;
  if (padded > (int64_t(8) << 20) || kc > 4096) return false;
  if (kc >= 64) return true;
  // With a short reduction (AlexNet-mini's 25 terms) writing each tile out costs about as much
  // as computing it: at 32 images or more, im2col's batched GEMM (forward) and the batch-in-lanes
  // filter gradient are faster; below, this path is, except for the AVX2 forward pass (its
  // narrower tiles write out more often).
  return s.N < 32 && (filter_grad || direct_isa()->lanes == 16);
}

void conv2d_forward_direct(ThreadPool* pool, const Conv2dShape& s, const float* x,
                           const float* w, const float* b, float* y) {
  const int G = s.G, Cg = s.C / G, Fg = s.F / G;
  const int64_t F = s.F, Kc = int64_t(Cg) * s.KH * s.KW, P = int64_t(s.OH) * s.OW;
  const Isa& isa = *direct_isa();
  const FwdChoice tile = pick_fwd(isa, s.sw, Fg / isa.lanes, s.OW);
  const int chunk = tile.nv * isa.lanes, R = tile.r;
  const int64_t f_chunks = int64_t(G) * (Fg / chunk);
  const Padded g = padded_of(s, int64_t(R) * s.sw + s.KW + kV);
  const int64_t group = std::max<int64_t>(1, std::min<int64_t>(s.N, kGroupFloats / g.floats));
  // The queue thread's scratch, read by every worker: weights as [group][(c, kh, kw)][Fg], and
  // the padded images of a group of images.
  static thread_local Buf wt_buf, x_buf;
  float* wt = wt_buf.get(Kc * F);
  for (int64_t f = 0; f < F; ++f) {
    float* wg = wt + (f / Fg) * Kc * Fg;
    for (int64_t j = 0; j < Kc; ++j) wg[j * Fg + f % Fg] = w[f * Kc + j];
  }
  float* xg = x_buf.get(group * g.floats);
  const int64_t xstride = int64_t(s.C) * s.H * s.W;
  for (int64_t n0 = 0; n0 < s.N; n0 += group) {
    const int64_t cnt = std::min<int64_t>(group, s.N - n0);
    parallel_for(pool, cnt, [&](int64_t i0, int64_t i1, int) {
      for (int64_t i = i0; i < i1; ++i) pad_into(s, g, x + (n0 + i) * xstride, xg + i * g.floats);
    });
    // Units (chunk of filters, image), filter-chunk major: a worker's units share the chunk's
    // weights, which stay in cache across its images.
    parallel_for(pool, f_chunks * cnt, [&](int64_t u0, int64_t u1, int) {
      static thread_local Buf tile_buf;  // this worker's own
      float* out = tile_buf.get(int64_t(R) * chunk);
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t fc = u / cnt, i = u % cnt;
        const int64_t grp = fc / (Fg / chunk), f0 = fc % (Fg / chunk) * chunk;  // within group
        const float* xi = xg + i * g.floats + grp * Cg * g.plane;
        const float* wc = wt + grp * Kc * Fg + f0;
        const int64_t fbase = grp * Fg + f0;  // first filter of the chunk
        float* yn = y + (n0 + i) * F * P;
        for (int oh = 0; oh < s.OH; ++oh) {
          const float* xrow = xi + int64_t(oh) * s.sh * g.wp;
          for (int ow0 = 0; ow0 < s.OW; ow0 += R) {
            tile.fn(xrow + int64_t(ow0) * s.sw, Cg, s.KH, s.KW, g.plane, g.wp, wc, Fg, out);
            const int m = std::min(R, s.OW - ow0);
            for (int fi = 0; fi < chunk; ++fi) {
              const float bias = b ? b[fbase + fi] : 0.0f;
              float* yr = yn + (fbase + fi) * P + int64_t(oh) * s.OW + ow0;
              for (int r = 0; r < m; ++r) yr[r] = out[r * chunk + fi] + bias;
            }
          }
        }
      }
    });
  }
}

void conv2d_backward_filter_direct(ThreadPool* pool, const Conv2dShape& s, const float* x,
                                   const float* dy, float* dw, float* db) {
  const int64_t F = s.F, Kc = int64_t(s.C) * s.KH * s.KW, P = int64_t(s.OH) * s.OW;
  const Isa& isa = *direct_isa();
  const int FV = s.F / isa.lanes;
  const FilterChoice tile = pick_filter(isa, s.sw, FV, Kc, pool_size(pool));
  const int chunk = tile.nv * isa.lanes, NJ = tile.nj;
  const int64_t col_tiles = (Kc + NJ - 1) / NJ, f_chunks = FV / tile.nv;
  const int64_t tiles = col_tiles * f_chunks;
  const Padded g = padded_of(s, int64_t(s.OW) * s.sw + kV);
  const int64_t per_image = g.floats + P * F;
  const int64_t group = std::max<int64_t>(1, std::min<int64_t>(s.N, kGroupFloats / per_image));
  const int rows_per_chunk = int(std::max<int64_t>(1, kChunkPositions / s.OW));
  // The queue thread's scratch, shared by the workers: column offsets (padding columns read
  // column 0 and are dropped), the group's padded images and transposed dy, and the running
  // totals of every tile, [tile][NJ][chunk].
  static thread_local Buf off_buf, group_buf, acc_buf;
  int64_t* xoff = reinterpret_cast<int64_t*>(off_buf.get(2 * col_tiles * NJ));
  for (int64_t j = 0; j < col_tiles * NJ; ++j) {
    const int64_t jj = j < Kc ? j : 0;
    const int64_t c = jj / (s.KH * s.KW), kh = jj / s.KW % s.KH, kw = jj % s.KW;
    xoff[j] = c * g.plane + kh * g.wp + kw;
  }
  float* gbuf = group_buf.get(group * per_image);
  float* acc = acc_buf.get(tiles * NJ * chunk);
  const int64_t xstride = int64_t(s.C) * s.H * s.W;
  for (int64_t n0 = 0; n0 < s.N; n0 += group) {
    const int64_t cnt = std::min<int64_t>(group, s.N - n0);
    // Prepare: pad x, and transpose dy [F][P] -> dyt [P][F] in 16 x 16 blocks.
    parallel_for(pool, cnt, [&](int64_t i0, int64_t i1, int) {
      for (int64_t i = i0; i < i1; ++i) {
        float* xp = gbuf + i * per_image;
        pad_into(s, g, x + (n0 + i) * xstride, xp);
        transpose_dy(dy + (n0 + i) * F * P, F, P, xp + g.floats, isa.lanes == 16);
      }
    });
    // Each worker takes its own tiles through the group's images and rows, in order; a chunk of
    // rows is read by all of the worker's tiles while it is in cache.
    parallel_for(pool, tiles, [&](int64_t t0, int64_t t1, int) {
      for (int64_t i = 0; i < cnt; ++i) {
        const float* xp = gbuf + i * per_image;
        for (int oh = 0; oh < s.OH; oh += rows_per_chunk) {
          const int nrows = std::min(rows_per_chunk, s.OH - oh);
          const bool add = !(n0 == 0 && i == 0 && oh == 0);
          const float* xrow = xp + int64_t(oh) * s.sh * g.wp;
          const float* dyt = xp + g.floats + int64_t(oh) * s.OW * F;
          for (int64_t t = t0; t < t1; ++t) {
            const int64_t ct = t % col_tiles, fc = t / col_tiles;
            tile.fn(xrow, int64_t(s.sh) * g.wp, xoff + ct * NJ, dyt + fc * chunk, F, s.OW, nrows,
                    acc + t * NJ * chunk, add);
          }
        }
      }
    });
  }
  // dw[f][j] from the tiles' [NJ][chunk] totals.
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t ct = t % col_tiles, fc = t / col_tiles;
    const float* out = acc + t * NJ * chunk;
    for (int jl = 0; jl < NJ; ++jl) {
      const int64_t j = ct * NJ + jl;
      if (j >= Kc) break;
      for (int fi = 0; fi < chunk; ++fi) dw[(fc * chunk + fi) * Kc + j] = out[jl * chunk + fi];
    }
  }
  if (db) {
    parallel_for(pool, F, [&](int64_t f0, int64_t f1, int) {
      for (int64_t f = f0; f < f1; ++f) {
        float sum = 0.0f;
        for (int64_t n = 0; n < s.N; ++n) {
          const float* r = dy + (n * F + f) * P;
          float part = 0.0f;
          for (int64_t p = 0; p < P; ++p) part += r[p];
          sum += part;
        }
        db[f] = sum;
      }
    });
  }
}

#else  // no x86: the path never applies

bool conv2d_direct_applies(const Conv2dShape&, bool) { return false; }
const char* conv2d_direct_isa() { return ""; }
void conv2d_forward_direct(ThreadPool*, const Conv2dShape&, const float*, const float*,
                           const float*, float*) {}
void conv2d_backward_filter_direct(ThreadPool*, const Conv2dShape&, const float*, const float*,
                                   float*, float*) {}

#endif

}  // namespace cn
