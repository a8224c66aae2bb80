// Element-wise ops. Each element body is one __host__ __device__ function shared by the CPU
// loop and the CUDA kernel, so both devices compute the same float operations in the same order.
//
//   relu:     y = x > 0 ? x : 0, NaN stays NaN     dx = x <= 0 ? 0 : dy (gradient 0 at x == 0)
//   dropout:  y = keep(seed, i) ? x / (1 - p) : 0   dx = keep(seed, i) ? dy / (1 - p) : 0
//   axpy:     y += alpha * x
//   sgd:      v = momentum * v + (g + wd * w);  w -= lr * v   (momentum 0: w -= lr * (g + wd * w))
//   randn:    y = mean + std * z, z ~ N(0, 1) from the counter-based generator (Box-Muller)
//
// Gradient convention: dx overwritten.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/parallel.h"
#include "core/rng.h"

namespace cn {

// NaN propagates as in PyTorch: relu(NaN) = NaN, and its gradient passes dy through.
CN_HD float relu_fwd_elem(float x) { return (x > 0.f || x != x) ? x : 0.f; }
CN_HD float relu_bwd_elem(float x, float dy) { return x <= 0.f ? 0.f : dy; }

CN_HD float dropout_elem(float x, uint64_t seed, uint64_t i, float p, float scale) {
  return dropout_keep(seed, i, p) ? x * scale : 0.f;
}

CN_HD void sgd_elem(float* w, float g, float* v, float lr, float momentum, float wd) {
  float d = g + wd * *w;
  if (momentum != 0.f) {
    *v = momentum * *v + d;
    d = *v;
  }
  *w -= lr * d;
}

CN_HD float randn_elem(uint64_t seed, uint64_t i, float mean, float std) {
  // One Box-Muller pair per element index: two independent uniforms from two counters.
  float u1 = rng_uniform(seed, 2 * i) + (1.0f / 33554432.0f);  // (0, 1]: log stays finite
  float u2 = rng_uniform(seed, 2 * i + 1);
  float r = sqrtf(-2.0f * logf(u1));
  return mean + std * r * cosf(6.28318530717958647692f * u2);
}

// CPU loops. Each splits [0, n) over the pool.
void relu_forward_cpu(ThreadPool* pool, int64_t n, const float* x, float* y);
void relu_backward_cpu(ThreadPool* pool, int64_t n, const float* x, const float* dy, float* dx);
void dropout_cpu(ThreadPool* pool, int64_t n, uint64_t seed, float p, const float* x, float* y);
void axpy_cpu(ThreadPool* pool, int64_t n, float alpha, const float* x, float* y);
void fill_cpu(ThreadPool* pool, int64_t n, float value, float* y);
void randn_cpu(ThreadPool* pool, int64_t n, uint64_t seed, float mean, float std, float* y);
void sgd_cpu(ThreadPool* pool, int64_t n, float lr, float momentum, float wd, float* w,
             const float* g, float* v);

// Copies `outer` blocks of `inner` elements (4-byte words): block o goes from
// src[o*src_stride + src_offset] to dst[o*dst_stride + dst_offset]. concat, split and their
// gradients are all this one op.
void copy_blocks_cpu(ThreadPool* pool, int64_t outer, int64_t inner, const float* src,
                     int64_t src_stride, int64_t src_offset, float* dst, int64_t dst_stride,
                     int64_t dst_offset);

}  // namespace cn
