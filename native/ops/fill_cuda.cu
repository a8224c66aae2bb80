// fill on CUDA: y[i] = value for i in [0, count).
// Thread mapping: a grid-stride loop, one element per thread per step, 256 threads a block;
// 64-bit indices, so tensors past 2^31 elements are filled whole.
#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "core/cuda_launch.h"
#include "ops/op_args.h"
#include "ops/registry.h"

namespace cn {

__global__ void fill_kernel(float* __restrict__ y, int64_t count, float value) {
  for (int64_t i = first_index(); i < count; i += grid_stride()) y[i] = value;
}

// fill: [y] | [count] | [value]
void fill_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  int64_t count = c.i[0];
  if (count == 0) return;
  dev->activate();
  fill_kernel<<<blocks_for(count), kThreads, 0, dev->stream()>>>(arg(c, 0), count, float_arg(c, 0));
  CN_CUDA_CHECK(cudaGetLastError(), "fill: launching on " + dev->id());
}

}  // namespace cn
