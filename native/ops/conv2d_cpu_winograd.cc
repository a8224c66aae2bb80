// conv2d on the CPU by Winograd's minimal filtering, F(2x2, 3x3): each 2x2 block of outputs
// ("tile") of a 3x3 stride-1 convolution from 16 multiplications per channel pair instead of 36
// (Lavin and Gray, 2015). See conv2d_winograd.h for when it runs and conv2d.h for the contract.
//
// For one output channel f, one input channel c and one tile, with d the 4x4 input patch under
// the tile (zero outside the image) and k the 3x3 filter:
//   V = B^T d B          (input transform, 4x4)
//   U = G k G^T          (filter transform, 4x4)
//   Y = A^T [sum over c of U .* V] A     (output transform, 2x2)
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
// The sum over c, for each of the 16 points xi of the 4x4 transform domain, is a GEMM:
//   M_xi [Fg, tiles] = U_xi [Fg, Cg] * V_xi [Cg, tiles]
// so the work is 16 GEMMs with K = Cg (sgemm's micro-kernels, any instruction set) plus the
// transforms, which are O(C*H*W) and O(F*OH*OW) additions.
//
// Forward layout: tiles are numbered over (image, tile row, tile column) of the whole batch. The
// batch's tiles are split into contiguous ranges, one per pool worker, and each worker runs its
// range in chunks of kTiles tiles: it transforms the chunk's inputs into V [16][chunk][Cg]
// (thread_local, reused), runs the 16 GEMMs into M [16][Fg][chunk] and transforms M into y, per
// group. The input is first copied channels-last, so the input transform runs across channels
// in the vector lanes. The filters are transformed once per call (all workers share them)
// straight into sgemm's packed A panels (sgemm_layout_a, PackedA::at), so no GEMM packs A. Each
// output element is one chunk's GEMM sum in a fixed order, so the result does not depend on the
// thread count.
//
// Backward data of a 3x3 stride-1 convolution is a forward one of dy with the filters flipped
// and input and output channels swapped, padded by 2 - ph (2 - pw): the same code runs it.
//
// The filter gradient is F(3x3, 2x2), at the end of this file: the 3x3 filter is the output and
// each 2x2 tile of dy the "filter"; its 16 GEMMs reduce over the batch's tiles.
//
// 5x5 layers (on request, see conv2d_winograd_applies) run the same code with F(2x2, 5x5): 6x6
// patches and transforms, 36 GEMMs (Fmt<5> below holds its matrices). The code is templated on
// the filter size R; Fmt<R> holds the 1-D transforms, applied along both axes.
#include "ops/conv2d_winograd.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "ops/conv2d_blocked.h"
#include "ops/cpu_scratch.h"
#include "ops/gemm.h"

namespace cn {
namespace {

constexpr int kTiles = 64;  // tiles per chunk: the GEMMs' N (two AVX-512 column panels)

// The filter gradient's GEMMs reduce over at most this many tiles at a time, which bounds its
// transformed tiles to 16 x (Cg + Fg) x 512 floats (14 MiB for AlexNet's conv3).
constexpr int64_t kFilterTiles = 512;

// The transform points' arrays (16, or 36 for 5x5) are laid out one after another with this
// stride: their size rounded up to 16 floats, plus 16, so the streams a transform reads or
// writes at once do not all fall into the same cache sets (sizes are often multiples of 4 KiB).
inline int64_t xi_stride_of(int64_t floats) { return (floats + 15) / 16 * 16 + 16; }

// -1: by shape; 0: off; 1: every computable shape.
int env_mode() {
  const char* e = std::getenv("CN_CONV_WINOGRAD");
  if (e == nullptr || *e == '\0') return -1;
  return std::strcmp(e, "0") == 0 ? 0 : 1;
}

bool computable(const Conv2dShape& s) {
  const int r = s.KH;
  return (r == 3 || r == 5) && s.KW == r && s.sh == 1 && s.sw == 1 && s.ph >= 0 &&
         s.ph <= r - 1 && s.pw >= 0 && s.pw <= r - 1 && s.OH > 0 && s.OW > 0 && s.C > 0 &&
         s.F > 0;
}

// The 1-D transforms of F(2, R), applied along both axes. A = R + 1 points; the 2-D transform
// has A * A of them. Each function maps one vector (strided: element i at p[i * stride]).
template <int R>
struct Fmt;

// F(2, 3): points 0, 1, -1, infinity.
template <>
struct Fmt<3> {
  static constexpr int A = 4;
  // u = G k
  static inline void filter(const float* k, int ks, float* u, int us) {
    const float a = k[0], b = k[ks], c = k[2 * ks];
    u[0] = a;
    u[us] = 0.5f * (a + b + c);
    u[2 * us] = 0.5f * (a - b + c);
    u[3 * us] = c;
  }
  // v = B^T d
  static inline void input(const float* d, int ds, float* v, int vs) {
    const float d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds];
    v[0] = d0 - d2;
    v[vs] = d1 + d2;
    v[2 * vs] = d2 - d1;
    v[3 * vs] = d1 - d3;
  }
  // y = A^T m
  static inline void output(const float* m, int ms, float* y, int ys) {
    y[0] = m[0] + m[ms] + m[2 * ms];
    y[ys] = m[ms] - m[2 * ms] - m[3 * ms];
  }
};

// F(2, 5): points 0, 1, -1, 2, -2, infinity (the input transform is that of F(4, 3)).
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//   G   = [1/4 0 0 0 0; -1/6 -1/6 -1/6 -1/6 -1/6; -1/6 1/6 -1/6 1/6 -1/6;
//          1/24 1/12 1/6 1/3 2/3; 1/24 -1/12 1/6 -1/3 2/3; 0 0 0 0 1]
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 1]
template <>
struct Fmt<5> {
  static constexpr int A = 6;
  static inline void filter(const float* k, int ks, float* u, int us) {
    const float k0 = k[0], k1 = k[ks], k2 = k[2 * ks], k3 = k[3 * ks], k4 = k[4 * ks];
    const float even = k0 + k2 + k4, odd = k1 + k3;
    const float e4 = k0 * (1.0f / 24) + k2 * (1.0f / 6) + k4 * (2.0f / 3);
    const float o4 = k1 * (1.0f / 12) + k3 * (1.0f / 3);
    u[0] = 0.25f * k0;
    u[us] = -(even + odd) * (1.0f / 6);
    u[2 * us] = -(even - odd) * (1.0f / 6);
    u[3 * us] = e4 + o4;
    u[4 * us] = e4 - o4;
    u[5 * us] = k4;
  }
  static inline void input(const float* d, int ds, float* v, int vs) {
    const float d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds],
                d5 = d[5 * ds];
    const float a = d4 - 4.0f * d2, b = d3 - 4.0f * d1;  // rows 1, 2
    const float c = d4 - d2, e = 2.0f * (d3 - d1);       // rows 3, 4
    v[0] = 4.0f * d0 - 5.0f * d2 + d4;
    v[vs] = a + b;
    v[2 * vs] = a - b;
    v[3 * vs] = c + e;
    v[4 * vs] = c - e;
    v[5 * vs] = 4.0f * d1 - 5.0f * d3 + d5;
  }
  static inline void output(const float* m, int ms, float* y, int ys) {
    const float m1 = m[ms], m2 = m[2 * ms], m3 = m[3 * ms], m4 = m[4 * ms];
    y[0] = m[0] + m1 + m2 + m3 + m4;
    y[ys] = m1 - m2 + 2.0f * (m3 - m4) + m[5 * ms];
  }
};

// Transforms filters and writes U = G k G^T straight into the packed GEMM operands of group g,
// packs[P g + xi] (P = A * A points; all share one layout). Operand row i, column q is filter
// (f, c) = (i, q) forward and (q, i) backward data (`flip`: the kernel flipped,
// k[R * R - 1 - tap], and the operand transposed). One micro-panel of mr rows at a time, whose rows are contiguous in the
// packed layout: the arithmetic runs across them in the vector lanes and each store is mr
// contiguous floats.
template <int R>
void transform_panel(const Conv2dShape& s, const float* w, bool flip, int g, int i0,
                     PackedA* packs) {
  using T = Fmt<R>;
  constexpr int A = T::A, P = A * A, RR = R * R;
  constexpr int L = 8;   // >= every micro-kernel's mr
  constexpr int Q = 16;  // columns transformed before they are stored, one operand at a time
  const int Cg = s.C / s.G, Fg = s.F / s.G;
  const int M = packs[0].M, K = packs[0].K, mr = packs[0].mr;
  const int rows = std::min(mr, M - i0);
  const float* wg = w + int64_t(g) * Fg * Cg * RR;
  alignas(64) float v[P][Q][L];  // the P operands' values for Q columns (16 KiB for R = 3)
  for (int q0 = 0; q0 < K; q0 += Q) {
    const int nq = std::min(Q, K - q0);
    for (int dq = 0; dq < nq; ++dq) {
      const int q = q0 + dq;
      float k[RR][L], t[A][R][L];
      for (int l = 0; l < L; ++l) {
        const int i = i0 + std::min(l, rows - 1);  // lanes past the last row repeat it, unused
        const float* src = wg + (flip ? int64_t(q) * Cg + i : int64_t(i) * Cg + q) * RR;
        for (int tap = 0; tap < RR; ++tap) k[tap][l] = src[flip ? RR - 1 - tap : tap];
      }
      for (int j = 0; j < R; ++j)  // columns: t = G k
        for (int l = 0; l < L; ++l) T::filter(&k[j][l], R * L, &t[0][j][l], R * L);
      for (int r = 0; r < A; ++r)  // rows: v = t G^T
        for (int l = 0; l < L; ++l) T::filter(&t[r][0][l], L, &v[A * r][dq][l], Q * L);
    }
    // One operand at a time: P store streams at once would fight over the same cache sets.
    int64_t at[Q];
    for (int dq = 0; dq < nq; ++dq) at[dq] = packs[0].at(i0, q0 + dq);
    for (int xi = 0; xi < P; ++xi) {
      float* o = packs[xi].data.data();
      for (int dq = 0; dq < nq; ++dq)
        for (int l = 0; l < rows; ++l) o[at[dq] + l] = v[xi][dq][l];
    }
  }
}

// The A * A GEMM A operands of every group: forward, U_xi of group g is the [Fg, Cg] matrix of
// the transformed filters; backward data (`flip`), the flipped filters' transform, transposed
// ([Cg, Fg]: the equivalent forward's filters).
template <int R>
void prepare_filters(ThreadPool* pool, const Conv2dShape& s, const float* w, bool flip,
                     std::vector<PackedA>& packs) {
  constexpr int P = Fmt<R>::A * Fmt<R>::A;
  const int Cg = s.C / s.G, Fg = s.F / s.G;
  packs.resize(size_t(P) * s.G);
  for (PackedA& p : packs) sgemm_layout_a(flip ? Cg : Fg, flip ? Fg : Cg, &p);
  const int mr = packs[0].mr, M = packs[0].M;
  const int panels = (M + mr - 1) / mr;
  parallel_for(pool, int64_t(s.G) * panels, [&](int64_t b, int64_t e, int) {
    for (int64_t j = b; j < e; ++j) {
      const int g = int(j / panels);
      transform_panel<R>(s, w, flip, g, int(j % panels) * mr, &packs[size_t(g) * P]);
    }
  });
}

// xt [N][H][W][C] = x [N][C][H][W]: channels innermost, so the input transform runs across
// channels in the vector lanes. Blocks of 16 channels x 16 cells keep both sides in cache.
void to_channels_last(ThreadPool* pool, const Conv2dShape& s, const float* x, float* xt) {
  const int64_t hw = int64_t(s.H) * s.W, C = s.C;
  const int64_t cb = (C + 15) / 16;
  parallel_for(pool, s.N * cb, [&](int64_t b, int64_t e, int) {
    for (int64_t job = b; job < e; ++job) {
      const int64_t n = job / cb, c0 = job % cb * 16, c1 = std::min(C, c0 + 16);
      const float* xn = x + n * C * hw;
      float* tn = xt + n * C * hw;
      float blk[16][16];  // [p][c]: rows read contiguously, written as contiguous runs
      for (int64_t p0 = 0; p0 < hw; p0 += 16) {
        const int64_t np = std::min<int64_t>(16, hw - p0), nc = c1 - c0;
        for (int64_t c = 0; c < nc; ++c)
          for (int64_t p = 0; p < np; ++p) blk[p][c] = xn[(c0 + c) * hw + p0 + p];
        for (int64_t p = 0; p < np; ++p)
          for (int64_t c = 0; c < nc; ++c) tn[(p0 + p) * C + c0 + c] = blk[p][c];
      }
    }
  });
}

// dst[0 .. n) = src[0 .. n): the run lengths of the micro-kernels' panels as fixed-size copies
// (a few vector moves), which a variable-length memcpy call would cost several times over.
inline void copy_run(float* dst, const float* src, int n) {
  switch (n) {
    case 32: std::memcpy(dst, src, 32 * sizeof(float)); break;
    case 16: std::memcpy(dst, src, 16 * sizeof(float)); break;
    case 8: std::memcpy(dst, src, 8 * sizeof(float)); break;
    case 6: std::memcpy(dst, src, 6 * sizeof(float)); break;
    default:
      for (int i = 0; i < n; ++i) dst[i] = src[i];
  }
}

// Where a chunk's tiles lie: the image, and the top-left corner (y0, x0) of the 4x4 input patch.
struct TileAt {
  int64_t image;
  int y0, x0;
};

void locate_tiles(const Conv2dShape& s, int64_t t0, int nt, TileAt* at) {
  const int TW = (s.OW + 1) / 2;
  const int64_t per_image = int64_t((s.OH + 1) / 2) * TW;
  for (int j = 0; j < nt; ++j) {
    const int64_t t = t0 + j;
    const int r = int(t % per_image);
    at[j].image = t / per_image;
    at[j].y0 = 2 * (r / TW) - s.ph;
    at[j].x0 = 2 * (r % TW) - s.pw;
  }
}

// out[xi * xi_stride + c] = (B^T d B)[xi] for one tile and the Cg input channels from c0 on,
// from the channels-last input; cells outside the image read a row of zeros.
template <int R>
void input_tile(const Conv2dShape& s, const float* xt, const float* zeros, int64_t c0, int Cg,
                const TileAt& a, float* o, int64_t xi_stride) {
  using T = Fmt<R>;
  constexpr int A = T::A;
  const float* d[A * A];
  for (int i = 0; i < A; ++i)
    for (int k = 0; k < A; ++k) {
      const int yy = a.y0 + i, xx = a.x0 + k;
      d[A * i + k] = (yy >= 0 && yy < s.H && xx >= 0 && xx < s.W)
                         ? xt + ((a.image * s.H + yy) * s.W + xx) * s.C + c0
                         : zeros;
    }
#pragma GCC ivdep
  for (int c = 0; c < Cg; ++c) {
    float p[A][A], t[A][A], v[A][A];
    for (int i = 0; i < A; ++i)
      for (int k = 0; k < A; ++k) p[i][k] = d[A * i + k][c];
    for (int k = 0; k < A; ++k) T::input(&p[0][k], A, &t[0][k], A);  // columns
    for (int i = 0; i < A; ++i) T::input(&t[i][0], 1, &v[i][0], 1);  // rows
    for (int i = 0; i < A; ++i)
      for (int k = 0; k < A; ++k) o[(A * i + k) * xi_stride + c] = v[i][k];
  }
}

// V[xi * xi_stride + j * Cg + c] for the chunk's tiles j.
template <int R>
void input_transform(const Conv2dShape& s, const float* xt, const float* zeros, int g, int Cg,
                     const TileAt* at, int nt, float* V, int64_t xi_stride) {
  for (int j = 0; j < nt; ++j)
    input_tile<R>(s, xt, zeros, int64_t(g) * Cg, Cg, at[j], V + int64_t(j) * Cg, xi_stride);
}

// y[image][g*Fg + f][tile's 2x2] = A^T M A (+ bias), for the chunk's tiles: across tiles in the
// vector lanes into `tmp` [4][nt], then into y; cells past the output's edge (odd OH or OW) are
// not written.
template <int R>
void output_transform(const Conv2dShape& s, const float* M, int g, int Fg, const TileAt* at,
                      int nt, const float* bias, float* tmp, float* y) {
  using T = Fmt<R>;
  constexpr int A = T::A;
  const int OH = s.OH, OW = s.OW;
  const int64_t plane = int64_t(OH) * OW, xi_stride = xi_stride_of(int64_t(Fg) * nt);
  for (int f = 0; f < Fg; ++f) {
    const float bf = bias ? bias[g * Fg + f] : 0.0f;
    const float* mf = M + int64_t(f) * nt;
#pragma GCC ivdep
    for (int j = 0; j < nt; ++j) {
      float m[A][A], t[2][A], o[2][2];
      for (int i = 0; i < A; ++i)
        for (int k = 0; k < A; ++k) m[i][k] = mf[(A * i + k) * xi_stride + j];
      for (int k = 0; k < A; ++k) T::output(&m[0][k], A, &t[0][k], A);  // columns
      for (int i = 0; i < 2; ++i) T::output(&t[i][0], 1, &o[i][0], 1);  // rows
      for (int q = 0; q < 4; ++q) tmp[q * nt + j] = o[q / 2][q % 2] + bf;
    }
    for (int j = 0; j < nt; ++j) {
      const TileAt& a = at[j];
      const int oy = a.y0 + s.ph, ox = a.x0 + s.pw;
      float* yc = y + (a.image * s.F + int64_t(g) * Fg + f) * plane + int64_t(oy) * OW + ox;
      const bool right = ox + 1 < OW;
      yc[0] = tmp[j];
      if (right) yc[1] = tmp[nt + j];
      if (oy + 1 < OH) {
        yc[OW] = tmp[2 * nt + j];
        if (right) yc[OW + 1] = tmp[3 * nt + j];
      }
    }
  }
}

// The forward convolution of shape s with filters already transformed and packed.
template <int R>
void run(ThreadPool* pool, const Conv2dShape& s, const float* x, const std::vector<PackedA>& U,
         const float* bias, float* y) {
  constexpr int P = Fmt<R>::A * Fmt<R>::A;
  const int Cg = s.C / s.G, Fg = s.F / s.G;
  const int64_t tiles = int64_t(s.N) * ((s.OH + 1) / 2) * ((s.OW + 1) / 2);
  static thread_local AlignedScratch xt_buf, zero_buf;  // the calling (queue) thread's
  float* xt = xt_buf.get(size_t(s.N) * s.C * s.H * s.W);
  float* zeros = zero_buf.get(Cg);
  std::fill(zeros, zeros + Cg, 0.0f);
  to_channels_last(pool, s, x, xt);
  parallel_for(pool, tiles, [&](int64_t t0, int64_t t1, int) {
    static thread_local AlignedScratch vbuf, mbuf, tbuf;
    static thread_local std::vector<TileAt> at_buf;
    at_buf.resize(kTiles);
    TileAt* at = at_buf.data();
    float* V = vbuf.get(P * xi_stride_of(int64_t(Cg) * kTiles));
    float* M = mbuf.get(P * xi_stride_of(int64_t(Fg) * kTiles));
    float* tmp = tbuf.get(4 * kTiles);
    for (int64_t c0 = t0; c0 < t1; c0 += kTiles) {
      const int nt = int(std::min<int64_t>(kTiles, t1 - c0));
      locate_tiles(s, c0, nt, at);
      for (int g = 0; g < s.G; ++g) {
        const int64_t vs = xi_stride_of(int64_t(nt) * Cg), ms = xi_stride_of(int64_t(Fg) * nt);
        input_transform<R>(s, xt, zeros, g, Cg, at, nt, V, vs);
        for (int xi = 0; xi < P; ++xi)
          sgemm_packed_a(U[size_t(g) * P + xi], true, nt, V + xi * vs, Cg, 0.0f, M + xi * ms,
                         nt);
        output_transform<R>(s, M, g, Fg, at, nt, bias, tmp, y);
      }
    }
  });
}

// out[xi * xi_stride + f] = (G' g G'^T)[xi] for one tile and the Fg filters from f0 on, where g is
// the tile's 2x2 block of dy (zero past the output's edge) and G' = [1 0; 1/2 1/2; 1/2 -1/2;
// 0 -1]: the "filter" transform of F(3x3, 2x2), whose input transform is the forward's B^T d B
// (G' row 3 is negated to match that B's sign).
void dy_tile(const Conv2dShape& s, const float* dyt, const float* zeros, int64_t f0, int Fg,
             const TileAt& a, float* o, int64_t xi_stride) {
  const int oy = a.y0 + s.ph, ox = a.x0 + s.pw;
  const float* q[4];
  for (int i = 0; i < 2; ++i)
    for (int k = 0; k < 2; ++k)
      q[2 * i + k] = (oy + i < s.OH && ox + k < s.OW)
                         ? dyt + ((a.image * s.OH + oy + i) * s.OW + ox + k) * s.F + f0
                         : zeros;
#pragma GCC ivdep
  for (int f = 0; f < Fg; ++f) {
    const float a0 = q[0][f], b0 = q[1][f], c0 = q[2][f], d0 = q[3][f];
    // G' g: rows (a, b), ((a+c)/2, (b+d)/2), ((a-c)/2, (b-d)/2), (-c, -d)
    const float r[4][2] = {{a0, b0},
                           {0.5f * (a0 + c0), 0.5f * (b0 + d0)},
                           {0.5f * (a0 - c0), 0.5f * (b0 - d0)},
                           {-c0, -d0}};
    for (int i = 0; i < 4; ++i) {
      const float p = r[i][0], t = r[i][1];
      o[(4 * i + 0) * xi_stride + f] = p;
      o[(4 * i + 1) * xi_stride + f] = 0.5f * (p + t);
      o[(4 * i + 2) * xi_stride + f] = 0.5f * (p - t);
      o[(4 * i + 3) * xi_stride + f] = -t;
    }
  }
}

}  // namespace

bool conv2d_winograd_applies(const Conv2dShape& s, bool filter_grad) {
  const int mode = env_mode();
  if (mode == 0 || !computable(s)) return false;
  if (filter_grad && s.KH != 3) return false;  // F(5x5, 2x2) is not written
  if (mode == 1) return true;
  const int Cg = s.C / s.G, Fg = s.F / s.G;
  const int64_t tiles = int64_t(s.N) * ((s.OH + 1) / 2) * ((s.OW + 1) / 2);
  // All thresholds below were measured on AlexNet's and AlexNet-mini's layers with 2 threads
  // (AVX-512), against the path each shape takes otherwise.
  if (s.KH == 5) {
    // F(2x2, 5x5) rounds about eight times more than im2col (its transforms multiply by up to 5
    // and divide by 24): on AlexNet's conv2 with inputs in [-1, 1], elements differ from the
    // double-precision result by up to 1.4e-4 relative (im2col: 1.7e-5; F(2x2, 3x3) on conv3:
    // 3.6e-5, im2col 1.8e-5). That is a precision the caller chooses, so it runs only with
    // CN_CONV_WINOGRAD_5X5=1, for the shapes where it measured faster: AlexNet's conv2 (48
    // channels, 128 filters per group) ran 1.3-1.5x im2col at batch 8 and 1.16-1.27x the
    // batch-in-lanes path at batch 64; AlexNet-mini's at width 1 (32 and 64) 1.1-1.2x im2col at
    // batch 8 but 0.8-0.9x the batch-in-lanes path at batch 128, and at width 0.5 (16 and 32)
    // 0.5-1.15x.
    const char* opt = std::getenv("CN_CONV_WINOGRAD_5X5");
    if (opt == nullptr || std::strcmp(opt, "1") != 0) return false;
    if (Fg < 64 || Cg < 32 || tiles < 256) return false;
    return Cg >= 48 || !conv2d_blocked_applies(s);
  }
  // With fewer than 64 channels or filters per group the transforms cost what the saved
  // multiplications gain (AlexNet-mini's conv4 and conv5 at width 0.5: 0.5-1.0x).
  if (Cg < 64 || Fg < 64) return false;
  if (filter_grad) {
    // The filter gradient's GEMMs have filters x channels as their output, whatever the batch:
    // 1.2-1.75x im2col from 72 tiles up (AlexNet-mini at batch 8, AlexNet at batch 2), even
    // with one image of AlexNet's 13x13 (49 tiles). Against the batch-in-lanes path (large
    // batches) only with wide layers: AlexNet-mini at batch 128 ran 0.74-0.75x with 64-96
    // channels and filters, and 1.08x with 128 and 192; AlexNet at batch 64 1.0-1.1x.
    if (tiles < 64) return false;
    if (conv2d_blocked_applies(s, true)) return Cg >= 128 && Fg >= 128;
    return true;
  }
  // The forward pass and the data gradient transform all the filters on every call, which a
  // few tiles do not pay back: AlexNet's conv3 with 1-4 images (49-196 tiles) ran 0.6-0.9x
  // im2col and AlexNet-mini's width-1 layers at batch 8 (72 tiles) 0.65-1.3x, while from 288
  // tiles up (AlexNet at batch 8, AlexNet-mini at batch 32 and 128) they ran 1.2-2.5x.
  return tiles >= 256;
}

void conv2d_forward_winograd(ThreadPool* pool, const Conv2dShape& s, const float* x,
                             const float* w, const float* b, float* y) {
  static thread_local std::vector<PackedA> packs;
  if (s.KH == 5) {
    prepare_filters<5>(pool, s, w, /*flip=*/false, packs);
    run<5>(pool, s, x, packs, b, y);
  } else {
    prepare_filters<3>(pool, s, w, /*flip=*/false, packs);
    run<3>(pool, s, x, packs, b, y);
  }
}

void conv2d_backward_data_winograd(ThreadPool* pool, const Conv2dShape& s, const float* dy,
                                   const float* w, float* dx) {
  static thread_local std::vector<PackedA> packs;
  Conv2dShape t = s;  // the equivalent forward: dy -> dx
  t.C = s.F;
  t.H = s.OH;
  t.W = s.OW;
  t.F = s.C;
  t.ph = s.KH - 1 - s.ph;
  t.pw = s.KW - 1 - s.pw;
  t.OH = s.H;
  t.OW = s.W;
  if (s.KH == 5) {
    prepare_filters<5>(pool, s, w, /*flip=*/true, packs);
    run<5>(pool, t, dy, packs, nullptr, dx);
  } else {
    prepare_filters<3>(pool, s, w, /*flip=*/true, packs);
    run<3>(pool, t, dy, packs, nullptr, dx);
  }
}

// The filter gradient by F(3x3, 2x2): for each 2x2 tile of dy and the 4x4 input patch under it,
//   dw[f][c] += A'^T [(G' dy_tile G'^T) .* (B^T d B)] A',   A'^T = [1 1 1 0; 0 1 -1 0; 0 1 1 1]
// and the sum over the batch's tiles, for each of the 16 points, is a GEMM whose reduction runs
// over the tiles: M_xi [Fg, Cg] = Y_xi [Fg, T] * V_xi [T, Cg]. Every tile of the batch is
// transformed first (split over the pool by tiles), straight into the GEMM's packed panels
// (sgemm_layout_a / _b: Y's rows f are mr floats apart, V's columns c contiguous), so no GEMM
// packs anything; then the 16 x G GEMMs are split over the pool, one whole GEMM per worker, and
// transformed back. Each element is one GEMM's sum in a fixed order, so the result does not
// depend on the thread count. db sums dy per filter over images and positions in order.
void conv2d_backward_filter_winograd(ThreadPool* pool, const Conv2dShape& s, const float* x,
                                     const float* dy, float* dw, float* db) {
  const int Cg = s.C / s.G, Fg = s.F / s.G;
  const int64_t tiles = int64_t(s.N) * ((s.OH + 1) / 2) * ((s.OW + 1) / 2);
  PackedA la;
  PackedB lb;
  const int64_t chunk = std::min<int64_t>(tiles, kFilterTiles);
  sgemm_layout_a(Fg, int(chunk), &la, /*allocate=*/false);
  sgemm_layout_b(int(chunk), Cg, &lb);
  const int64_t ys = xi_stride_of(la.size()), vs = xi_stride_of(lb.size());
  const int64_t ms = xi_stride_of(int64_t(Fg) * Cg);
  static thread_local AlignedScratch xt_buf, dyt_buf, zero_buf, v_buf, y_buf, m_buf;
  float* xt = xt_buf.get(size_t(s.N) * s.C * s.H * s.W);
  float* dyt = dyt_buf.get(size_t(s.N) * s.F * s.OH * s.OW);
  float* zeros = zero_buf.get(std::max(Cg, Fg));
  std::fill(zeros, zeros + std::max(Cg, Fg), 0.0f);
  float* V = v_buf.get(size_t(s.G) * 16 * vs);
  float* Y = y_buf.get(size_t(s.G) * 16 * ys);
  float* M = m_buf.get(size_t(s.G) * 16 * ms);
  Conv2dShape d = s;  // dy as an image: F channels of OH x OW
  d.C = s.F;
  d.H = s.OH;
  d.W = s.OW;
  to_channels_last(pool, s, x, xt);
  to_channels_last(pool, d, dy, dyt);
  // The batch's tiles in chunks of at most kFilterTiles (the GEMMs' K), in order: the first
  // chunk's GEMMs overwrite M, the others add to it.
  for (int64_t k0 = 0; k0 < tiles; k0 += chunk) {
    const int kn = int(std::min(chunk, tiles - k0));
    if (kn != la.K) {  // the last, shorter chunk
      sgemm_layout_a(Fg, kn, &la, /*allocate=*/false);
      sgemm_layout_b(kn, Cg, &lb);
    }
    const int nr = lb.nr, mr = la.mr;
    parallel_for(pool, kn, [&](int64_t t0, int64_t t1, int) {
      static thread_local std::vector<TileAt> at_buf;
      static thread_local AlignedScratch tile_buf;
      at_buf.resize(kTiles);
      // One tile's 16 transformed rows of all channels and all filters of a group, then copied
      // into the panels (runs of nr channels of V's row t, of mr filters of Y's column t).
      const int64_t tin = xi_stride_of(Cg), tdy = xi_stride_of(Fg);
      float* tb_in = tile_buf.get(16 * (tin + tdy));
      float* tb_dy = tb_in + 16 * tin;
      for (int64_t c0 = t0; c0 < t1; c0 += kTiles) {
        const int nt = int(std::min<int64_t>(kTiles, t1 - c0));
        locate_tiles(s, k0 + c0, nt, at_buf.data());
        for (int j = 0; j < nt; ++j) {
          const int t = int(c0 + j);  // the GEMMs' k
          for (int g = 0; g < s.G; ++g) {
            input_tile<3>(s, xt, zeros, int64_t(g) * Cg, Cg, at_buf[j], tb_in, tin);
            dy_tile(s, dyt, zeros, int64_t(g) * Fg, Fg, at_buf[j], tb_dy, tdy);
            for (int c = 0; c < Cg; c += nr) {
              float* dst = V + g * 16 * vs + lb.at(t, c);
              const int n = std::min(nr, Cg - c);
              for (int xi = 0; xi < 16; ++xi) copy_run(dst + xi * vs, tb_in + xi * tin + c, n);
            }
            for (int f = 0; f < Fg; f += mr) {
              float* dst = Y + g * 16 * ys + la.at(f, t);
              const int n = std::min(mr, Fg - f);
              for (int xi = 0; xi < 16; ++xi) copy_run(dst + xi * ys, tb_dy + xi * tdy + f, n);
            }
          }
        }
      }
    });
    parallel_for(pool, int64_t(s.G) * 16, [&](int64_t b, int64_t e, int) {
      for (int64_t j = b; j < e; ++j)
        sgemm_packed_ab(la, Y + j * ys, lb, V + j * vs, k0 == 0 ? 0.0f : 1.0f, M + j * ms, Cg);
    });
  }
  // dw[f][c][3x3] = A'^T M A', across c in the vector lanes.
  parallel_for(pool, int64_t(s.G) * Fg, [&](int64_t b, int64_t e, int) {
    for (int64_t gf = b; gf < e; ++gf) {
      const int64_t g = gf / Fg, f = gf % Fg;
      float* out = dw + gf * Cg * 9;
      const float* m = M + g * 16 * ms + f * Cg;
#pragma GCC ivdep
      for (int c = 0; c < Cg; ++c) {
        float u[3][4];
        for (int k = 0; k < 4; ++k) {
          const float a = m[k * ms + c], p = m[(4 + k) * ms + c];
          const float q = m[(8 + k) * ms + c], r = m[(12 + k) * ms + c];
          u[0][k] = a + p + q;
          u[1][k] = p - q;
          u[2][k] = p + q + r;
        }
        for (int i = 0; i < 3; ++i) {
          out[c * 9 + 3 * i + 0] = u[i][0] + u[i][1] + u[i][2];
          out[c * 9 + 3 * i + 1] = u[i][1] - u[i][2];
          out[c * 9 + 3 * i + 2] = u[i][1] + u[i][2] + u[i][3];
        }
      }
    }
  });
  if (db) {
    const int64_t P = int64_t(s.OH) * s.OW;
    parallel_for(pool, s.F, [&](int64_t f0, int64_t f1, int) {
      for (int64_t f = f0; f < f1; ++f) {
        float acc = 0.0f;
        for (int n = 0; n < s.N; ++n) {
          const float* r = dy + (int64_t(n) * s.F + f) * P;
          float part = 0.0f;
          for (int64_t p = 0; p < P; ++p) part += r[p];
          acc += part;
        }
        db[f] = acc;
      }
    });
  }
}

}  // namespace cn
