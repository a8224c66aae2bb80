// Reading an OpCall, shared by the CPU wrappers (registry.cc) and the CUDA launchers: tensor k
// as a typed pointer (null for an optional tensor left out), int and float arguments, and the
// shape structs of the ops whose argument lists registry.cc documents.
#pragma once
#include "ops/compose.h"
#include "ops/conv2d.h"
#include "ops/lrn.h"
#include "ops/pool.h"
#include "ops/registry.h"

namespace cn {

template <typename T = float>
inline T* arg(const OpCall& c, size_t k) {
  return k < c.t.size() && c.t[k] ? c.t[k]->as<T>() : nullptr;
}
inline int int_arg(const OpCall& c, size_t k) { return static_cast<int>(c.i[k]); }
inline float float_arg(const OpCall& c, size_t k) { return static_cast<float>(c.f[k]); }

// ints [N, C, H, W, F, KH, KW, sh, sw, ph, pw, G, OH, OW]
inline Conv2dShape conv_shape(const OpCall& c) {
  Conv2dShape s;
  s.N = int_arg(c, 0); s.C = int_arg(c, 1); s.H = int_arg(c, 2); s.W = int_arg(c, 3);
  s.F = int_arg(c, 4); s.KH = int_arg(c, 5); s.KW = int_arg(c, 6);
  s.sh = int_arg(c, 7); s.sw = int_arg(c, 8); s.ph = int_arg(c, 9); s.pw = int_arg(c, 10);
  s.G = int_arg(c, 11); s.OH = int_arg(c, 12); s.OW = int_arg(c, 13);
  return s;
}

// ints [N, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW]
inline Pool2dShape pool_shape(const OpCall& c) {
  Pool2dShape s;
  s.N = int_arg(c, 0); s.C = int_arg(c, 1); s.H = int_arg(c, 2); s.W = int_arg(c, 3);
  s.KH = int_arg(c, 4); s.KW = int_arg(c, 5); s.sh = int_arg(c, 6); s.sw = int_arg(c, 7);
  s.ph = int_arg(c, 8); s.pw = int_arg(c, 9); s.OH = int_arg(c, 10); s.OW = int_arg(c, 11);
  return s;
}

// ints [N, C, H, W, size], floats [alpha, beta, k]
inline LrnShape lrn_shape(const OpCall& c) {
  LrnShape s;
  s.N = int_arg(c, 0); s.C = int_arg(c, 1); s.H = int_arg(c, 2); s.W = int_arg(c, 3);
  s.size = int_arg(c, 4);
  s.alpha = float_arg(c, 0); s.beta = float_arg(c, 1); s.k = float_arg(c, 2);
  return s;
}

// binary and strided_copy: from int `first` on, dims[kMaxRank], then the strides of the first
// operand[kMaxRank] and, with `two`, of the second[kMaxRank]; only the first `rank` are used.
inline Strided strided_of(const OpCall& c, size_t first, int rank, bool two) {
  Strided s{};
  s.rank = rank;
  for (int d = 0; d < kMaxRank; ++d) {
    s.dims[d] = c.i[first + d];
    s.sa[d] = c.i[first + kMaxRank + d];
    s.sb[d] = two ? c.i[first + 2 * kMaxRank + d] : 0;
  }
  return s;
}

// fused: ints [inputs, rank, count, dims[8], strides[6][8], n, code[32]], floats consts[8].
inline FusedProgram fused_of(const OpCall& c) {
  FusedProgram p{};
  p.inputs = static_cast<int>(c.i[0]);
  p.rank = static_cast<int>(c.i[1]);
  size_t k = 3;
  for (int d = 0; d < kMaxRank; ++d) p.dims[d] = c.i[k++];
  for (int t = 0; t < kFusedInputs; ++t)
    for (int d = 0; d < kMaxRank; ++d) p.strides[t][d] = c.i[k++];
  p.n = static_cast<int>(c.i[k++]);
  for (int q = 0; q < kFusedMaxProgram; ++q) p.code[q] = static_cast<int>(c.i[k++]);
  for (int q = 0; q < kFusedConsts; ++q) p.consts[q] = static_cast<float>(c.f[q]);
  return p;
}
constexpr int kFusedInts = 3 + kMaxRank + kFusedInputs * kMaxRank + 1 + kFusedMaxProgram;

}  // namespace cn
