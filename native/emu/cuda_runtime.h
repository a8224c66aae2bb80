// A host emulation of the slice of CUDA that native/ops/*_cuda.cu and native/core/cuda_device.cc
// use, so the unmodified kernel sources compile with g++ and run on the CPU (tests only: see
// native/emu/README.md). Never part of the addon build.
//
// Execution model (native/emu/emu.cc):
//   - A launch checks its configuration like the CUDA runtime (bad grids/blocks set
//     cudaErrorInvalidConfiguration for cudaGetLastError) and is queued on its stream; queued
//     work runs at the next synchronising call (cudaStreamSynchronize, cudaEventSynchronize,
//     cudaMemcpy, cudaFree, ...). Each stream runs in order; between streams the only order is
//     the one events give (cudaEventRecord / cudaStreamWaitEvent): by default the runnable
//     stream whose next item was queued LAST runs first, so a missing wait shows up as work
//     running before what it should have waited for (emu_control.h: set_stream_order).
//   - Devices: one by default; the harness can ask for more and say which pairs allow peer
//     access (emu_control.h). Events and streams belong to the device current when they were
//     made; recording an event on another device's stream fails as on a GPU.
//   - Blocks run one after another. The threads of a block run as fibers (ucontext) on the
//     calling OS thread, each until it waits: __syncthreads() is a barrier over the block's live
//     threads, the warp intrinsics (__shfl_*_sync, __syncwarp, __ballot_sync, ...) a barrier
//     over the lanes named in the mask, all of which must be live and pass the same mask.
//     The order in which runnable fibers are resumed is the "schedule" (in order, reversed, or
//     shuffled): a missing barrier shows up as a wrong value under some schedule.
//   - __shared__ variables are rewritten by prep.py into references to per-block storage that is
//     allocated (exact size, so AddressSanitizer sees overruns) and filled with 0xFF bytes (NaN
//     as float or double, -1 as an integer) when a block first touches them, and freed when the
//     block ends; the static total per block is limited to 48 KiB as on the device.
//   - A deadlock (every live thread waiting on a barrier that cannot complete), a warp
//     intrinsic with a mask naming an exited lane, or a __launch_bounds__ violation is a kernel
//     fault: it is reported with the kernel's name and the process aborts (like a sticky error).
//   - Arithmetic is the host's: the build uses -ffp-contract=off, so every __fmul_rn/__fadd_rn
//     and every plain a*b+c rounds each operation (nvcc would contract the plain ones into FMAs);
//     expf/logf/powf are glibc's, not CUDA's. Results are therefore IEEE-exact for the code as
//     written, which is what the CPU reference is compared against.
#pragma once

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// Kernel sources test __CUDACC__ to see device code (core/cuda_launch.h, core/rng.h).
// Defined only after the standard headers above, which must not see it.
#ifndef __CUDACC__
#define __CUDACC__ 1
#endif
#define CN_CUDA_EMULATION 1

// ---- Qualifiers ---------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __constant__
// prep.py turns `__launch_bounds__(n)` on a kernel into a check at the kernel's entry; this
// fallback covers any left in headers.
#define __launch_bounds__(...)
// prep.py rewrites every __shared__ declaration; one that reaches the compiler is an error.
#define __shared__ _Pragma("GCC error \"__shared__ must be rewritten by native/emu/prep.py\"")

// ---- Vector and index types ---------------------------------------------------------------
struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return {x, y, z}; }

namespace cn_emu {
// The running fiber's coordinates (set by the scheduler before it resumes a fiber).
extern thread_local uint3 tl_thread, tl_block;
extern thread_local dim3 tl_block_dim, tl_grid_dim;
}  // namespace cn_emu
// Read-only, as in CUDA.
#define threadIdx (static_cast<const uint3&>(::cn_emu::tl_thread))
#define blockIdx (static_cast<const uint3&>(::cn_emu::tl_block))
#define blockDim (static_cast<const dim3&>(::cn_emu::tl_block_dim))
#define gridDim (static_cast<const dim3&>(::cn_emu::tl_grid_dim))
constexpr int warpSize = 32;

// ---- Device math --------------------------------------------------------------------------
// The integer and floating min/max overloads CUDA puts in the global namespace.
inline int max(int a, int b) { return a > b ? a : b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline float max(float a, float b) { return fmaxf(a, b); }
inline float min(float a, float b) { return fminf(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(double a, double b) { return fmin(a, b); }

// Correctly rounded single operations (the build forbids contraction, so these stay separate).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float a) { return expf(a); }
inline float __logf(float a) { return logf(a); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __sinf(float a) { return sinf(a); }
inline float __cosf(float a) { return cosf(a); }
inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
inline float __saturatef(float a) { return a != a ? 0.0f : a < 0.0f ? 0.0f : a > 1.0f ? 1.0f : a; }
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float f) { int v; std::memcpy(&v, &f, 4); return v; }
inline unsigned __float_as_uint(float f) { unsigned v; std::memcpy(&v, &f, 4); return v; }
inline float __uint_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(static_cast<unsigned>(v)); }
inline int __ffs(int v) { return __builtin_ffs(v); }
template <typename T> inline T __ldg(const T* p) { return *p; }

// ---- Synchronisation and warp intrinsics --------------------------------------------------
namespace cn_emu {
void syncthreads();
// One warp-collective step: every lane in `mask` contributes `bits` and gets back a value
// chosen by `kind`. See emu.cc.
enum class WarpOp { Sync, ShflIdx, ShflUp, ShflDown, ShflXor, Ballot, Any, All };
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t bits, int arg, int width);
void launch_bounds_check(int max_threads, const char* kernel);
void* shared_alloc(const void* site, size_t bytes, size_t align, const char* name);
void* dynamic_shared();
[[noreturn]] void fault(const std::string& what);

template <typename T>
uint64_t to_bits(T v) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "shuffle of a type > 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <typename T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

// Storage for one __shared__ declaration: Key is a lambda type unique to the declaration (and
// to each instantiation of a kernel template), so two declarations never alias.
template <typename T, size_t Align, typename Key>
T& shared_var(Key, const char* name) {
  static const char site = 0;
  constexpr size_t a = Align > alignof(T) ? Align : alignof(T);
  return *static_cast<T*>(shared_alloc(&site, sizeof(T), a, name));
}
}  // namespace cn_emu

inline void __syncthreads() { ::cn_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::cn_emu::warp_collective(::cn_emu::WarpOp::Sync, mask, 0, 0, 32);
}
inline void __threadfence() {}
inline void __threadfence_block() {}
template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return ::cn_emu::from_bits<T>(
      ::cn_emu::warp_collective(::cn_emu::WarpOp::ShflIdx, mask, ::cn_emu::to_bits(v), src, width));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::cn_emu::from_bits<T>(::cn_emu::warp_collective(::cn_emu::WarpOp::ShflUp, mask,
                                                          ::cn_emu::to_bits(v), int(delta), width));
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::cn_emu::from_bits<T>(::cn_emu::warp_collective(::cn_emu::WarpOp::ShflDown, mask,
                                                          ::cn_emu::to_bits(v), int(delta), width));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::cn_emu::from_bits<T>(::cn_emu::warp_collective(::cn_emu::WarpOp::ShflXor, mask,
                                                          ::cn_emu::to_bits(v), lane_mask, width));
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  return static_cast<unsigned>(
      ::cn_emu::warp_collective(::cn_emu::WarpOp::Ballot, mask, pred != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int pred) {
  return static_cast<int>(::cn_emu::warp_collective(::cn_emu::WarpOp::Any, mask, pred != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int pred) {
  return static_cast<int>(::cn_emu::warp_collective(::cn_emu::WarpOp::All, mask, pred != 0, 0, 32));
}

// Atomics: fibers of one OS thread never preempt each other, so a plain read-modify-write is
// atomic here.
template <typename T> inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <typename T> inline T atomicSub(T* p, T v) { T old = *p; *p = old - v; return old; }
template <typename T> inline T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
template <typename T> inline T atomicMax(T* p, T v) { T old = *p; *p = old > v ? old : v; return old; }
template <typename T> inline T atomicMin(T* p, T v) { T old = *p; *p = old < v ? old : v; return old; }
template <typename T> inline T atomicCAS(T* p, T cmp, T v) { T old = *p; if (old == cmp) *p = v; return old; }

// ---- Asynchronous copies into shared memory (cuda_pipeline.h; cp.async on sm_80+) -----------
// Per the PTX ISA (cp.async, cp.async.commit_group, cp.async.wait_group): a copy is only
// issued; it belongs to the next group the thread commits, and the destination holds its data
// only once a wait lets that group complete; it may land at any moment from the issue on.
// The emulation picks a moment by schedule (emu.cc, async_copy): under the forward schedule the
// latest (__pipeline_wait_prior(n) performs the copies of every group but the n most recently
// committed, in order, so a read of the destination before the wait, or by another thread before
// the wait and a barrier, sees the old contents); under the reverse schedule the earliest (at
// issue, so refilling a buffer that other threads are still reading shows); shuffled, a coin
// flip per copy. src-size = size - zfill bytes are read, the rest
// of the destination is zero-filled (nothing is read when zfill == size). Faults: a size other
// than 4, 8 or 16, a misaligned source or destination, a destination outside the block's
// shared memory, zfill > size, and a thread that exits with copies it never waited for.
namespace cn_emu {
void async_copy(void* dst, const void* src, size_t bytes, size_t zfill);
void async_commit();
void async_wait_prior(size_t pending);
}  // namespace cn_emu
inline void __pipeline_memcpy_async(void* dst, const void* src, size_t size_and_align,
                                    size_t zfill = 0) {
  ::cn_emu::async_copy(dst, src, size_and_align, zfill);
}
inline void __pipeline_commit() { ::cn_emu::async_commit(); }
inline void __pipeline_wait_prior(size_t prior) { ::cn_emu::async_wait_prior(prior); }

// ---- Runtime API (host side, on host memory) ----------------------------------------------
#define CUDART_VERSION 12000
typedef enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorPeerAccessUnsupported = 217,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorPeerAccessAlreadyEnabled = 704,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
} cudaError_t;
struct CUstream_st;
typedef CUstream_st* cudaStream_t;
struct CUevent_st;
typedef CUevent_st* cudaEvent_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00
#define cudaHostAllocPortable 0x01
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major, minor;
  int multiProcessorCount;
};

cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorName(cudaError_t err);
const char* cudaGetErrorString(cudaError_t err);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaMalloc(void** ptr, size_t bytes);
template <typename T>
inline cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaDeviceCanAccessPeer(int* can, int device, int peer);
cudaError_t cudaDeviceEnablePeerAccess(int peer, unsigned flags);
cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device,
                                size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void* ptr);

// ---- Kernel launches (the target of prep.py's `kernel<<<cfg>>>(args)` rewrite) --------------
namespace cn_emu {

struct LaunchConfig {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  LaunchConfig(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = nullptr)
      : grid(g), block(b), smem(s), stream(st) {}
};

// Validates the configuration (setting the last error as the runtime would) and queues the grid;
// `body` runs once per thread with the coordinates set.
void submit(const LaunchConfig& cfg, const char* kernel, const char* where,
            std::function<void()> body);

template <typename... P>
struct Launch {
  void (*fn)(P...);
  LaunchConfig cfg;
  const char* kernel;
  const char* where;
  template <typename... A>
  void operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    // Arguments are converted to the parameter types and copied at launch, as CUDA does.
    auto args = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(a)...);
    auto f = fn;
    submit(cfg, kernel, where, [f, args] { std::apply(f, *args); });
  }
};

template <typename... P>
Launch<P...> launch(void (*fn)(P...), const char* kernel, const char* where, LaunchConfig cfg) {
  return Launch<P...>{fn, cfg, kernel, where};
}

// Launcher-side limits that prep.py turns into run-time values (see TUNABLES in prep.py), so
// the harness can shrink them and reach the loops that only huge tensors reach on a GPU:
// `constexpr T kName = v;` becomes `const T& kName = cn_emu::tunable<T>("kName", v);`.
void register_tunable(const char* name, int64_t default_value, std::function<void(int64_t)> set);
template <typename T>
T& tunable(const char* name, T default_value) {
  static std::map<std::string, T> slots;  // node-based: addresses stay put
  auto it = slots.find(name);
  if (it != slots.end()) return it->second;
  T& slot = slots.emplace(name, default_value).first->second;
  register_tunable(name, static_cast<int64_t>(default_value),
                   [&slot](int64_t v) { slot = static_cast<T>(v); });
  return slot;
}

}  // namespace cn_emu
