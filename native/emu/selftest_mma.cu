// Self-test of the emulated tensor-core primitives (native/ops/mma_sm80.h, emulated by
// cuda_mma.h), run by `harness --self-test`: the cvt roundings against hand-computed bit
// patterns, and mma.sync against a plain matrix product. The kernels below place every matrix
// element into, and read it out of, the lane and register the PTX ISA's fragment tables name
// (written out here independently of cuda_mma.h), so a layout slip on either side shows.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ops/mma_sm80.h"
#include "selftest.h"

namespace emu_selftest {
namespace {

// m16n8k8 .tf32: A [16][8] row-major, B [8][8] as B[k][n], C and D [16][8].
__global__ void mma_tf32_layout(const float* A, const float* B, const float* C, float* D) {
  const int lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  uint32_t a[4], b[2];
  a[0] = cn::mma_to_tf32(A[g * 8 + t]);
  a[1] = cn::mma_to_tf32(A[(g + 8) * 8 + t]);
  a[2] = cn::mma_to_tf32(A[g * 8 + t + 4]);
  a[3] = cn::mma_to_tf32(A[(g + 8) * 8 + t + 4]);
  b[0] = cn::mma_to_tf32(B[t * 8 + g]);
  b[1] = cn::mma_to_tf32(B[(t + 4) * 8 + g]);
  float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t],
                C[(g + 8) * 8 + 2 * t + 1]};
  float d[4];
  cn::mma_m16n8k8_tf32(d, a, b, c);
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

// m16n8k16 .bf16: A [16][16] row-major, B [16][8] as B[k][n], C and D [16][8].
__global__ void mma_bf16_layout(const float* A, const float* B, const float* C, float* D) {
  const int lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  uint32_t a[4], b[2];
  a[0] = cn::mma_pack_bf16x2(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]);
  a[1] = cn::mma_pack_bf16x2(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]);
  a[2] = cn::mma_pack_bf16x2(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]);
  a[3] = cn::mma_pack_bf16x2(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9]);
  b[0] = cn::mma_pack_bf16x2(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]);
  b[1] = cn::mma_pack_bf16x2(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
  float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t],
                C[(g + 8) * 8 + 2 * t + 1]};
  float d[4];
  cn::mma_m16n8k16_bf16(d, a, b, c);
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

float from_u(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
uint32_t to_u(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

// The reference: inputs rounded on the host (by bit patterns checked separately below), the
// product summed in double.
double round_tf32(float x) { return from_u(cn::mma_to_tf32(x)); }
double round_bf16(float x) { return from_u(cn::mma_to_bf16(x) << 16); }

template <typename Kernel>
Result check_mma(const char* name, Kernel kernel, int K, double (*round)(float), uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> hA(16 * K), hB(K * 8), hC(16 * 8), hD(16 * 8);
  for (float& v : hA) v = u(rng);
  for (float& v : hB) v = u(rng);
  for (float& v : hC) v = u(rng);
  float *A, *B, *C, *D;
  cudaMalloc(reinterpret_cast<void**>(&A), hA.size() * 4);
  cudaMalloc(reinterpret_cast<void**>(&B), hB.size() * 4);
  cudaMalloc(reinterpret_cast<void**>(&C), hC.size() * 4);
  cudaMalloc(reinterpret_cast<void**>(&D), hD.size() * 4);
  cudaMemcpy(A, hA.data(), hA.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(B, hB.data(), hB.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(C, hC.data(), hC.size() * 4, cudaMemcpyHostToDevice);
  kernel<<<1, 32>>>(A, B, C, D);
  cudaMemcpy(hD.data(), D, hD.size() * 4, cudaMemcpyDeviceToHost);
  double worst = 0, worst_unrounded = 0;
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) {
      double ref = hC[m * 8 + n], raw = hC[m * 8 + n];
      for (int k = 0; k < K; ++k) {
        ref += round(hA[m * K + k]) * round(hB[k * 8 + n]);
        raw += double(hA[m * K + k]) * hB[k * 8 + n];
      }
      worst = std::max(worst, std::fabs(hD[m * 8 + n] - ref));
      worst_unrounded = std::max(worst_unrounded, std::fabs(hD[m * 8 + n] - raw));
    }
  cudaFree(A); cudaFree(B); cudaFree(C); cudaFree(D);
  // Float accumulation of K exact products of magnitude <= 4: within a few float ulps of 32.
  // The inputs' rounding itself must show against the unrounded product.
  const bool ok = worst <= 1e-5 && worst_unrounded > 1e-5;
  char detail[160];
  std::snprintf(detail, sizeof detail, "max |D - rounded-input product| %.2g, vs the fp32 product %.2g",
                worst, worst_unrounded);
  return {name, ok, detail};
}

}  // namespace

std::vector<Result> run_mma_checks() {
  std::vector<Result> res;
  // cvt.rna.tf32.f32: to nearest, ties away from zero, 10 mantissa bits.
  struct R { uint32_t in, out; };
  const R tf32[] = {
      {0x3f800000u, 0x3f800000u},  // 1
      {0x3f801000u, 0x3f802000u},  // 1 + 2^-11, a tie: away from zero (to even would give 1)
      {0xbf801000u, 0xbf802000u},  // -(1 + 2^-11): away from zero, so down
      {0x3f800fffu, 0x3f800000u},  // just below the tie
      {0x3f803000u, 0x3f804000u},  // 1 + 3 * 2^-11, a tie: away
      {0x3f801001u, 0x3f802000u},  // just above the tie
      {0x7f7fffffu, 0x7f800000u},  // the largest float rounds to infinity
      {0x00001000u, 0x00002000u},  // a subnormal tie: away
      {0x7f800000u, 0x7f800000u},  // infinity stays
  };
  int bad = 0;
  std::string first;
  for (const R& r : tf32) {
    const uint32_t got = cn::mma_to_tf32(from_u(r.in));
    if (got != r.out && bad++ == 0) { char m[64]; std::snprintf(m, sizeof m, "tf32(0x%08x) = 0x%08x", r.in, got); first = m; }
  }
  const bool tf32_nan = std::isnan(from_u(cn::mma_to_tf32(std::nanf(""))));
  res.push_back({"cvt.rna.tf32.f32 rounds to nearest, ties away (hand-computed bit patterns)",
                 bad == 0 && tf32_nan, first});
  // cvt.rn.bf16: to nearest, ties to even, 7 mantissa bits.
  const R bf16[] = {
      {0x3f800000u, 0x3f80u},  // 1
      {0x3f808000u, 0x3f80u},  // 1 + 2^-8, a tie: to even (down)
      {0x3f818000u, 0x3f82u},  // 1 + 3 * 2^-8, a tie: to even (up)
      {0x3f808001u, 0x3f81u},  // just above the tie
      {0x3f807fffu, 0x3f80u},  // just below
      {0xbfc00000u, 0xbfc0u},  // -1.5, exact
      {0x7f7fffffu, 0x7f80u},  // the largest float rounds to infinity
  };
  bad = 0;
  first.clear();
  for (const R& r : bf16) {
    const uint32_t got = cn::mma_to_bf16(from_u(r.in));
    if (got != r.out && bad++ == 0) { char m[64]; std::snprintf(m, sizeof m, "bf16(0x%08x) = 0x%04x", r.in, got); first = m; }
  }
  const bool packed = cn::mma_pack_bf16x2(1.0f, -2.0f) == 0xc0003f80u;
  const bool bf16_nan = (cn::mma_to_bf16(std::nanf("")) & 0x7fffu) > 0x7f80u;
  res.push_back({"cvt.rn.bf16x2.f32 rounds to nearest even, lo in the low half (hand-computed)",
                 bad == 0 && packed && bf16_nan, first});
  res.push_back(check_mma("mma.sync m16n8k8 tf32: fragment layout and product", mma_tf32_layout, 8,
                          round_tf32, 11));
  res.push_back(check_mma("mma.sync m16n8k16 bf16: fragment layout and product", mma_bf16_layout,
                          16, round_bf16, 12));
  (void)to_u;
  return res;
}

}  // namespace emu_selftest
