// Binds each op's CPU (and, where it exists, CUDA) implementation to its argument list.
//
// Argument order, per op: tensors | ints | floats. Outputs come first among the tensors;
// an optional tensor (a bias or its gradient) may be null.
#include "ops/registry.h"

#include <cstring>
#include <initializer_list>
#include <limits>

#include "ops/compose.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"
#include "ops/loss.h"
#include "ops/op_args.h"
#include "core/errors.h"

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
// conv2d_forward: [y, x, w, b?] | [N,C,H,W,F,KH,KW,sh,sw,ph,pw,G,OH,OW,version] | []
// (version: the CUDA kernel version + 10 * the precision, see ops/conv2d_cuda.h; the CPU
// ignores it)
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

// binary: [y, a, b] | [code, rank, count, dims[8], sa[8], sb[8]] | []
void binary_op(const OpCall& c) {
  binary_cpu(pool_of(c), int_arg(c, 0), strided_of(c, 3, int_arg(c, 1), true), c.i[2], arg(c, 1), arg(c, 2), arg(c, 0));
}
// unary: [y, x] | [code, count] | [p]
void unary_op(const OpCall& c) { unary_cpu(pool_of(c), int_arg(c, 0), c.i[1], float_arg(c, 0), arg(c, 1), arg(c, 0)); }
// unary_backward: [dx, x, y, dy] | [code, count] | [p]
void unary_bwd_op(const OpCall& c) {
  unary_backward_cpu(pool_of(c), int_arg(c, 0), c.i[1], float_arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 0));
}
// reduce: [y, idx?(int32), x] | [code, outer, r, inner] | [scale]
void reduce_op(const OpCall& c) {
  reduce_cpu(pool_of(c), int_arg(c, 0), c.i[1], c.i[2], c.i[3], float_arg(c, 0), arg(c, 2), arg(c, 0), arg<int32_t>(c, 1));
}
// reduce_max_backward: [dx, dy, idx(int32)] | [outer, r, inner] | []
void reduce_max_bwd_op(const OpCall& c) {
  reduce_max_backward_cpu(pool_of(c), c.i[0], c.i[1], c.i[2], arg(c, 1), arg<int32_t>(c, 2), arg(c, 0));
}
// strided_copy: [y, x] | [rank, count, dims[8], strides[8]] | []
void strided_copy_op(const OpCall& c) {
  strided_copy_cpu(pool_of(c), strided_of(c, 2, int_arg(c, 0), false), c.i[1], arg(c, 1), arg(c, 0));
}
// fused: [y, in0?, ..., in5?] | [inputs, rank, count, dims[8], strides[6][8], n, code[32]] | consts[8]
void fused_op(const OpCall& c) {
  const float* ins[kFusedInputs];
  for (int k = 0; k < kFusedInputs; ++k) ins[k] = arg(c, 1 + k);
  fused_cpu(pool_of(c), fused_of(c), c.i[2], ins, arg(c, 0));
}
// matmul: [y, a, b] | [batch, M, N, K, transA, transB] | []
void matmul_op(const OpCall& c) {
  matmul_cpu(pool_of(c), int_arg(c, 0), int_arg(c, 1), int_arg(c, 2), int_arg(c, 3), c.i[4] != 0, c.i[5] != 0,
             arg(c, 1), arg(c, 2), arg(c, 0));
}


// ---------------------------------------------------------------------------------------------
// Argument guards (OpDef::check), run on the JS thread before an op is queued. TypeScript has
// validated everything already; these make sure that nothing it missed can reach a kernel as a
// narrowed integer, an inconsistent shape or a buffer smaller than the kernel will touch.

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kSaturated = std::numeric_limits<int64_t>::max();

// Product of non-negative factors, saturating at INT64_MAX instead of overflowing.
int64_t product(std::initializer_list<int64_t> factors) {
  int64_t p = 1;
  for (int64_t f : factors) {
    if (f == 0) return 0;
    if (p > kSaturated / f) p = kSaturated;
    else p *= f;
  }
  return p;
}

int64_t sum_sat(int64_t a, int64_t b) { return a > kSaturated - b ? kSaturated : a + b; }

class Guard {
 public:
  // names: the op's integer arguments, comma-separated, in order (read only for messages).
  Guard(const OpCall& c, const char* op, const char* names) : c_(c), op_(op), names_(names) {}

  // Integer argument k in [lo, hi].
  int64_t get(size_t k, int64_t lo, int64_t hi) const {
    const int64_t v = c_.i[k];
    if (v < lo || v > hi) {
      fail(ErrorKind::Shape, std::string(op_) + ": " + name(k) + " must be an integer in [" +
                                 std::to_string(lo) + ", " + std::to_string(hi) + "], received " +
                                 std::to_string(v));
    }
    return v;
  }
  int i32(size_t k, int64_t lo) const { return static_cast<int>(get(k, lo, kInt32Max)); }
  int64_t i64(size_t k, int64_t lo) const { return get(k, lo, kSaturated); }

  // A shape whose element count must stay within int32 (what the shape kernels index with).
  int64_t elements(const char* what, std::initializer_list<int64_t> dims) const {
    const int64_t n = product(dims);
    if (n > kInt32Max) {
      fail(ErrorKind::Shape, std::string(op_) + ": " + what + " would hold " + std::to_string(n) +
                                 " elements, more than the limit of 2^31-1");
    }
    return n;
  }

  // Tensor t must be present (unless optional) and hold at least `count` 4-byte elements.
  void holds(size_t t, const char* what, int64_t count, bool optional = false) const {
    const bool present = t < c_.t.size() && c_.t[t];
    if (!present) {
      if (optional) return;
      fail(ErrorKind::Shape, std::string(op_) + ": " + what + " is missing");
    }
    const int64_t need = product({count, 4});
    if (static_cast<uint64_t>(need) > c_.t[t]->bytes) {
      fail(ErrorKind::Shape, std::string(op_) + ": " + what + " holds " +
                                 std::to_string(c_.t[t]->bytes) + " bytes but the arguments need " +
                                 std::to_string(need));
    }
  }

  [[noreturn]] void bad(const std::string& msg) const {
    fail(ErrorKind::Shape, std::string(op_) + ": " + msg);
  }

 private:
  // The k-th name of names_, or "int k" when there are fewer names.
  std::string name(size_t k) const {
    const char* p = names_;
    for (size_t i = 0; i < k && p; ++i) {
      p = std::strchr(p, ',');
      if (p) ++p;
    }
    if (!p || !*p) return "int " + std::to_string(k);
    const char* end = std::strchr(p, ',');
    return end ? std::string(p, end) : std::string(p);
  }
  const OpCall& c_;
  const char* op_;
  const char* names_;
};

// Element-wise ops: [count] first, every listed tensor holds count elements.
template <int kTensors>
void count_check(const OpCall& c, const char* op, const char* names, const char* const (&what)[kTensors],
                 int optional_from = kTensors) {
  Guard g(c, op, names);
  const int64_t n = g.i64(0, 0);
  for (int t = 0; t < kTensors; ++t) g.holds(t, what[t], n, t >= optional_from);
}

void fill_check(const OpCall& c) { count_check<1>(c, "fill", "count", {"y"}); }
void randn_check(const OpCall& c) {
  count_check<1>(c, "randn", "count,seed", {"y"});
  Guard(c, "randn", "count,seed").i64(1, 0);
}
void axpy_check(const OpCall& c) { count_check<2>(c, "axpy", "count", {"y", "x"}); }
void relu_fwd_check(const OpCall& c) { count_check<2>(c, "relu_forward", "count", {"y", "x"}); }
void relu_bwd_check(const OpCall& c) { count_check<3>(c, "relu_backward", "count", {"dx", "x", "dy"}); }
void dropout_check(const OpCall& c) {
  count_check<2>(c, "dropout", "count,seed", {"y", "x"});
  Guard(c, "dropout", "count,seed").i64(1, 0);
}
void sgd_check(const OpCall& c) { count_check<3>(c, "sgd", "count", {"w", "g", "v"}, 2); }

void copy_blocks_check(const OpCall& c) {
  Guard g(c, "copy_blocks", "outer,inner,src_stride,src_offset,dst_stride,dst_offset");
  const int64_t outer = g.i64(0, 0), inner = g.i64(1, 0);
  const int64_t ss = g.i64(2, 0), so = g.i64(3, 0), ds = g.i64(4, 0), dof = g.i64(5, 0);
  if (outer == 0 || inner == 0) return;
  // The last block ends at (outer-1)*stride + offset + inner.
  g.holds(1, "src", sum_sat(sum_sat(product({outer - 1, ss}), so), inner));
  g.holds(0, "dst", sum_sat(sum_sat(product({outer - 1, ds}), dof), inner));
}

// Output extent of a window op along one axis; requires the padded input to fit int32 and to
// hold the window, and the caller's O to match the formula.
int checked_extent(const Guard& g, const char* axis, int in, int k, int s, int p, int out) {
  const int64_t padded = int64_t(in) + 2 * int64_t(p);
  if (padded > kInt32Max) {
    g.bad(std::string("padded ") + axis + " " + std::to_string(padded) + " exceeds 2^31-1");
  }
  if (k > padded) {
    g.bad(std::string("kernel ") + axis + " " + std::to_string(k) + " exceeds the padded input " +
          std::to_string(padded));
  }
  const int64_t expect = (padded - k) / s + 1;
  if (out != expect) {
    g.bad(std::string("output ") + axis + " must be " + std::to_string(expect) + ", received " +
          std::to_string(out));
  }
  return out;
}

Conv2dShape conv_checked(const OpCall& c, const char* op) {
  Guard g(c, op, "N,C,H,W,F,KH,KW,sh,sw,ph,pw,G,OH,OW,version");
  Conv2dShape s;
  s.N = g.i32(0, 0); s.C = g.i32(1, 0); s.H = g.i32(2, 0); s.W = g.i32(3, 0);
  s.F = g.i32(4, 0); s.KH = g.i32(5, 1); s.KW = g.i32(6, 1);
  s.sh = g.i32(7, 1); s.sw = g.i32(8, 1); s.ph = g.i32(9, 0); s.pw = g.i32(10, 0);
  s.G = g.i32(11, 1); s.OH = g.i32(12, 0); s.OW = g.i32(13, 0);
  // The CUDA kernel version and precision (conv2d_cuda.h): version + 10 * precision, version
  // 0 (the default) to 3, precision 0 (fp32), 1 (tf32) or 2 (bf16); version 3 needs tf32 or bf16.
  const int64_t vp = g.get(14, 0, 23);
  if (vp % 10 > 3) g.bad("version (last int % 10) must be 0 to 3, received " + std::to_string(vp));
  if (vp == 3) g.bad("version 3 (tensor cores) needs precision tf32 or bf16, received fp32");
  if (s.C % s.G || s.F % s.G) {
    g.bad("groups " + std::to_string(s.G) + " must divide C " + std::to_string(s.C) + " and F " +
          std::to_string(s.F));
  }
  checked_extent(g, "height", s.H, s.KH, s.sh, s.ph, s.OH);
  checked_extent(g, "width", s.W, s.KW, s.sw, s.pw, s.OW);
  return s;
}

struct ConvSizes {
  int64_t x, w, y;
  int F;
};
ConvSizes conv_sizes(const OpCall& c, const char* op) {
  const Conv2dShape s = conv_checked(c, op);
  Guard g(c, op, "");
  return {g.elements("x [N, C, H, W]", {s.N, s.C, s.H, s.W}),
          g.elements("w [F, C/G, KH, KW]", {s.F, s.C / s.G, s.KH, s.KW}),
          g.elements("y [N, F, OH, OW]", {s.N, s.F, s.OH, s.OW}), s.F};
}

void conv_fwd_check(const OpCall& c) {
  const char* op = "conv2d_forward";
  const ConvSizes z = conv_sizes(c, op);
  Guard g(c, op, "");
  g.holds(0, "y", z.y); g.holds(1, "x", z.x); g.holds(2, "w", z.w); g.holds(3, "b", z.F, true);
}
void conv_bwd_data_check(const OpCall& c) {
  const char* op = "conv2d_backward_data";
  const ConvSizes z = conv_sizes(c, op);
  Guard g(c, op, "");
  g.holds(0, "dx", z.x); g.holds(1, "dy", z.y); g.holds(2, "w", z.w);
}
void conv_bwd_filter_check(const OpCall& c) {
  const char* op = "conv2d_backward_filter";
  const ConvSizes z = conv_sizes(c, op);
  Guard g(c, op, "");
  g.holds(0, "dw", z.w); g.holds(1, "db", z.F, true); g.holds(2, "x", z.x); g.holds(3, "dy", z.y);
}

void pool_check(const OpCall& c, const char* op, bool forward) {
  Guard g(c, op, "N,C,H,W,KH,KW,sh,sw,ph,pw,OH,OW");
  const int N = g.i32(0, 0), C = g.i32(1, 0), H = g.i32(2, 0), W = g.i32(3, 0);
  const int KH = g.i32(4, 1), KW = g.i32(5, 1), sh = g.i32(6, 1), sw = g.i32(7, 1);
  const int ph = g.i32(8, 0), pw = g.i32(9, 0), OH = g.i32(10, 0), OW = g.i32(11, 0);
  if (2 * int64_t(ph) > KH || 2 * int64_t(pw) > KW) g.bad("padding must be at most half the kernel");
  checked_extent(g, "height", H, KH, sh, ph, OH);
  checked_extent(g, "width", W, KW, sw, pw, OW);
  const int64_t in = g.elements("x [N, C, H, W]", {N, C, H, W});
  const int64_t out = g.elements("y [N, C, OH, OW]", {N, C, OH, OW});
  if (forward) {
    g.holds(0, "y", out); g.holds(1, "idx", out); g.holds(2, "x", in);
  } else {
    g.holds(0, "dx", in); g.holds(1, "dy", out); g.holds(2, "idx", out);
  }
}
void pool_fwd_check(const OpCall& c) { pool_check(c, "maxpool2d_forward", true); }
void pool_bwd_check(const OpCall& c) { pool_check(c, "maxpool2d_backward", false); }

void lrn_check(const OpCall& c, const char* op, std::initializer_list<const char*> tensors) {
  Guard g(c, op, "N,C,H,W,size");
  const int64_t n = g.elements("x [N, C, H, W]", {g.i32(0, 0), g.i32(1, 0), g.i32(2, 0), g.i32(3, 0)});
  g.i32(4, 1);
  size_t t = 0;
  for (const char* what : tensors) g.holds(t++, what, n);
}
void lrn_fwd_check(const OpCall& c) { lrn_check(c, "lrn_forward", {"y", "scale", "x"}); }
void lrn_bwd_check(const OpCall& c) { lrn_check(c, "lrn_backward", {"dx", "x", "y", "scale", "dy"}); }

struct LinearSizes {
  int64_t x, w, y;
  int M;
};
LinearSizes linear_sizes(const Guard& g) {
  const int N = g.i32(0, 0), K = g.i32(1, 0), M = g.i32(2, 0);
  return {g.elements("x [N, K]", {N, K}), g.elements("w [M, K]", {M, K}), g.elements("y [N, M]", {N, M}), M};
}
void linear_fwd_check(const OpCall& c) {
  Guard g(c, "linear_forward", "N,K,M");
  const LinearSizes z = linear_sizes(g);
  g.holds(0, "y", z.y); g.holds(1, "x", z.x); g.holds(2, "w", z.w); g.holds(3, "b", z.M, true);
}
void linear_bwd_data_check(const OpCall& c) {
  Guard g(c, "linear_backward_data", "N,K,M");
  const LinearSizes z = linear_sizes(g);
  g.holds(0, "dx", z.x); g.holds(1, "dy", z.y); g.holds(2, "w", z.w);
}
void linear_bwd_weight_check(const OpCall& c) {
  Guard g(c, "linear_backward_weight", "N,K,M");
  const LinearSizes z = linear_sizes(g);
  g.holds(0, "dw", z.w); g.holds(1, "db", z.M, true); g.holds(2, "x", z.x); g.holds(3, "dy", z.y);
}

void xent_fwd_check(const OpCall& c) {
  Guard g(c, "softmax_xent_forward", "N,M");
  const int N = g.i32(0, 0), M = g.i32(1, 1);
  const int64_t nm = g.elements("logits [N, M]", {N, M});
  g.holds(0, "loss", 1); g.holds(1, "probs", nm); g.holds(2, "logits", nm); g.holds(3, "labels", N);
}
void xent_bwd_check(const OpCall& c) {
  Guard g(c, "softmax_xent_backward", "N,M");
  const int N = g.i32(0, 0), M = g.i32(1, 1);
  const int64_t nm = g.elements("logits [N, M]", {N, M});
  g.holds(0, "dlogits", nm); g.holds(1, "probs", nm); g.holds(2, "labels", N); g.holds(3, "gout", 1);
}

// The strided iteration space of binary / strided_copy, starting at int `first` (rank) with
// count, dims[8] and `operands` stride blocks after it: rank in [0, 8], every used dim an int32,
// unused dims 1 with stride 0, count the product of the dims, and each operand (tensor
// 1 + k) large enough for its furthest element.
int64_t c_dim(const Guard& g, size_t k) { return g.get(k, 0, kInt32Max); }

// The dims at int `dims` (rank of them used, the rest 1): every used dim an int32, their
// product within int32 and equal to `count`; holds the output (tensor 0). Returns count.
int64_t checked_space(const Guard& g, int rank, int64_t count, size_t dims) {
  int64_t n = 1;
  for (int d = 0; d < kMaxRank; ++d) {
    if (d < rank) n = product({n, int64_t(g.i32(dims + d, 0))});
    else g.get(dims + d, 1, 1);
  }
  if (n > kInt32Max) g.bad("the output would hold " + std::to_string(n) + " elements, more than the limit of 2^31-1");
  if (n != count) g.bad("count must be " + std::to_string(n) + " (the product of the dims), received " + std::to_string(count));
  g.holds(0, "y", count);
  return count;
}

// The elements an operand with the strides at int `strides` reaches (0 for an unused block,
// whose strides must all be 0): its furthest element plus one.
int64_t operand_extent(const Guard& g, int rank, size_t dims, size_t strides, bool used) {
  int64_t last = 0;
  for (int d = 0; d < kMaxRank; ++d) {
    if (used && d < rank) {
      const int64_t dim = c_dim(g, dims + d), stride = g.get(strides + d, 0, kInt32Max);
      if (dim > 0) last = sum_sat(last, product({stride, dim - 1}));
    } else {
      g.get(strides + d, 0, 0);
    }
  }
  return sum_sat(last, 1);
}

void strided_check(const Guard& g, size_t first, int operands, const char* const* what) {
  const int rank = static_cast<int>(g.get(first, 0, kMaxRank));
  const size_t dims = first + 2;
  const int64_t count = checked_space(g, rank, g.i64(first + 1, 0), dims);
  for (int k = 0; k < operands; ++k) {
    const int64_t extent = operand_extent(g, rank, dims, dims + kMaxRank * (k + 1), true);
    if (count > 0) g.holds(1 + k, what[k], extent);
  }
}

std::string strided_names(const char* lead, int operands) {
  std::string s = lead;
  for (int d = 0; d < kMaxRank; ++d) s += ",dims[" + std::to_string(d) + "]";
  const char* blocks[] = {"sa", "sb"};
  for (int k = 0; k < operands; ++k)
    for (int d = 0; d < kMaxRank; ++d) s += std::string(",") + (operands == 1 ? "strides" : blocks[k]) + "[" + std::to_string(d) + "]";
  return s;
}

void binary_check(const OpCall& c) {
  static const std::string names = strided_names("code,rank,count", 2);
  Guard g(c, "binary", names.c_str());
  g.get(0, 0, kBinaryCodes - 1);
  static const char* const what[] = {"a", "b"};
  strided_check(g, 1, 2, what);
}
void strided_copy_check(const OpCall& c) {
  static const std::string names = strided_names("rank,count", 1);
  Guard g(c, "strided_copy", names.c_str());
  static const char* const what[] = {"x"};
  strided_check(g, 0, 1, what);
}
void unary_check(const OpCall& c) {
  Guard g(c, "unary", "code,count");
  g.get(0, 0, kUnaryCodes - 1);
  const int64_t n = g.i64(1, 0);
  g.holds(0, "y", n); g.holds(1, "x", n);
}
void unary_bwd_check(const OpCall& c) {
  Guard g(c, "unary_backward", "code,count");
  g.get(0, 0, kUnaryCodes - 1);
  const int64_t n = g.i64(1, 0);
  g.holds(0, "dx", n); g.holds(1, "x", n); g.holds(2, "y", n); g.holds(3, "dy", n);
}
void reduce_check(const OpCall& c) {
  Guard g(c, "reduce", "code,outer,r,inner");
  const int64_t code = g.get(0, 0, kReduceCodes - 1);
  const int64_t outer = g.i32(1, 0), r = g.i32(2, 0), inner = g.i32(3, 0);
  const int64_t xn = g.elements("x [outer, r, inner]", {outer, r, inner});
  const int64_t yn = product({outer, inner});
  if (code == kRedMax && yn > 0 && r == 0) g.bad("max needs r >= 1 terms per output, received r = 0");
  g.holds(0, "y", yn); g.holds(1, "idx", yn, code != kRedMax); g.holds(2, "x", xn);
}
void reduce_max_bwd_check(const OpCall& c) {
  Guard g(c, "reduce_max_backward", "outer,r,inner");
  const int64_t outer = g.i32(0, 0), r = g.i32(1, 0), inner = g.i32(2, 0);
  const int64_t xn = g.elements("dx [outer, r, inner]", {outer, r, inner});
  const int64_t yn = product({outer, inner});
  g.holds(0, "dx", xn); g.holds(1, "dy", yn); g.holds(2, "idx", yn);
}
void matmul_check(const OpCall& c) {
  Guard g(c, "matmul", "batch,M,N,K,transA,transB");
  const int64_t B = g.i32(0, 0), M = g.i32(1, 0), N = g.i32(2, 0), K = g.i32(3, 0);
  g.get(4, 0, 1); g.get(5, 0, 1);
  // The SGEMM takes leading dimensions and per-matrix sizes as int.
  g.elements("a [M, K]", {M, K}); g.elements("b [K, N]", {K, N}); g.elements("y [M, N]", {M, N});
  g.holds(0, "y", g.elements("y [batch, M, N]", {B, M, N}));
  g.holds(1, "a", g.elements("a [batch, M, K]", {B, M, K}));
  g.holds(2, "b", g.elements("b [batch, K, N]", {B, K, N}));
}

std::string fused_names() {
  std::string s = "inputs,rank,count";
  for (int d = 0; d < kMaxRank; ++d) s += ",dims[" + std::to_string(d) + "]";
  for (int t = 0; t < kFusedInputs; ++t)
    for (int d = 0; d < kMaxRank; ++d) s += ",strides[" + std::to_string(t) + "][" + std::to_string(d) + "]";
  s += ",n";
  for (int q = 0; q < kFusedMaxProgram; ++q) s += ",code[" + std::to_string(q) + "]";
  return s;
}
void fused_check(const OpCall& c) {
  static const std::string names = fused_names();
  Guard g(c, "fused", names.c_str());
  const int inputs = static_cast<int>(g.get(0, 0, kFusedInputs));
  const int rank = static_cast<int>(g.get(1, 0, kMaxRank));
  const size_t dims = 3, strides = dims + kMaxRank, prog = strides + kFusedInputs * kMaxRank;
  const int64_t count = checked_space(g, rank, g.i64(2, 0), dims);
  for (int t = 0; t < kFusedInputs; ++t) {
    const int64_t extent = operand_extent(g, rank, dims, strides + t * kMaxRank, t < inputs);
    const std::string what = "input " + std::to_string(t);
    if (t < inputs && count > 0) g.holds(1 + t, what.c_str(), extent);
  }
  // The program: every instruction valid, the stack never under- or overflows, one value left.
  const int len = static_cast<int>(g.get(prog, 1, kFusedMaxProgram));
  int depth = 0;
  for (int q = 0; q < kFusedMaxProgram; ++q) {
    const size_t k = prog + 1 + q;
    if (q >= len) {
      g.get(k, 0, 0);
      continue;
    }
    const int64_t v = g.get(k, 0, (int64_t(kFusedOpcodes) << 8) - 1);
    const int op = static_cast<int>(v >> 8), a = static_cast<int>(v & 255);
    const int64_t limit[] = {inputs, kFusedConsts, kBinaryCodes, kUnPow, kFusedConsts};
    if (a >= limit[op]) {
      g.bad("instruction " + std::to_string(q) + " (opcode " + std::to_string(op) + ") has argument " +
            std::to_string(a) + ", at most " + std::to_string(limit[op] - 1) + " allowed");
    }
    const int need = op == kFusedBin ? 2 : op >= kFusedUn ? 1 : 0;
    if (depth < need) g.bad("instruction " + std::to_string(q) + " pops an empty stack");
    depth += op <= kFusedConst ? 1 : op == kFusedBin ? -1 : 0;
    if (depth > kFusedMaxStack) g.bad("the program needs more than " + std::to_string(kFusedMaxStack) + " stack slots");
  }
  if (depth != 1) g.bad("the program must leave exactly one value, it leaves " + std::to_string(depth));
}

#ifdef CONVNET_WITH_CUDA
#define CN_CUDA(fn) fn
#else
#define CN_CUDA(fn) nullptr
#endif

const OpDef kOps[] = {
    {"fill", 1, 1, 1, fill_op, CN_CUDA(fill_cuda_op), fill_check},
    {"randn", 1, 2, 2, randn_op, CN_CUDA(randn_cuda_op), randn_check},
    {"axpy", 2, 1, 1, axpy_op, CN_CUDA(axpy_cuda_op), axpy_check},
    {"copy_blocks", 2, 6, 0, copy_blocks_op, CN_CUDA(copy_blocks_cuda_op), copy_blocks_check},
    {"relu_forward", 2, 1, 0, relu_fwd_op, CN_CUDA(relu_forward_cuda_op), relu_fwd_check},
    {"relu_backward", 3, 1, 0, relu_bwd_op, CN_CUDA(relu_backward_cuda_op), relu_bwd_check},
    {"dropout", 2, 2, 1, dropout_op, CN_CUDA(dropout_cuda_op), dropout_check},
    {"sgd", 3, 1, 3, sgd_op, CN_CUDA(sgd_cuda_op), sgd_check},
    {"conv2d_forward", 4, 15, 0, conv_fwd_op, CN_CUDA(conv2d_forward_cuda_op), conv_fwd_check},
    {"conv2d_backward_data", 3, 15, 0, conv_bwd_data_op, CN_CUDA(conv2d_backward_data_cuda_op), conv_bwd_data_check},
    {"conv2d_backward_filter", 4, 15, 0, conv_bwd_filter_op,
     CN_CUDA(conv2d_backward_filter_cuda_op), conv_bwd_filter_check},
    {"maxpool2d_forward", 3, 12, 0, pool_fwd_op, CN_CUDA(maxpool2d_forward_cuda_op), pool_fwd_check},
    {"maxpool2d_backward", 3, 12, 0, pool_bwd_op, CN_CUDA(maxpool2d_backward_cuda_op), pool_bwd_check},
    {"lrn_forward", 3, 5, 3, lrn_fwd_op, CN_CUDA(lrn_forward_cuda_op), lrn_fwd_check},
    {"lrn_backward", 5, 5, 3, lrn_bwd_op, CN_CUDA(lrn_backward_cuda_op), lrn_bwd_check},
    {"linear_forward", 4, 3, 0, linear_fwd_op, CN_CUDA(linear_forward_cuda_op), linear_fwd_check},
    {"linear_backward_data", 3, 3, 0, linear_bwd_data_op, CN_CUDA(linear_backward_data_cuda_op), linear_bwd_data_check},
    {"linear_backward_weight", 4, 3, 0, linear_bwd_weight_op,
     CN_CUDA(linear_backward_weight_cuda_op), linear_bwd_weight_check},
    {"softmax_xent_forward", 4, 2, 0, xent_fwd_op, CN_CUDA(softmax_xent_forward_cuda_op), xent_fwd_check},
    {"softmax_xent_backward", 4, 2, 0, xent_bwd_op, CN_CUDA(softmax_xent_backward_cuda_op), xent_bwd_check},
    {"binary", 3, 3 + 3 * kMaxRank, 0, binary_op, CN_CUDA(binary_cuda_op), binary_check},
    {"unary", 2, 2, 1, unary_op, CN_CUDA(unary_cuda_op), unary_check},
    {"unary_backward", 4, 2, 1, unary_bwd_op, CN_CUDA(unary_backward_cuda_op), unary_bwd_check},
    {"reduce", 3, 4, 1, reduce_op, CN_CUDA(reduce_cuda_op), reduce_check},
    {"reduce_max_backward", 3, 3, 0, reduce_max_bwd_op, CN_CUDA(reduce_max_backward_cuda_op), reduce_max_bwd_check},
    {"strided_copy", 2, 2 + 2 * kMaxRank, 0, strided_copy_op, CN_CUDA(strided_copy_cuda_op), strided_copy_check},
    {"matmul", 3, 6, 0, matmul_op, CN_CUDA(matmul_cuda_op), matmul_check},
    {"fused", 1 + kFusedInputs, kFusedInts, kFusedConsts, fused_op, CN_CUDA(fused_cuda_op), fused_check},
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
