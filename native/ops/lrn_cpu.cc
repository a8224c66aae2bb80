// Local response normalisation across channels, CPU kernels (NCHW); see lrn.h for the contract.
//
// Layout: for a fixed image n the channel stride is H*W, so a run of positions hw..hw+len-1 is
// contiguous in every channel plane. Both passes work on such tiles (at most kTile positions of
// one image): they loop over channels and, inside, over the tile's contiguous positions, which
// keeps every inner loop unit-stride and vectorisable.
//
// Window sums: the clipped window of channel c is [max(c-lo,0), min(c+hi,C-1)] with
// lo = size/2, hi = (size-1)/2 (forward, sum of x^2) and the mirrored [c-hi, c+lo] (backward,
// sum of u = dy*y/scale). When the clipped window can hold at most kDirectWindow channels it is
// summed directly in float for every c (size terms per element, no cancellation). Wider windows
// use a sliding sum in double (add the entering channel, subtract the leaving one), which costs
// O(1) per element; its error is ~1e-16 of the largest sum seen along the channel axis, far
// below float precision unless squares across channels span more than ~1e8.
//
// scale^-beta: powf, except beta == 0.75, where it is sqrt(sqrt(s)) / s (three correctly rounded
// operations, sqrtps/divps on x86; at most ~1.3e-7 relative error, powf ~6e-8). Scale values
// that are <= 0, inf or NaN fall back to powf, so the result keeps pow's special cases.
//
// Backward: dx[c] = dy[c]*scale[c]^-beta - (2*alpha*beta/size) * x[c] * sum_{j: c in win(j)} u[j].
// u is computed once per tile for all channels into per-worker scratch ([C][kTile] floats).
//
// Threads: parallel_for over the N*H*W positions; each worker cuts its contiguous range into
// tiles that never cross an image boundary. Workers write disjoint positions of y, scale and dx.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#endif

#include "ops/lrn.h"

namespace cn {
namespace {

constexpr int64_t kTile = 256;
constexpr int kDirectWindow = 16;

template <bool kSquare>
inline float term(float v) {
  return kSquare ? v * v : v;
}

// out[l] = sum_{j=j0..j1} term(src[j*stride + l]) for l < len, accumulated in float.
template <bool kSquare>
void direct_sum(const float* src, int64_t stride, int64_t len, int j0, int j1, float* out) {
  const float* r = src + j0 * stride;
  for (int64_t l = 0; l < len; ++l) out[l] = term<kSquare>(r[l]);
  for (int j = j0 + 1; j <= j1; ++j) {
    r = src + j * stride;
    for (int64_t l = 0; l < len; ++l) out[l] += term<kSquare>(r[l]);
  }
}

// Moves the double accumulator acc from the window [*a0, *a1] to [j0, j1] (both ends never
// decrease between calls; start from an empty window a0 = 0, a1 = -1 with acc zeroed), then
// writes it to out as float.
template <bool kSquare>
void slide_sum(const float* src, int64_t stride, int64_t len, int* a0, int* a1, int j0, int j1,
               double* acc, float* out) {
  for (int j = std::max(*a1 + 1, j0); j <= j1; ++j) {
    const float* r = src + j * stride;
    for (int64_t l = 0; l < len; ++l) acc[l] += static_cast<double>(term<kSquare>(r[l]));
  }
  for (int j = *a0; j < std::min(j0, *a1 + 1); ++j) {
    const float* r = src + j * stride;
    for (int64_t l = 0; l < len; ++l) acc[l] -= static_cast<double>(term<kSquare>(r[l]));
  }
  *a0 = j0;
  *a1 = j1;
  for (int64_t l = 0; l < len; ++l) out[l] = static_cast<float>(acc[l]);
}

// out[l] = s[l]^-beta for l < n.
void pow_neg_beta(const float* s, float* out, int64_t n, float beta) {
  if (beta == 0.75f) {
    const float fmax = std::numeric_limits<float>::max();
    bool special = false;  // some s is <= 0, inf or NaN: those take pow's special cases
    int64_t l = 0;
#if defined(__SSE2__) || defined(_M_X64)
    // std::sqrt keeps an errno path that stops the compiler from vectorising; sqrtps has none.
    const __m128 zero = _mm_setzero_ps(), big = _mm_set1_ps(fmax);
    __m128 ok = _mm_cmpeq_ps(zero, zero);
    for (; l + 4 <= n; l += 4) {
      const __m128 v = _mm_loadu_ps(s + l);
      ok = _mm_and_ps(ok, _mm_and_ps(_mm_cmpgt_ps(v, zero), _mm_cmple_ps(v, big)));
      _mm_storeu_ps(out + l, _mm_div_ps(_mm_sqrt_ps(_mm_sqrt_ps(v)), v));
    }
    special = _mm_movemask_ps(ok) != 0xF;
#endif
    for (; l < n; ++l) {
      out[l] = std::sqrt(std::sqrt(s[l])) / s[l];
      special |= !(s[l] > 0.0f && s[l] <= fmax);
    }
    if (special) {
      for (l = 0; l < n; ++l) {
        if (!(s[l] > 0.0f && s[l] <= fmax)) out[l] = std::pow(s[l], -beta);
      }
    }
  } else {
    for (int64_t l = 0; l < n; ++l) out[l] = std::pow(s[l], -beta);
  }
}

}  // namespace

void lrn_forward_cpu(ThreadPool* pool, const LrnShape& s, const float* x, float* y, float* scale) {
  const int C = s.C;
  const int64_t HW = static_cast<int64_t>(s.H) * s.W;
  const int lo = s.size / 2, hi = (s.size - 1) / 2;
  const float coef = static_cast<float>(static_cast<double>(s.alpha) / s.size);
  const float k = s.k, beta = s.beta;
  const bool sliding = std::min(s.size, C) > kDirectWindow;
  parallel_for(pool, static_cast<int64_t>(s.N) * HW, [&](int64_t begin, int64_t end, int) {
    std::vector<double> acc(sliding ? kTile : 0);
    for (int64_t p = begin; p < end;) {
      const int64_t n = p / HW, hw = p % HW;
      const int64_t len = std::min({kTile, HW - hw, end - p});
      const int64_t base = n * C * HW + hw;
      const float* xb = x + base;
      float* yb = y + base;
      float* sb = scale + base;
      int a0 = 0, a1 = -1;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int c = 0; c < C; ++c) {
        const int j0 = std::max(c - lo, 0), j1 = std::min(c + hi, C - 1);
        const float* xc = xb + c * HW;
        float* yc = yb + c * HW;
        float* sc = sb + c * HW;
        if (sliding) {
          slide_sum<true>(xb, HW, len, &a0, &a1, j0, j1, acc.data(), sc);
        } else {
          direct_sum<true>(xb, HW, len, j0, j1, sc);
        }
        for (int64_t l = 0; l < len; ++l) sc[l] = k + coef * sc[l];
        pow_neg_beta(sc, yc, len, beta);
        for (int64_t l = 0; l < len; ++l) yc[l] *= xc[l];
      }
      p += len;
    }
  });
}

void lrn_backward_cpu(ThreadPool* pool, const LrnShape& s, const float* x, const float* y,
                      const float* scale, const float* dy, float* dx) {
  const int C = s.C;
  const int64_t HW = static_cast<int64_t>(s.H) * s.W;
  const int lo = s.size / 2, hi = (s.size - 1) / 2;
  const float coef = static_cast<float>(2.0 * s.alpha * s.beta / s.size);
  const float beta = s.beta;
  const bool sliding = std::min(s.size, C) > kDirectWindow;
  parallel_for(pool, static_cast<int64_t>(s.N) * HW, [&](int64_t begin, int64_t end, int) {
    std::vector<float> u(static_cast<size_t>(C) * kTile);
    std::vector<float> usum(kTile);
    std::vector<double> acc(sliding ? kTile : 0);
    for (int64_t p = begin; p < end;) {
      const int64_t n = p / HW, hw = p % HW;
      const int64_t len = std::min({kTile, HW - hw, end - p});
      const int64_t base = n * C * HW + hw;
      for (int c = 0; c < C; ++c) {
        const float* dyc = dy + base + c * HW;
        const float* yc = y + base + c * HW;
        const float* sc = scale + base + c * HW;
        float* uc = u.data() + c * kTile;
        for (int64_t l = 0; l < len; ++l) uc[l] = dyc[l] * yc[l] / sc[l];
      }
      int a0 = 0, a1 = -1;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int c = 0; c < C; ++c) {
        const int j0 = std::max(c - hi, 0), j1 = std::min(c + lo, C - 1);
        if (sliding) {
          slide_sum<false>(u.data(), kTile, len, &a0, &a1, j0, j1, acc.data(), usum.data());
        } else {
          direct_sum<false>(u.data(), kTile, len, j0, j1, usum.data());
        }
        const float* xc = x + base + c * HW;
        const float* dyc = dy + base + c * HW;
        const float* sc = scale + base + c * HW;
        float* dxc = dx + base + c * HW;
        pow_neg_beta(sc, dxc, len, beta);
        for (int64_t l = 0; l < len; ++l) dxc[l] = dyc[l] * dxc[l] - coef * xc[l] * usum[l];
      }
      p += len;
    }
  });
}

}  // namespace cn
