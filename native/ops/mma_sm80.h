// Tensor-core primitives for sm_80 and newer: warp-wide mma.sync with TF32 or BF16 inputs and
// FP32 accumulation, and the input roundings they need. Device code only; included by the
// tensor-core kernels (conv2d_v3_cuda.cu). On a real GPU each function is one PTX instruction
// (inline asm, compiled only where __CUDA_ARCH__ >= 800); in native/emu the emulation's
// cuda_mma.h provides C++ functions of the same names that follow the PTX ISA's documented
// fragment layouts lane by lane (and are checked against them by the emulation's self-test).
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k8" and "mma.m16n8k16"), with
// g = laneid >> 2 (groupID) and t = laneid % 4 (threadID_in_group):
//   m16n8k8 .tf32:  A 16x8 row-major, 4 regs: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4)
//                   B 8x8 "col", 2 regs:      b0 (k=t, n=g), b1 (k=t+4, n=g)
//   m16n8k16 .bf16: A 16x16, 4 regs of two bf16 each (low half = lower column):
//                   a0 (g, 2t..2t+1), a1 (g+8, 2t..2t+1), a2 (g, 2t+8..2t+9), a3 (g+8, 2t+8..2t+9)
//                   B 16x8, 2 regs: b0 (k=2t..2t+1, n=g), b1 (k=2t+8..2t+9, n=g)
//   C / D 16x8 fp32 (both shapes): c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1)
#pragma once
#include <cstdint>

#if defined(CN_CUDA_EMULATION)
#include "cuda_mma.h"  // native/emu: the same functions in C++
#else

namespace cn {

// cvt.rna.tf32.f32: x rounded to TF32 (10 mantissa bits, to nearest, ties away from zero),
// returned as the 32-bit pattern mma.sync expects (the low 13 bits zero).
__device__ __forceinline__ uint32_t mma_to_tf32(float x) {
  uint32_t r;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
#else
  r = __float_as_uint(x);
#endif
  return r;
}

// cvt.rn.bf16x2.f32: lo and hi rounded to BF16 (to nearest even), lo in the low 16 bits.
__device__ __forceinline__ uint32_t mma_pack_bf16x2(float lo, float hi) {
  uint32_t r;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
  r = (__float_as_uint(hi) & 0xffff0000u) | (__float_as_uint(lo) >> 16);
#endif
  return r;
}

// d = A (16x8 tf32) * B (8x8 tf32) + c, warp-wide (all 32 lanes, converged).
__device__ __forceinline__ void mma_m16n8k8_tf32(float d[4], const uint32_t a[4],
                                                 const uint32_t b[2], const float c[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%10, %11, %12, %13};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
#else
  (void)a; (void)b;
  d[0] = c[0]; d[1] = c[1]; d[2] = c[2]; d[3] = c[3];  // never launched below sm_80
#endif
}

// d = A (16x16 bf16) * B (16x8 bf16) + c, warp-wide (all 32 lanes, converged).
__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const uint32_t a[4],
                                                  const uint32_t b[2], const float c[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%10, %11, %12, %13};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
#else
  (void)a; (void)b;
  d[0] = c[0]; d[1] = c[1]; d[2] = c[2]; d[3] = c[3];  // never launched below sm_80
#endif
}

}  // namespace cn

#endif  // CN_CUDA_EMULATION
