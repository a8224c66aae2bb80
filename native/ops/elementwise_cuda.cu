// Element-wise ops on CUDA: randn, axpy, copy_blocks, relu (forward, backward), dropout, sgd.
// The contract (formulas, gradient convention) is elementwise.h; argument lists are registry.cc.
//
// Thread mapping, every kernel here: a flat grid-stride loop over the elements, one element per
// thread per step, 256 threads a block, at most 65535*32 blocks; indices are int64_t, so any
// count up to 2^63 is covered. Layout: flat contiguous float32 arrays (copy_blocks: strided
// blocks of 4-byte words, see its kernel).
//
// Bit-for-bit agreement with the CPU:
//   - relu, dropout, sgd and randn call the same element bodies as the CPU loops
//     (elementwise.h); dropout's keep mask is integer-only, so masks always agree, and dropout's
//     1/(1-p) is computed once on the host exactly as dropout_cpu does.
//   - axpy spells its multiply and add as __fmul_rn/__fadd_rn so nvcc cannot fuse them into an
//     FMA; the CPU (x86-64 baseline) also rounds twice, so the results agree exactly.
//   - CMakeLists.txt compiles this file with -fmad=false, so nvcc does not contract a*b+c into
//     an FMA inside the shared bodies either: sgd rounds like the CPU. randn's logf/cosf are
//     CUDA's, not glibc's, so randn agrees with the CPU to float32 rounding, not bit for bit.
#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "core/cuda_launch.h"
#include "ops/elementwise.h"
#include "ops/op_args.h"
#include "ops/registry.h"

namespace cn {

namespace {





// randn: y[i] = mean + std * z_i, z_i ~ N(0, 1) from (seed, i). y [count].
__global__ void randn_kernel(float* y, int64_t count, uint64_t seed, float mean, float std) {
  for (int64_t i = first_index(); i < count; i += grid_stride())
    y[i] = randn_elem(seed, static_cast<uint64_t>(i), mean, std);
}

// axpy: y[i] += alpha * x[i]. x, y [count]; y is updated in place.
__global__ void axpy_kernel(float* y, const float* x, int64_t count, float alpha) {
  for (int64_t i = first_index(); i < count; i += grid_stride())
    y[i] = __fadd_rn(y[i], __fmul_rn(alpha, x[i]));
}

// copy_blocks: `outer` blocks of `inner` 4-byte words; word k of block o goes from
// src[o*src_stride + src_offset + k] to dst[o*dst_stride + dst_offset + k]. The flat index
// t = o*inner + k runs over outer*inner words, so consecutive threads copy consecutive words of
// a block (coalesced). Words are moved as float bit patterns (plain loads/stores never alter
// them), so int32 tensors copy exactly.
__global__ void copy_blocks_kernel(float* dst, const float* src, int64_t outer, int64_t inner,
                                   int64_t src_stride, int64_t src_offset, int64_t dst_stride,
                                   int64_t dst_offset) {
  const int64_t total = outer * inner;
  for (int64_t t = first_index(); t < total; t += grid_stride()) {
    const int64_t o = t / inner, k = t - o * inner;
    dst[o * dst_stride + dst_offset + k] = src[o * src_stride + src_offset + k];
  }
}

// relu forward: y[i] = x[i] > 0 ? x[i] : 0 (NaN stays NaN). x, y [count].
__global__ void relu_forward_kernel(float* y, const float* x, int64_t count) {
  for (int64_t i = first_index(); i < count; i += grid_stride()) y[i] = relu_fwd_elem(x[i]);
}

// relu backward: dx[i] = x[i] <= 0 ? 0 : dy[i] (dx overwritten). x, dy, dx [count].
__global__ void relu_backward_kernel(float* dx, const float* x, const float* dy, int64_t count) {
  for (int64_t i = first_index(); i < count; i += grid_stride())
    dx[i] = relu_bwd_elem(x[i], dy[i]);
}

// dropout: y[i] = keep(seed, i) ? x[i] * scale : 0, scale = 1/(1-p). x, y [count].
__global__ void dropout_kernel(float* y, const float* x, int64_t count, uint64_t seed, float p,
                               float scale) {
  for (int64_t i = first_index(); i < count; i += grid_stride())
    y[i] = dropout_elem(x[i], seed, static_cast<uint64_t>(i), p, scale);
}

// sgd: per element, d = g + wd*w; with momentum, v = momentum*v + d and d = v; w -= lr*d.
// w, g, v [count]; w and v in place; v is null when momentum is 0.
__global__ void sgd_kernel(float* w, const float* g, float* v, int64_t count, float lr,
                           float momentum, float wd) {
  for (int64_t i = first_index(); i < count; i += grid_stride())
    sgd_elem(&w[i], g[i], v ? &v[i] : nullptr, lr, momentum, wd);
}

}  // namespace

// randn: [y] | [count, seed] | [mean, std]
void randn_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int64_t count = c.i[0];
  if (count <= 0) return;
  dev->activate();
  randn_kernel<<<blocks_for(count), kThreads, 0, dev->stream()>>>(
      arg(c, 0), count, static_cast<uint64_t>(c.i[1]), static_cast<float>(c.f[0]),
      static_cast<float>(c.f[1]));
  CN_CUDA_CHECK(cudaGetLastError(), "randn: launching on " + dev->id());
}

// axpy: [y, x] | [count] | [alpha]
void axpy_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int64_t count = c.i[0];
  if (count <= 0) return;
  dev->activate();
  axpy_kernel<<<blocks_for(count), kThreads, 0, dev->stream()>>>(
      arg(c, 0), arg(c, 1), count, static_cast<float>(c.f[0]));
  CN_CUDA_CHECK(cudaGetLastError(), "axpy: launching on " + dev->id());
}

// copy_blocks: [dst, src] | [outer, inner, src_stride, src_offset, dst_stride, dst_offset] | []
void copy_blocks_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int64_t outer = c.i[0], inner = c.i[1];
  if (outer <= 0 || inner <= 0) return;
  dev->activate();
  copy_blocks_kernel<<<blocks_for(outer * inner), kThreads, 0, dev->stream()>>>(
      arg(c, 0), arg(c, 1), outer, inner, c.i[2], c.i[3], c.i[4], c.i[5]);
  CN_CUDA_CHECK(cudaGetLastError(), "copy_blocks: launching on " + dev->id());
}

// relu_forward: [y, x] | [count] | []
void relu_forward_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int64_t count = c.i[0];
  if (count <= 0) return;
  dev->activate();
  relu_forward_kernel<<<blocks_for(count), kThreads, 0, dev->stream()>>>(arg(c, 0), arg(c, 1),
                                                                          count);
  CN_CUDA_CHECK(cudaGetLastError(), "relu_forward: launching on " + dev->id());
}

// relu_backward: [dx, x, dy] | [count] | []
void relu_backward_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int64_t count = c.i[0];
  if (count <= 0) return;
  dev->activate();
  relu_backward_kernel<<<blocks_for(count), kThreads, 0, dev->stream()>>>(
      arg(c, 0), arg(c, 1), arg(c, 2), count);
  CN_CUDA_CHECK(cudaGetLastError(), "relu_backward: launching on " + dev->id());
}

// dropout: [y, x] | [count, seed] | [p]
void dropout_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int64_t count = c.i[0];
  if (count <= 0) return;
  const float p = static_cast<float>(c.f[0]);
  const float scale = 1.0f / (1.0f - p);  // as dropout_cpu computes it
  dev->activate();
  dropout_kernel<<<blocks_for(count), kThreads, 0, dev->stream()>>>(
      arg(c, 0), arg(c, 1), count, static_cast<uint64_t>(c.i[1]), p, scale);
  CN_CUDA_CHECK(cudaGetLastError(), "dropout: launching on " + dev->id());
}

// sgd: [w, g, v?] | [count] | [lr, momentum, weight_decay]
void sgd_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int64_t count = c.i[0];
  if (count <= 0) return;
  dev->activate();
  sgd_kernel<<<blocks_for(count), kThreads, 0, dev->stream()>>>(
      arg(c, 0), arg(c, 1), arg(c, 2), count, static_cast<float>(c.f[0]),
      static_cast<float>(c.f[1]), static_cast<float>(c.f[2]));
  CN_CUDA_CHECK(cudaGetLastError(), "sgd: launching on " + dev->id());
}

}  // namespace cn
