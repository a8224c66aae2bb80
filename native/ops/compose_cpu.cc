// CPU references for the composition ops of compose.h. Thread mapping: the outputs, [0, count),
// are split into one contiguous range per pool worker; below kGrain units of work the loop runs
// on the queue thread. Every output element is computed by one thread in a fixed order.
#include <cstring>

#include "ops/compose.h"
#include "ops/gemm.h"

namespace cn {

namespace {
constexpr int64_t kGrain = 1 << 15;

// Runs fn(begin, end) over [0, n); `work` estimates the total cost to decide on threading.
template <typename Fn>
void for_range(ThreadPool* pool, int64_t n, int64_t work, Fn fn) {
  if (!pool || work < kGrain) {
    fn(int64_t{0}, n);
    return;
  }
  parallel_for(pool, n, [&](int64_t b, int64_t e, int) { fn(b, e); });
}

// Walks outputs lo, lo+1, ... of a Strided space, keeping both operands' offsets: one division
// per dim at the start, then an odometer step per element (strided_offsets does the divisions
// for every element; the results are the same).
struct StridedWalk {
  const Strided& s;
  int64_t c[kMaxRank], oa = 0, ob = 0;
  StridedWalk(const Strided& sh, int64_t i) : s(sh) {
    for (int d = s.rank - 1; d >= 0; --d) {
      c[d] = i % s.dims[d];
      i /= s.dims[d];
      oa += c[d] * s.sa[d];
      ob += c[d] * s.sb[d];
    }
  }
  void next() {
    int d = s.rank - 1;
    if (d < 0) return;
    ++c[d];
    oa += s.sa[d];
    ob += s.sb[d];
    while (d > 0 && c[d] == s.dims[d]) {
      oa -= c[d] * s.sa[d];
      ob -= c[d] * s.sb[d];
      c[d] = 0;
      --d;
      ++c[d];
      oa += s.sa[d];
      ob += s.sb[d];
    }
  }
};

template <int kCode>
void binary_loop(ThreadPool* pool, const Strided& s, int64_t count, const float* a, const float* b,
                 float* y) {
  for_range(pool, count, count, [&](int64_t lo, int64_t hi) {
    if (lo >= hi) return;
    if (s.rank == 1 && s.sa[0] == 1 && s.sb[0] == 1) {  // same shapes, both contiguous
      for (int64_t i = lo; i < hi; ++i) y[i] = binary_elem(kCode, a[i], b[i]);
      return;
    }
    StridedWalk w(s, lo);
    for (int64_t i = lo; i < hi; ++i, w.next()) y[i] = binary_elem(kCode, a[w.oa], b[w.ob]);
  });
}
}  // namespace

void binary_cpu(ThreadPool* pool, int code, const Strided& s, int64_t count, const float* a,
                const float* b, float* y) {
  switch (code) {
    case kBinAdd: binary_loop<kBinAdd>(pool, s, count, a, b, y); break;
    case kBinSub: binary_loop<kBinSub>(pool, s, count, a, b, y); break;
    case kBinMul: binary_loop<kBinMul>(pool, s, count, a, b, y); break;
    default: binary_loop<kBinDiv>(pool, s, count, a, b, y); break;
  }
}

void unary_cpu(ThreadPool* pool, int code, int64_t n, float p, const float* x, float* y) {
  for_range(pool, n, n, [=](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) y[i] = unary_elem(code, x[i], p);
  });
}

void unary_backward_cpu(ThreadPool* pool, int code, int64_t n, float p, const float* x,
                        const float* y, const float* dy, float* dx) {
  for_range(pool, n, n, [=](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) dx[i] = unary_grad_elem(code, x[i], y[i], dy[i], p);
  });
}

void reduce_cpu(ThreadPool* pool, int code, int64_t outer, int64_t r, int64_t inner, float scale,
                const float* x, float* y, int32_t* idx) {
  const int64_t count = outer * inner;
  for_range(pool, count, count * (r > 0 ? r : 1), [=](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t o = t / inner, i = t - o * inner;
      const float* base = x + o * r * inner + i;
      y[t] = code == kRedSum ? reduce_sum_elem(base, r, inner, scale)
                             : reduce_max_elem(base, r, inner, &idx[t]);
    }
  });
}

void reduce_max_backward_cpu(ThreadPool* pool, int64_t outer, int64_t r, int64_t inner,
                             const float* dy, const int32_t* idx, float* dx) {
  const int64_t count = outer * r * inner;
  for_range(pool, count, count, [=](int64_t lo, int64_t hi) {
    for (int64_t e = lo; e < hi; ++e) {
      const int64_t i = e % inner, oj = e / inner, j = oj % r, o = oj / r;
      const int64_t t = o * inner + i;
      dx[e] = idx[t] == j ? dy[t] : 0.0f;
    }
  });
}

void strided_copy_cpu(ThreadPool* pool, const Strided& s, int64_t count, const float* x, float* y) {
  for_range(pool, count, count, [&](int64_t lo, int64_t hi) {
    if (lo >= hi) return;
    StridedWalk w(s, lo);
    for (int64_t i = lo; i < hi; ++i, w.next()) y[i] = x[w.oa];
  });
}

namespace {
constexpr int kFusedBlock = 256;

// dst[j] = src[off(i0 + j)] for j < m: the offsets walk the output coordinates like an odometer
// (one division per dim per block, not per element).
void fused_gather(const FusedProgram& p, int k, const float* src, int64_t i0, int m, float* dst) {
  const int64_t* st = p.strides[k];
  if (p.rank == 0) {
    for (int j = 0; j < m; ++j) dst[j] = src[0];
    return;
  }
  if (p.rank == 1) {
    const int64_t s = st[0];
    for (int j = 0; j < m; ++j) dst[j] = src[(i0 + j) * s];
    return;
  }
  int64_t c[kMaxRank], i = i0, off = 0;
  for (int d = p.rank - 1; d >= 0; --d) {
    c[d] = i % p.dims[d];
    i /= p.dims[d];
    off += c[d] * st[d];
  }
  const int last = p.rank - 1;
  for (int j = 0; j < m; ++j) {
    dst[j] = src[off];
    int d = last;
    ++c[d];
    off += st[d];
    while (d > 0 && c[d] == p.dims[d]) {
      off -= c[d] * st[d];
      c[d] = 0;
      --d;
      ++c[d];
      off += st[d];
    }
  }
}

template <typename F>
void each(float* a, int m, F f) {
  for (int j = 0; j < m; ++j) a[j] = f(a[j]);
}

// The program over a block of up to kFusedBlock consecutive outputs at once: each instruction is
// a loop over the block (the compiler vectorises the arithmetic), the stack is kFusedMaxStack
// blocks that stay in L1. Per element, the float operations and their order are those of
// fused_eval, so the result is the same as evaluating element by element.
void fused_block(const FusedProgram& p, const float* const* ins, int64_t i0, int m, float* y) {
  float in[kFusedInputs][kFusedBlock];
  bool loaded[kFusedInputs] = {};
  float st[kFusedMaxStack][kFusedBlock];
  int sp = 0;
  for (int q = 0; q < p.n; ++q) {
    const int op = p.code[q] >> 8, a = p.code[q] & 255;
    switch (op) {
      case kFusedLoad:
        if (!loaded[a]) {
          fused_gather(p, a, ins[a], i0, m, in[a]);
          loaded[a] = true;
        }
        std::memcpy(st[sp++], in[a], sizeof(float) * m);
        break;
      case kFusedConst: {
        const float v = p.consts[a];
        float* t = st[sp++];
        for (int j = 0; j < m; ++j) t[j] = v;
        break;
      }
      case kFusedBin: {
        --sp;
        float* x = st[sp - 1];
        const float* z = st[sp];
        switch (a) {
          case kBinAdd: for (int j = 0; j < m; ++j) x[j] = x[j] + z[j]; break;
          case kBinSub: for (int j = 0; j < m; ++j) x[j] = x[j] - z[j]; break;
          case kBinMul: for (int j = 0; j < m; ++j) x[j] = x[j] * z[j]; break;
          default: for (int j = 0; j < m; ++j) x[j] = x[j] / z[j]; break;
        }
        break;
      }
      case kFusedUn: {
        float* x = st[sp - 1];
        switch (a) {
          case kUnNeg: each(x, m, [](float v) { return unary_elem(kUnNeg, v, 0.0f); }); break;
          case kUnExp: each(x, m, [](float v) { return unary_elem(kUnExp, v, 0.0f); }); break;
          case kUnLog: each(x, m, [](float v) { return unary_elem(kUnLog, v, 0.0f); }); break;
          case kUnSqrt: each(x, m, [](float v) { return unary_elem(kUnSqrt, v, 0.0f); }); break;
          case kUnTanh: each(x, m, [](float v) { return unary_elem(kUnTanh, v, 0.0f); }); break;
          default: each(x, m, [](float v) { return unary_elem(kUnSigmoid, v, 0.0f); }); break;
        }
        break;
      }
      default: {
        const float e = p.consts[a];
        each(st[sp - 1], m, [e](float v) { return unary_elem(kUnPow, v, e); });
      }
    }
  }
  std::memcpy(y + i0, st[0], sizeof(float) * m);
}
}  // namespace

void fused_cpu(ThreadPool* pool, const FusedProgram& p, int64_t count, const float* const* ins, float* y) {
  const int64_t blocks = (count + kFusedBlock - 1) / kFusedBlock;
  for_range(pool, blocks, count * 4, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      const int64_t i0 = b * kFusedBlock;
      fused_block(p, ins, i0, static_cast<int>(count - i0 < kFusedBlock ? count - i0 : kFusedBlock), y);
    }
  });
}

void matmul_cpu(ThreadPool* pool, int batch, int M, int N, int K, bool transA, bool transB,
                const float* a, const float* b, float* y) {
  const int lda = transA ? M : K, ldb = transB ? K : N;
  const int64_t sa = int64_t(M) * K, sb = int64_t(K) * N, sy = int64_t(M) * N;
  for (int64_t i = 0; i < batch; ++i)
    sgemm(pool, transA, transB, M, N, K, 1.0f, a + i * sa, lda, b + i * sb, ldb, 0.0f, y + i * sy, N);
}

}  // namespace cn
