// Composition ops: the general building blocks for layers written in TypeScript. Element bodies
// are __host__ __device__ functions shared by the CPU loops and the CUDA kernels, so both devices
// compute the same float operations in the same order.
//
//   binary:         y[i] = a[off_a(i)] op b[off_b(i)], op in {+, -, *, /}; y has `rank` dims
//                   (at most kMaxRank) and each operand has its own element strides, 0 along a
//                   broadcast dim (NumPy broadcasting, a scalar is all strides 0)
//   unary:          y = f(x), f in {neg, exp, log, sqrt, tanh, sigmoid, pow(., p)}
//   unary_backward: dx = dy * f'(x), computed from x, y = f(x) and dy in one pass (the product
//                   is fused: no separate f'(x) tensor)
//   reduce:         x viewed as [outer, r, inner]; y[o, i] = scale * sum_j x[o, j, i] (j in
//                   ascending order), or max_j x[o, j, i] with idx[o, i] = the first j holding
//                   the maximum (a NaN wins, as in max-pooling)
//   reduce_max_backward: dx[o, j, i] = j == idx[o, i] ? dy[o, i] : 0
//   strided_copy:   y[i] = x[off_x(i)]: transpose (permuted strides) and broadcast-expand
//                   (stride 0) are both this op
//   matmul:         y[b] = op(a[b]) op(b[b]) for b < batch, each product an SGEMM (gemm.h)
//   fused:          y[i] = program(in_0[off_0(i)], ..., in_{n-1}[off_{n-1}(i)]): a short
//                   expression over up to kFusedInputs broadcast inputs, evaluated per element on
//                   a small stack in registers, so a chain of element-wise ops costs one read of
//                   each input and one write instead of a pass per op
//
// Every reduction runs in a fixed order on both devices (no float atomics), so results repeat
// bit for bit. Gradient convention: backward kernels overwrite their outputs.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/parallel.h"
#include "core/rng.h"

namespace cn {

constexpr int kMaxRank = 8;

enum BinaryCode : int { kBinAdd = 0, kBinSub = 1, kBinMul = 2, kBinDiv = 3 };
enum UnaryCode : int { kUnNeg = 0, kUnExp, kUnLog, kUnSqrt, kUnTanh, kUnSigmoid, kUnPow };
enum ReduceCode : int { kRedSum = 0, kRedMax = 1 };
constexpr int kBinaryCodes = 4, kUnaryCodes = 7, kReduceCodes = 2;

// The iteration space of binary and strided_copy: `rank` output dims (row-major) and the element
// strides of up to two operands along each of them (0: broadcast along that dim).
struct Strided {
  int rank;
  int64_t dims[kMaxRank];
  int64_t sa[kMaxRank];
  int64_t sb[kMaxRank];
};

// Offsets into the operands of output element i.
CN_HD void strided_offsets(const Strided& s, int64_t i, int64_t* oa, int64_t* ob) {
  int64_t a = 0, b = 0;
  for (int d = s.rank - 1; d >= 0; --d) {
    const int64_t n = s.dims[d];
    const int64_t c = i % n;
    i /= n;
    a += c * s.sa[d];
    b += c * s.sb[d];
  }
  *oa = a;
  *ob = b;
}

CN_HD float binary_elem(int code, float a, float b) {
  switch (code) {
    case kBinAdd: return a + b;
    case kBinSub: return a - b;
    case kBinMul: return a * b;
    default: return a / b;
  }
}

CN_HD float unary_elem(int code, float x, float p) {
  switch (code) {
    case kUnNeg: return -x;
    case kUnExp: return expf(x);
    case kUnLog: return logf(x);
    case kUnSqrt: return sqrtf(x);
    case kUnTanh: return tanhf(x);
    case kUnSigmoid: return 1.0f / (1.0f + expf(-x));
    default: return powf(x, p);
  }
}

// dx = dy * f'(x), with y = f(x) where f' is cheaper in terms of y.
CN_HD float unary_grad_elem(int code, float x, float y, float dy, float p) {
  switch (code) {
    case kUnNeg: return -dy;
    case kUnExp: return dy * y;
    case kUnLog: return dy / x;
    case kUnSqrt: return dy / (2.0f * y);
    case kUnTanh: return dy * (1.0f - y * y);
    case kUnSigmoid: return dy * (y * (1.0f - y));
    default: return p == 0.0f ? 0.0f : dy * (p * powf(x, p - 1.0f));
  }
}

// One output of reduce: x points at x[o, 0, i]; r terms `inner` apart.
CN_HD float reduce_sum_elem(const float* x, int64_t r, int64_t inner, float scale) {
  float s = 0.0f;
  for (int64_t j = 0; j < r; ++j) s += x[j * inner];
  return s * scale;
}
CN_HD float reduce_max_elem(const float* x, int64_t r, int64_t inner, int32_t* idx) {
  float best = x[0];
  int32_t bi = 0;
  for (int64_t j = 1; j < r; ++j) {
    const float v = x[j * inner];
    if (best == best && (v > best || v != v)) {
      best = v;
      bi = static_cast<int32_t>(j);
    }
  }
  *idx = bi;
  return best;
}

// fused: the program is kFusedMaxProgram instructions at most, each (opcode << 8) | arg:
//   LOAD i: push input i · CONST k: push consts[k] · BIN c: pop b, pop a, push binary_elem(c, a, b)
//   UN c: replace the top with unary_elem(c, top) (c < kUnPow) · POW k: top = powf(top, consts[k])
// The op table checks that a program never pops an empty stack, never holds more than
// kFusedMaxStack values, and ends with exactly one.
constexpr int kFusedInputs = 6, kFusedMaxProgram = 32, kFusedMaxStack = 8, kFusedConsts = 8;
enum FusedOpcode : int { kFusedLoad = 0, kFusedConst, kFusedBin, kFusedUn, kFusedPow, kFusedOpcodes };

struct FusedProgram {
  int inputs, rank, n;
  int64_t dims[kMaxRank];
  int64_t strides[kFusedInputs][kMaxRank];
  int code[kFusedMaxProgram];
  float consts[kFusedConsts];
};

CN_HD float fused_eval(const FusedProgram& p, const float* in) {
  float st[kFusedMaxStack];
  int sp = 0;
  for (int k = 0; k < p.n; ++k) {
    const int op = p.code[k] >> 8, a = p.code[k] & 255;
    switch (op) {
      case kFusedLoad: st[sp++] = in[a]; break;
      case kFusedConst: st[sp++] = p.consts[a]; break;
      case kFusedBin: --sp; st[sp - 1] = binary_elem(a, st[sp - 1], st[sp]); break;
      case kFusedUn: st[sp - 1] = unary_elem(a, st[sp - 1], 0.0f); break;
      default: st[sp - 1] = unary_elem(kUnPow, st[sp - 1], p.consts[a]); break;
    }
  }
  return st[0];
}

// Output element i of a fused op: gathers each input's element, then runs the program.
CN_HD float fused_elem(const FusedProgram& p, const float* const* ins, int64_t i) {
  float v[kFusedInputs];
  int64_t off[kFusedInputs] = {0, 0, 0, 0, 0, 0};
  for (int d = p.rank - 1; d >= 0; --d) {
    const int64_t n = p.dims[d];
    const int64_t c = i % n;
    i /= n;
    for (int k = 0; k < p.inputs; ++k) off[k] += c * p.strides[k][d];
  }
  for (int k = 0; k < p.inputs; ++k) v[k] = ins[k][off[k]];
  return fused_eval(p, v);
}

// CPU references. Each splits its outputs over the pool.
void binary_cpu(ThreadPool* pool, int code, const Strided& s, int64_t count, const float* a,
                const float* b, float* y);
void unary_cpu(ThreadPool* pool, int code, int64_t n, float p, const float* x, float* y);
void unary_backward_cpu(ThreadPool* pool, int code, int64_t n, float p, const float* x,
                        const float* y, const float* dy, float* dx);
void reduce_cpu(ThreadPool* pool, int code, int64_t outer, int64_t r, int64_t inner, float scale,
                const float* x, float* y, int32_t* idx);
void reduce_max_backward_cpu(ThreadPool* pool, int64_t outer, int64_t r, int64_t inner,
                             const float* dy, const int32_t* idx, float* dx);
void strided_copy_cpu(ThreadPool* pool, const Strided& s, int64_t count, const float* x, float* y);
void fused_cpu(ThreadPool* pool, const FusedProgram& p, int64_t count, const float* const* ins, float* y);
void matmul_cpu(ThreadPool* pool, int batch, int M, int N, int K, bool transA, bool transB,
                const float* a, const float* b, float* y);

}  // namespace cn
