// Synthetic kernels that pin down the emulation's semantics (harness --self-test). Plain CUDA:
// compiled through prep.py exactly like native/ops/*_cuda.cu, and valid for nvcc as well.
#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "emu_control.h"
#include "selftest.h"

namespace emu_selftest {
namespace {

// out[t] = s[t + 1] after every thread wrote s[t] = t; without the barrier a thread may read a
// neighbour's slot before it is written.
__global__ void neighbour_racy(float* out) {
  __shared__ float s[128];
  const unsigned t = threadIdx.x;
  s[t] = static_cast<float>(t);
  out[t] = s[(t + 1) % blockDim.x];
}
__global__ void neighbour_synced(float* out) {
  __shared__ float s[128];
  const unsigned t = threadIdx.x;
  s[t] = static_cast<float>(t);
  __syncthreads();
  out[t] = s[(t + 1) % blockDim.x];
}

__global__ void warp_ops(const float* in, float* xor_sum, float* down_sum, float* bcast,
                         unsigned* ballot, float* up) {
  const unsigned t = threadIdx.x;
  const float v = in[t];
  float x = v;
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  xor_sum[t] = x;
  float d = v;
  for (int o = 16; o > 0; o >>= 1) d += __shfl_down_sync(0xffffffffu, d, o);
  down_sum[t] = d;
  bcast[t] = __shfl_sync(0xffffffffu, v, 5);
  ballot[t] = __ballot_sync(0xffffffffu, v > 0.5f);
  up[t] = __shfl_up_sync(0xffffffffu, v, 3);
}

// Reads shared memory before anyone writes it (must be the poison), checks that two
// declarations do not alias, and that each block gets its own storage.
__global__ void shared_semantics(uint32_t* first_read, int* distinct, int* counts) {
  __shared__ uint32_t a[4];
  __shared__ uint32_t b[4];
  __shared__ int count;
  if (threadIdx.x == 0) {
    first_read[blockIdx.x] = a[0];
    distinct[blockIdx.x] = (&a[0] != &b[0]);
    a[0] = 12345u;  // a later block must not see this
    count = 0;
  }
  __syncthreads();
  atomicAdd(&count, 1);
  __syncthreads();
  if (threadIdx.x == 0) counts[blockIdx.x] = count;
}

// Every (block, thread) of a 3-D grid of 3-D blocks writes its own cell once.
__global__ void coordinates(int* out) {
  const unsigned block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const unsigned thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  const unsigned per = blockDim.x * blockDim.y * blockDim.z;
  out[block * per + thread] += 1 + static_cast<int>(thread);
}

// Asynchronous copies (cp.async through the __pipeline_* primitives), 64 threads: group A copies
// src[t] into a[t]; group B copies src[64 + t] into b[t] fully zero-filled and src[4t .. 4t+3]
// into q[4t ..] with the last 8 bytes zero-filled. Records each slot before any wait, after
// waiting for all but the newest group, after waiting for all, and a neighbour's slot after a
// barrier.
__global__ void async_copies(const float* src, uint32_t* before, float* after_a, uint32_t* after_b,
                             float* final_b, float* final_q, float* neighbour) {
  __shared__ float a[64];
  __shared__ float b[64];
  __shared__ __align__(16) float q[256];
  const unsigned t = threadIdx.x;
  __pipeline_memcpy_async(&a[t], &src[t], 4);
  __pipeline_commit();
  __pipeline_memcpy_async(&b[t], &src[64 + t], 4, 4);
  __pipeline_memcpy_async(&q[4 * t], &src[4 * t], 16, 8);
  __pipeline_commit();
  before[t] = __float_as_uint(a[t]);
  __pipeline_wait_prior(1);
  after_a[t] = a[t];
  after_b[t] = __float_as_uint(b[t]);
  __pipeline_wait_prior(0);
  final_b[t] = b[t];
  for (int i = 0; i < 4; ++i) final_q[4 * t + i] = q[4 * t + i];
  __syncthreads();
  neighbour[t] = a[(t + 1) % 64];
}
// Faults: a misaligned 16-byte copy, a destination outside shared memory, a copy never waited for.
__global__ void async_misaligned(const float* src) {
  __shared__ __align__(16) float s[8];
  __pipeline_memcpy_async(&s[0], &src[1], 16);
  __pipeline_commit();
  __pipeline_wait_prior(0);
}
__global__ void async_to_global(const float* src, float* out) {
  __pipeline_memcpy_async(&out[threadIdx.x], &src[threadIdx.x], 4);
  __pipeline_commit();
  __pipeline_wait_prior(0);
}
__global__ void async_never_waited(const float* src, float* out) {
  __shared__ float s[32];
  __pipeline_memcpy_async(&s[threadIdx.x], &src[threadIdx.x], 4);
  __pipeline_commit();
  out[threadIdx.x] = 1.0f;
}

// ---- Kernels that must fault ----
__global__ void deadlock(float* out) {
  // Half the warp waits in a shuffle the other half never reaches; they wait at a barrier.
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
  else __syncthreads();
}
__global__ void partial_warp_shuffle(float* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);  // launched with 48 threads
}
__global__ void __launch_bounds__(64) bounded(float* out) { out[threadIdx.x] = 1.0f; }
__global__ void oob_shared(float* out) {
  __shared__ float s[32];
  s[threadIdx.x] = 1.0f;  // launched with 64 threads
  out[threadIdx.x] = s[threadIdx.x];
}

template <typename T>
T* dev_alloc(size_t n) {
  void* p = nullptr;
  cudaMalloc(&p, n * sizeof(T));
  return static_cast<T*>(p);
}

}  // namespace

std::vector<Result> run_semantics_checks() {
  std::vector<Result> res;
  using cn_emu::Schedule;

  // A missing barrier gives wrong values under the forward and reverse schedules; with it, every
  // schedule gives the right ones.
  {
    float* out = dev_alloc<float>(128);
    for (Schedule s : {Schedule::Forward, Schedule::Reverse}) {
      cn_emu::set_schedule(s, 1);
      neighbour_racy<<<1, 128>>>(out);
      cudaDeviceSynchronize();
      int wrong = 0;
      for (unsigned t = 0; t < 128; ++t) wrong += !(out[t] == static_cast<float>((t + 1) % 128));
      res.push_back({std::string("a missing __syncthreads shows (schedule ") + cn_emu::schedule_name(s) + ")",
                     wrong > 0, std::to_string(wrong) + " of 128 values wrong"});
    }
    bool all_ok = true;
    for (Schedule s : {Schedule::Forward, Schedule::Reverse, Schedule::Shuffle}) {
      cn_emu::set_schedule(s, 7);
      neighbour_synced<<<2, 128>>>(out);
      cudaDeviceSynchronize();
      for (unsigned t = 0; t < 128; ++t) all_ok &= out[t] == static_cast<float>((t + 1) % 128);
    }
    res.push_back({"with __syncthreads every schedule is right", all_ok, ""});
    cn_emu::set_schedule(Schedule::Forward);
    cudaFree(out);
  }

  // Warp intrinsics, 2 warps.
  {
    const int n = 64;
    float* in = dev_alloc<float>(n);
    float *xs = dev_alloc<float>(n), *ds = dev_alloc<float>(n), *bc = dev_alloc<float>(n), *up = dev_alloc<float>(n);
    unsigned* bal = dev_alloc<unsigned>(n);
    for (int t = 0; t < n; ++t) in[t] = static_cast<float>((t * 37) % 11) / 10.0f;
    warp_ops<<<1, n>>>(in, xs, ds, bc, bal, up);
    cudaDeviceSynchronize();
    bool xor_ok = true, down_ok = true, bc_ok = true, bal_ok = true, up_ok = true;
    for (int w = 0; w < 2; ++w) {
      float sum = 0;
      unsigned ballot = 0;
      for (int l = 0; l < 32; ++l) {
        sum += in[w * 32 + l];
        if (in[w * 32 + l] > 0.5f) ballot |= 1u << l;
      }
      for (int l = 0; l < 32; ++l) {
        const int t = w * 32 + l;
        xor_ok &= std::fabs(xs[t] - sum) < 1e-4f;
        bc_ok &= bc[t] == in[w * 32 + 5];
        bal_ok &= bal[t] == ballot;
        up_ok &= up[t] == (l >= 3 ? in[t - 3] : in[t]);
      }
      down_ok &= std::fabs(ds[w * 32] - sum) < 1e-4f;
    }
    res.push_back({"__shfl_xor_sync butterfly sums every lane", xor_ok, ""});
    res.push_back({"__shfl_down_sync tree sum reaches lane 0", down_ok, ""});
    res.push_back({"__shfl_sync broadcasts a lane", bc_ok, ""});
    res.push_back({"__shfl_up_sync keeps the low lanes' own values", up_ok, ""});
    res.push_back({"__ballot_sync", bal_ok, ""});
    for (void* p : {(void*)in, (void*)xs, (void*)ds, (void*)bc, (void*)bal, (void*)up}) cudaFree(p);
  }

  // Shared memory: poisoned at first touch, per declaration, per block.
  {
    const int blocks = 3;
    uint32_t* first = dev_alloc<uint32_t>(blocks);
    int *distinct = dev_alloc<int>(blocks), *counts = dev_alloc<int>(blocks);
    shared_semantics<<<blocks, 96>>>(first, distinct, counts);
    cudaDeviceSynchronize();
    bool poison = true, dist = true, cnt = true;
    for (int b = 0; b < blocks; ++b) {
      poison &= first[b] == 0xffffffffu;
      dist &= distinct[b] == 1;
      cnt &= counts[b] == 96;
    }
    res.push_back({"__shared__ starts as 0xff bytes in every block", poison, ""});
    res.push_back({"__shared__ declarations do not alias", dist, ""});
    res.push_back({"__shared__ is shared by the block's threads", cnt, ""});
    cudaFree(first);
    cudaFree(distinct);
    cudaFree(counts);
  }

  // 3-D coordinates.
  {
    const dim3 grid(2, 3, 2), block(4, 3, 2);
    const int cells = 12 * 24;
    int* out = dev_alloc<int>(cells);
    cudaMemset(out, 0, cells * sizeof(int));
    coordinates<<<grid, block>>>(out);
    cudaDeviceSynchronize();
    bool ok = true;
    for (int c = 0; c < cells; ++c) ok &= out[c] == 1 + c % 24;
    res.push_back({"3-D grids and blocks: every thread once, with its coordinates", ok, ""});
    cudaFree(out);
  }

  // Asynchronous copies land at the wait, group by group, with zero fill.
  {
    float* src = dev_alloc<float>(256);
    for (int i = 0; i < 256; ++i) src[i] = 1.0f + static_cast<float>(i);
    uint32_t *before = dev_alloc<uint32_t>(64), *after_b = dev_alloc<uint32_t>(64);
    float *after_a = dev_alloc<float>(64), *final_b = dev_alloc<float>(64);
    float *final_q = dev_alloc<float>(256), *neighbour = dev_alloc<float>(64);
    bool pending = true, older = true, newer = true, early = true, zero = true, partial = true,
         shared = true;
    for (Schedule s : {Schedule::Forward, Schedule::Reverse, Schedule::Shuffle}) {
      cn_emu::set_schedule(s, 3);
      async_copies<<<2, 64>>>(src, before, after_a, after_b, final_b, final_q, neighbour);
      cudaDeviceSynchronize();
      for (int t = 0; t < 64; ++t) {
        if (s == Schedule::Forward) {  // at the latest moment
          pending &= before[t] == 0xffffffffu;
          newer &= after_b[t] == 0xffffffffu;
        } else if (s == Schedule::Reverse) {  // at issue
          uint32_t want;
          std::memcpy(&want, &src[t], 4);
          early &= before[t] == want && after_b[t] == 0u;
        }
        older &= after_a[t] == src[t];
        zero &= final_b[t] == 0.0f;
        partial &= final_q[4 * t] == src[4 * t] && final_q[4 * t + 1] == src[4 * t + 1] &&
                   final_q[4 * t + 2] == 0.0f && final_q[4 * t + 3] == 0.0f;
        shared &= neighbour[t] == src[(t + 1) % 64];
      }
    }
    cn_emu::set_schedule(Schedule::Forward);
    res.push_back({"cp.async: the destination keeps its old bytes until a wait (forward)", pending, ""});
    res.push_back({"cp.async: copies land at issue (reverse schedule)", early, ""});
    res.push_back({"cp.async: __pipeline_wait_prior(1) completes all but the newest group", older && newer, ""});
    res.push_back({"cp.async: zfill zero-fills (all or the tail of a 16-byte copy)", zero && partial, ""});
    res.push_back({"cp.async: after the wait and a barrier other threads see the data", shared, ""});
    for (void* p : {(void*)src, (void*)before, (void*)after_b, (void*)after_a, (void*)final_b,
                    (void*)final_q, (void*)neighbour})
      cudaFree(p);
  }

  // Configuration errors are reported by cudaGetLastError and nothing runs.
  {
    float* out = dev_alloc<float>(4);
    cudaGetLastError();
    neighbour_synced<<<1, 2048>>>(out);
    const cudaError_t e1 = cudaGetLastError();
    neighbour_synced<<<dim3(1, 70000), 32>>>(out);
    const cudaError_t e2 = cudaGetLastError();
    neighbour_synced<<<0, 32>>>(out);
    const cudaError_t e3 = cudaGetLastError();
    const cudaError_t e4 = cudaGetLastError();
    res.push_back({"bad launch configurations set cudaErrorInvalidConfiguration once",
                   e1 == cudaErrorInvalidConfiguration && e2 == cudaErrorInvalidConfiguration &&
                       e3 == cudaErrorInvalidConfiguration && e4 == cudaSuccess,
                   ""});
    cudaFree(out);
  }
  return res;
}

std::vector<FaultCase> faulting_kernels() {
  std::vector<FaultCase> f;
  f.push_back({"divergent barrier and shuffle deadlock", "deadlock", [] {
                 float* out = dev_alloc<float>(64);
                 deadlock<<<1, 64>>>(out);
                 cudaDeviceSynchronize();
               }});
  f.push_back({"full-mask shuffle in a partial warp", "names lanes that do not exist", [] {
                 float* out = dev_alloc<float>(48);
                 partial_warp_shuffle<<<1, 48>>>(out);
                 cudaDeviceSynchronize();
               }});
  f.push_back({"launch above __launch_bounds__", "__launch_bounds__(64)", [] {
                 float* out = dev_alloc<float>(128);
                 bounded<<<1, 128>>>(out);
                 cudaDeviceSynchronize();
               }});
  f.push_back({"misaligned 16-byte cp.async", "misaligned address", [] {
                 float* src = dev_alloc<float>(8);
                 async_misaligned<<<1, 1>>>(src);
                 cudaDeviceSynchronize();
               }});
  f.push_back({"cp.async into global memory", "not in the block's shared memory", [] {
                 float* src = dev_alloc<float>(32);
                 float* out = dev_alloc<float>(32);
                 async_to_global<<<1, 32>>>(src, out);
                 cudaDeviceSynchronize();
               }});
  f.push_back({"cp.async never waited for", "never waited for", [] {
                 float* src = dev_alloc<float>(32);
                 float* out = dev_alloc<float>(32);
                 async_never_waited<<<1, 32>>>(src, out);
                 cudaDeviceSynchronize();
               }});
#if defined(__SANITIZE_ADDRESS__)  // the sanitizers are built together (build.sh)
  f.push_back({"__shared__ overrun (UBSan bounds or AddressSanitizer)",
                 "index 32 out of bounds|heap-buffer-overflow", [] {
                 float* out = dev_alloc<float>(64);
                 oob_shared<<<1, 64>>>(out);
                 cudaDeviceSynchronize();
               }});
#endif
  return f;
}

}  // namespace emu_selftest
