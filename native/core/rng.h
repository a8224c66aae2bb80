// The counter-based random numbers every device shares: a value is a pure function of
// (seed, index), so the CPU and CUDA dropout masks and initialisations agree bit for bit and
// any element can be computed independently by any thread.
//
// The mixer is SplitMix64's finaliser applied to seed and index; its output passes BigCrush
// when used as a counter-based generator and costs a few multiplies.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define CN_HD __host__ __device__ __forceinline__
#else
#define CN_HD inline
#endif

namespace cn {

CN_HD uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// 64 random bits for element `index` of the stream named by `seed`.
CN_HD uint64_t rng_bits(uint64_t seed, uint64_t index) {
  return mix64(mix64(seed + 0x9e3779b97f4a7c15ULL) ^ (index * 0x9e3779b97f4a7c15ULL + 1));
}

// Uniform in [0, 1) with 24 bits: exact in float32.
CN_HD float rng_uniform(uint64_t seed, uint64_t index) {
  return static_cast<float>(rng_bits(seed, index) >> 40) * (1.0f / 16777216.0f);
}

// Dropout keeps element `index` when its uniform draw is >= p.
CN_HD bool dropout_keep(uint64_t seed, uint64_t index, float p) {
  return rng_uniform(seed, index) >= p;
}

}  // namespace cn
