// CPU loops for the element-wise ops of elementwise.h. Thread mapping: [0, n) is split into
// one contiguous range per pool worker; below kGrain elements it runs on the queue thread, where
// waking the pool would cost more than the loop.
#include <cstring>

#include "ops/elementwise.h"

namespace cn {

namespace {
constexpr int64_t kGrain = 1 << 15;

template <typename Fn>
void for_range(ThreadPool* pool, int64_t n, Fn fn) {
  if (n < kGrain) {
    fn(int64_t{0}, n);
    return;
  }
  parallel_for(pool, n, [&](int64_t b, int64_t e, int) { fn(b, e); });
}
}  // namespace

void relu_forward_cpu(ThreadPool* pool, int64_t n, const float* x, float* y) {
  for_range(pool, n, [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = relu_fwd_elem(x[i]);
  });
}

void relu_backward_cpu(ThreadPool* pool, int64_t n, const float* x, const float* dy, float* dx) {
  for_range(pool, n, [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dx[i] = relu_bwd_elem(x[i], dy[i]);
  });
}

void dropout_cpu(ThreadPool* pool, int64_t n, uint64_t seed, float p, const float* x, float* y) {
  const float scale = 1.0f / (1.0f - p);
  for_range(pool, n, [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = dropout_elem(x[i], seed, static_cast<uint64_t>(i), p, scale);
  });
}

void axpy_cpu(ThreadPool* pool, int64_t n, float alpha, const float* x, float* y) {
  for_range(pool, n, [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] += alpha * x[i];
  });
}

void fill_cpu(ThreadPool* pool, int64_t n, float value, float* y) {
  for_range(pool, n, [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = value;
  });
}

void randn_cpu(ThreadPool* pool, int64_t n, uint64_t seed, float mean, float std, float* y) {
  for_range(pool, n, [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = randn_elem(seed, static_cast<uint64_t>(i), mean, std);
  });
}

void sgd_cpu(ThreadPool* pool, int64_t n, float lr, float momentum, float wd, float* w,
             const float* g, float* v) {
  for_range(pool, n, [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sgd_elem(&w[i], g[i], v ? &v[i] : nullptr, lr, momentum, wd);
  });
}

void copy_blocks_cpu(ThreadPool* pool, int64_t outer, int64_t inner, const float* src,
                     int64_t src_stride, int64_t src_offset, float* dst, int64_t dst_stride,
                     int64_t dst_offset) {
  auto body = [=](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) {
      std::memcpy(dst + o * dst_stride + dst_offset, src + o * src_stride + src_offset,
                  static_cast<size_t>(inner) * sizeof(float));
    }
  };
  if (outer * inner < kGrain) {
    body(0, outer);
  } else {
    parallel_for(pool, outer, [&](int64_t b, int64_t e, int) { body(b, e); });
  }
}

}  // namespace cn
