// conv2d on the CPU (see conv2d.h for the contract): im2col / col2im around sgemm.
//
// For one group g of a chunk of `nb` images, with Cg = C/G, Fg = F/G, P = OH*OW, Kc = Cg*KH*KW:
//   col   [Kc, nb*P]   im2col of the images' group-g channels, image j in columns [j*P, (j+1)*P)
//   forward          Y_g [Fg, nb*P]  = W_g [Fg, Kc] * col
//   backward data    col             = W_g^T * dY_g [Fg, nb*P], then col2im into dx
//   backward filter  dW_g [Fg, Kc]  += dY_g * col^T
// Putting several images side by side makes the GEMM's P dimension (N, or K for the filter
// gradient) long enough that the micro-kernel's column panels are full and the packed weights
// are reused across more columns: OH*OW is only 36 for the deeper AlexNet-mini layers. Chunks
// aim at kTargetCols columns (fewer for huge Kc, so col stays cache-sized); targets from 96 to
// 768 measured the same within noise on AlexNet-mini. With nb == 1 the
// GEMM reads and writes x / y / dy / dx in place where the layout allows it (1x1 stride-1
// convolutions skip im2col entirely). im2col reads, and col2im accumulates into, a zero-padded
// copy of each image, so their inner loops are plain row copies without bounds checks.
//
// Threads: the batch is split into contiguous image ranges, one per pool worker; each worker
// has its own scratch (thread_local, reused across calls) and calls sgemm with pool = nullptr.
// The filter gradient is reduced race-free and independently of the thread count: the batch is
// cut into a fixed number of image ranges, each summed into its own buffer, and the buffers are
// added in range order. With fewer images than workers, images run one at a time and the pool
// is handed to sgemm instead (forward and backward data; sgemm's result does not depend on its
// split).
#include "ops/conv2d.h"

#if defined(__x86_64__) || defined(_M_X64)
#define CN_X86 1
#include <immintrin.h>
#else
#define CN_X86 0
#endif

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/conv2d_blocked.h"
#include "ops/conv2d_direct.h"
#include "ops/conv2d_winograd.h"
#include "ops/gemm.h"

namespace cn {
namespace {

constexpr int64_t kTargetCols = 384;
constexpr int64_t kMaxColFloats = int64_t(1) << 20;  // 4 MiB of im2col per worker
constexpr int kFilterRanges = 4;  // fixed image ranges of the filter gradient (see below)

struct Dims {
  int Cg, Fg;
  int64_t P, Kc, HW;
  bool direct;  // 1x1, stride 1, no padding: col is the input itself
};

Dims dims_of(const Conv2dShape& s) {
  Dims d;
  d.Cg = s.C / s.G;
  d.Fg = s.F / s.G;
  d.P = int64_t(s.OH) * s.OW;
  d.Kc = int64_t(d.Cg) * s.KH * s.KW;
  d.HW = int64_t(s.H) * s.W;
  d.direct = s.KH == 1 && s.KW == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0;
  return d;
}

// Images per GEMM for a worker that owns `count` images.
int64_t chunk_of(const Dims& d, int64_t count) {
  int64_t nb = (kTargetCols + d.P - 1) / d.P;
  nb = std::min(nb, std::max<int64_t>(1, kMaxColFloats / std::max<int64_t>(1, d.Kc * d.P)));
  return std::max<int64_t>(1, std::min(nb, count));
}

// Padded extent of one channel: every tap of every output cell lands inside it.
inline int64_t padded_hw(const Conv2dShape& s) {
  return int64_t(s.H + 2 * s.ph) * (s.W + 2 * s.pw);
}

// Copies one image's Cg channels into a zero-padded [Cg, H+2ph, W+2pw] buffer, so im2col needs
// no bounds checks. Returns x itself when there is no padding.
const float* pad_image(const Conv2dShape& s, int Cg, const float* x, std::vector<float>& buf) {
  if (s.ph == 0 && s.pw == 0) return x;
  const int Wp = s.W + 2 * s.pw, Hp = s.H + 2 * s.ph;
  if (buf.size() < size_t(Cg) * Hp * Wp) buf.resize(size_t(Cg) * Hp * Wp);
  float* out = buf.data();
  for (int c = 0; c < Cg; ++c) {
    const float* xc = x + int64_t(c) * s.H * s.W;
    float* oc = out + int64_t(c) * Hp * Wp;
    std::fill(oc, oc + int64_t(s.ph) * Wp, 0.0f);
    for (int h = 0; h < s.H; ++h) {
      float* o = oc + int64_t(s.ph + h) * Wp;
      const float* i = xc + int64_t(h) * s.W;
      for (int q = 0; q < s.pw; ++q) o[q] = 0.0f;
      for (int q = 0; q < s.W; ++q) o[s.pw + q] = i[q];
      for (int q = s.pw + s.W; q < Wp; ++q) o[q] = 0.0f;
    }
    std::fill(oc + int64_t(s.ph + s.H) * Wp, oc + int64_t(Hp) * Wp, 0.0f);
  }
  return out;
}

// Rows are as short as 6 floats in AlexNet-mini, too short for memcpy or the auto-vectoriser's
// remainder loops to pay off; a last overlapping 4-wide copy covers the tail instead.
inline void copy_row(const float* src, int n, float* dst) {
  if (n < 4) {
    for (int i = 0; i < n; ++i) dst[i] = src[i];
    return;
  }
#if CN_X86
  int i = 0;
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(dst + i, _mm_loadu_ps(src + i));
  if (i < n) _mm_storeu_ps(dst + n - 4, _mm_loadu_ps(src + n - 4));
#else
  std::memcpy(dst, src, sizeof(float) * n);
#endif
}

inline void add_row(const float* src, int n, float* dst) {
  int i = 0;
#if CN_X86
  for (; i + 4 <= n; i += 4)
    _mm_storeu_ps(dst + i, _mm_add_ps(_mm_loadu_ps(dst + i), _mm_loadu_ps(src + i)));
#endif
  for (; i < n; ++i) dst[i] += src[i];
}

// xp: one image's Cg channels, padded; col rows (c, kh, kw), columns oh*OW + ow, row stride ld.
void im2col(const Conv2dShape& s, int Cg, const float* xp, float* col, int64_t ld) {
  const int OH = s.OH, OW = s.OW, Wp = s.W + 2 * s.pw, sw = s.sw;
  const int64_t chw = padded_hw(s);
  for (int c = 0; c < Cg; ++c) {
    for (int kh = 0; kh < s.KH; ++kh) {
      for (int kw = 0; kw < s.KW; ++kw) {
        float* d = col + ((int64_t(c) * s.KH + kh) * s.KW + kw) * ld;
        const float* src = xp + c * chw + int64_t(kh) * Wp + kw;
        for (int oh = 0; oh < OH; ++oh, d += OW) {
          const float* r = src + int64_t(oh) * s.sh * Wp;
          if (sw == 1) {
            copy_row(r, OW, d);
          } else {
            for (int ow = 0; ow < OW; ++ow) d[ow] = r[int64_t(ow) * sw];
          }
        }
      }
    }
  }
}

// Overwrites one image's Cg channels dx [Cg, H, W] with the sum of col's taps. Accumulates in a
// zeroed padded buffer (no bounds checks) unless there is no padding.
void col2im(const Conv2dShape& s, int Cg, const float* col, int64_t ld, float* dx,
            std::vector<float>& buf) {
  const int OH = s.OH, OW = s.OW, Wp = s.W + 2 * s.pw, sw = s.sw;
  const int64_t chw = padded_hw(s);
  const bool padded = s.ph != 0 || s.pw != 0;
  if (padded && buf.size() < size_t(Cg * chw)) buf.resize(size_t(Cg * chw));
  float* acc = padded ? buf.data() : dx;
  std::fill(acc, acc + Cg * chw, 0.0f);
  for (int c = 0; c < Cg; ++c) {
    for (int kh = 0; kh < s.KH; ++kh) {
      for (int kw = 0; kw < s.KW; ++kw) {
        const float* src = col + ((int64_t(c) * s.KH + kh) * s.KW + kw) * ld;
        float* d = acc + c * chw + int64_t(kh) * Wp + kw;
        for (int oh = 0; oh < OH; ++oh, src += OW) {
          float* r = d + int64_t(oh) * s.sh * Wp;
          if (sw == 1) {
            add_row(src, OW, r);
          } else {
            for (int ow = 0; ow < OW; ++ow) r[int64_t(ow) * sw] += src[ow];
          }
        }
      }
    }
  }
  if (!padded) return;
  for (int c = 0; c < Cg; ++c)
    for (int h = 0; h < s.H; ++h) {
      const float* a = acc + c * chw + int64_t(s.ph + h) * Wp + s.pw;
      float* o = dx + (int64_t(c) * s.H + h) * s.W;
      for (int q = 0; q < s.W; ++q) o[q] = a[q];
    }
}

float* scratch(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  return v.data();
}

// Runs body(n0, n1, worker, gemm_pool) over image chunks: batch-parallel when there are enough
// images, otherwise serial over images with the pool lent to sgemm.
template <class Body>
void over_images(ThreadPool* pool, int N, const Body& body) {
  if (N >= pool_size(pool)) {
    parallel_for(pool, N, [&](int64_t b, int64_t e, int worker) { body(b, e, worker, nullptr); });
  } else {
    body(0, N, 0, pool);
  }
}

}  // namespace

void conv2d_forward_cpu(ThreadPool* pool, const Conv2dShape& s, const float* x, const float* w,
                        const float* b, float* y) {
  if (conv2d_direct_applies(s)) return conv2d_forward_direct(pool, s, x, w, b, y);
  if (conv2d_winograd_applies(s)) return conv2d_forward_winograd(pool, s, x, w, b, y);
  if (conv2d_blocked_applies(s)) return conv2d_forward_blocked(pool, s, x, w, b, y);
  const Dims d = dims_of(s);
  const int64_t ystride = int64_t(s.F) * d.P, xstride = int64_t(s.C) * d.HW;
  over_images(pool, s.N, [&](int64_t n0, int64_t n1, int, ThreadPool* gp) {
    static thread_local std::vector<float> col_buf, out_buf, pad_buf;
    const int64_t nb = gp ? 1 : chunk_of(d, n1 - n0);
    for (int64_t n = n0; n < n1; n += nb) {
      const int64_t cnt = std::min(nb, n1 - n);
      const int64_t cols = cnt * d.P;
      for (int g = 0; g < s.G; ++g) {
        const float* wg = w + int64_t(g) * d.Fg * d.Kc;
        const float* B;
        if (d.direct && cnt == 1) {
          B = x + n * xstride + int64_t(g) * d.Cg * d.HW;
        } else {
          float* col = scratch(col_buf, d.Kc * cols);
          for (int64_t j = 0; j < cnt; ++j) {
            const float* xj = x + (n + j) * xstride + int64_t(g) * d.Cg * d.HW;
            im2col(s, d.Cg, pad_image(s, d.Cg, xj, pad_buf), col + j * d.P, cols);
          }
          B = col;
        }
        if (cnt == 1) {
          float* yg = y + n * ystride + int64_t(g) * d.Fg * d.P;
          sgemm(gp, false, false, d.Fg, int(d.P), int(d.Kc), 1.0f, wg, int(d.Kc), B, int(cols),
                0.0f, yg, int(d.P));
          if (b) {
            for (int f = 0; f < d.Fg; ++f) {
              const float bf = b[g * d.Fg + f];
              float* yr = yg + f * d.P;
              for (int64_t p = 0; p < d.P; ++p) yr[p] += bf;
            }
          }
          continue;
        }
        float* out = scratch(out_buf, d.Fg * cols);
        sgemm(nullptr, false, false, d.Fg, int(cols), int(d.Kc), 1.0f, wg, int(d.Kc), B,
              int(cols), 0.0f, out, int(cols));
        for (int64_t j = 0; j < cnt; ++j) {
          float* yg = y + (n + j) * ystride + int64_t(g) * d.Fg * d.P;
          for (int f = 0; f < d.Fg; ++f) {
            const float bf = b ? b[g * d.Fg + f] : 0.0f;
            const float* src = out + f * cols + j * d.P;
            float* yr = yg + f * d.P;
            for (int64_t p = 0; p < d.P; ++p) yr[p] = src[p] + bf;
          }
        }
      }
    }
  });
}

void conv2d_backward_data_cpu(ThreadPool* pool, const Conv2dShape& s, const float* dy,
                              const float* w, float* dx) {
  if (conv2d_winograd_applies(s)) return conv2d_backward_data_winograd(pool, s, dy, w, dx);
  if (conv2d_blocked_applies(s)) return conv2d_backward_data_blocked(pool, s, dy, w, dx);
  const Dims d = dims_of(s);
  const int64_t ystride = int64_t(s.F) * d.P, xstride = int64_t(s.C) * d.HW;
  over_images(pool, s.N, [&](int64_t n0, int64_t n1, int, ThreadPool* gp) {
    static thread_local std::vector<float> col_buf, dy_buf, pad_buf;
    const int64_t nb = gp ? 1 : chunk_of(d, n1 - n0);
    for (int64_t n = n0; n < n1; n += nb) {
      const int64_t cnt = std::min(nb, n1 - n);
      const int64_t cols = cnt * d.P;
      for (int g = 0; g < s.G; ++g) {
        const float* wg = w + int64_t(g) * d.Fg * d.Kc;
        float* dxg = dx + n * xstride + int64_t(g) * d.Cg * d.HW;
        const float* B;
        if (cnt == 1) {
          B = dy + n * ystride + int64_t(g) * d.Fg * d.P;
        } else {
          float* dyb = scratch(dy_buf, d.Fg * cols);
          for (int64_t j = 0; j < cnt; ++j) {
            const float* src = dy + (n + j) * ystride + int64_t(g) * d.Fg * d.P;
            for (int f = 0; f < d.Fg; ++f)
              std::memcpy(dyb + f * cols + j * d.P, src + f * d.P, sizeof(float) * d.P);
          }
          B = dyb;
        }
        if (d.direct && cnt == 1) {
          sgemm(gp, true, false, int(d.Kc), int(d.P), d.Fg, 1.0f, wg, int(d.Kc), B, int(cols),
                0.0f, dxg, int(d.P));
          continue;
        }
        float* col = scratch(col_buf, d.Kc * cols);
        sgemm(gp, true, false, int(d.Kc), int(cols), d.Fg, 1.0f, wg, int(d.Kc), B, int(cols),
              0.0f, col, int(cols));
        for (int64_t j = 0; j < cnt; ++j) {
          col2im(s, d.Cg, col + j * d.P, cols, dxg + j * xstride, pad_buf);
        }
      }
    }
  });
}

void conv2d_backward_filter_cpu(ThreadPool* pool, const Conv2dShape& s, const float* x,
                                const float* dy, float* dw, float* db) {
  if (conv2d_direct_applies(s, /*filter_grad=*/true))
    return conv2d_backward_filter_direct(pool, s, x, dy, dw, db);
  if (conv2d_winograd_applies(s, /*filter_grad=*/true))
    return conv2d_backward_filter_winograd(pool, s, x, dy, dw, db);
  if (conv2d_blocked_applies(s, /*filter_grad=*/true))
    return conv2d_backward_filter_blocked(pool, s, x, dy, dw, db);
  const Dims d = dims_of(s);
  const int64_t ystride = int64_t(s.F) * d.P, xstride = int64_t(s.C) * d.HW;
  const int64_t wsize = int64_t(s.F) * d.Kc;
  if (s.N == 0) {
    std::fill(dw, dw + wsize, 0.0f);
    if (db) std::fill(db, db + s.F, 0.0f);
    return;
  }
  // The batch is cut into R = min(N, kFilterRanges) fixed image ranges, whatever the thread
  // count; range 0 sums into dw / db and the others into their own buffers, added in range order.
  // So the result does not depend on how many workers ran (or on timing).
  const int R = std::min(s.N, kFilterRanges);
  static thread_local std::vector<float> partial_buf;  // the queue thread's, reused
  float* const partial = scratch(partial_buf, int64_t(R - 1) * (wsize + s.F));
  auto range_body = [&](int r, ThreadPool* gp) {
    static thread_local std::vector<float> col_buf, dy_buf, pad_buf;
    const int64_t n0 = int64_t(s.N) * r / R, n1 = int64_t(s.N) * (r + 1) / R;
    float* dwp = r == 0 ? dw : partial + (r - 1) * (wsize + s.F);
    float* dbp = r == 0 ? db : dwp + wsize;
    const int64_t nb = chunk_of(d, n1 - n0);
    for (int64_t n = n0; n < n1; n += nb) {
      const int64_t cnt = std::min(nb, n1 - n);
      const int64_t cols = cnt * d.P;
      const float beta = n == n0 ? 0.0f : 1.0f;
      for (int g = 0; g < s.G; ++g) {
        const float* A;
        if (cnt == 1) {
          A = dy + n * ystride + int64_t(g) * d.Fg * d.P;
        } else {
          float* dyb = scratch(dy_buf, d.Fg * cols);
          for (int64_t j = 0; j < cnt; ++j) {
            const float* src = dy + (n + j) * ystride + int64_t(g) * d.Fg * d.P;
            for (int f = 0; f < d.Fg; ++f)
              std::memcpy(dyb + f * cols + j * d.P, src + f * d.P, sizeof(float) * d.P);
          }
          A = dyb;
        }
        const float* B;
        if (d.direct && cnt == 1) {
          B = x + n * xstride + int64_t(g) * d.Cg * d.HW;
        } else {
          float* col = scratch(col_buf, d.Kc * cols);
          for (int64_t j = 0; j < cnt; ++j) {
            const float* xj = x + (n + j) * xstride + int64_t(g) * d.Cg * d.HW;
            im2col(s, d.Cg, pad_image(s, d.Cg, xj, pad_buf), col + j * d.P, cols);
          }
          B = col;
        }
        sgemm(gp, false, true, d.Fg, int(d.Kc), int(cols), 1.0f, A, int(cols), B, int(cols), beta,
              dwp + int64_t(g) * d.Fg * d.Kc, int(d.Kc));
      }
      if (dbp) {
        for (int64_t j = 0; j < cnt; ++j) {
          const float* src = dy + (n + j) * ystride;
          for (int f = 0; f < s.F; ++f) {
            float acc = 0.0f;
            const float* r = src + f * d.P;
            for (int64_t p = 0; p < d.P; ++p) acc += r[p];
            dbp[f] = (n == n0 && j == 0) ? acc : dbp[f] + acc;
          }
        }
      }
    }
  };
  if (R >= pool_size(pool)) {
    parallel_for(pool, R, [&](int64_t b, int64_t e, int) {
      for (int64_t r = b; r < e; ++r) range_body(int(r), nullptr);
    });
  } else {
    // Fewer ranges than workers: one range at a time, the pool lent to sgemm (whose result does
    // not depend on its split either).
    for (int r = 0; r < R; ++r) range_body(r, pool);
  }
  for (int r = 1; r < R; ++r) {
    const float* pw = partial + (r - 1) * (wsize + s.F);
    for (int64_t i = 0; i < wsize; ++i) dw[i] += pw[i];
    if (db)
      for (int f = 0; f < s.F; ++f) db[f] += pw[wsize + f];
  }
}

}  // namespace cn
