// Standalone checks and timings for sgemm and conv2d on the CPU.
//
//   (a) sgemm vs sgemm_reference on random shapes: all transpose combinations, odd and zero
//       sizes, padded leading dimensions, several alpha/beta, NaN-poisoned C when beta == 0,
//       serial and with a 2-thread pool.
//   (b) conv2d forward / backward-data / backward-filter vs a direct 7-loop implementation on
//       random shapes (groups, stride, padding, 1x1, odd sizes), outputs NaN-poisoned first.
//   (c) the backward passes vs central finite differences of a double-precision forward.
//   (d) timings of the AlexNet-mini (width 0.5, batch 128) conv layers and of two GEMMs.
// Exits non-zero on any mismatch. CN_SGEMM_ISA=avx2|sse|portable caps the micro-kernel for a run.
//
// Build from the repository root (pass --no-bench to skip the timings):
//   g++ -O3 -std=c++17 -pthread -Inative native/core/parallel.cc native/ops/gemm_cpu.cc
//       native/ops/conv2d_cpu.cc native/ops/conv2d_cpu_blocked.cc native/ops/conv2d_cpu_direct.cc
//       native/ops/conv2d_cpu_winograd.cc native/ops/test_gemm_conv.cc
//       -o /tmp/test_gemm_conv
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "ops/conv2d.h"
#include "ops/conv2d_blocked.h"
#include "ops/conv2d_direct.h"
#include "ops/conv2d_winograd.h"
#include "ops/cpu_scratch.h"
#include "ops/gemm.h"

using namespace cn;

namespace {

std::mt19937 rng(12345);
int failures = 0;

int rand_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

void fill_random(std::vector<float>& v) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& x : v) x = u(rng);
}

// Largest error relative to max(|a|, |b|, 1) over n elements.
double max_rel_err(const float* a, const float* b, size_t n) {
  double worst = 0.0;
  for (size_t i = 0; i < n; ++i) {
    double x = a[i], y = b[i];
    if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<double>::infinity();
    double e = std::fabs(x - y) / std::max({std::fabs(x), std::fabs(y), 1.0});
    worst = std::max(worst, e);
  }
  return worst;
}

void check(bool ok, const char* what) {
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what);
  }
}

// ---------------------------------------------------------------------------------------------
// (a) GEMM

bool gemm_case(ThreadPool* pool, bool tA, bool tB, int M, int N, int K, int pad, float alpha,
               float beta) {
  const int lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
  const int arows = tA ? K : M, brows = tB ? N : K;
  std::vector<float> A(size_t(std::max(arows, 1)) * lda), B(size_t(std::max(brows, 1)) * ldb);
  std::vector<float> C(size_t(std::max(M, 1)) * ldc), R;
  fill_random(A);
  fill_random(B);
  fill_random(C);
  if (beta == 0.0f) std::fill(C.begin(), C.end(), std::numeric_limits<float>::quiet_NaN());
  R = C;
  sgemm(pool, tA, tB, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  sgemm_reference(tA, tB, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, R.data(), ldc);
  // Compare the M x N window, and check the padding columns were left alone.
  double err = 0.0;
  bool pad_ok = true;
  for (int i = 0; i < M; ++i) {
    err = std::max(err, max_rel_err(C.data() + size_t(i) * ldc, R.data() + size_t(i) * ldc, N));
    for (int j = N; j < ldc; ++j) {
      float c = C[size_t(i) * ldc + j], r = R[size_t(i) * ldc + j];
      if (!(c == r || (std::isnan(c) && std::isnan(r)))) pad_ok = false;
    }
  }
  bool ok = err <= 1e-4 * std::max(1.0, std::sqrt(K / 64.0)) && pad_ok;
  if (!ok)
    std::printf("  gemm mismatch tA=%d tB=%d M=%d N=%d K=%d pad=%d alpha=%g beta=%g err=%g "
                "pad_ok=%d\n", tA, tB, M, N, K, pad, alpha, beta, err, pad_ok);
  return ok;
}

void test_gemm(ThreadPool* pool) {
  int cases = 0, bad = 0;
  const float betas[] = {0.0f, 1.0f, 0.5f};
  auto run = [&](ThreadPool* p, bool tA, bool tB, int M, int N, int K, int pad, float alpha,
                 float beta) {
    ++cases;
    if (!gemm_case(p, tA, tB, M, N, K, pad, alpha, beta)) ++bad;
  };
  // Edge sizes around every micro-tile and block boundary, all transposes and betas.
  const int sizes[] = {0, 1, 2, 3, 5, 6, 7, 8, 9, 13, 15, 16, 17, 31, 32, 33, 47, 64, 65};
  for (int t = 0; t < 4; ++t)
    for (float beta : betas)
      for (int M : {0, 1, 5, 8, 13, 17})
        for (int N : {0, 1, 7, 16, 17, 33, 36})
          for (int K : {0, 1, 3, 25})
            run(nullptr, t & 1, t & 2, M, N, K, (M + N + K) % 3, 1.0f, beta);
  // Random shapes, some crossing the KC=256 / MC=192 blocking.
  for (int it = 0; it < 300; ++it) {
    bool tA = rand_int(0, 1), tB = rand_int(0, 1);
    int M = it % 5 == 0 ? rand_int(1, 300) : sizes[rand_int(0, 18)];
    int N = it % 7 == 0 ? rand_int(1, 300) : rand_int(0, 100);
    int K = it % 3 == 0 ? rand_int(1, 600) : rand_int(0, 70);
    float alpha = it % 4 == 0 ? -0.75f : 1.0f;
    run(it % 2 ? pool : nullptr, tA, tB, M, N, K, rand_int(0, 5), alpha, betas[it % 3]);
  }
  // Large enough to take the threaded paths (split over N and over M).
  for (int t = 0; t < 4; ++t) {
    run(pool, t & 1, t & 2, 128, 512, 256, 3, 1.0f, 0.0f);
    run(pool, t & 1, t & 2, 500, 40, 300, 1, 0.5f, 0.5f);
    run(pool, t & 1, t & 2, 97, 131, 513, 0, 1.0f, 1.0f);
  }
  run(pool, false, false, 3, 5, 7, 0, 0.0f, 0.5f);
  std::printf("(a) sgemm: %d cases, %d mismatches\n", cases, bad);
  check(bad == 0, "sgemm vs reference");

  // A packed once (sgemm_pack_a, or written through PackedA::at after sgemm_layout_a) gives the
  // same bits as sgemm (M, N > 1) on one thread, for every column block of B it multiplies; M and K cross
  // the MC = 192 / KC = 256 blocking. NaN in C before a beta == 0 product must not survive.
  int packed_bad = 0;
  for (int it = 0; it < 40; ++it) {
    const bool tA = rand_int(0, 1), tB = rand_int(0, 1);
    // (M or N == 1 would send sgemm down its matrix-vector path, which sums in another order.)
    const int M = it < 4 ? 200 + it : rand_int(2, 70), K = it < 4 ? 257 + 30 * it : rand_int(1, 90);
    const int N = rand_int(2, 90), lda = (tA ? M : K) + rand_int(0, 3);
    const int ldb = (tB ? K : N) + rand_int(0, 3);
    const float alpha = it % 3 == 0 ? 0.5f : 1.0f, beta = it % 2 ? 0.0f : 1.0f;
    std::vector<float> A(size_t(tA ? K : M) * lda), B(size_t(tB ? N : K) * ldb), C0(size_t(M) * N);
    fill_random(A);
    fill_random(B);
    fill_random(C0);
    std::vector<float> C1 = C0, C2 = C0;
    if (beta == 0.0f) std::fill(C2.begin(), C2.end(), std::numeric_limits<float>::quiet_NaN());
    sgemm(nullptr, tA, tB, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C1.data(), N);
    PackedA P, Q;
    sgemm_pack_a(tA, M, K, alpha, A.data(), lda, &P);
    sgemm_layout_a(M, K, &Q);
    for (int i = 0; i < M; ++i)
      for (int k = 0; k < K; ++k)
        Q.data[Q.at(i, k)] = alpha * (tA ? A[size_t(k) * lda + i] : A[size_t(i) * lda + k]);
    // Two column blocks, the second starting mid-panel.
    const int n1 = std::min(N, 1 + N / 3);
    for (const PackedA* pa : {&P, &Q}) {
      std::vector<float> C = beta == 0.0f ? C2 : C0;
      sgemm_packed_a(*pa, tB, n1, B.data(), ldb, beta, C.data(), N);
      if (N > n1)
        sgemm_packed_a(*pa, tB, N - n1, tB ? B.data() + size_t(n1) * ldb : B.data() + n1, ldb,
                       beta, C.data() + n1, N);
      if (C != C1) ++packed_bad;
    }
    // B packed too (sgemm_layout_b, written through PackedB::at; N crosses half panels).
    PackedB L;
    sgemm_layout_b(K, N, &L);
    AlignedScratch bp_buf;  // the micro-kernels load B's panels with aligned vector loads
    float* Bp = bp_buf.get(size_t(L.size()));
    std::fill(Bp, Bp + L.size(), 0.0f);
    for (int k = 0; k < K; ++k)
      for (int j = 0; j < N; ++j) Bp[L.at(k, j)] = tB ? B[size_t(j) * ldb + k] : B[size_t(k) * ldb + j];
    std::vector<float> C = beta == 0.0f ? C2 : C0;
    sgemm_packed_ab(Q, Q.data.data(), L, Bp, beta, C.data(), N);
    if (C != C1) ++packed_bad;
  }
  std::printf("(a) sgemm with packed A (and B): 120 cases, %d mismatches\n", packed_bad);
  check(packed_bad == 0, "sgemm_packed_a vs sgemm");
}

// ---------------------------------------------------------------------------------------------
// (b) conv2d vs a direct implementation

Conv2dShape make_shape(int N, int C, int H, int W, int F, int KH, int KW, int sh, int sw, int ph,
                       int pw, int G) {
  Conv2dShape s{N, C, H, W, F, KH, KW, sh, sw, ph, pw, G, 0, 0};
  s.OH = (H + 2 * ph - KH) / sh + 1;
  s.OW = (W + 2 * pw - KW) / sw + 1;
  return s;
}

// Calls fn(y_index, x_index, w_index) for every tap that reads an in-range input cell.
template <class Fn>
void for_each_tap(const Conv2dShape& s, Fn fn) {
  const int Cg = s.C / s.G, Fg = s.F / s.G;
  for (int n = 0; n < s.N; ++n)
    for (int f = 0; f < s.F; ++f)
      for (int oh = 0; oh < s.OH; ++oh)
        for (int ow = 0; ow < s.OW; ++ow)
          for (int c = 0; c < Cg; ++c)
            for (int kh = 0; kh < s.KH; ++kh)
              for (int kw = 0; kw < s.KW; ++kw) {
                int ih = oh * s.sh - s.ph + kh, iw = ow * s.sw - s.pw + kw;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                int ci = (f / Fg) * Cg + c;
                size_t xi = ((size_t(n) * s.C + ci) * s.H + ih) * s.W + iw;
                size_t wi = ((size_t(f) * Cg + c) * s.KH + kh) * s.KW + kw;
                size_t yi = ((size_t(n) * s.F + f) * s.OH + oh) * s.OW + ow;
                fn(yi, xi, wi);
              }
}

template <class T>
void direct_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y) {
  const size_t P = size_t(s.OH) * s.OW;
  for (size_t i = 0; i < size_t(s.N) * s.F * P; ++i) y[i] = b ? b[(i / P) % s.F] : T(0);
  for_each_tap(s, [&](size_t yi, size_t xi, size_t wi) { y[yi] += x[xi] * w[wi]; });
}

struct ConvBufs {
  std::vector<float> x, w, b, y, dy, dx, dw, db;
};

ConvBufs make_bufs(const Conv2dShape& s) {
  ConvBufs B;
  B.x.resize(size_t(s.N) * s.C * s.H * s.W);
  B.w.resize(size_t(s.F) * (s.C / s.G) * s.KH * s.KW);
  B.b.resize(s.F);
  B.y.resize(size_t(s.N) * s.F * s.OH * s.OW);
  B.dy.resize(B.y.size());
  B.dx.resize(B.x.size());
  B.dw.resize(B.w.size());
  B.db.resize(s.F);
  fill_random(B.x);
  fill_random(B.w);
  fill_random(B.b);
  fill_random(B.dy);
  return B;
}

bool conv_case(ThreadPool* pool, const Conv2dShape& s, bool with_bias) {
  ConvBufs B = make_bufs(s);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float* bias = with_bias ? B.b.data() : nullptr;
  std::fill(B.y.begin(), B.y.end(), nan);
  std::fill(B.dx.begin(), B.dx.end(), nan);
  std::fill(B.dw.begin(), B.dw.end(), nan);
  std::fill(B.db.begin(), B.db.end(), nan);
  conv2d_forward_cpu(pool, s, B.x.data(), B.w.data(), bias, B.y.data());
  conv2d_backward_data_cpu(pool, s, B.dy.data(), B.w.data(), B.dx.data());
  conv2d_backward_filter_cpu(pool, s, B.x.data(), B.dy.data(), B.dw.data(),
                             with_bias ? B.db.data() : nullptr);

  std::vector<double> xd(B.x.begin(), B.x.end()), wd(B.w.begin(), B.w.end()),
      bd(B.b.begin(), B.b.end()), yd(B.y.size());
  direct_forward<double>(s, xd.data(), wd.data(), with_bias ? bd.data() : nullptr, yd.data());
  std::vector<double> dxd(B.dx.size(), 0.0), dwd(B.dw.size(), 0.0), dbd(s.F, 0.0);
  for_each_tap(s, [&](size_t yi, size_t xi, size_t wi) {
    dxd[xi] += double(B.dy[yi]) * wd[wi];
    dwd[wi] += double(B.dy[yi]) * xd[xi];
  });
  const size_t P = size_t(s.OH) * s.OW;
  for (size_t i = 0; i < B.dy.size(); ++i) dbd[(i / P) % s.F] += B.dy[i];

  auto cmp = [](const std::vector<float>& a, const std::vector<double>& r) {
    std::vector<float> rf(r.begin(), r.end());
    return max_rel_err(a.data(), rf.data(), a.size());
  };
  double ey = cmp(B.y, yd), edx = cmp(B.dx, dxd), edw = cmp(B.dw, dwd);
  double edb = with_bias ? cmp(B.db, dbd) : 0.0;
  bool ok = ey <= 1e-4 && edx <= 1e-4 && edw <= 1e-4 && edb <= 1e-4;
  if (!ok)
    std::printf("  conv mismatch N=%d C=%d H=%d W=%d F=%d K=%dx%d s=%d,%d p=%d,%d G=%d: "
                "y %g dx %g dw %g db %g\n",
                s.N, s.C, s.H, s.W, s.F, s.KH, s.KW, s.sh, s.sw, s.ph, s.pw, s.G, ey, edx, edw,
                edb);
  return ok;
}

// Sets an environment variable for the life of the object, then restores it (the paths read
// theirs on every call). The tests are single-threaded where they use it.
struct EnvOverride {
  std::string name, saved;
  bool had;
  EnvOverride(const char* n, const char* value) : name(n) {
    const char* v = std::getenv(n);
    had = v != nullptr;
    if (had) saved = v;
    setenv(n, value, 1);
  }
  ~EnvOverride() {
    if (had) {
      setenv(name.c_str(), saved.c_str(), 1);
    } else {
      unsetenv(name.c_str());
    }
  }
};

void test_conv(ThreadPool* pool) {
  int cases = 0, bad = 0;
  auto run = [&](ThreadPool* p, const Conv2dShape& s, bool bias) {
    ++cases;
    if (!conv_case(p, s, bias)) ++bad;
  };
  // Hand-picked corner cases.
  run(pool, make_shape(3, 4, 5, 5, 6, 5, 5, 1, 1, 0, 0, 1), true);    // kernel == input
  run(pool, make_shape(2, 4, 3, 3, 4, 5, 5, 1, 1, 1, 1, 2), true);    // kernel == padded input
  run(pool, make_shape(4, 6, 7, 9, 8, 1, 1, 1, 1, 0, 0, 2), true);    // 1x1 direct
  run(nullptr, make_shape(1, 6, 7, 9, 8, 1, 1, 1, 1, 0, 0, 1), true); // 1x1, one image
  run(pool, make_shape(3, 4, 11, 10, 4, 1, 1, 2, 3, 1, 0, 1), true);  // 1x1 strided, padded
  run(pool, make_shape(2, 3, 13, 12, 5, 2, 2, 4, 5, 1, 2, 1), false); // stride > kernel
  run(pool, make_shape(5, 4, 1, 9, 6, 1, 3, 1, 2, 0, 1, 2), true);    // OH == 1
  run(pool, make_shape(1, 4, 8, 8, 4, 3, 3, 1, 1, 1, 1, 4), true);    // depthwise, 1 image, pool
  run(pool, make_shape(130, 2, 4, 4, 4, 3, 3, 1, 1, 1, 1, 2), true);  // many small images
  run(pool, make_shape(2, 32, 13, 13, 64, 5, 5, 1, 1, 2, 2, 2), true);  // AlexNet-mini conv2
  run(pool, make_shape(9, 64, 6, 6, 96, 3, 3, 1, 1, 1, 1, 1), true);    // conv3
  run(pool, make_shape(3, 1, 28, 28, 32, 5, 5, 1, 1, 2, 2, 1), true);   // conv1
  // The batch-in-lanes path (conv2d_cpu_blocked.cc: AVX-512 or AVX2, N a multiple of 32, at least
  // 8 channels and filters per group): AlexNet shapes, stride 4 and 11x11, odd sizes and row
  // counts that are not multiples of the 8- or 6-row tile, one and several blocks per worker.
  // With the AVX-512 or AVX2 SGEMM kernel (and CN_CONV_BLOCKED unset) these must take that path.
  // Whether a path with its own ISA (`isa`: "avx512", "avx2", or "" when off) must be on: with the
  // AVX-512 or AVX2 SGEMM kernel unless `env`=0; and that it uses the SGEMM's ISA.
  auto path_on = [](const char* what, const char* env, const char* isa) {
    const char* cap = std::getenv(env);
    const std::string gemm = sgemm_kernel_name();
    const bool on = (gemm == "avx512" || gemm == "avx2") && !(cap && std::string(cap) == "0");
    std::printf("(b) %s conv path: %s\n", what, *isa ? isa : "off");
    check(on ? isa == gemm : !*isa, (std::string(what) + " conv ISA").c_str());
    return on;
  };
  const bool blocked = path_on("blocked", "CN_CONV_BLOCKED", conv2d_blocked_isa());
  check(conv2d_blocked_applies(make_shape(128, 64, 6, 6, 96, 3, 3, 1, 1, 1, 1, 1)) == blocked,
        "blocked conv path taken");
  // (The 3x3 stride-1 shapes below would take Winograd first.)
  std::unique_ptr<EnvOverride> no_winograd(new EnvOverride("CN_CONV_WINOGRAD", "0"));
  run(pool, make_shape(64, 32, 13, 13, 64, 5, 5, 1, 1, 2, 2, 2), true);   // AlexNet-mini conv2
  run(pool, make_shape(128, 64, 6, 6, 96, 3, 3, 1, 1, 1, 1, 1), true);   // conv3, 2 blocks each
  run(nullptr, make_shape(64, 96, 6, 6, 64, 3, 3, 1, 1, 1, 1, 2), false); // conv5, serial
  run(pool, make_shape(64, 8, 27, 25, 12, 11, 11, 4, 4, 2, 2, 1), true);  // conv1-like stride 4
  run(pool, make_shape(64, 18, 7, 5, 10, 3, 2, 2, 1, 0, 1, 2), true);     // 9 / 5 rows per group
  run(pool, make_shape(64, 26, 5, 6, 14, 2, 3, 1, 2, 1, 0, 2), true);     // 13 / 7 rows per group
  run(pool, make_shape(64, 8, 6, 5, 40, 3, 3, 1, 1, 1, 1, 1), true);      // 40 filters: 32 + 16
  run(pool, make_shape(96, 8, 4, 9, 8, 1, 1, 1, 1, 0, 0, 1), false);      // 3 blocks, 1x1
  // Narrow inputs: the filter gradient alone takes the blocked path (forward and data: im2col).
  check(conv2d_blocked_applies(make_shape(64, 1, 28, 28, 32, 5, 5, 1, 1, 2, 2, 1), true) == blocked &&
            !conv2d_blocked_applies(make_shape(64, 1, 28, 28, 32, 5, 5, 1, 1, 2, 2, 1)),
        "blocked filter gradient for one input channel");
  run(pool, make_shape(64, 1, 28, 28, 32, 5, 5, 1, 1, 2, 2, 1), true);    // AlexNet-mini conv1
  run(pool, make_shape(64, 6, 9, 7, 16, 3, 3, 2, 1, 1, 1, 2), false);     // 3 channels per group
  for (int it = 0; it < 8; ++it) {
    int G = rand_int(1, 2);
    int C = G * rand_int(8, 13), F = G * rand_int(8, 13);
    int KH = rand_int(1, 5), KW = rand_int(1, 5);
    int ph = rand_int(0, 2), pw = rand_int(0, 2);
    int H = std::max(KH - 2 * ph, 1) + rand_int(0, 6);
    int W = std::max(KW - 2 * pw, 1) + rand_int(0, 6);
    int sh = rand_int(1, 4), sw = rand_int(1, 4);
    run(it % 2 ? pool : nullptr, make_shape(32 * rand_int(2, 3), C, H, W, F, KH, KW, sh, sw, ph,
                                            pw, G), it % 2);
  }
  no_winograd.reset();
  // The direct path for few input channels (conv2d_cpu_direct.cc: AVX-512 or AVX2, at most 4
  // channels and a multiple of 16 filters per group), on whenever the GEMM kernel is one of those.
  {
    const bool direct = path_on("direct", "CN_CONV_DIRECT", conv2d_direct_isa());
    check(conv2d_direct_applies(make_shape(8, 3, 35, 35, 48, 11, 11, 4, 4, 2, 2, 1)) == direct,
          "direct conv path taken");
    // (AlexNet-mini's conv1 at batch 3 is among the hand-picked cases above.)
    run(pool, make_shape(2, 3, 47, 51, 48, 11, 11, 4, 4, 2, 2, 1), true);   // AlexNet conv1, smaller
    run(nullptr, make_shape(1, 3, 23, 29, 96, 11, 11, 4, 4, 2, 2, 1), false);  // 96: two chunks
    run(pool, make_shape(5, 2, 9, 31, 64, 3, 3, 2, 2, 0, 1, 1), true);      // 64: 4 vectors
    run(pool, make_shape(2, 4, 5, 6, 16, 7, 7, 1, 1, 3, 3, 1), false);      // kernel > input
    check(conv2d_direct_applies(make_shape(3, 4, 12, 12, 64, 7, 7, 1, 1, 3, 3, 2)) == direct &&
              !conv2d_direct_applies(make_shape(3, 4, 12, 12, 64, 7, 7, 1, 1, 3, 3, 2), true),
          "direct conv: groups in the forward pass only");
    run(pool, make_shape(3, 4, 12, 11, 64, 7, 7, 1, 1, 3, 3, 2), true);     // 2 groups of 2 -> 32
    run(pool, make_shape(2, 6, 9, 14, 96, 5, 3, 2, 2, 2, 1, 3), false);     // 3 groups of 2 -> 32
    for (int it = 0; it < 16; ++it) {
      const int Fs[] = {16, 32, 48, 64, 80, 96};
      int C = rand_int(1, 4), F = Fs[rand_int(0, 5)];
      int KH = rand_int(1, 11), KW = rand_int(1, 11);
      int ph = rand_int(0, 3), pw = rand_int(0, 3);
      int H = std::max(KH - 2 * ph, 1) + rand_int(0, 30);
      int W = std::max(KW - 2 * pw, 1) + rand_int(0, 30);
      const int strides[] = {1, 2, 4};
      int sh = rand_int(1, 4), sw = strides[rand_int(0, 2)];
      run(it % 3 ? pool : nullptr, make_shape(rand_int(1, 9), C, H, W, F, KH, KW, sh, sw, ph, pw, 1),
          it % 2);
    }
    // The same bits with the pool and without it (forward and filter gradient).
    const Conv2dShape s = make_shape(6, 3, 39, 37, 48, 11, 11, 4, 4, 2, 2, 1);
    ConvBufs A = make_bufs(s), B = make_bufs(s);
    conv2d_forward_cpu(pool, s, A.x.data(), A.w.data(), A.b.data(), A.y.data());
    conv2d_forward_cpu(nullptr, s, A.x.data(), A.w.data(), A.b.data(), B.y.data());
    conv2d_backward_filter_cpu(pool, s, A.x.data(), A.dy.data(), A.dw.data(), A.db.data());
    conv2d_backward_filter_cpu(nullptr, s, A.x.data(), A.dy.data(), B.dw.data(), B.db.data());
    check(A.y == B.y && A.dw == B.dw && A.db == B.db, "direct conv: same bits with 1 and 2 threads");
  }
  // The Winograd path (conv2d_cpu_winograd.cc, any ISA): 3x3 stride 1, forward and backward
  // data. AlexNet's conv3 shape must take it unless CN_CONV_WINOGRAD=0; then, with the path forced
  // on (CN_CONV_WINOGRAD=1), small and odd shapes: every padding it takes, odd output sizes
  // (partial tiles), groups, tiles split across images and chunks, one image, no pool.
  {
    const char* env = std::getenv("CN_CONV_WINOGRAD");
    const bool off = env && std::string(env) == "0";
    check(conv2d_winograd_applies(make_shape(8, 256, 13, 13, 384, 3, 3, 1, 1, 1, 1, 1)) == !off &&
              conv2d_winograd_applies(make_shape(8, 384, 13, 13, 256, 3, 3, 1, 1, 1, 1, 2)) == !off,
          "Winograd conv path taken for AlexNet's conv3 and conv5");
    // Few tiles (4 images of 13x13: 196): the filter gradient only.
    check(!conv2d_winograd_applies(make_shape(4, 256, 13, 13, 192, 3, 3, 1, 1, 1, 1, 1)) &&
              conv2d_winograd_applies(make_shape(4, 256, 13, 13, 192, 3, 3, 1, 1, 1, 1, 1), true) ==
                  !off,
          "Winograd conv path: below 256 tiles, the filter gradient only");
    check(!conv2d_winograd_applies(make_shape(8, 256, 13, 13, 384, 3, 3, 2, 2, 1, 1, 1)) &&
              !conv2d_winograd_applies(make_shape(8, 256, 13, 13, 384, 3, 3, 1, 1, 3, 3, 1)) &&
              !conv2d_winograd_applies(make_shape(8, 256, 13, 13, 384, 5, 5, 1, 1, 5, 5, 1)) &&
              !conv2d_winograd_applies(make_shape(8, 256, 13, 13, 384, 7, 7, 1, 1, 1, 1, 1)),
          "Winograd conv path: 3x3 or 5x5, stride 1, padding < kernel only");
    {
      const Conv2dShape conv2 = make_shape(8, 48, 27, 27, 128, 5, 5, 1, 1, 2, 2, 1);
      const bool by_default = conv2d_winograd_applies(conv2);
      EnvOverride opt_in("CN_CONV_WINOGRAD_5X5", "1");
      check(!by_default && conv2d_winograd_applies(conv2) == !off &&
                !conv2d_winograd_applies(conv2, true),
            "Winograd 5x5 for AlexNet's conv2 only when opted in, forward and data gradient");
    }
    run(pool, make_shape(3, 64, 13, 13, 64, 3, 3, 1, 1, 1, 1, 1), true);  // as taken by shape
    if (!off) {
      EnvOverride forced("CN_CONV_WINOGRAD", "1");
      run(pool, make_shape(2, 12, 13, 13, 20, 3, 3, 1, 1, 1, 1, 2), true);    // conv5-like, 2 groups
      run(nullptr, make_shape(1, 5, 7, 6, 3, 3, 3, 1, 1, 0, 0, 1), false);    // no padding, 1 image
      run(pool, make_shape(4, 6, 6, 6, 9, 3, 3, 1, 1, 2, 2, 3), true);        // padding 2, 3 groups
      run(pool, make_shape(3, 8, 3, 3, 8, 3, 3, 1, 1, 0, 1, 1), false);       // one output row
      run(pool, make_shape(60, 4, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1), true);       // 540 tiles: chunks
      // F(2x2, 5x5) (forward and dx; dw takes another path): AlexNet's conv2, padding 0-4.
      run(pool, make_shape(2, 24, 27, 27, 40, 5, 5, 1, 1, 2, 2, 2), true);    // conv2-like
      run(nullptr, make_shape(1, 3, 5, 6, 5, 5, 5, 1, 1, 0, 0, 1), false);    // one output row
      run(pool, make_shape(3, 6, 4, 7, 9, 5, 5, 1, 1, 4, 3, 3), true);        // padding 4 and 3
      // Random R x R shapes: padding 0 .. R-1, groups, odd sizes, with and without the pool.
      auto random_cases = [&](int R, int count, int max_n, int max_g, int max_cf, int max_extra) {
        for (int it = 0; it < count; ++it) {
          const int G = rand_int(1, max_g), ph = rand_int(0, R - 1), pw = rand_int(0, R - 1);
          const int H = std::max(R - 2 * ph, 1) + rand_int(0, max_extra);
          const int W = std::max(R - 2 * pw, 1) + rand_int(0, max_extra);
          run(it % 3 ? pool : nullptr,
              make_shape(rand_int(1, max_n), G * rand_int(1, max_cf), H, W, G * rand_int(1, max_cf),
                         R, R, 1, 1, ph, pw, G),
              it % 2);
        }
      };
      random_cases(5, 12, 4, 2, 12, 10);
      random_cases(3, 24, 6, 3, 20, 12);
      // The same bits with the pool and without it.
      const Conv2dShape s = make_shape(5, 16, 11, 9, 24, 3, 3, 1, 1, 1, 1, 2);
      ConvBufs A = make_bufs(s), B = make_bufs(s);
      conv2d_forward_cpu(pool, s, A.x.data(), A.w.data(), A.b.data(), A.y.data());
      conv2d_forward_cpu(nullptr, s, A.x.data(), A.w.data(), A.b.data(), B.y.data());
      conv2d_backward_data_cpu(pool, s, A.dy.data(), A.w.data(), A.dx.data());
      conv2d_backward_data_cpu(nullptr, s, A.dy.data(), A.w.data(), B.dx.data());
      conv2d_backward_filter_cpu(pool, s, A.x.data(), A.dy.data(), A.dw.data(), A.db.data());
      conv2d_backward_filter_cpu(nullptr, s, A.x.data(), A.dy.data(), B.dw.data(), B.db.data());
      check(A.y == B.y && A.dx == B.dx && A.dw == B.dw && A.db == B.db,
            "Winograd conv: same bits with 1 and 2 threads");
    }
  }
  // Random shapes.
  for (int it = 0; it < 60; ++it) {
    int G = rand_int(1, 3);
    int C = G * rand_int(1, 5), F = G * rand_int(1, 6);
    int KH = rand_int(1, 5), KW = rand_int(1, 5);
    int ph = rand_int(0, 2), pw = rand_int(0, 2);
    int H = std::max(KH - 2 * ph, 1) + rand_int(0, 9);
    int W = std::max(KW - 2 * pw, 1) + rand_int(0, 9);
    int sh = rand_int(1, 3), sw = rand_int(1, 3);
    int N = rand_int(1, 7);
    run(it % 3 ? pool : nullptr, make_shape(N, C, H, W, F, KH, KW, sh, sw, ph, pw, G), it % 2);
  }
  std::printf("(b) conv2d vs direct: %d cases, %d mismatches\n", cases, bad);
  check(bad == 0, "conv2d vs direct");
}

// ---------------------------------------------------------------------------------------------
// (c) finite differences: L = sum(y * r), so dL/dy = r

void test_finite_diff(ThreadPool* pool) {
  const Conv2dShape s = make_shape(2, 4, 5, 6, 4, 3, 2, 2, 1, 1, 1, 2);
  ConvBufs B = make_bufs(s);
  conv2d_backward_data_cpu(pool, s, B.dy.data(), B.w.data(), B.dx.data());
  conv2d_backward_filter_cpu(pool, s, B.x.data(), B.dy.data(), B.dw.data(), B.db.data());
  std::vector<double> x(B.x.begin(), B.x.end()), w(B.w.begin(), B.w.end()),
      b(B.b.begin(), B.b.end()), y(B.y.size());
  auto loss = [&]() {
    direct_forward<double>(s, x.data(), w.data(), b.data(), y.data());
    double l = 0.0;
    for (size_t i = 0; i < y.size(); ++i) l += y[i] * B.dy[i];
    return l;
  };
  const double h = 1e-3;
  double worst = 0.0;
  auto probe = [&](std::vector<double>& v, const std::vector<float>& grad) {
    for (size_t i = 0; i < v.size(); ++i) {
      double keep = v[i];
      v[i] = keep + h;
      double lp = loss();
      v[i] = keep - h;
      double lm = loss();
      v[i] = keep;
      double fd = (lp - lm) / (2 * h);
      double g = grad[i];
      worst = std::max(worst, std::fabs(fd - g) / std::max({std::fabs(fd), std::fabs(g), 1.0}));
    }
  };
  probe(x, B.dx);
  probe(w, B.dw);
  probe(b, B.db);
  std::printf("(c) finite differences: max rel err %.3g\n", worst);
  check(worst <= 1e-4, "finite differences");
}

// ---------------------------------------------------------------------------------------------
// (d) timings

double median_ms(const std::function<void()>& fn, int reps) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto a = std::chrono::steady_clock::now();
    fn();
    auto b = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::milli>(b - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void bench(ThreadPool* pool) {
  struct Layer {
    const char* name;
    Conv2dShape s;
  };
  const Layer layers[] = {
      {"conv1", make_shape(128, 1, 28, 28, 32, 5, 5, 1, 1, 2, 2, 1)},
      {"conv2", make_shape(128, 32, 13, 13, 64, 5, 5, 1, 1, 2, 2, 2)},
      {"conv3", make_shape(128, 64, 6, 6, 96, 3, 3, 1, 1, 1, 1, 1)},
      {"conv4", make_shape(128, 96, 6, 6, 96, 3, 3, 1, 1, 1, 1, 2)},
      {"conv5", make_shape(128, 96, 6, 6, 64, 3, 3, 1, 1, 1, 1, 2)},
  };
  std::printf("(d) timings, %d-thread pool, median of 9 (ms; GFLOP/s in brackets)\n",
              pool_size(pool));
  std::printf("  layer   forward          bwd data         bwd filter       sum\n");
  double tot[3] = {0, 0, 0};
  for (const Layer& L : layers) {
    const Conv2dShape& s = L.s;
    ConvBufs B = make_bufs(s);
    double gf = 2.0 * s.N * s.F * s.OH * s.OW * (s.C / s.G) * s.KH * s.KW * 1e-9;
    double t[3];
    t[0] = median_ms(
        [&] { conv2d_forward_cpu(pool, s, B.x.data(), B.w.data(), B.b.data(), B.y.data()); }, 9);
    t[1] = median_ms(
        [&] { conv2d_backward_data_cpu(pool, s, B.dy.data(), B.w.data(), B.dx.data()); }, 9);
    t[2] = median_ms(
        [&] {
          conv2d_backward_filter_cpu(pool, s, B.x.data(), B.dy.data(), B.dw.data(), B.db.data());
        },
        9);
    std::printf("  %-6s", L.name);
    for (int i = 0; i < 3; ++i) {
      std::printf("  %7.2f (%5.1f)", t[i], gf / t[i] * 1e3);
      tot[i] += t[i];
    }
    std::printf("  %7.2f\n", t[0] + t[1] + t[2]);
  }
  std::printf("  total   %7.2f          %7.2f          %7.2f          %7.2f\n", tot[0], tot[1],
              tot[2], tot[0] + tot[1] + tot[2]);

  struct G {
    int M, N, K;
    bool tA, tB;
  };
  for (G g : {G{256, 256, 256, false, false}, G{128, 512, 512, false, false},
              G{128, 512, 256, false, true}, G{512, 256, 128, true, false}}) {
    std::vector<float> A(size_t(g.M) * g.K), Bm(size_t(g.K) * g.N), C(size_t(g.M) * g.N);
    fill_random(A);
    fill_random(Bm);
    int lda = g.tA ? g.M : g.K, ldb = g.tB ? g.K : g.N;
    double gf = 2.0 * g.M * g.N * g.K * 1e-9;
    auto run = [&](ThreadPool* p) {
      sgemm(p, g.tA, g.tB, g.M, g.N, g.K, 1.0f, A.data(), lda, Bm.data(), ldb, 0.0f, C.data(),
            g.N);
    };
    double t1 = median_ms([&] { run(nullptr); }, 15);
    double t2 = median_ms([&] { run(pool); }, 15);
    std::printf("  sgemm %3dx%3dx%3d tA=%d tB=%d: 1 thread %6.1f GFLOP/s, pool %6.1f GFLOP/s\n",
                g.M, g.N, g.K, g.tA, g.tB, gf / t1 * 1e3, gf / t2 * 1e3);
  }
}

}  // namespace

int main(int argc, char** argv) {
  ThreadPool pool(2);
  bool timings = !(argc > 1 && std::string(argv[1]) == "--no-bench");
  std::printf("sgemm micro-kernel: %s\n", sgemm_kernel_name());
  test_gemm(&pool);
  test_conv(&pool);
  test_finite_diff(&pool);
  if (timings) bench(&pool);
  if (failures) {
    std::printf("%d check(s) FAILED\n", failures);
    return 1;
  }
  std::printf("all checks passed\n");
  return 0;
}
