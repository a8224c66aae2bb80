// fill on CUDA: y[i] = value for i in [0, count).
// Thread mapping: a grid-stride loop, one element per thread per step, 256 threads a block;
// 64-bit indices, so tensors past 2^31 elements are filled whole.
#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "ops/registry.h"

namespace cn {

__global__ void fill_kernel(float* __restrict__ y, int64_t count, float value) {
  int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    y[i] = value;
  }
}

void fill_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  int64_t count = c.i[0];
  if (count == 0) return;
  dev->activate();
  int64_t blocks = (count + 255) / 256;
  if (blocks > 65535 * 32) blocks = 65535 * 32;
  fill_kernel<<<static_cast<unsigned>(blocks), 256, 0, dev->stream()>>>(
      c.t[0]->as<float>(), count, static_cast<float>(c.f[0]));
  CN_CUDA_CHECK(cudaGetLastError(), "fill: launching on " + dev->id());
}

}  // namespace cn
