// conv2d's CUDA versions, side by side (see conv2d.h for the contract every version keeps):
//   1  conv2d_cuda.cu     explicit im2col / col2im into a workspace around the tiled SGEMM
//                         (gemm_cuda.cu); the default, and the baseline the others are timed
//                         against.
//   2  conv2d_v2_cuda.cu  implicit GEMM: operand tiles gathered straight from x / dy / w into
//                         double-buffered shared memory (cp.async on sm_80+), no im2col buffer.
//   3  conv2d_v3_cuda.cu  forward: version 2's implicit GEMM on tensor cores (mma.sync, sm_80+)
//                         with TF32 or BF16 inputs and FP32 accumulation; backward: version 2.
// The op table's conv2d ops carry the version and the precision in their last integer argument
// (registry.cc): version + 10 * precision, precision 0 = fp32, 1 = tf32, 2 = bf16; version 0
// means the default (version 1), 1 to 3 pick one. Version 3 needs tf32 or bf16; versions 1 and
// 2 compute in fp32 whatever the precision (more precise than asked, which the contract
// allows). TypeScript resolves the per-op `version` and `precision` options, cn.setPrecision
// and the CONVNET_CONV_VERSION environment variable into that argument (src/ops/conv2d.ts).
// A version-2 call whose GEMM sizes do not fit in int32 (conv2d_v2_fits) runs version 1; a
// version-3 forward on a GPU older than sm_80 (no mma.sync) or too large runs version 2 (or 1).
#pragma once
#include <string>

#include "core/cuda_device.h"
#include "ops/conv2d.h"
#include "ops/registry.h"

namespace cn {

constexpr int kConvVersionDefault = 1;
constexpr int kConvVersionMax = 3;
constexpr int kConvPrecisionFp32 = 0, kConvPrecisionTf32 = 1, kConvPrecisionBf16 = 2;
constexpr int kConvPrecisionStep = 10;  // last int = version + kConvPrecisionStep * precision

// Conv2dShape plus the derived sizes every implicit-GEMM view needs, passed to the kernels by
// value (versions 2 and 3).
struct ConvView {
  int N, C, H, W, F, KH, KW, sh, sw, ph, pw, G, OH, OW;
  int Cg, Fg, Kc;
  int64_t P, HW;
};

inline ConvView conv_view(const Conv2dShape& s) {
  ConvView v;
  v.N = s.N; v.C = s.C; v.H = s.H; v.W = s.W; v.F = s.F; v.KH = s.KH; v.KW = s.KW;
  v.sh = s.sh; v.sw = s.sw; v.ph = s.ph; v.pw = s.pw; v.G = s.G; v.OH = s.OH; v.OW = s.OW;
  v.Cg = s.C / s.G; v.Fg = s.F / s.G; v.Kc = v.Cg * s.KH * s.KW;
  v.P = int64_t(s.OH) * s.OW; v.HW = int64_t(s.H) * s.W;
  return v;
}

bool conv2d_v2_fits(const Conv2dShape& s);
void conv2d_forward_cuda_v2(const OpCall& c);
void conv2d_backward_data_cuda_v2(const OpCall& c);
void conv2d_backward_filter_cuda_v2(const OpCall& c);

// Version 3: usable when the GPU has mma.sync (sm_80+) and the shape fits version 2's limits.
bool conv2d_v3_usable(const CudaDevice* dev, const Conv2dShape& s);
void conv2d_forward_cuda_v3(const OpCall& c, int precision);

// db[f] = the sum of dy[n, f, :, :] over n (nothing when db is null); shared by the versions.
void launch_conv2d_bias_grad(CudaDevice* dev, const Conv2dShape& s, const float* dy, float* db,
                             const std::string& at);

}  // namespace cn
