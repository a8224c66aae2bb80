// Scratch memory of the CPU kernels: a growable buffer whose data starts on a 64-byte boundary
// (a cache line, and aligned AVX-512 loads). Kernels keep one per thread and role (thread_local)
// and reuse it across calls, so the hot path does not allocate once it has warmed up.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace cn {

struct AlignedScratch {
  std::vector<float> v;
  // At least n floats from a 64-byte boundary (grows, never shrinks).
  float* get(size_t n) {
    if (v.size() < n + 16) v.resize(n + 16);
    uintptr_t p = reinterpret_cast<uintptr_t>(v.data());
    return reinterpret_cast<float*>((p + 63) & ~uintptr_t(63));
  }
};

}  // namespace cn
