// The composition ops on CUDA: binary, unary, unary_backward, reduce, reduce_max_backward,
// strided_copy, matmul, fused. The contract (formulas, layouts, gradient convention) is compose.h;
// argument lists are registry.cc.
//
// Thread mapping: every element-wise kernel here is a flat grid-stride loop over the outputs,
// one element per thread per step, 256 threads a block, at most kMaxBlocks blocks; indices are
// int64_t. reduce has two mappings, both without atomics (a run repeats bit for bit):
//   - many outputs (or short rows): each output [o, i] belongs to one thread, which walks its r
//     terms in ascending order exactly as the CPU does, so sums agree with the CPU bit for bit;
//     consecutive threads take consecutive i, so with inner > 1 the loads of a step coalesce.
//   - few outputs with long rows (a sum over everything, per-channel statistics): one block of
//     256 threads per output (block-stride over outputs); thread k takes terms k, k+256, ... in
//     order, then a fixed shared-memory tree combines the 256 partials. Sums then differ from the
//     CPU's by rounding only; max and its index still agree exactly (ties go to the smaller j,
//     a NaN beats a number, and the first NaN wins).
// matmul is the strided-batched SGEMM of gemm_cuda.h.
//
// Bit-for-bit agreement with the CPU: binary, reduce, reduce_max_backward and strided_copy
// compute the same float operations in the same order (CMakeLists.txt compiles this file with
// -fmad=false, so nvcc contracts nothing into an FMA). unary uses CUDA's expf/logf/tanhf/powf,
// which agree with glibc's to a few ulps, not bit for bit.
#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "core/cuda_launch.h"
#include "ops/compose.h"
#include "ops/gemm_cuda.h"
#include "ops/op_args.h"
#include "ops/registry.h"

namespace cn {

namespace {

// binary: y[i] = a[off_a(i)] op b[off_b(i)]. y [count] contiguous; a and b strided (s).
template <int kCode>
__global__ void binary_kernel(float* y, const float* a, const float* b, Strided s, int64_t count) {
  for (int64_t i = first_index(); i < count; i += grid_stride()) {
    int64_t oa, ob;
    strided_offsets(s, i, &oa, &ob);
    y[i] = binary_elem(kCode, a[oa], b[ob]);
  }
}

// unary: y[i] = f(x[i]). x, y [count].
__global__ void unary_kernel(float* y, const float* x, int64_t count, int code, float p) {
  for (int64_t i = first_index(); i < count; i += grid_stride()) y[i] = unary_elem(code, x[i], p);
}

// unary_backward: dx[i] = dy[i] * f'(x[i]) (from x, y = f(x)). All [count].
__global__ void unary_backward_kernel(float* dx, const float* x, const float* y, const float* dy,
                                      int64_t count, int code, float p) {
  for (int64_t i = first_index(); i < count; i += grid_stride())
    dx[i] = unary_grad_elem(code, x[i], y[i], dy[i], p);
}

// reduce: thread t = o*inner + i owns y[t]; x [outer, r, inner], y and idx [outer, inner].
__global__ void reduce_kernel(float* y, int32_t* idx, const float* x, int64_t outer, int64_t r,
                              int64_t inner, int code, float scale) {
  const int64_t count = outer * inner;
  for (int64_t t = first_index(); t < count; t += grid_stride()) {
    const int64_t o = t / inner, i = t - o * inner;
    const float* base = x + o * r * inner + i;
    y[t] = code == kRedSum ? reduce_sum_elem(base, r, inner, scale)
                           : reduce_max_elem(base, r, inner, &idx[t]);
  }
}

// reduce, block per output: y[t], t = o*inner + i, from the 256 threads of one block (see the
// file header). x [outer, r, inner], y and idx [outer, inner]. blockDim.x must be kReduceThreads.
constexpr int kReduceThreads = 256;
__device__ __forceinline__ bool max_wins(float v, int32_t j, float best, int32_t bj) {
  const bool vn = v != v, bn = best != best;
  if (vn || bn) return vn && (!bn || j < bj);
  return v > best || (v == best && j < bj);
}
__global__ void reduce_block_kernel(float* y, int32_t* idx, const float* x, int64_t outer, int64_t r,
                                    int64_t inner, int code, float scale) {
  __shared__ float sv[kReduceThreads];
  __shared__ int32_t si[kReduceThreads];
  const int k = threadIdx.x;
  const int64_t count = outer * inner;
  for (int64_t t = blockIdx.x; t < count; t += gridDim.x) {
    const int64_t o = t / inner, i = t - o * inner;
    const float* base = x + o * r * inner + i;
    float acc = 0.0f;
    int32_t bj = -1;
    if (code == kRedSum) {
      for (int64_t j = k; j < r; j += kReduceThreads) acc += base[j * inner];
    } else {
      for (int64_t j = k; j < r; j += kReduceThreads) {
        const float v = base[j * inner];
        if (bj < 0 || max_wins(v, static_cast<int32_t>(j), acc, bj)) {
          acc = v;
          bj = static_cast<int32_t>(j);
        }
      }
    }
    sv[k] = acc;
    si[k] = bj;
    __syncthreads();
    for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
      if (k < s) {
        if (code == kRedSum) {
          sv[k] += sv[k + s];
        } else if (si[k + s] >= 0 && (si[k] < 0 || max_wins(sv[k + s], si[k + s], sv[k], si[k]))) {
          sv[k] = sv[k + s];
          si[k] = si[k + s];
        }
      }
      __syncthreads();
    }
    if (k == 0) {
      if (code == kRedSum) {
        y[t] = sv[0] * scale;
      } else {
        y[t] = sv[0];
        idx[t] = si[0];
      }
    }
    __syncthreads();
  }
}

// reduce_max_backward: dx[o, j, i] = j == idx[o, i] ? dy[o, i] : 0; one thread per element of
// dx [outer, r, inner] (every element written, no atomics).
__global__ void reduce_max_backward_kernel(float* dx, const float* dy, const int32_t* idx,
                                           int64_t outer, int64_t r, int64_t inner) {
  const int64_t count = outer * r * inner;
  for (int64_t e = first_index(); e < count; e += grid_stride()) {
    const int64_t i = e % inner, oj = e / inner, j = oj % r, o = oj / r;
    const int64_t t = o * inner + i;
    dx[e] = idx[t] == j ? dy[t] : 0.0f;
  }
}

// strided_copy: y[i] = x[off_x(i)]. y [count] contiguous, x strided (s.sa).
__global__ void strided_copy_kernel(float* y, const float* x, Strided s, int64_t count) {
  for (int64_t i = first_index(); i < count; i += grid_stride()) {
    int64_t ox, unused;
    strided_offsets(s, i, &ox, &unused);
    y[i] = x[ox];
  }
}

// fused: y[i] = program(inputs at their broadcast offsets of i). y [count] contiguous. The
// program, strides and constants travel in the kernel's parameters (about 700 bytes); every
// thread walks the same instructions, so the switch never diverges within a warp.
struct FusedInputs {
  const float* p[kFusedInputs];
};
__global__ void fused_kernel(float* y, FusedInputs in, FusedProgram p, int64_t count) {
  for (int64_t i = first_index(); i < count; i += grid_stride()) y[i] = fused_elem(p, in.p, i);
}

}  // namespace

// fused: [y, in0?, ..., in5?] | [inputs, rank, count, dims[8], strides[6][8], n, code[32]] | consts[8]
void fused_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int64_t count = c.i[2];
  if (count <= 0) return;
  const FusedProgram p = fused_of(c);
  FusedInputs in{};
  for (int k = 0; k < kFusedInputs; ++k) in.p[k] = arg(c, 1 + k);
  dev->activate();
  fused_kernel<<<blocks_for(count), kThreads, 0, dev->stream()>>>(arg(c, 0), in, p, count);
  CN_CUDA_CHECK(cudaGetLastError(), "fused: launching on " + dev->id());
}

// binary: [y, a, b] | [code, rank, count, dims[8], sa[8], sb[8]] | []
void binary_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int code = int_arg(c, 0);
  const int64_t count = c.i[2];
  if (count <= 0) return;
  const Strided s = strided_of(c, 3, int_arg(c, 1), true);
  dev->activate();
  float* y = arg(c, 0);
  const float *a = arg(c, 1), *b = arg(c, 2);
  const unsigned blocks = blocks_for(count);
  switch (code) {
    case kBinAdd: binary_kernel<kBinAdd><<<blocks, kThreads, 0, dev->stream()>>>(y, a, b, s, count); break;
    case kBinSub: binary_kernel<kBinSub><<<blocks, kThreads, 0, dev->stream()>>>(y, a, b, s, count); break;
    case kBinMul: binary_kernel<kBinMul><<<blocks, kThreads, 0, dev->stream()>>>(y, a, b, s, count); break;
    default: binary_kernel<kBinDiv><<<blocks, kThreads, 0, dev->stream()>>>(y, a, b, s, count); break;
  }
  CN_CUDA_CHECK(cudaGetLastError(), "binary: launching on " + dev->id());
}

// unary: [y, x] | [code, count] | [p]
void unary_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int64_t count = c.i[1];
  if (count <= 0) return;
  dev->activate();
  unary_kernel<<<blocks_for(count), kThreads, 0, dev->stream()>>>(arg(c, 0), arg(c, 1), count,
                                                                   int_arg(c, 0), float_arg(c, 0));
  CN_CUDA_CHECK(cudaGetLastError(), "unary: launching on " + dev->id());
}

// unary_backward: [dx, x, y, dy] | [code, count] | [p]
void unary_backward_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int64_t count = c.i[1];
  if (count <= 0) return;
  dev->activate();
  unary_backward_kernel<<<blocks_for(count), kThreads, 0, dev->stream()>>>(
      arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), count, int_arg(c, 0), float_arg(c, 0));
  CN_CUDA_CHECK(cudaGetLastError(), "unary_backward: launching on " + dev->id());
}

// When a block per output pays: few outputs (fewer than the GPU's resident threads would cover
// one thread each) and rows long enough to split 256 ways.
constexpr int64_t kReduceBlockOutputs = 8192, kReduceBlockRows = 256;

// reduce: [y, idx?, x] | [code, outer, r, inner] | [scale]
void reduce_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int64_t outer = c.i[1], r = c.i[2], inner = c.i[3];
  if (outer * inner <= 0) return;
  dev->activate();
  const int64_t count = outer * inner;
  if (count <= kReduceBlockOutputs && r >= kReduceBlockRows) {
    const unsigned blocks = static_cast<unsigned>(count < kMaxBlocks ? count : kMaxBlocks);
    reduce_block_kernel<<<blocks, kReduceThreads, 0, dev->stream()>>>(
        arg(c, 0), arg<int32_t>(c, 1), arg(c, 2), outer, r, inner, int_arg(c, 0), float_arg(c, 0));
  } else {
    reduce_kernel<<<blocks_for(count), kThreads, 0, dev->stream()>>>(
        arg(c, 0), arg<int32_t>(c, 1), arg(c, 2), outer, r, inner, int_arg(c, 0), float_arg(c, 0));
  }
  CN_CUDA_CHECK(cudaGetLastError(), "reduce: launching on " + dev->id());
}

// reduce_max_backward: [dx, dy, idx] | [outer, r, inner] | []
void reduce_max_backward_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int64_t outer = c.i[0], r = c.i[1], inner = c.i[2];
  const int64_t count = outer * r * inner;
  if (count <= 0) return;
  dev->activate();
  reduce_max_backward_kernel<<<blocks_for(count), kThreads, 0, dev->stream()>>>(
      arg(c, 0), arg(c, 1), arg<int32_t>(c, 2), outer, r, inner);
  CN_CUDA_CHECK(cudaGetLastError(), "reduce_max_backward: launching on " + dev->id());
}

// strided_copy: [y, x] | [rank, count, dims[8], strides[8]] | []
void strided_copy_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int64_t count = c.i[1];
  if (count <= 0) return;
  const Strided s = strided_of(c, 2, int_arg(c, 0), false);
  dev->activate();
  strided_copy_kernel<<<blocks_for(count), kThreads, 0, dev->stream()>>>(arg(c, 0), arg(c, 1), s,
                                                                         count);
  CN_CUDA_CHECK(cudaGetLastError(), "strided_copy: launching on " + dev->id());
}

// matmul: [y, a, b] | [batch, M, N, K, transA, transB] | []
void matmul_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int batch = int_arg(c, 0), M = int_arg(c, 1), N = int_arg(c, 2), K = int_arg(c, 3);
  const bool ta = c.i[4] != 0, tb = c.i[5] != 0;
  if (batch <= 0 || M <= 0 || N <= 0) return;
  dev->activate();
  sgemm_strided_batched_cuda(dev->stream(), ta, tb, M, N, K, 1.0f, arg(c, 1), ta ? M : K,
                             int64_t(M) * K, arg(c, 2), tb ? K : N, int64_t(K) * N, 0.0f,
                             arg(c, 0), N, int64_t(M) * N, batch,
                             "matmul: launching on " + dev->id());
}

}  // namespace cn
