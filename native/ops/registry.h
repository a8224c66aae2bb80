// The table of native ops the addon can queue. Each op is called with its tensors (storage
// handles), integer and float arguments in a fixed order, written next to its entry in
// registry.cc; the TypeScript wrapper in src/ops/ validates shapes and builds that list.
// `cuda` is null until the CUDA kernel of an op exists.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"

namespace cn {

struct OpCall {
  Device* device;
  std::vector<StoragePtr> t;  // null entries stand for optional tensors left out (a bias)
  std::vector<int64_t> i;
  std::vector<double> f;
};

using OpFn = void (*)(const OpCall&);

struct OpDef {
  const char* name;
  int tensors, ints, floats;  // exact counts the call must carry
  OpFn cpu;
  OpFn cuda;
  // Runs on the JS thread before the op is queued: every integer argument within the range
  // its kernels compute in (int32 for shapes, int64 for counts), shapes consistent with each
  // other, and every tensor's storage large enough for what the kernels will touch. Throws a
  // ShapeError instead of letting a narrowed or inconsistent value reach a kernel.
  OpFn check;
};

// Null when there is no op of that name.
const OpDef* find_op(const std::string& name);
std::vector<std::string> op_names();

// CUDA implementations, defined in the .cu files when CUDA is built in.
#ifdef CONVNET_WITH_CUDA
void fill_cuda_op(const OpCall& c);
void randn_cuda_op(const OpCall& c);
void axpy_cuda_op(const OpCall& c);
void copy_blocks_cuda_op(const OpCall& c);
void relu_forward_cuda_op(const OpCall& c);
void relu_backward_cuda_op(const OpCall& c);
void dropout_cuda_op(const OpCall& c);
void sgd_cuda_op(const OpCall& c);
void maxpool2d_forward_cuda_op(const OpCall& c);
void maxpool2d_backward_cuda_op(const OpCall& c);
void lrn_forward_cuda_op(const OpCall& c);
void lrn_backward_cuda_op(const OpCall& c);
void softmax_xent_forward_cuda_op(const OpCall& c);
void softmax_xent_backward_cuda_op(const OpCall& c);
void conv2d_forward_cuda_op(const OpCall& c);
void conv2d_backward_data_cuda_op(const OpCall& c);
void conv2d_backward_filter_cuda_op(const OpCall& c);
void linear_forward_cuda_op(const OpCall& c);
void linear_backward_data_cuda_op(const OpCall& c);
void linear_backward_weight_cuda_op(const OpCall& c);
void binary_cuda_op(const OpCall& c);
void unary_cuda_op(const OpCall& c);
void unary_backward_cuda_op(const OpCall& c);
void reduce_cuda_op(const OpCall& c);
void reduce_max_backward_cuda_op(const OpCall& c);
void strided_copy_cuda_op(const OpCall& c);
void matmul_cuda_op(const OpCall& c);
void fused_cuda_op(const OpCall& c);
#endif

}  // namespace cn
