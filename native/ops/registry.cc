// Binds each op's CPU (and, where it exists, CUDA) implementation to its argument list.
//
// Argument order, per op: tensors | ints | floats. Outputs come first among the tensors;
// an optional tensor (a bias or its gradient) may be null.
#include "ops/registry.h"

#include <cstring>

#include "ops/elementwise.h"
#include "ops/loss.h"
#include "ops/op_args.h"

namespace cn {

namespace {

ThreadPool* pool_of(const OpCall& c) { return c.device->pool(); }

// fill: [y] | [count] | [value]
void fill_op(const OpCall& c) { fill_cpu(pool_of(c), c.i[0], float_arg(c, 0), arg(c, 0)); }
// randn: [y] | [count, seed] | [mean, std]
void randn_op(const OpCall& c) {
  randn_cpu(pool_of(c), c.i[0], static_cast<uint64_t>(c.i[1]), float_arg(c, 0), float_arg(c, 1), arg(c, 0));
}
// axpy: [y, x] | [count] | [alpha]      y += alpha * x
void axpy_op(const OpCall& c) { axpy_cpu(pool_of(c), c.i[0], float_arg(c, 0), arg(c, 1), arg(c, 0)); }
// copy_blocks: [dst, src] | [outer, inner, src_stride, src_offset, dst_stride, dst_offset] | []
void copy_blocks_op(const OpCall& c) {
  copy_blocks_cpu(pool_of(c), c.i[0], c.i[1], arg(c, 1), c.i[2], c.i[3], arg(c, 0), c.i[4], c.i[5]);
}
// relu_forward: [y, x] | [count] | []
void relu_fwd_op(const OpCall& c) { relu_forward_cpu(pool_of(c), c.i[0], arg(c, 1), arg(c, 0)); }
// relu_backward: [dx, x, dy] | [count] | []
void relu_bwd_op(const OpCall& c) {
  relu_backward_cpu(pool_of(c), c.i[0], arg(c, 1), arg(c, 2), arg(c, 0));
}
// dropout (forward and backward are the same masking): [y, x] | [count, seed] | [p]
void dropout_op(const OpCall& c) {
  dropout_cpu(pool_of(c), c.i[0], static_cast<uint64_t>(c.i[1]), float_arg(c, 0), arg(c, 1), arg(c, 0));
}
// sgd: [w, g, v?] | [count] | [lr, momentum, weight_decay]
void sgd_op(const OpCall& c) {
  sgd_cpu(pool_of(c), c.i[0], float_arg(c, 0), float_arg(c, 1), float_arg(c, 2), arg(c, 0), arg(c, 1), arg(c, 2));
}
// conv2d_forward: [y, x, w, b?] | [N,C,H,W,F,KH,KW,sh,sw,ph,pw,G,OH,OW] | []
void conv_fwd_op(const OpCall& c) {
  conv2d_forward_cpu(pool_of(c), conv_shape(c), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 0));
}
// conv2d_backward_data: [dx, dy, w] | conv ints | []
void conv_bwd_data_op(const OpCall& c) {
  conv2d_backward_data_cpu(pool_of(c), conv_shape(c), arg(c, 1), arg(c, 2), arg(c, 0));
}
// conv2d_backward_filter: [dw, db?, x, dy] | conv ints | []
void conv_bwd_filter_op(const OpCall& c) {
  conv2d_backward_filter_cpu(pool_of(c), conv_shape(c), arg(c, 2), arg(c, 3), arg(c, 0), arg(c, 1));
}
// maxpool2d_forward: [y, idx(int32), x] | [N,C,H,W,KH,KW,sh,sw,ph,pw,OH,OW] | []
void pool_fwd_op(const OpCall& c) {
  maxpool2d_forward_cpu(pool_of(c), pool_shape(c), arg(c, 2), arg(c, 0), arg<int32_t>(c, 1));
}
// maxpool2d_backward: [dx, dy, idx(int32)] | pool ints | []
void pool_bwd_op(const OpCall& c) {
  maxpool2d_backward_cpu(pool_of(c), pool_shape(c), arg(c, 1), arg<int32_t>(c, 2), arg(c, 0));
}
// lrn_forward: [y, scale, x] | [N,C,H,W,size] | [alpha, beta, k]
void lrn_fwd_op(const OpCall& c) {
  lrn_forward_cpu(pool_of(c), lrn_shape(c), arg(c, 2), arg(c, 0), arg(c, 1));
}
// lrn_backward: [dx, x, y, scale, dy] | [N,C,H,W,size] | [alpha, beta, k]
void lrn_bwd_op(const OpCall& c) {
  lrn_backward_cpu(pool_of(c), lrn_shape(c), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4), arg(c, 0));
}
// linear_forward: [y, x, w, b?] | [N, K, M] | []
void linear_fwd_op(const OpCall& c) {
  linear_forward_cpu(pool_of(c), int_arg(c, 0), int_arg(c, 1), int_arg(c, 2), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 0));
}
// linear_backward_data: [dx, dy, w] | [N, K, M] | []
void linear_bwd_data_op(const OpCall& c) {
  linear_backward_data_cpu(pool_of(c), int_arg(c, 0), int_arg(c, 1), int_arg(c, 2), arg(c, 1), arg(c, 2), arg(c, 0));
}
// linear_backward_weight: [dw, db?, x, dy] | [N, K, M] | []
void linear_bwd_weight_op(const OpCall& c) {
  linear_backward_weight_cpu(pool_of(c), int_arg(c, 0), int_arg(c, 1), int_arg(c, 2), arg(c, 2), arg(c, 3), arg(c, 0),
                             arg(c, 1));
}
// softmax_xent_forward: [loss(1), probs, logits, labels(int32)] | [N, M] | []
void xent_fwd_op(const OpCall& c) {
  softmax_xent_forward_cpu(pool_of(c), int_arg(c, 0), int_arg(c, 1), arg(c, 2), arg<int32_t>(c, 3), arg(c, 1),
                           arg(c, 0));
}
// softmax_xent_backward: [dlogits, probs, labels(int32), gout(1)] | [N, M] | []
void xent_bwd_op(const OpCall& c) {
  softmax_xent_backward_cpu(pool_of(c), int_arg(c, 0), int_arg(c, 1), arg(c, 1), arg<int32_t>(c, 2), arg(c, 3),
                            arg(c, 0));
}

#ifdef CONVNET_WITH_CUDA
#define CN_CUDA(fn) fn
#else
#define CN_CUDA(fn) nullptr
#endif

const OpDef kOps[] = {
    {"fill", 1, 1, 1, fill_op, CN_CUDA(fill_cuda_op)},
    {"randn", 1, 2, 2, randn_op, CN_CUDA(randn_cuda_op)},
    {"axpy", 2, 1, 1, axpy_op, CN_CUDA(axpy_cuda_op)},
    {"copy_blocks", 2, 6, 0, copy_blocks_op, CN_CUDA(copy_blocks_cuda_op)},
    {"relu_forward", 2, 1, 0, relu_fwd_op, CN_CUDA(relu_forward_cuda_op)},
    {"relu_backward", 3, 1, 0, relu_bwd_op, CN_CUDA(relu_backward_cuda_op)},
    {"dropout", 2, 2, 1, dropout_op, CN_CUDA(dropout_cuda_op)},
    {"sgd", 3, 1, 3, sgd_op, CN_CUDA(sgd_cuda_op)},
    {"conv2d_forward", 4, 14, 0, conv_fwd_op, CN_CUDA(conv2d_forward_cuda_op)},
    {"conv2d_backward_data", 3, 14, 0, conv_bwd_data_op, CN_CUDA(conv2d_backward_data_cuda_op)},
    {"conv2d_backward_filter", 4, 14, 0, conv_bwd_filter_op,
     CN_CUDA(conv2d_backward_filter_cuda_op)},
    {"maxpool2d_forward", 3, 12, 0, pool_fwd_op, CN_CUDA(maxpool2d_forward_cuda_op)},
    {"maxpool2d_backward", 3, 12, 0, pool_bwd_op, CN_CUDA(maxpool2d_backward_cuda_op)},
    {"lrn_forward", 3, 5, 3, lrn_fwd_op, CN_CUDA(lrn_forward_cuda_op)},
    {"lrn_backward", 5, 5, 3, lrn_bwd_op, CN_CUDA(lrn_backward_cuda_op)},
    {"linear_forward", 4, 3, 0, linear_fwd_op, CN_CUDA(linear_forward_cuda_op)},
    {"linear_backward_data", 3, 3, 0, linear_bwd_data_op, CN_CUDA(linear_backward_data_cuda_op)},
    {"linear_backward_weight", 4, 3, 0, linear_bwd_weight_op,
     CN_CUDA(linear_backward_weight_cuda_op)},
    {"softmax_xent_forward", 4, 2, 0, xent_fwd_op, CN_CUDA(softmax_xent_forward_cuda_op)},
    {"softmax_xent_backward", 4, 2, 0, xent_bwd_op, CN_CUDA(softmax_xent_backward_cuda_op)},
};

}  // namespace

const OpDef* find_op(const std::string& name) {
  for (const OpDef& d : kOps)
    if (name == d.name) return &d;
  return nullptr;
}

std::vector<std::string> op_names() {
  std::vector<std::string> out;
  for (const OpDef& d : kOps) out.push_back(d.name);
  return out;
}

}  // namespace cn
