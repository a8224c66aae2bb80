// Standalone tests and timings for the CPU maxPool2d and LRN kernels (pool_cpu.cc, lrn_cpu.cc).
//
//   g++ -O3 -std=c++17 -pthread -I native native/core/parallel.cc native/ops/pool_cpu.cc
//       native/ops/lrn_cpu.cc native/ops/test_pool_lrn.cc -o /tmp/test_pool_lrn && /tmp/test_pool_lrn
//
// Checks (each run serially and with 2- and 3-thread pools; outputs are NaN-poisoned first):
//   - forward vs naive double references on fixed and random shapes (padding, overlap,
//     stride > kernel, OH == 1, even LRN size, size > C, sliding-window LRN path, tiles that
//     straddle images);
//   - exact hand cases (pool ties, padding with negative inputs, LRN edge channels);
//   - backward vs the analytic formula in double and vs central finite differences in double.
// Then prints median-of-5 timings for the AlexNet-mini (width 0.5, batch 128) shapes on a
// 2-thread pool. Exits non-zero on any failure.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "ops/lrn.h"
#include "ops/pool.h"

using namespace cn;

namespace {

int g_failures = 0;
int g_checks = 0;
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const int32_t kIdxPoison = -123456789;

void fail(const std::string& msg) {
  ++g_failures;
  if (g_failures <= 40) std::printf("FAIL: %s\n", msg.c_str());
}

// All |got - want| <= atol + rtol*|want| (a NaN in got fails).
bool check_close(const std::string& what, const float* got, const double* want, size_t n,
                 double rtol, double atol) {
  ++g_checks;
  size_t bad = 0, first = n;
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= atol + rtol * std::fabs(want[i]))) {
      if (first == n) first = i;
      ++bad;
    }
    if (err > worst || err != err) worst = err;
  }
  if (bad) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s: %zu/%zu mismatches, first at %zu got %.9g want %.9g, "
                  "max err %.3g", what.c_str(), bad, n, first, got[first], want[first], worst);
    fail(buf);
    return false;
  }
  return true;
}

bool check_idx(const std::string& what, const int32_t* got, const int32_t* want, size_t n) {
  ++g_checks;
  for (size_t i = 0; i < n; ++i) {
    if (got[i] != want[i]) {
      fail(what + ": idx[" + std::to_string(i) + "] got " + std::to_string(got[i]) + " want " +
           std::to_string(want[i]));
      return false;
    }
  }
  return true;
}

std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

std::mt19937 g_rng(12345);

std::vector<float> uniform(size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& e : v) e = d(g_rng);
  return v;
}

// Small integers: many ties.
std::vector<float> small_ints(size_t n) {
  std::uniform_int_distribution<int> d(-2, 2);
  std::vector<float> v(n);
  for (auto& e : v) e = static_cast<float>(d(g_rng));
  return v;
}

// All distinct, spaced 1/64 apart (exact in float): no ties, no kinks within +-1/256.
std::vector<float> distinct(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = (static_cast<float>(i) - n / 2.0f) / 64.0f;
  std::shuffle(v.begin(), v.end(), g_rng);
  return v;
}

// Serial (nullptr), 2 and 3 threads.
struct Pools {
  ThreadPool two{2}, three{3};
  std::vector<std::pair<std::string, ThreadPool*>> all() {
    return {{"serial", nullptr}, {"2 threads", &two}, {"3 threads", &three}};
  }
};

// ---------------------------------------------------------------------------------------------
// maxpool

Pool2dShape pool_shape(int N, int C, int H, int W, int KH, int KW, int sh, int sw, int ph,
                       int pw) {
  Pool2dShape s{N, C, H, W, KH, KW, sh, sw, ph, pw, 0, 0};
  s.OH = (H + 2 * ph - KH) / sh + 1;
  s.OW = (W + 2 * pw - KW) / sw + 1;
  return s;
}

std::string describe(const Pool2dShape& s) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "pool [%d,%d,%d,%d] k%dx%d s%dx%d p%dx%d -> %dx%d", s.N, s.C,
                s.H, s.W, s.KH, s.KW, s.sh, s.sw, s.ph, s.pw, s.OH, s.OW);
  return buf;
}

size_t in_size(const Pool2dShape& s) { return static_cast<size_t>(s.N) * s.C * s.H * s.W; }
size_t out_size(const Pool2dShape& s) { return static_cast<size_t>(s.N) * s.C * s.OH * s.OW; }

// Direct definition: scan the full (unclipped) window in row-major order, skip padded cells.
void pool_ref(const Pool2dShape& s, const std::vector<double>& x, std::vector<double>& y,
              std::vector<int32_t>& idx) {
  y.assign(out_size(s), 0);
  idx.assign(out_size(s), -1);
  for (int p = 0; p < s.N * s.C; ++p)
    for (int oh = 0; oh < s.OH; ++oh)
      for (int ow = 0; ow < s.OW; ++ow) {
        double best = 0;
        int arg = -1;
        for (int kh = 0; kh < s.KH; ++kh)
          for (int kw = 0; kw < s.KW; ++kw) {
            const int ih = oh * s.sh - s.ph + kh, iw = ow * s.sw - s.pw + kw;
            if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
            const double v = x[static_cast<size_t>(p) * s.H * s.W + ih * s.W + iw];
            if (arg < 0 || v > best) {
              best = v;
              arg = ih * s.W + iw;
            }
          }
        const size_t o = (static_cast<size_t>(p) * s.OH + oh) * s.OW + ow;
        y[o] = best;
        idx[o] = arg;
      }
}

double pool_loss(const Pool2dShape& s, const std::vector<double>& x, const std::vector<double>& dy) {
  std::vector<double> y;
  std::vector<int32_t> idx;
  pool_ref(s, x, y, idx);
  double l = 0;
  for (size_t i = 0; i < y.size(); ++i) l += dy[i] * y[i];
  return l;
}

// Forward (values + idx) and backward vs the reference scatter, for every pool.
void pool_case(Pools& pools, const Pool2dShape& s, const std::vector<float>& x,
               const std::string& tag, bool finite_diff) {
  const std::string name = describe(s) + " " + tag;
  std::vector<double> yr;
  std::vector<int32_t> ir;
  pool_ref(s, to_double(x), yr, ir);
  if (std::find(ir.begin(), ir.end(), -1) != ir.end()) {
    fail(name + ": test bug, empty window");
    return;
  }
  const std::vector<float> dy = uniform(out_size(s), -1, 1);
  std::vector<double> dxr(in_size(s), 0.0);
  for (size_t o = 0; o < out_size(s); ++o) {
    const size_t plane = o / (static_cast<size_t>(s.OH) * s.OW);
    dxr[plane * s.H * s.W + ir[o]] += dy[o];
  }
  for (auto& [pname, pool] : pools.all()) {
    std::vector<float> y(out_size(s), kNaN), dx(in_size(s), kNaN);
    std::vector<int32_t> idx(out_size(s), kIdxPoison);
    maxpool2d_forward_cpu(pool, s, x.data(), y.data(), idx.data());
    check_close(name + " fwd y " + pname, y.data(), yr.data(), y.size(), 0, 0);
    check_idx(name + " fwd idx " + pname, idx.data(), ir.data(), idx.size());
    maxpool2d_backward_cpu(pool, s, dy.data(), idx.data(), dx.data());
    check_close(name + " bwd " + pname, dx.data(), dxr.data(), dx.size(), 1e-6, 1e-6);
    if (finite_diff && pool == nullptr) {
      std::vector<double> xd = to_double(x), dyd = to_double(dy), fd(x.size());
      const double h = 1e-3;  // values are >= 1/64 apart, so no argmax changes
      for (size_t i = 0; i < x.size(); ++i) {
        const double keep = xd[i];
        xd[i] = keep + h;
        const double lp = pool_loss(s, xd, dyd);
        xd[i] = keep - h;
        const double lm = pool_loss(s, xd, dyd);
        xd[i] = keep;
        fd[i] = (lp - lm) / (2 * h);
      }
      check_close(name + " bwd vs finite diff", dx.data(), fd.data(), dx.size(), 1e-6, 1e-6);
    }
  }
}

void pool_hand_cases(Pools& pools) {
  struct Hand {
    std::string name;
    Pool2dShape s;
    std::vector<float> x;
    std::vector<double> y;
    std::vector<int32_t> idx;
  };
  const std::vector<Hand> cases = {
      // All equal: every window reports its first (top-left) cell.
      {"all ties", pool_shape(1, 1, 3, 3, 2, 2, 1, 1, 0, 0), {5, 5, 5, 5, 5, 5, 5, 5, 5},
       {5, 5, 5, 5}, {0, 1, 3, 4}},
      // Tie between (0,1) and (1,0): row-major first is (0,1).
      {"tie row-major", pool_shape(1, 1, 2, 2, 2, 2, 1, 1, 0, 0), {1, 3, 3, 2}, {3}, {1}},
      // Tie inside a row, later maximum in the next row is smaller.
      {"tie in row", pool_shape(1, 1, 2, 3, 2, 3, 1, 1, 0, 0), {0, 7, 7, 7, 6, 7}, {7}, {1}},
      // Negative inputs with padding: a zero pad would win if padded cells were visited.
      {"neg pad k3p1", pool_shape(1, 1, 2, 2, 3, 3, 1, 1, 1, 1), {-3, -1, -2, -4},
       {-1, -1, -1, -1}, {1, 1, 1, 1}},
      {"neg pad k2s2p1", pool_shape(1, 1, 3, 3, 2, 2, 2, 2, 1, 1),
       {-9, -8, -7, -6, -5, -4, -3, -2, -1}, {-9, -7, -3, -1}, {0, 2, 6, 8}},
      {"neg pad ties", pool_shape(1, 1, 3, 3, 3, 3, 2, 2, 1, 1),
       {-2, -2, -5, -2, -2, -5, -5, -5, -1}, {-2, -2, -2, -1}, {0, 1, 3, 8}},
      // Several planes (idx is per plane).
      {"two planes", pool_shape(1, 2, 2, 2, 2, 2, 2, 2, 0, 0), {1, 4, 2, 3, 8, 6, 7, 8}, {4, 8},
       {1, 0}},
  };
  for (const auto& hc : cases) {
    if (static_cast<size_t>(hc.s.OH * hc.s.OW * hc.s.N * hc.s.C) != hc.y.size()) {
      fail("pool hand " + hc.name + ": test bug, output size");
      continue;
    }
    for (auto& [pname, pool] : pools.all()) {
      std::vector<float> y(hc.y.size(), kNaN);
      std::vector<int32_t> idx(hc.y.size(), kIdxPoison);
      maxpool2d_forward_cpu(pool, hc.s, hc.x.data(), y.data(), idx.data());
      check_close("pool hand " + hc.name + " y " + pname, y.data(), hc.y.data(), y.size(), 0, 0);
      check_idx("pool hand " + hc.name + " idx " + pname, idx.data(), hc.idx.data(), idx.size());
    }
  }
  // NaN propagates: the first NaN of a window wins; windows without NaN are unaffected.
  {
    struct NanCase {
      Pool2dShape s;
      std::vector<float> x;
      std::vector<bool> is_nan;
      std::vector<float> y;  // for the non-NaN outputs
      std::vector<int32_t> idx;
    };
    const std::vector<NanCase> nan_cases = {
        {pool_shape(1, 1, 2, 4, 2, 2, 1, 1, 0, 0), {1, kNaN, 3, 2, 5, 0, kNaN, 9},
         {true, true, true}, {0, 0, 0}, {1, 1, 6}},
        {pool_shape(1, 1, 2, 5, 2, 2, 2, 2, 0, 0), {1, 2, kNaN, 4, 7, 3, 0, 1, 1, 9},
         {false, true}, {3, 0}, {5, 2}},
        {pool_shape(1, 1, 2, 3, 2, 2, 2, 2, 1, 1), {kNaN, 2, 1, 4, 3, kNaN},
         {true, false, false, true}, {0, 2, 4, 0}, {0, 1, 3, 5}},
    };
    for (const auto& nc : nan_cases) {
      for (auto& [pname, pool] : pools.all()) {
        std::vector<float> y(nc.y.size(), 1234.5f);
        std::vector<int32_t> idx(nc.y.size(), kIdxPoison);
        maxpool2d_forward_cpu(pool, nc.s, nc.x.data(), y.data(), idx.data());
        ++g_checks;
        for (size_t o = 0; o < y.size(); ++o) {
          const bool ok = nc.is_nan[o] ? std::isnan(y[o]) : y[o] == nc.y[o];
          if (!ok || idx[o] != nc.idx[o]) {
            fail("pool NaN case " + describe(nc.s) + " " + pname + ": output " +
                 std::to_string(o) + " got " + std::to_string(y[o]) + " idx " +
                 std::to_string(idx[o]));
            break;
          }
        }
      }
    }
  }
  // Backward: overlapping windows add up at a shared maximum; everything else is zeroed.
  {
    const Pool2dShape s = pool_shape(1, 1, 3, 3, 2, 2, 1, 1, 0, 0);
    const std::vector<float> x = {0, 0, 0, 0, 9, 0, 0, 0, 0};
    const std::vector<float> dy = {1, 2, 4, 8};
    const std::vector<double> want = {0, 0, 0, 0, 15, 0, 0, 0, 0};
    for (auto& [pname, pool] : pools.all()) {
      std::vector<float> y(4, kNaN), dx(9, kNaN);
      std::vector<int32_t> idx(4, kIdxPoison);
      maxpool2d_forward_cpu(pool, s, x.data(), y.data(), idx.data());
      maxpool2d_backward_cpu(pool, s, dy.data(), idx.data(), dx.data());
      check_close("pool hand backward accumulate " + pname, dx.data(), want.data(), 9, 0, 0);
    }
  }
}

void pool_tests(Pools& pools) {
  const std::vector<Pool2dShape> fixed = {
      pool_shape(2, 3, 7, 9, 3, 3, 2, 2, 0, 0),
      pool_shape(2, 3, 7, 9, 3, 3, 2, 2, 1, 1),    // padding
      pool_shape(1, 4, 8, 8, 3, 3, 1, 1, 1, 1),    // stride < kernel, padding
      pool_shape(2, 2, 9, 11, 2, 2, 3, 3, 0, 0),   // stride > kernel (cells skipped)
      pool_shape(2, 3, 10, 7, 2, 3, 4, 3, 1, 0),   // stride > kernel with padding
      pool_shape(1, 3, 5, 5, 5, 5, 1, 1, 0, 0),    // OH == OW == 1
      pool_shape(2, 2, 4, 6, 4, 6, 2, 2, 2, 3),    // OH == 2 with maximal padding
      pool_shape(3, 5, 6, 7, 3, 2, 2, 1, 1, 1),    // non-square kernel and stride
      pool_shape(1, 1, 1, 1, 1, 1, 1, 1, 0, 0),    // trivial
      pool_shape(1, 2, 1, 9, 1, 3, 1, 2, 0, 1),    // single row
      pool_shape(2, 6, 13, 13, 3, 3, 2, 2, 0, 0),  // AlexNet-like
  };
  for (const auto& s : fixed) {
    const bool fd = in_size(s) <= 1200;
    pool_case(pools, s, uniform(in_size(s), -1, 1), "uniform", false);
    pool_case(pools, s, small_ints(in_size(s)), "ties", false);
    pool_case(pools, s, distinct(in_size(s)), "distinct", fd);
  }
  std::uniform_int_distribution<int> d15(1, 5), d14(1, 4), d13(1, 3);
  for (int t = 0; t < 60; ++t) {
    const int KH = d15(g_rng), KW = d15(g_rng);
    const int ph = std::uniform_int_distribution<int>(0, KH / 2)(g_rng);
    const int pw = std::uniform_int_distribution<int>(0, KW / 2)(g_rng);
    const int H = std::uniform_int_distribution<int>(std::max(1, KH - 2 * ph), 12)(g_rng);
    const int W = std::uniform_int_distribution<int>(std::max(1, KW - 2 * pw), 12)(g_rng);
    const Pool2dShape s =
        pool_shape(d13(g_rng), d14(g_rng), H, W, KH, KW, d14(g_rng), d14(g_rng), ph, pw);
    pool_case(pools, s, uniform(in_size(s), -1, 1), "random uniform", false);
    pool_case(pools, s, small_ints(in_size(s)), "random ties", false);
    pool_case(pools, s, distinct(in_size(s)), "random distinct", in_size(s) <= 600);
  }
  pool_hand_cases(pools);
}

// ---------------------------------------------------------------------------------------------
// LRN

std::string describe(const LrnShape& s) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "lrn [%d,%d,%d,%d] size %d alpha %g beta %g k %g", s.N, s.C,
                s.H, s.W, s.size, s.alpha, s.beta, s.k);
  return buf;
}

size_t lrn_size(const LrnShape& s) { return static_cast<size_t>(s.N) * s.C * s.H * s.W; }

// PyTorch's construction: pad the channel axis with size/2 zeros in front and (size-1)/2 behind,
// then average size consecutive squares: output c covers padded channels c .. c+size-1.
void lrn_ref(const LrnShape& s, const std::vector<double>& x, std::vector<double>& y,
             std::vector<double>& scale) {
  const size_t HW = static_cast<size_t>(s.H) * s.W;
  y.assign(x.size(), 0);
  scale.assign(x.size(), 0);
  for (int n = 0; n < s.N; ++n)
    for (int c = 0; c < s.C; ++c)
      for (size_t p = 0; p < HW; ++p) {
        double sum = 0;
        for (int t = 0; t < s.size; ++t) {
          const int j = c + t - s.size / 2;
          if (j < 0 || j >= s.C) continue;
          const double v = x[(static_cast<size_t>(n) * s.C + j) * HW + p];
          sum += v * v;
        }
        const size_t i = (static_cast<size_t>(n) * s.C + c) * HW + p;
        scale[i] = static_cast<double>(s.k) + static_cast<double>(s.alpha) * sum / s.size;
        y[i] = x[i] * std::pow(scale[i], -static_cast<double>(s.beta));
      }
}

// The backward formula of lrn.h, with "c in win(j)" tested literally.
std::vector<double> lrn_backward_ref(const LrnShape& s, const std::vector<double>& x,
                                     const std::vector<double>& dy) {
  std::vector<double> y, scale;
  lrn_ref(s, x, y, scale);
  const size_t HW = static_cast<size_t>(s.H) * s.W;
  const double beta = s.beta, coef = 2.0 * s.alpha * beta / s.size;
  std::vector<double> dx(x.size());
  for (int n = 0; n < s.N; ++n)
    for (int c = 0; c < s.C; ++c)
      for (size_t p = 0; p < HW; ++p) {
        double usum = 0;
        for (int j = 0; j < s.C; ++j) {
          if (c < j - s.size / 2 || c > j + (s.size - 1) / 2) continue;
          const size_t ij = (static_cast<size_t>(n) * s.C + j) * HW + p;
          usum += dy[ij] * y[ij] / scale[ij];
        }
        const size_t i = (static_cast<size_t>(n) * s.C + c) * HW + p;
        dx[i] = dy[i] * std::pow(scale[i], -beta) - coef * x[i] * usum;
      }
  return dx;
}

double lrn_loss(const LrnShape& s, const std::vector<double>& x, const std::vector<double>& dy) {
  std::vector<double> y, scale;
  lrn_ref(s, x, y, scale);
  double l = 0;
  for (size_t i = 0; i < y.size(); ++i) l += dy[i] * y[i];
  return l;
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double e : v) m = std::max(m, std::fabs(e));
  return m;
}

void lrn_case(Pools& pools, const LrnShape& s, float amp) {
  const std::string name = describe(s) + " amp " + std::to_string(amp);
  const size_t n = lrn_size(s);
  const std::vector<float> x = uniform(n, -amp, amp), dy = uniform(n, -1, 1);
  const std::vector<double> xd = to_double(x), dyd = to_double(dy);
  std::vector<double> yr, sr;
  lrn_ref(s, xd, yr, sr);
  const std::vector<double> dxr = lrn_backward_ref(s, xd, dyd);
  const double dx_atol = 1e-5 * max_abs(dxr);
  std::vector<double> fd;
  if (n <= 800) {
    std::vector<double> xp = xd;
    fd.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const double h = 1e-5 * std::max(1.0, std::fabs(xd[i]));
      xp[i] = xd[i] + h;
      const double lp = lrn_loss(s, xp, dyd);
      xp[i] = xd[i] - h;
      const double lm = lrn_loss(s, xp, dyd);
      xp[i] = xd[i];
      fd[i] = (lp - lm) / (2 * h);
    }
    // The two double references must agree closely (validates the test itself).
    std::vector<float> dxr_f(dxr.begin(), dxr.end());
    check_close(name + " analytic ref vs finite diff", dxr_f.data(), fd.data(), n, 1e-5,
                1e-6 * max_abs(fd));
  }
  for (auto& [pname, pool] : pools.all()) {
    std::vector<float> y(n, kNaN), scale(n, kNaN), dx(n, kNaN);
    lrn_forward_cpu(pool, s, x.data(), y.data(), scale.data());
    check_close(name + " fwd y " + pname, y.data(), yr.data(), n, 1e-5, 1e-30);
    check_close(name + " fwd scale " + pname, scale.data(), sr.data(), n, 1e-6, 1e-30);
    lrn_backward_cpu(pool, s, x.data(), y.data(), scale.data(), dy.data(), dx.data());
    check_close(name + " bwd vs analytic " + pname, dx.data(), dxr.data(), n, 1e-5, dx_atol);
    if (!fd.empty()) {
      check_close(name + " bwd vs finite diff " + pname, dx.data(), fd.data(), n, 1e-4,
                  2e-5 * max_abs(fd));
    }
  }
}

void lrn_hand_cases(Pools& pools) {
  // One position, x = 1, 2, 3, 4 over C = 4 channels; alpha = 0.3 so alpha/size is simple.
  const std::vector<float> x = {1, 2, 3, 4};
  struct Hand {
    int size;
    std::vector<double> sums;  // window sums of squares, worked out by hand
  };
  const std::vector<Hand> cases = {
      {3, {1 + 4, 1 + 4 + 9, 4 + 9 + 16, 9 + 16}},  // win(c) = [c-1, c+1]
      {2, {1, 1 + 4, 4 + 9, 9 + 16}},               // even: win(c) = [c-1, c]
      {4, {1 + 4, 1 + 4 + 9, 1 + 4 + 9 + 16, 4 + 9 + 16}},  // win(c) = [c-2, c+1]
      {6, {1 + 4 + 9, 30, 30, 30}},  // size > C: win(c) = [c-3, c+2]
      {1, {1, 4, 9, 16}},
  };
  for (const auto& hc : cases) {
    const LrnShape s{1, 4, 1, 1, hc.size, 0.3f, 0.75f, 1.0f};
    std::vector<double> ys(4), ss(4);
    for (int c = 0; c < 4; ++c) {
      ss[c] = 1.0 + static_cast<double>(0.3f) / hc.size * hc.sums[c];
      ys[c] = x[c] / std::pow(ss[c], 0.75);
    }
    for (auto& [pname, pool] : pools.all()) {
      std::vector<float> y(4, kNaN), scale(4, kNaN);
      lrn_forward_cpu(pool, s, x.data(), y.data(), scale.data());
      const std::string name = "lrn hand size " + std::to_string(hc.size) + " " + pname;
      check_close(name + " scale", scale.data(), ss.data(), 4, 1e-6, 0);
      check_close(name + " y", y.data(), ys.data(), 4, 1e-6, 0);
    }
  }
  // Special values follow pow (the beta = 0.75 shortcut must not differ): with k = 0 an all-zero
  // column has scale 0 and y = 0 * inf = NaN, as in PyTorch; x^2 overflowing gives scale inf and
  // y = x * 0 = 0 (the shortcut alone would give inf/inf = NaN there).
  // Positions spread over vector lanes and the scalar tail (W = 9).
  {
    const LrnShape s{1, 2, 1, 9, 3, 1.0f, 0.75f, 0.0f};
    const std::vector<float> xs = {0, 1e-20f, 1e20f, 0.5f, 0, 1, 3e19f, 2, 0,   // channel 0
                                   0, 2,      1,     0.5f, 0, 0, 0,     1, 0};  // channel 1
    // 'n': NaN, 'z': exactly 0, 'f': finite non-zero.
    const std::string want = "nfzfnfzfn"
                             "nfzfnzzfn";
    for (float beta : {0.75f, 0.7f}) {
      LrnShape sb = s;
      sb.beta = beta;
      std::vector<float> y(18, kNaN), scale(18, kNaN);
      lrn_forward_cpu(nullptr, sb, xs.data(), y.data(), scale.data());
      ++g_checks;
      std::string got;
      for (float v : y) got += std::isnan(v) ? 'n' : v == 0 ? 'z' : std::isfinite(v) ? 'f' : 'i';
      if (got != want)
        fail("lrn k=0 special values beta " + std::to_string(beta) + ": got " + got + " want " +
             want);
    }
  }
}

void lrn_tests(Pools& pools) {
  struct P {
    int N, C, H, W, size;
    float alpha, beta, k;
  };
  const std::vector<P> fixed = {
      {2, 8, 3, 5, 5, 1e-4f, 0.75f, 2.0f},    // AlexNet parameters
      {2, 8, 3, 5, 5, 0.5f, 0.75f, 1.0f},     // strong normalisation
      {1, 6, 2, 3, 4, 0.7f, 0.75f, 1.0f},     // even size
      {2, 5, 2, 2, 2, 0.9f, 0.5f, 1.0f},      // even size 2
      {2, 3, 4, 4, 7, 0.9f, 0.6f, 0.5f},      // size > C
      {1, 3, 3, 3, 8, 0.9f, 0.75f, 0.5f},     // even size > C
      {1, 5, 3, 3, 1, 1.0f, 1.3f, 1.0f},      // size 1
      {1, 1, 4, 5, 5, 1.0f, 0.75f, 1.0f},     // C == 1
      {2, 6, 3, 2, 3, 0.4f, 0.0f, 1.0f},      // beta 0: y = x
      {1, 7, 1, 1, 5, 2.0f, 1.0f, 0.1f},      // small k
      {1, 40, 3, 3, 21, 0.8f, 0.75f, 1.0f},   // sliding-window path
      {1, 18, 2, 3, 40, 0.8f, 0.6f, 1.0f},    // sliding path, size > C
      {1, 24, 2, 2, 18, 0.8f, 0.75f, 0.7f},   // sliding path, even size
      {3, 4, 17, 19, 3, 0.6f, 0.75f, 1.0f},   // H*W > tile: tiles split inside and across images
      {2, 20, 1, 300, 17, 0.5f, 0.9f, 1.0f},  // sliding path with several tiles
      {2, 64, 13, 13, 5, 1e-4f, 0.75f, 2.0f},
  };
  for (const auto& p : fixed) {
    const LrnShape s{p.N, p.C, p.H, p.W, p.size, p.alpha, p.beta, p.k};
    lrn_case(pools, s, 1.0f);
    lrn_case(pools, s, 8.0f);
  }
  std::uniform_int_distribution<int> dc(1, 12), dhw(1, 5), dsize(1, 14), dn(1, 2);
  std::uniform_real_distribution<float> dalpha(1e-4f, 1.5f), dbeta(0.0f, 1.5f), dk(0.3f, 2.5f);
  for (int t = 0; t < 30; ++t) {
    const float beta = (t % 3 == 0) ? 0.75f : dbeta(g_rng);
    const LrnShape s{dn(g_rng), dc(g_rng), dhw(g_rng), dhw(g_rng), dsize(g_rng), dalpha(g_rng),
                     beta, dk(g_rng)};
    lrn_case(pools, s, 3.0f);
  }
  lrn_hand_cases(pools);
}

// ---------------------------------------------------------------------------------------------
// Timings

double median_ms(const std::function<void()>& fn) {
  fn();
  std::vector<double> t;
  for (int r = 0; r < 5; ++r) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    const auto b = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::milli>(b - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[2];
}

void timings() {
  ThreadPool pool(2);
  std::printf("\ntimings, median of 5, 2-thread pool (ms):\n");
  const int lrn_shapes[][4] = {{128, 32, 28, 28}, {128, 64, 13, 13}};
  for (const auto& d : lrn_shapes) {
    const LrnShape s{d[0], d[1], d[2], d[3], 5, 1e-4f, 0.75f, 2.0f};
    const size_t n = lrn_size(s);
    const std::vector<float> x = uniform(n, -2, 2), dy = uniform(n, -1, 1);
    std::vector<float> y(n), scale(n), dx(n);
    const double f = median_ms([&] { lrn_forward_cpu(&pool, s, x.data(), y.data(), scale.data()); });
    const double b = median_ms([&] {
      lrn_backward_cpu(&pool, s, x.data(), y.data(), scale.data(), dy.data(), dx.data());
    });
    std::printf("  lrn 5/1e-4/0.75/2 [%d,%d,%d,%d]: forward %7.2f  backward %7.2f\n", d[0], d[1],
                d[2], d[3], f, b);
  }
  const int pool_shapes[][4] = {{128, 32, 28, 28}, {128, 64, 13, 13}, {128, 64, 6, 6}};
  for (const auto& d : pool_shapes) {
    const Pool2dShape s = pool_shape(d[0], d[1], d[2], d[3], 3, 3, 2, 2, 0, 0);
    const std::vector<float> x = uniform(in_size(s), -2, 2), dy = uniform(out_size(s), -1, 1);
    std::vector<float> y(out_size(s)), dx(in_size(s));
    std::vector<int32_t> idx(out_size(s));
    const double f =
        median_ms([&] { maxpool2d_forward_cpu(&pool, s, x.data(), y.data(), idx.data()); });
    const double b =
        median_ms([&] { maxpool2d_backward_cpu(&pool, s, dy.data(), idx.data(), dx.data()); });
    std::printf("  maxpool 3/2 [%d,%d,%d,%d] -> %dx%d: forward %7.2f  backward %7.2f\n", d[0], d[1],
                d[2], d[3], s.OH, s.OW, f, b);
  }
}

}  // namespace

int main() {
  Pools pools;
  pool_tests(pools);
  lrn_tests(pools);
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  timings();
  if (g_failures) {
    std::printf("FAILED\n");
    return 1;
  }
  std::printf("OK\n");
  return 0;
}
