// Softmax cross-entropy on CUDA; the contract is loss.h, the reference loss_cpu.cc.
//
// Forward runs two kernels: softmax_xent_rows_kernel writes probs and each row's loss (in double)
// to a scratch array, then softmax_xent_mean_kernel sums that array in one block. Every
// reduction is a fixed tree (warp shuffles, then one shared slot per warp), so the loss is the
// same bit for bit on every run; there are no float atomics. The scratch block is taken from
// the device's caching allocator and handed back when the launcher returns: like every other
// buffer of this device, it is reused only by work issued later to the same stream.
//
// Agreement with the CPU: the row max is exact; exp is CUDA's expf (not glibc's) and the row sum
// is a double tree sum rather than a sequential one, so probs and the loss agree to float32
// rounding. Backward is bit-identical.
#include <cstdint>

#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "core/cuda_launch.h"
#include "ops/loss.h"
#include "ops/op_args.h"
#include "ops/registry.h"

namespace cn {

namespace {

constexpr int kMaxRowBlocks = 65535;  // row kernel: blocks loop over rows beyond this


struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  __device__ double operator()(double a, double b) const { return a + b; }
};

// Reduces v over the block and returns the result to every thread. blockDim.x must be a
// multiple of 32 (at most 1024); `slots` is shared memory for 32 values. The combine order is
// fixed (xor butterflies within warps, then over the per-warp slots), and op is commutative, so
// every thread gets the same bits on every run. Race-free when called repeatedly: the leading
// __syncthreads keeps this call's slot writes after the previous call's slot reads.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T identity, T* slots) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (lane == 0) slots[warp] = v;
  __syncthreads();
  v = lane < warps ? slots[lane] : identity;
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Forward, per row. Thread mapping: one block per row (blocks loop over rows n = blockIdx.x,
// + gridDim.x, ...), blockDim.x threads (a multiple of 32) striding over the row's M columns.
// Shapes: logits and probs [N, M] row-major, labels int32 [N] (in range), row_loss double [N].
// Per row: mx = max z (block max); e_m = expf(z_m - mx) stored to probs; sum = sum e_m in
// double (block sum); probs *= (float)(1/sum), each thread rescaling only the entries it wrote;
// thread 0 writes row_loss[n] = log(sum) + mx - z[label]. A NaN logit makes the row's sum, its
// probs and its loss NaN, as on the CPU.
__global__ void softmax_xent_rows_kernel(int N, int M, const float* __restrict__ logits,
                                         const int32_t* __restrict__ labels,
                                         float* __restrict__ probs,
                                         double* __restrict__ row_loss) {
  __shared__ float fslots[32];
  __shared__ double dslots[32];
  // 64-bit counters: n + gridDim.x and m + blockDim.x must not overflow near 2^31.
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const float* z = logits + n * M;
    float* p = probs + n * M;
    float mx = -INFINITY;
    for (int64_t m = threadIdx.x; m < M; m += blockDim.x) mx = fmaxf(mx, z[m]);
    mx = block_reduce(mx, MaxOp(), -INFINITY, fslots);
    double sum = 0.0;
    for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
      const float e = expf(z[m] - mx);
      p[m] = e;
      sum += static_cast<double>(e);
    }
    sum = block_reduce(sum, SumOp(), 0.0, dslots);
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t m = threadIdx.x; m < M; m += blockDim.x) p[m] = __fmul_rn(p[m], inv);
    if (threadIdx.x == 0) {
      row_loss[n] = log(sum) + static_cast<double>(mx) - static_cast<double>(z[labels[n]]);
    }
  }
}

// Forward, the mean. Thread mapping: a single block of kThreads threads; thread t sums
// row_loss[t], row_loss[t + kThreads], ... in order, then a block tree sum. Shapes: row_loss
// double [N], loss float [1] = (float)(total / N); N == 0 gives NaN, as on the CPU.
__global__ void softmax_xent_mean_kernel(int N, const double* __restrict__ row_loss,
                                         float* __restrict__ loss) {
  __shared__ double slots[32];
  double s = 0.0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) s += row_loss[n];
  s = block_reduce(s, SumOp(), 0.0, slots);
  if (threadIdx.x == 0) *loss = static_cast<float>(s / N);
}

// Backward. Thread mapping: a grid-stride loop over the N*M entries, one entry per thread per
// step (flat index i = n*M + m, coalesced). Shapes: probs and dlogits [N, M] row-major, labels
// int32 [N], gout float [1] on the device. dlogits = (gout/N) * (p - onehot(label)),
// overwritten.
__global__ void softmax_xent_backward_kernel(int N, int M, const float* __restrict__ probs,
                                             const int32_t* __restrict__ labels,
                                             const float* __restrict__ gout,
                                             float* __restrict__ dlogits) {
  const int64_t total = static_cast<int64_t>(N) * M;
  const float g = __fdiv_rn(*gout, static_cast<float>(N));
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t n = i / M;
    const int m = static_cast<int>(i - n * M);
    const float t = m == labels[n] ? 1.0f : 0.0f;
    dlogits[i] = __fmul_rn(g, __fsub_rn(probs[i], t));
  }
}

}  // namespace

// softmax_xent_forward: [loss(1), probs, logits, labels(int32)] | [N, M] | []
void softmax_xent_forward_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int N = static_cast<int>(c.i[0]), M = static_cast<int>(c.i[1]);
  if (N <= 0) {
    // An empty batch: the CPU writes 0/0 = NaN; so does the mean kernel, reading nothing.
    dev->activate();
    softmax_xent_mean_kernel<<<1, kThreads, 0, dev->stream()>>>(0, nullptr, arg(c, 0));
    CN_CUDA_CHECK(cudaGetLastError(), "softmax_xent_forward: launching on " + dev->id());
    return;
  }
  if (M <= 0) return;  // unreachable: labels in [0, M) exist only when M > 0
  dev->activate();
  // Scratch for the per-row losses; released when this returns (stream-ordered reuse).
  StoragePtr row_loss = dev->allocate(static_cast<size_t>(N) * sizeof(double));
  // Narrow rows get a narrower block, so few threads idle.
  const int threads = M <= 32 ? 32 : M <= 64 ? 64 : M <= 128 ? 128 : kThreads;
  const int blocks = N < kMaxRowBlocks ? N : kMaxRowBlocks;
  softmax_xent_rows_kernel<<<blocks, threads, 0, dev->stream()>>>(
      N, M, arg(c, 2), arg<int32_t>(c, 3), arg(c, 1), row_loss->as<double>());
  CN_CUDA_CHECK(cudaGetLastError(), "softmax_xent_forward: launching on " + dev->id());
  softmax_xent_mean_kernel<<<1, kThreads, 0, dev->stream()>>>(N, row_loss->as<double>(),
                                                               arg(c, 0));
  CN_CUDA_CHECK(cudaGetLastError(), "softmax_xent_forward: launching on " + dev->id());
}

// softmax_xent_backward: [dlogits, probs, labels(int32), gout(1)] | [N, M] | []
void softmax_xent_backward_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int N = static_cast<int>(c.i[0]), M = static_cast<int>(c.i[1]);
  const int64_t total = static_cast<int64_t>(N) * M;
  if (total <= 0) return;
  int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  dev->activate();
  softmax_xent_backward_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, dev->stream()>>>(
      N, M, arg(c, 1), arg<int32_t>(c, 2), arg(c, 3), arg(c, 0));
  CN_CUDA_CHECK(cudaGetLastError(), "softmax_xent_backward: launching on " + dev->id());
}

}  // namespace cn
