// The emulation of native/ops/mma_sm80.h: mma.sync (m16n8k8 .tf32, m16n8k16 .bf16, FP32
// accumulation) and the cvt roundings, as C++ functions of the same names.
//
// mma.sync is a warp collective: each lane holds only its fragment registers. The emulated
// mma publishes each lane's registers in a per-warp table and meets the warp in a full-mask
// __syncwarp (so every lane must take part, converged, as on the GPU); each lane then reads
// exactly the registers the PTX ISA's fragment layout says hold the A rows and B columns of its
// four D elements, computes them, and meets the warp again before the table can be reused. So a kernel that puts an element in the wrong
// register or lane gets a wrong product here too. Per D element: acc = c, then acc += a_k * b_k
// for k = 0, 1, ... in float (each product is exact: 11 x 11 or 8 x 8 significant bits); the
// hardware's summation order and internal precision are unspecified, so kernels are compared
// with a tolerance. TF32 inputs are read with their low 13 bits cleared (the hardware ignores
// them); a kernel that forgets cvt.rna truncates instead of rounding.
#pragma once
#include <cstdint>
#include <cstring>

#include "cuda_runtime.h"
#include "emu_control.h"

namespace cn {

namespace mma_emu {
inline uint32_t bits_of(float x) { uint32_t u; std::memcpy(&u, &x, 4); return u; }
inline float float_of(uint32_t u) { float x; std::memcpy(&x, &u, 4); return x; }
inline unsigned linear_id() {
  return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}
// The fragment registers every lane of every warp of the running block hands in (blocks run one
// at a time, on one OS thread per emulated device at most).
struct Regs { uint32_t a[4], b[2]; unsigned delay; };
inline thread_local Regs g_regs[32][32];  // [warp][lane]
// Publishes this lane's registers, waits for the whole warp (full mask: every lane must take
// part), and returns the warp's table; the caller must __syncwarp() again when done reading.
inline const Regs* exchange(const uint32_t a[4], const uint32_t b[2]) {
  const unsigned id = linear_id(), warp = id / 32, lane = id % 32;
  Regs& mine = g_regs[warp][lane];
  for (int i = 0; i < 4; ++i) mine.a[i] = a[i];
  for (int i = 0; i < 2; ++i) mine.b[i] = b[i];
  // Under the shuffle schedule lane 0 draws, one time in four, a delay of up to 31 extra warp
  // steps for its warp (finish(), below): the collectives would otherwise keep all warps of a
  // block in lockstep, hiding a missing __syncthreads between them.
  if (lane == 0 && ::cn_emu::current_schedule() == ::cn_emu::Schedule::Shuffle) {
    const uint64_t d = ::cn_emu::schedule_draw();
    mine.delay = (d & 3) == 0 ? unsigned((d >> 2) % 32) : 0;
  } else {
    mine.delay = 0;
  }
  __syncwarp(0xffffffffu);
  return g_regs[warp];
}
// Closes an exchange: every lane has read the table before any lane refills it; then the
// warp's drawn delay.
inline void finish(const Regs* w) {
  const unsigned delay = w[0].delay;
  __syncwarp(0xffffffffu);
  for (unsigned i = 0; i < delay; ++i) __syncwarp(0xffffffffu);
}
inline float bf16_lo(uint32_t r) { return float_of(r << 16); }
inline float bf16_hi(uint32_t r) { return float_of(r & 0xffff0000u); }
}  // namespace mma_emu

// cvt.rna.tf32.f32: to nearest, ties away from zero, 10 mantissa bits kept (low 13 bits zero);
// NaN stays NaN, and a value rounding past the largest finite becomes infinity.
inline uint32_t mma_to_tf32(float x) {
  const uint32_t u = mma_emu::bits_of(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return (u & 0x7fffffffu) > 0x7f800000u ? 0x7fffffffu : u;
  return (u + 0x1000u) & ~0x1fffu;  // adding half an ulp of the magnitude: ties go away from 0
}

// cvt.rn.bf16 of one float: to nearest, ties to even; NaN becomes the canonical 0x7fff.
inline uint32_t mma_to_bf16(float x) {
  const uint32_t u = mma_emu::bits_of(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
// cvt.rn.bf16x2.f32: lo in the low half, hi in the high half.
inline uint32_t mma_pack_bf16x2(float lo, float hi) {
  return (mma_to_bf16(hi) << 16) | mma_to_bf16(lo);
}

inline void mma_m16n8k8_tf32(float d[4], const uint32_t a[4], const uint32_t b[2],
                             const float c[4]) {
  using namespace mma_emu;
  const unsigned lane = linear_id() % 32, g = lane >> 2, t = lane & 3;
  const Regs* w = exchange(a, b);
  float A[2][8], B[2][8];  // A rows g and g+8; B columns 2t and 2t+1; k = 0..7
  for (unsigned q = 0; q < 4; ++q) {
    const Regs& ra = w[g * 4 + q];  // a0 (g, q), a1 (g+8, q), a2 (g, q+4), a3 (g+8, q+4)
    A[0][q] = float_of(ra.a[0] & ~0x1fffu); A[1][q] = float_of(ra.a[1] & ~0x1fffu);
    A[0][q + 4] = float_of(ra.a[2] & ~0x1fffu); A[1][q + 4] = float_of(ra.a[3] & ~0x1fffu);
    for (unsigned j = 0; j < 2; ++j) {
      const Regs& rb = w[(2 * t + j) * 4 + q];  // b0 (k=q, n), b1 (k=q+4, n), n = lane / 4
      B[j][q] = float_of(rb.b[0] & ~0x1fffu); B[j][q + 4] = float_of(rb.b[1] & ~0x1fffu);
    }
  }
  finish(w);
  for (unsigned i = 0; i < 4; ++i) {
    float acc = c[i];
    for (unsigned k = 0; k < 8; ++k) acc += A[i >> 1][k] * B[i & 1][k];
    d[i] = acc;
  }
}

inline void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2],
                              const float c[4]) {
  using namespace mma_emu;
  const unsigned lane = linear_id() % 32, g = lane >> 2, t = lane & 3;
  const Regs* w = exchange(a, b);
  float A[2][16], B[2][16];  // A rows g and g+8; B columns 2t and 2t+1; k = 0..15
  for (unsigned q = 0; q < 4; ++q) {
    const Regs& ra = w[g * 4 + q];  // a0 (g, 2q..2q+1), a1 (g+8, ..), a2 (g, 2q+8..), a3 (g+8, ..)
    A[0][2 * q] = bf16_lo(ra.a[0]); A[0][2 * q + 1] = bf16_hi(ra.a[0]);
    A[1][2 * q] = bf16_lo(ra.a[1]); A[1][2 * q + 1] = bf16_hi(ra.a[1]);
    A[0][2 * q + 8] = bf16_lo(ra.a[2]); A[0][2 * q + 9] = bf16_hi(ra.a[2]);
    A[1][2 * q + 8] = bf16_lo(ra.a[3]); A[1][2 * q + 9] = bf16_hi(ra.a[3]);
    for (unsigned j = 0; j < 2; ++j) {
      const Regs& rb = w[(2 * t + j) * 4 + q];  // b0 (k=2q..2q+1, n), b1 (k=2q+8..2q+9, n)
      B[j][2 * q] = bf16_lo(rb.b[0]); B[j][2 * q + 1] = bf16_hi(rb.b[0]);
      B[j][2 * q + 8] = bf16_lo(rb.b[1]); B[j][2 * q + 9] = bf16_hi(rb.b[1]);
    }
  }
  finish(w);
  for (unsigned i = 0; i < 4; ++i) {
    float acc = c[i];
    for (unsigned k = 0; k < 16; ++k) acc += A[i >> 1][k] * B[i & 1][k];
    d[i] = acc;
  }
}

}  // namespace cn
