// Runs every op of the op table that has a CUDA launcher through the CUDA emulation
// (native/emu/cuda_runtime.h, the real native/ops/*_cuda.cu sources rewritten by prep.py) and
// through its CPU implementation, on random shapes and on the same inputs, with every output
// poisoned with NaN beforehand, and compares the results. One line per op:
//
//   ok   <op>  cases=… launches=… blocks=… max_err=… (exact|tol …)   or   FAIL <op> …
//
// Exit status 0 when every op passes. Options:
//   --seed N      random seed (default 1)
//   --cases N     random cases per op (default 24; edge cases come on top)
//   --only NAME   just this op (repeatable; 'copies' for the copy and upload checks)
//   --self-test   instead of the comparison run: checks that the harness and the emulation
//                 catch what they are meant to catch (see self_test()); exit 0 when they do.
//   --verbose     print every case
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cuda_runtime.h"
#include "emu_control.h"

#include "core/cuda_device.h"
#include "core/device.h"
#include "core/errors.h"
#include "ops/compose.h"
#include "ops/conv2d.h"
#include "ops/gemm.h"
#include "ops/gemm_cuda.h"
#include "ops/loss.h"
#include "ops/lrn.h"
#include "ops/pool.h"
#include "ops/registry.h"

#include "selftest.h"

namespace {

using cn::Device;
using cn::OpCall;
using cn::Storage;
using cn::StoragePtr;

// Quiet NaNs with payloads no computation produces: an element still holding one was never
// written. The CPU and the emulated device get different ones, so two unwritten elements never
// compare equal.
constexpr uint32_t kPoisonCpu = 0x7fa0c0deu;
constexpr uint32_t kPoisonGpu = 0x7fa0beefu;

enum class Role { In, Out, InOut };
enum class Cmp { Exact, Tol };

struct Tensor {
  std::string name;
  Role role = Role::In;
  bool is_int = false;
  bool null = false;  // an optional tensor left out
  size_t n = 0;
  std::vector<uint32_t> init;  // In / InOut contents (words)
  Cmp cmp = Cmp::Exact;
  double tol = 0;
};

struct Case {
  std::string desc;
  std::vector<Tensor> t;
  std::vector<int64_t> i;
  std::vector<double> f;
};

uint32_t bits_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}
float float_of(uint32_t b) {
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}

Tensor in_f(const std::string& name, const std::vector<float>& v) {
  Tensor t;
  t.name = name;
  t.n = v.size();
  for (float x : v) t.init.push_back(bits_of(x));
  return t;
}
Tensor in_i(const std::string& name, const std::vector<int32_t>& v) {
  Tensor t;
  t.name = name;
  t.is_int = true;
  t.n = v.size();
  for (int32_t x : v) t.init.push_back(static_cast<uint32_t>(x));
  return t;
}
Tensor out_f(const std::string& name, size_t n, Cmp cmp, double tol = 0) {
  Tensor t;
  t.name = name;
  t.role = Role::Out;
  t.n = n;
  t.cmp = cmp;
  t.tol = tol;
  return t;
}
Tensor out_i(const std::string& name, size_t n) {
  Tensor t = out_f(name, n, Cmp::Exact);
  t.is_int = true;
  return t;
}
Tensor inout_f(const std::string& name, const std::vector<float>& v, Cmp cmp, double tol = 0) {
  Tensor t = in_f(name, v);
  t.role = Role::InOut;
  t.cmp = cmp;
  t.tol = tol;
  return t;
}
Tensor none(const std::string& name) {
  Tensor t;
  t.name = name;
  t.null = true;
  return t;
}

// ---- Random inputs --------------------------------------------------------------------------

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  int range(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); }
  double uni(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(g); }
  bool coin(double p = 0.5) { return uni(0, 1) < p; }
  template <typename T>
  T pick(std::initializer_list<T> v) {
    return *(v.begin() + range(0, static_cast<int>(v.size()) - 1));
  }
  std::vector<float> floats(size_t n, float lo = -1, float hi = 1) {
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(uni(lo, hi));
    return v;
  }
};

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// ---- Running one case on both devices -------------------------------------------------------

struct Devices {
  Device* cpu;
  cn::CudaDevice* cuda;
};

StoragePtr host_storage(Device* d, const Tensor& t, uint32_t poison) {
  if (t.null) return nullptr;
  const size_t bytes = t.n * 4;
  void* p = std::malloc(bytes ? bytes : 1);  // exact size: AddressSanitizer sees overruns
  auto* w = static_cast<uint32_t*>(p);
  for (size_t k = 0; k < t.n; ++k) w[k] = t.role == Role::Out ? poison : t.init[k];
  return StoragePtr(new Storage(d, p, bytes, 0), [](Storage* s) {
    std::free(s->ptr);
    s->ptr = nullptr;  // not the allocator's
    delete s;
  });
}

StoragePtr device_storage(Device* d, const Tensor& t, uint32_t poison) {
  if (t.null) return nullptr;
  const size_t bytes = t.n * 4;
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    std::fprintf(stderr, "harness: cudaMalloc(%zu) failed\n", bytes);
    std::exit(2);
  }
  std::vector<uint32_t> w(t.n);
  for (size_t k = 0; k < t.n; ++k) w[k] = t.role == Role::Out ? poison : t.init[k];
  if (bytes) cudaMemcpy(p, w.data(), bytes, cudaMemcpyHostToDevice);
  return StoragePtr(new Storage(d, p, bytes, 0), [](Storage* s) {
    cudaFree(s->ptr);
    s->ptr = nullptr;
    delete s;
  });
}

struct Outcome {
  bool ok = true;
  std::string msg;
  double max_err = 0;
  bool all_exact = true;
};

enum class Inject { None, Corrupt, Unwrite };

// outs: when given, receives each output's CPU and CUDA values (as floats), in order.
Outcome run_case(const Devices& dev, const cn::OpDef& def, const Case& c, Inject inject = Inject::None,
                 std::vector<std::pair<std::vector<float>, std::vector<float>>>* outs = nullptr) {
  Outcome o;
  OpCall cc{dev.cpu, {}, c.i, c.f}, gc{dev.cuda, {}, c.i, c.f};
  for (const Tensor& t : c.t) {
    cc.t.push_back(host_storage(dev.cpu, t, kPoisonCpu));
    gc.t.push_back(device_storage(dev.cuda, t, kPoisonGpu));
  }
  try {
    def.cpu(cc);
    dev.cpu->synchronize();
  } catch (const std::exception& e) {
    o.ok = false;
    o.msg = std::string("the CPU op threw: ") + e.what();
    return o;
  }
  try {
    def.cuda(gc);
    if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("cudaDeviceSynchronize failed");
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) throw std::runtime_error(std::string("pending error ") + cudaGetErrorName(err));
  } catch (const std::exception& e) {
    o.ok = false;
    o.msg = std::string("the CUDA op threw: ") + e.what();
    return o;
  }
  // Workspaces go back to the emulated device: the next op's come fresh (NaN-filled).
  dev.cuda->allocator().empty_cache();

  for (size_t k = 0; k < c.t.size() && o.ok; ++k) {
    const Tensor& t = c.t[k];
    if (t.null || t.role == Role::In) continue;
    std::vector<uint32_t> a(t.n), b(t.n);
    if (t.n) std::memcpy(a.data(), cc.t[k]->ptr, t.n * 4);
    if (t.n) cudaMemcpy(b.data(), gc.t[k]->ptr, t.n * 4, cudaMemcpyDeviceToHost);
    if (inject != Inject::None && t.n) {
      const size_t e = t.n / 2;
      if (inject == Inject::Unwrite) {
        b[e] = kPoisonGpu;
      } else if (t.cmp == Cmp::Exact || t.is_int) {
        b[e] ^= 1;
      } else {
        const float v = float_of(b[e]);
        b[e] = bits_of(v + static_cast<float>(20 * t.tol * std::max(1.0f, std::fabs(v))));
      }
      inject = Inject::None;
    }
    if (t.cmp == Cmp::Tol) o.all_exact = false;
    if (outs) {
      outs->emplace_back(std::vector<float>(t.n), std::vector<float>(t.n));
      for (size_t e = 0; e < t.n; ++e) {
        outs->back().first[e] = float_of(a[e]);
        outs->back().second[e] = float_of(b[e]);
      }
    }
    for (size_t e = 0; e < t.n; ++e) {
      std::string bad;
      if (a[e] == kPoisonCpu) bad = "the CPU op never wrote it";
      else if (b[e] == kPoisonGpu) bad = "the CUDA op never wrote it";
      else if (t.is_int || t.cmp == Cmp::Exact) {
        if (a[e] != b[e]) bad = "not bit-identical";
      } else {
        const float x = float_of(a[e]), y = float_of(b[e]);
        if (std::isnan(x) || std::isnan(y)) {
          if (!(std::isnan(x) && std::isnan(y))) bad = "NaN on one side only";
        } else if (std::isinf(x) || std::isinf(y)) {
          if (x != y) bad = "inf on one side only";
        } else {
          const double err = std::fabs(double(x) - double(y)) /
                             std::max({std::fabs(double(x)), std::fabs(double(y)), 1.0});
          o.max_err = std::max(o.max_err, err);
          if (err > t.tol) bad = fmt("error %.3g above %.3g", err, t.tol);
        }
      }
      if (!bad.empty()) {
        o.ok = false;
        if (t.is_int)
          o.msg = fmt("%s[%zu]: cpu %d, cuda %d (%s)", t.name.c_str(), e, int32_t(a[e]),
                      int32_t(b[e]), bad.c_str());
        else
          o.msg = fmt("%s[%zu]: cpu %.9g (0x%08x), cuda %.9g (0x%08x): %s", t.name.c_str(), e,
                      float_of(a[e]), a[e], float_of(b[e]), b[e], bad.c_str());
        break;
      }
    }
  }
  return o;
}

// ---- Case generators, one per op (argument orders: native/ops/registry.cc) ------------------

using Gen = std::function<Case(Rng&, int)>;

// Counts that cross block boundaries (256 threads a block) and, with kMaxBlocks shrunk to 3,
// make the grid-stride loops go round.
int64_t pick_count(Rng& r, int k) {
  static const int64_t edge[] = {1, 2, 31, 255, 256, 257, 769, 1000};
  if (k < 8) return edge[k];
  return r.coin(0.3) ? r.range(1, 64) : r.range(1, 2500);
}

constexpr double kTolElem = 1e-6;   // one or two roundings apart at most
constexpr double kTolGemm = 1e-4;   // sums of up to a few hundred products, in another order
constexpr double kTolSoftmax = 1e-6;

Case gen_fill(Rng& r, int k) {
  const int64_t n = pick_count(r, k);
  double v = k == 8 ? std::numeric_limits<double>::quiet_NaN() : k == 9 ? -0.0 : r.uni(-3, 3);
  return {fmt("count=%" PRId64 " value=%g", n, v), {out_f("y", n, Cmp::Exact)}, {n}, {v}};
}

Case gen_randn(Rng& r, int k) {
  const int64_t n = pick_count(r, k);
  const int64_t seed = static_cast<int64_t>(r.g());
  const double mean = r.uni(-1, 1), sd = r.uni(0.1, 2);
  return {fmt("count=%" PRId64 " seed=%" PRId64 " mean=%g std=%g", n, seed, mean, sd),
          {out_f("y", n, Cmp::Tol, 1e-5)}, {n, seed}, {mean, sd}};
}

Case gen_axpy(Rng& r, int k) {
  const int64_t n = pick_count(r, k);
  const double alpha = r.uni(-2, 2);
  // Documented bit-identical (__fmul_rn/__fadd_rn against the CPU's two roundings).
  return {fmt("count=%" PRId64 " alpha=%g", n, alpha),
          {inout_f("y", r.floats(n), Cmp::Exact), in_f("x", r.floats(n))}, {n}, {alpha}};
}

Case gen_copy_blocks(Rng& r, int k) {
  const int64_t outer = k < 3 ? k + 1 : r.range(1, 12);
  const int64_t inner = k < 3 ? 257 : r.range(1, 300);
  const int64_t ss = inner + r.range(0, 5), so = r.range(0, 7);
  const int64_t ds = inner + r.range(0, 5), doff = r.range(0, 7);
  const int64_t src_n = (outer - 1) * ss + so + inner, dst_n = (outer - 1) * ds + doff + inner;
  // Arbitrary 32-bit words (NaN payloads, signalling NaNs, denormals) must move unchanged; the
  // words between blocks of dst must stay as they were.
  auto words = [&](int64_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = float_of(static_cast<uint32_t>(r.g()));
    return v;
  };
  return {fmt("outer=%" PRId64 " inner=%" PRId64 " src %" PRId64 "+%" PRId64 " dst %" PRId64 "+%" PRId64,
              outer, inner, ss, so, ds, doff),
          {inout_f("dst", words(dst_n), Cmp::Exact), in_f("src", words(src_n))},
          {outer, inner, ss, so, ds, doff}, {}};
}

std::vector<float> relu_inputs(Rng& r, int64_t n) {
  std::vector<float> x = r.floats(n);
  for (auto& v : x) {
    const double u = r.uni(0, 1);
    if (u < 0.05) v = 0.0f;
    else if (u < 0.1) v = -0.0f;
    else if (u < 0.12) v = std::numeric_limits<float>::quiet_NaN();
  }
  return x;
}

Case gen_relu_forward(Rng& r, int k) {
  const int64_t n = pick_count(r, k);
  return {fmt("count=%" PRId64, n), {out_f("y", n, Cmp::Exact), in_f("x", relu_inputs(r, n))}, {n}, {}};
}

Case gen_relu_backward(Rng& r, int k) {
  const int64_t n = pick_count(r, k);
  return {fmt("count=%" PRId64, n),
          {out_f("dx", n, Cmp::Exact), in_f("x", relu_inputs(r, n)), in_f("dy", r.floats(n))}, {n}, {}};
}

Case gen_dropout(Rng& r, int k) {
  const int64_t n = pick_count(r, k);
  const int64_t seed = static_cast<int64_t>(r.g());
  const double p = r.pick({0.0, 0.1, 0.5, 0.9, 0.37});
  return {fmt("count=%" PRId64 " seed=%" PRId64 " p=%g", n, seed, p),
          {out_f("y", n, Cmp::Exact), in_f("x", r.floats(n))}, {n, seed}, {p}};
}

Case gen_sgd(Rng& r, int k) {
  const int64_t n = pick_count(r, k);
  const bool momentum = k % 2 == 0 || r.coin();
  const double lr = r.uni(0.001, 0.5), mom = momentum ? r.uni(0.1, 0.99) : 0.0,
               wd = r.coin(0.3) ? 0.0 : r.uni(0, 0.01);
  return {fmt("count=%" PRId64 " lr=%g momentum=%g wd=%g", n, lr, mom, wd),
          {inout_f("w", r.floats(n), Cmp::Tol, kTolElem), in_f("g", r.floats(n)),
           momentum ? inout_f("v", r.floats(n), Cmp::Tol, kTolElem) : none("v")},
          {n}, {lr, mom, wd}};
}

// Conv shapes: groups, stride, padding, kernels up to the padded input, 1x1 direct, P = 1, N = 1.
cn::Conv2dShape conv_shape_gen(Rng& r, int k) {
  cn::Conv2dShape s{};
  for (;;) {
    s.G = r.pick({1, 1, 2, 3});
    s.C = s.G * r.range(1, 3);
    s.F = s.G * r.range(1, 3);
    s.N = r.pick({1, 1, 2, 3, 5});
    s.H = r.range(1, 9);
    s.W = r.range(1, 9);
    const int kind = k % 5;
    if (kind == 0) {  // 1x1, stride 1, unpadded: the in-place GEMM path
      s.KH = s.KW = 1;
      s.sh = s.sw = 1;
      s.ph = s.pw = 0;
    } else {
      s.KH = r.range(1, 5);
      s.KW = r.range(1, 5);
      s.sh = r.range(1, 3);
      s.sw = r.range(1, 3);
      s.ph = r.range(0, s.KH - 1);
      s.pw = r.range(0, s.KW - 1);
      if (kind == 1) {  // big images, AlexNet-like strides
        s.H = r.range(10, 23);
        s.W = r.range(10, 23);
      } else if (kind == 2) {  // many filters per group: more than one 64-row GEMM tile
        s.C = s.G * r.range(2, 12);
        s.F = s.G * r.range(20, 70);
        s.H = r.range(2, 6);
        s.W = r.range(2, 6);
        s.KH = r.range(1, 3);
        s.KW = r.range(1, 3);
        s.ph = r.range(0, s.KH - 1);
        s.pw = r.range(0, s.KW - 1);
      }
    }
    if (s.H + 2 * s.ph < s.KH || s.W + 2 * s.pw < s.KW) continue;
    s.OH = (s.H + 2 * s.ph - s.KH) / s.sh + 1;
    s.OW = (s.W + 2 * s.pw - s.KW) / s.sw + 1;
    return s;
  }
}

// The op's ints; `version` is the CUDA kernel version (0: the default).
std::vector<int64_t> conv_ints(const cn::Conv2dShape& s, int version = 0) {
  return {s.N, s.C, s.H, s.W, s.F, s.KH, s.KW, s.sh, s.sw, s.ph, s.pw, s.G, s.OH, s.OW, version};
}
std::string conv_desc(const cn::Conv2dShape& s, bool bias) {
  return fmt("N=%d C=%d H=%d W=%d F=%d K=%dx%d s=%d,%d p=%d,%d G=%d O=%dx%d%s", s.N, s.C, s.H,
             s.W, s.F, s.KH, s.KW, s.sh, s.sw, s.ph, s.pw, s.G, s.OH, s.OW, bias ? " bias" : "");
}
size_t conv_xn(const cn::Conv2dShape& s) { return size_t(s.N) * s.C * s.H * s.W; }
size_t conv_yn(const cn::Conv2dShape& s) { return size_t(s.N) * s.F * s.OH * s.OW; }
size_t conv_wn(const cn::Conv2dShape& s) { return size_t(s.F) * (s.C / s.G) * s.KH * s.KW; }

Case conv_fwd_case(Rng& r, const cn::Conv2dShape& s, int version) {
  const bool bias = r.coin();
  return {conv_desc(s, bias),
          {out_f("y", conv_yn(s), Cmp::Tol, kTolGemm), in_f("x", r.floats(conv_xn(s))),
           in_f("w", r.floats(conv_wn(s))), bias ? in_f("b", r.floats(s.F)) : none("b")},
          conv_ints(s, version), {}};
}
Case conv_bwd_data_case(Rng& r, const cn::Conv2dShape& s, int version) {
  return {conv_desc(s, false),
          {out_f("dx", conv_xn(s), Cmp::Tol, kTolGemm), in_f("dy", r.floats(conv_yn(s))),
           in_f("w", r.floats(conv_wn(s)))},
          conv_ints(s, version), {}};
}
Case conv_bwd_filter_case(Rng& r, const cn::Conv2dShape& s, int version) {
  const bool bias = r.coin();
  return {conv_desc(s, bias),
          {out_f("dw", conv_wn(s), Cmp::Tol, kTolGemm),
           bias ? out_f("db", s.F, Cmp::Tol, kTolGemm) : none("db"), in_f("x", r.floats(conv_xn(s))),
           in_f("dy", r.floats(conv_yn(s)))},
          conv_ints(s, version), {}};
}

// Version 1 (the default, or asked for by number).
Case gen_conv_fwd(Rng& r, int k) { return conv_fwd_case(r, conv_shape_gen(r, k), k % 3 == 2); }
Case gen_conv_bwd_data(Rng& r, int k) {
  return conv_bwd_data_case(r, conv_shape_gen(r, k), k % 3 == 2);
}
Case gen_conv_bwd_filter(Rng& r, int k) {
  cn::Conv2dShape s = conv_shape_gen(r, k);
  if (k % 7 == 3) s.N = r.range(6, 20);  // several slices, a short last one
  return conv_bwd_filter_case(r, s, k % 3 == 2);
}

// Shapes for version 2 (implicit GEMM): AlexNet's kernel/stride/padding combinations made small
// (11x11 stride 4 pad 2, 5x5 pad 2 groups 2, 3x3 pad 1), strides 1, 2 and 4, 1x1 stride 2
// (stride phases without taps), odd sizes, and GEMM sizes just around the 64- and 128-wide tiles.
cn::Conv2dShape conv_v2_shape_gen(Rng& r, int k) {
  cn::Conv2dShape s{};
  for (;;) {
    s.G = 1;
    s.N = r.pick({1, 1, 2, 3});
    s.sh = s.sw = 1;
    s.ph = s.pw = 0;
    switch (k % 7) {
      case 0:  // conv1 in miniature
        s.C = 3; s.F = r.range(1, 9); s.KH = s.KW = 11; s.sh = s.sw = 4;
        s.ph = r.pick({2, 2, 0, 1, 3}); s.pw = r.pick({2, 2, 1, 3});  // odd: phases shift
        s.H = r.range(7, 27); s.W = r.range(7, 27);
        break;
      case 1:  // conv2: 5x5 pad 2, groups 2
        s.G = 2; s.C = 2 * r.range(1, 5); s.F = 2 * r.range(1, 6); s.KH = s.KW = 5; s.ph = s.pw = 2;
        s.H = r.range(3, 9); s.W = r.range(3, 9);
        break;
      case 2:  // conv3-5: 3x3 pad 1, groups 1 or 2, channels a multiple of 4 (16-byte A tiles)
        s.G = r.pick({1, 2}); s.C = s.G * 4 * r.range(1, 3); s.F = s.G * 4 * r.range(1, 3);
        s.KH = s.KW = 3; s.ph = s.pw = 1; s.H = r.range(3, 9); s.W = r.range(3, 9);
        break;
      case 3:  // 1x1, stride 1 or 2 (a stride-2 1x1 leaves three of four phases without taps)
        s.G = r.pick({1, 3}); s.C = s.G * r.range(1, 4); s.F = s.G * r.range(1, 4);
        s.KH = s.KW = 1; s.sh = s.sw = r.range(1, 2); s.H = r.range(1, 12); s.W = r.range(1, 12);
        break;
      case 4:  // M around the tile heights: Fg (forward, filter) or Cg (backward data) 63..65, 129
        s.G = r.pick({1, 2}); s.C = s.G * r.pick({1, 2, 63, 64, 65, 129});
        s.F = s.G * r.pick({63, 64, 65, 129});
        s.KH = s.KW = r.range(1, 3); s.ph = s.pw = r.range(0, s.KH - 1);
        s.H = r.range(2, 6); s.W = r.range(2, 6);
        break;
      case 5:  // N around the tile widths: N*OH*OW near 64, 128 (forward) and Kc near them (filter)
        s.C = r.pick({7, 14, 15, 16}); s.F = r.range(1, 5); s.KH = s.KW = 3; s.ph = s.pw = 1;
        s.N = 1; s.H = r.pick({8, 9, 11, 12}); s.W = r.pick({8, 11, 12});
        break;
      default:  // anything: kernels up to 7, strides up to 4 (3 often), uneven padding
        s.G = r.pick({1, 2, 3}); s.C = s.G * r.range(1, 3); s.F = s.G * r.range(1, 3);
        s.KH = r.range(1, 7); s.KW = r.range(1, 7); s.sh = r.pick({1, 2, 3, 3, 4}); s.sw = r.range(1, 4);
        s.ph = r.range(0, s.KH - 1); s.pw = r.range(0, s.KW - 1);
        s.H = r.range(1, 15); s.W = r.range(1, 15);
        break;
    }
    if (s.H + 2 * s.ph < s.KH || s.W + 2 * s.pw < s.KW) continue;
    s.OH = (s.H + 2 * s.ph - s.KH) / s.sh + 1;
    s.OW = (s.W + 2 * s.pw - s.KW) / s.sw + 1;
    return s;
  }
}

// Pool shapes: padding <= kernel/2 (the TypeScript layer's rule), overlapping windows (stride <
// kernel), gaps (stride > kernel), N = 1; one case in six pads up to kernel - 1, past the
// TypeScript rule, where windows can lie wholly in the padding (-inf, idx -1 on both devices).
cn::Pool2dShape pool_shape_gen(Rng& r, int k) {
  cn::Pool2dShape s{};
  for (;;) {
    s.N = r.pick({1, 1, 2, 3});
    s.C = r.range(1, 4);
    s.H = r.range(1, 13);
    s.W = r.range(1, 13);
    s.KH = r.range(1, 4);
    s.KW = r.range(1, 4);
    s.sh = r.range(1, 4);
    s.sw = r.range(1, 4);
    s.ph = r.range(0, k % 6 == 5 ? s.KH - 1 : s.KH / 2);
    s.pw = r.range(0, k % 6 == 5 ? s.KW - 1 : s.KW / 2);
    if (s.H + 2 * s.ph < s.KH || s.W + 2 * s.pw < s.KW) continue;
    s.OH = (s.H + 2 * s.ph - s.KH) / s.sh + 1;
    s.OW = (s.W + 2 * s.pw - s.KW) / s.sw + 1;
    return s;
  }
}
std::vector<int64_t> pool_ints(const cn::Pool2dShape& s) {
  return {s.N, s.C, s.H, s.W, s.KH, s.KW, s.sh, s.sw, s.ph, s.pw, s.OH, s.OW};
}
std::string pool_desc(const cn::Pool2dShape& s) {
  return fmt("N=%d C=%d H=%d W=%d K=%dx%d s=%d,%d p=%d,%d O=%dx%d", s.N, s.C, s.H, s.W, s.KH,
             s.KW, s.sh, s.sw, s.ph, s.pw, s.OH, s.OW);
}
// Few distinct values so windows hold ties; now and then a NaN or -inf.
std::vector<float> pool_inputs(Rng& r, size_t n) {
  std::vector<float> x(n);
  for (auto& v : x) {
    const double u = r.uni(0, 1);
    v = u < 0.03 ? std::numeric_limits<float>::quiet_NaN()
        : u < 0.06 ? -std::numeric_limits<float>::infinity()
                   : static_cast<float>(r.range(-3, 3)) * 0.5f;
  }
  return x;
}

Case gen_pool_fwd(Rng& r, int k) {
  const cn::Pool2dShape s = pool_shape_gen(r, k);
  const size_t xn = size_t(s.N) * s.C * s.H * s.W, yn = size_t(s.N) * s.C * s.OH * s.OW;
  return {pool_desc(s),
          {out_f("y", yn, Cmp::Exact), out_i("idx", yn), in_f("x", pool_inputs(r, xn))},
          pool_ints(s), {}};
}

Case gen_pool_bwd(Rng& r, int k) {
  const cn::Pool2dShape s = pool_shape_gen(r, k);
  const size_t xn = size_t(s.N) * s.C * s.H * s.W, yn = size_t(s.N) * s.C * s.OH * s.OW;
  // idx as forward makes it (from inputs with ties), so overlapping windows share cells.
  std::vector<float> x = pool_inputs(r, xn), y(yn);
  std::vector<int32_t> idx(yn);
  cn::maxpool2d_forward_cpu(nullptr, s, x.data(), y.data(), idx.data());
  // Documented bit-identical: the same dy values added in the same order.
  return {pool_desc(s), {out_f("dx", xn, Cmp::Exact), in_f("dy", r.floats(yn)), in_i("idx", idx)},
          pool_ints(s), {}};
}

cn::LrnShape lrn_shape_gen(Rng& r, int k) {
  cn::LrnShape s{};
  s.N = r.pick({1, 1, 2, 3});
  s.C = k % 3 == 0 ? r.range(17, 40) : r.range(1, 12);  // > 16: the sliding double sum
  s.H = r.range(1, 7);
  s.W = r.range(1, 7);
  s.size = k % 4 == 1 ? s.C + r.range(1, 5)             // size > C
           : k % 3 == 0 ? r.range(17, s.C)              // wide window over many channels
                        : r.range(1, 8);                // odd and even sizes
  if (k % 7 == 6) {  // AlexNet's: 96 channels, size 5
    s.C = 96;
    s.size = 5;
  }
  s.alpha = static_cast<float>(r.pick({1e-4, 1e-2, 0.5}));
  s.beta = k % 2 == 0 ? 0.75f : static_cast<float>(r.pick({0.5, 1.3, 0.75}));
  s.k = static_cast<float>(r.pick({1.0, 2.0, 0.5}));
  return s;
}
std::string lrn_desc(const cn::LrnShape& s) {
  return fmt("N=%d C=%d H=%d W=%d size=%d alpha=%g beta=%g k=%g", s.N, s.C, s.H, s.W, s.size,
             s.alpha, s.beta, s.k);
}
// Documented bit-identical when beta == 0.75 (powf's few ulp otherwise, on a GPU).
Cmp lrn_cmp(const cn::LrnShape& s) { return s.beta == 0.75f ? Cmp::Exact : Cmp::Tol; }

Case gen_lrn_fwd(Rng& r, int k) {
  const cn::LrnShape s = lrn_shape_gen(r, k);
  const size_t n = size_t(s.N) * s.C * s.H * s.W;
  return {lrn_desc(s),
          {out_f("y", n, lrn_cmp(s), kTolElem * 10), out_f("scale", n, Cmp::Exact),
           in_f("x", r.floats(n, -3, 3))},
          {s.N, s.C, s.H, s.W, s.size}, {s.alpha, s.beta, s.k}};
}

Case gen_lrn_bwd(Rng& r, int k) {
  const cn::LrnShape s = lrn_shape_gen(r, k);
  const size_t n = size_t(s.N) * s.C * s.H * s.W;
  std::vector<float> x = r.floats(n, -3, 3), y(n), scale(n);
  cn::lrn_forward_cpu(nullptr, s, x.data(), y.data(), scale.data());
  return {lrn_desc(s),
          {out_f("dx", n, lrn_cmp(s), kTolElem * 10), in_f("x", x), in_f("y", y),
           in_f("scale", scale), in_f("dy", r.floats(n))},
          {s.N, s.C, s.H, s.W, s.size}, {s.alpha, s.beta, s.k}};
}

void linear_dims(Rng& r, int k, int* N, int* K, int* M) {
  static const int edge[][3] = {{1, 1, 1}, {1, 9, 70}, {66, 8, 33}, {5, 7, 3}, {12, 16, 1},
                                {3, 0, 5}, {64, 64, 64}, {65, 129, 67}};
  if (k < 8) {
    *N = edge[k][0];
    *K = edge[k][1];
    *M = edge[k][2];
    return;
  }
  *N = r.pick({1, 2, 3, 4, 17, 64, 65, 70});
  *K = r.range(1, 80);
  *M = r.range(1, 70);
}

Case gen_linear_fwd(Rng& r, int k) {
  int N, K, M;
  linear_dims(r, k, &N, &K, &M);
  const bool bias = k % 3 != 2;
  return {fmt("N=%d K=%d M=%d%s", N, K, M, bias ? " bias" : ""),
          {out_f("y", size_t(N) * M, Cmp::Tol, kTolGemm), in_f("x", r.floats(size_t(N) * K)),
           in_f("w", r.floats(size_t(M) * K)), bias ? in_f("b", r.floats(M)) : none("b")},
          {N, K, M}, {}};
}

Case gen_linear_bwd_data(Rng& r, int k) {
  int N, K, M;
  linear_dims(r, k, &N, &K, &M);
  return {fmt("N=%d K=%d M=%d", N, K, M),
          {out_f("dx", size_t(N) * K, Cmp::Tol, kTolGemm), in_f("dy", r.floats(size_t(N) * M)),
           in_f("w", r.floats(size_t(M) * K))},
          {N, K, M}, {}};
}

Case gen_linear_bwd_weight(Rng& r, int k) {
  int N, K, M;
  linear_dims(r, k, &N, &K, &M);
  const bool bias = k % 3 != 2;
  return {fmt("N=%d K=%d M=%d%s", N, K, M, bias ? " bias" : ""),
          {out_f("dw", size_t(M) * K, Cmp::Tol, kTolGemm),
           bias ? out_f("db", M, Cmp::Tol, kTolGemm) : none("db"), in_f("x", r.floats(size_t(N) * K)),
           in_f("dy", r.floats(size_t(N) * M))},
          {N, K, M}, {}};
}

void xent_dims(Rng& r, int k, int* N, int* M) {
  static const int edge[][2] = {{1, 1}, {1, 32}, {3, 33}, {2, 64}, {5, 65}, {4, 129}, {70, 10}, {2, 300}};
  if (k < 8) {
    *N = edge[k][0];
    *M = edge[k][1];
    return;
  }
  *N = r.pick({1, 2, 3, 7, 40});
  *M = r.pick({1, 2, 5, 31, 32, 33, 63, 64, 65, 127, 128, 129, 257, 1000});
}
std::vector<float> logits_gen(Rng& r, size_t n, int k) {
  std::vector<float> z = r.floats(n, -5, 5);
  if (k % 6 == 5)
    for (auto& v : z) v *= 300;  // |z| ~ 1e3: must not overflow
  if (k % 11 == 10 && n > 1) z[n / 2] = std::numeric_limits<float>::quiet_NaN();
  return z;
}
std::vector<int32_t> labels_gen(Rng& r, int N, int M) {
  std::vector<int32_t> l(N);
  for (auto& v : l) v = r.range(0, M - 1);
  return l;
}

Case gen_xent_fwd(Rng& r, int k) {
  int N, M;
  xent_dims(r, k, &N, &M);
  if (k == 8) N = 0;  // an empty batch: NaN on both
  return {fmt("N=%d M=%d", N, M),
          {out_f("loss", 1, Cmp::Tol, kTolSoftmax), out_f("probs", size_t(N) * M, Cmp::Tol, kTolSoftmax),
           in_f("logits", logits_gen(r, size_t(N) * M, k)), in_i("labels", labels_gen(r, N, M))},
          {N, M}, {}};
}

Case gen_xent_bwd(Rng& r, int k) {
  int N, M;
  xent_dims(r, k, &N, &M);
  std::vector<float> z = logits_gen(r, size_t(N) * M, k), p(size_t(N) * M);
  std::vector<int32_t> labels = labels_gen(r, N, M);
  float loss;
  cn::softmax_xent_forward_cpu(nullptr, N, M, z.data(), labels.data(), p.data(), &loss);
  // Documented bit-identical.
  return {fmt("N=%d M=%d", N, M),
          {out_f("dlogits", size_t(N) * M, Cmp::Exact), in_f("probs", p), in_i("labels", labels),
           in_f("gout", {static_cast<float>(r.uni(-2, 2))})},
          {N, M}, {}};
}

// ---- Composition ops (compose.h) ------------------------------------------------------------

// A random broadcast: output dims (rank 0..kMaxRank, extents that cross block boundaries at low
// rank) and, per operand, a random subset of dims broadcast (stride 0) and a random dim order of
// its own storage (a transposed operand). Returns the element count of each operand's storage.
struct StridedGen {
  int rank = 0;
  std::vector<int64_t> dims;
  std::vector<std::vector<int64_t>> strides;
  std::vector<int64_t> sizes;
  int64_t count = 1;
};
StridedGen strided_gen(Rng& r, int k, int operands) {
  StridedGen g;
  g.rank = k < 3 ? k : r.coin(0.15) ? r.range(5, cn::kMaxRank) : r.range(1, 4);
  for (int d = 0; d < g.rank; ++d) {
    int64_t n = g.rank <= 2 ? r.pick<int64_t>({1, 2, 3, 17, 64, 257, 300}) : r.range(1, 5);
    if (k == 3 && d == 0) n = 0;  // an empty output
    g.dims.push_back(n);
    g.count *= n;
  }
  for (int o = 0; o < operands; ++o) {
    std::vector<int64_t> st(g.rank, 0);
    std::vector<int> order(g.rank);
    for (int d = 0; d < g.rank; ++d) order[d] = d;
    if (r.coin(0.3)) std::shuffle(order.begin(), order.end(), r.g);
    int64_t size = 1;
    for (int q = g.rank - 1; q >= 0; --q) {
      const int d = order[q];
      const bool bcast = g.dims[d] == 1 || (o == 1 && k % 4 == 1) || r.coin(0.25);
      if (bcast) continue;
      st[d] = size;
      size *= g.dims[d];
    }
    g.strides.push_back(st);
    g.sizes.push_back(g.count == 0 ? 0 : size);
  }
  return g;
}
std::vector<int64_t> strided_ints(const StridedGen& g, std::vector<int64_t> lead) {
  lead.push_back(g.count);
  for (int d = 0; d < cn::kMaxRank; ++d) lead.push_back(d < g.rank ? g.dims[d] : 1);
  for (const auto& st : g.strides)
    for (int d = 0; d < cn::kMaxRank; ++d) lead.push_back(d < g.rank ? st[d] : 0);
  return lead;
}
std::string dims_desc(const StridedGen& g) {
  std::string d = "[";
  for (int k = 0; k < g.rank; ++k) d += (k ? "," : "") + std::to_string(g.dims[k]);
  return d + "]";
}

Case gen_binary(Rng& r, int k) {
  const StridedGen g = strided_gen(r, k, 2);
  const int code = k % cn::kBinaryCodes;
  std::vector<float> b = r.floats(g.sizes[1]);
  if (code == cn::kBinDiv)
    for (auto& v : b) v = v < 0 ? v - 0.1f : v + 0.1f;  // away from 0
  return {fmt("code=%d dims=%s a=%" PRId64 " b=%" PRId64, code, dims_desc(g).c_str(), g.sizes[0], g.sizes[1]),
          {out_f("y", g.count, Cmp::Exact), in_f("a", r.floats(g.sizes[0])), in_f("b", b)},
          strided_ints(g, {code, g.rank}), {}};
}

Case gen_strided_copy(Rng& r, int k) {
  const StridedGen g = strided_gen(r, k, 1);
  return {fmt("dims=%s x=%" PRId64, dims_desc(g).c_str(), g.sizes[0]),
          {out_f("y", g.count, Cmp::Exact), in_f("x", r.floats(g.sizes[0]))}, strided_ints(g, {g.rank}), {}};
}

std::vector<float> unary_inputs(Rng& r, int code, int64_t n) {
  // log, sqrt and pow mostly on positive inputs, with a few negatives and zeros (NaN, inf).
  const bool positive = code == cn::kUnLog || code == cn::kUnSqrt || code == cn::kUnPow;
  std::vector<float> x = r.floats(n, positive ? 0.05f : -4.0f, 4.0f);
  for (auto& v : x) {
    const double u = r.uni(0, 1);
    if (u < 0.03) v = -v;
    else if (u < 0.05) v = 0.0f;
  }
  return x;
}
double unary_param(Rng& r, int code) {
  return code == cn::kUnPow ? r.pick({2.0, 3.0, 0.5, -1.0, 1.5, 0.0}) : 0.0;
}

Case gen_unary(Rng& r, int k) {
  const int64_t n = pick_count(r, k);
  const int code = k % cn::kUnaryCodes;
  const double p = unary_param(r, code);
  return {fmt("code=%d count=%" PRId64 " p=%g", code, n, p),
          {out_f("y", n, Cmp::Tol, kTolElem), in_f("x", unary_inputs(r, code, n))}, {code, n}, {p}};
}

Case gen_unary_backward(Rng& r, int k) {
  const int64_t n = pick_count(r, k);
  const int code = k % cn::kUnaryCodes;
  const double p = unary_param(r, code);
  std::vector<float> x = unary_inputs(r, code, n), y(n);
  cn::unary_cpu(nullptr, code, n, static_cast<float>(p), x.data(), y.data());
  return {fmt("code=%d count=%" PRId64 " p=%g", code, n, p),
          {out_f("dx", n, Cmp::Tol, kTolElem), in_f("x", x), in_f("y", y), in_f("dy", r.floats(n))},
          {code, n}, {p}};
}

void reduce_dims(Rng& r, int k, int64_t* outer, int64_t* red, int64_t* inner) {
  // Rows of 256 or more with at most 8192 outputs take the block-per-output kernel.
  static const int64_t edge[][3] = {{1, 1, 1}, {1, 1000, 1}, {3, 5, 257}, {300, 7, 1},
                                    {2, 1, 3}, {0, 4, 2},    {4, 0, 3},   {1, 33, 64},
                                    {3, 700, 2}, {1, 256, 5}, {2, 3000, 1}, {1, 513, 1}};
  if (k < 12) {
    *outer = edge[k][0];
    *red = edge[k][1];
    *inner = edge[k][2];
    return;
  }
  *outer = r.range(1, 40);
  *red = r.range(1, 60);
  *inner = r.range(1, 40);
}

Case gen_reduce(Rng& r, int k) {
  int64_t outer, red, inner;
  reduce_dims(r, k, &outer, &red, &inner);
  const int code = k < 24 ? (k / 12 + k) % 2 : r.range(0, 1);
  if (code == cn::kRedMax && red == 0) red = 1;
  const double scale = code == cn::kRedSum && r.coin() ? 1.0 / std::max<int64_t>(red, 1) : 1.0;
  std::vector<float> x = r.floats(outer * red * inner);
  // Ties (the first maximum wins) and NaNs (a NaN wins).
  for (auto& v : x) {
    const double u = r.uni(0, 1);
    if (u < 0.1) v = 0.5f;
    else if (u < 0.11 && k % 3 == 0) v = std::numeric_limits<float>::quiet_NaN();
  }
  const int64_t yn = outer * inner;
  return {fmt("code=%d outer=%" PRId64 " r=%" PRId64 " inner=%" PRId64 " scale=%g", code, outer, red, inner, scale),
          // Sums over long rows take a tree on CUDA (rounding differs); max agrees exactly.
          {code == cn::kRedMax ? out_f("y", yn, Cmp::Exact) : out_f("y", yn, Cmp::Tol, kTolGemm),
           code == cn::kRedMax ? out_i("idx", yn) : none("idx"), in_f("x", x)},
          {code, outer, red, inner}, {scale}};
}

Case gen_reduce_max_backward(Rng& r, int k) {
  int64_t outer, red, inner;
  reduce_dims(r, k, &outer, &red, &inner);
  if (red == 0) red = 1;
  std::vector<int32_t> idx(outer * inner);
  for (auto& v : idx) v = r.range(0, static_cast<int>(red) - 1);
  return {fmt("outer=%" PRId64 " r=%" PRId64 " inner=%" PRId64, outer, red, inner),
          {out_f("dx", outer * red * inner, Cmp::Exact), in_f("dy", r.floats(outer * inner)), in_i("idx", idx)},
          {outer, red, inner}, {}};
}

Case gen_matmul(Rng& r, int k) {
  int N, K, M;
  linear_dims(r, k, &N, &K, &M);
  const int B = k < 4 ? 1 : r.pick({1, 2, 3, 5});
  const int ta = k % 2, tb = (k / 2) % 2;
  return {fmt("batch=%d M=%d N=%d K=%d transA=%d transB=%d", B, N, M, K, ta, tb),
          {out_f("y", size_t(B) * N * M, Cmp::Tol, kTolGemm), in_f("a", r.floats(size_t(B) * N * K)),
           in_f("b", r.floats(size_t(B) * K * M))},
          {B, N, M, K, ta, tb}, {}};
}

// A random valid program over `inputs` inputs: random pushes, unary and binary steps, forced
// binaries at the end so exactly one value is left within kFusedMaxProgram instructions.
Case gen_fused(Rng& r, int k) {
  const int inputs = k < 6 ? k + 1 : r.range(1, cn::kFusedInputs);
  const StridedGen g = strided_gen(r, k < 6 ? 1 + k % 3 : k, inputs);
  const int target = k % 12 == 11 ? 5 : r.range(1, cn::kFusedMaxProgram);
  std::vector<int64_t> code;
  int depth = 0;
  auto emit = [&](int op, int a) {
    code.push_back((int64_t(op) << 8) | a);
    depth += op <= cn::kFusedConst ? 1 : op == cn::kFusedBin ? -1 : 0;
  };
  if (k % 12 == 11) {
    // A program whose outputs are all finite (the self-test corrupts one and must see it).
    emit(cn::kFusedLoad, 0);
    emit(cn::kFusedConst, 0);
    emit(cn::kFusedBin, cn::kBinMul);
    emit(cn::kFusedLoad, inputs - 1);
    emit(cn::kFusedBin, cn::kBinAdd);
  }
  while (int(code.size()) < target || depth != 1) {
    const int room = cn::kFusedMaxProgram - int(code.size());
    if (depth >= 2 && depth - 1 >= room - 1) {
      emit(cn::kFusedBin, r.range(0, cn::kBinaryCodes - 1));
      continue;
    }
    const double u = r.uni(0, 1);
    if (depth == 0 || (u < 0.45 && depth < cn::kFusedMaxStack && depth < room - 1)) {
      if (r.coin(0.75)) emit(cn::kFusedLoad, r.range(0, inputs - 1));
      else emit(cn::kFusedConst, r.range(0, cn::kFusedConsts - 1));
    } else if (depth >= 2 && u < 0.8) {
      emit(cn::kFusedBin, r.range(0, cn::kBinaryCodes - 1));
    } else if (r.coin(0.8)) {
      emit(cn::kFusedUn, r.range(0, cn::kUnPow - 1));
    } else {
      emit(cn::kFusedPow, r.range(0, cn::kFusedConsts - 1));
    }
  }
  std::vector<double> consts;
  for (int q = 0; q < cn::kFusedConsts; ++q) consts.push_back(r.pick({2.0, -1.0, 0.5, 3.0, 1.0, 0.0, -2.5, 1.5}));
  std::vector<int64_t> ints = {inputs, g.rank, g.count};
  for (int d = 0; d < cn::kMaxRank; ++d) ints.push_back(d < g.rank ? g.dims[d] : 1);
  for (int t = 0; t < cn::kFusedInputs; ++t)
    for (int d = 0; d < cn::kMaxRank; ++d) ints.push_back(t < inputs && d < g.rank ? g.strides[t][d] : 0);
  ints.push_back(int64_t(code.size()));
  for (int q = 0; q < cn::kFusedMaxProgram; ++q) ints.push_back(q < int(code.size()) ? code[q] : 0);
  std::vector<Tensor> ts = {out_f("y", g.count, Cmp::Tol, 1e-5)};
  for (int t = 0; t < cn::kFusedInputs; ++t)
    ts.push_back(t < inputs ? in_f(fmt("in%d", t), r.floats(g.sizes[t], -2, 2)) : none(fmt("in%d", t)));
  return {fmt("inputs=%d dims=%s program=%zu", inputs, dims_desc(g).c_str(), code.size()), ts, ints, consts};
}

const std::map<std::string, Gen>& generators() {
  static const std::map<std::string, Gen> g = {
      {"fill", gen_fill},
      {"randn", gen_randn},
      {"axpy", gen_axpy},
      {"copy_blocks", gen_copy_blocks},
      {"relu_forward", gen_relu_forward},
      {"relu_backward", gen_relu_backward},
      {"dropout", gen_dropout},
      {"sgd", gen_sgd},
      {"conv2d_forward", gen_conv_fwd},
      {"conv2d_backward_data", gen_conv_bwd_data},
      {"conv2d_backward_filter", gen_conv_bwd_filter},
      {"maxpool2d_forward", gen_pool_fwd},
      {"maxpool2d_backward", gen_pool_bwd},
      {"lrn_forward", gen_lrn_fwd},
      {"lrn_backward", gen_lrn_bwd},
      {"linear_forward", gen_linear_fwd},
      {"linear_backward_data", gen_linear_bwd_data},
      {"linear_backward_weight", gen_linear_bwd_weight},
      {"softmax_xent_forward", gen_xent_fwd},
      {"softmax_xent_backward", gen_xent_bwd},
      {"binary", gen_binary},
      {"strided_copy", gen_strided_copy},
      {"unary", gen_unary},
      {"unary_backward", gen_unary_backward},
      {"reduce", gen_reduce},
      {"reduce_max_backward", gen_reduce_max_backward},
      {"matmul", gen_matmul},
      {"fused", gen_fused},
  };
  return g;
}

// ---- Launch-limit variants and schedules ----------------------------------------------------

// The launcher limits prep.py makes run-time values, and the small values that make their
// loops run at test sizes.
const char* const kTunables[] = {"kMaxBlocks", "kMaxRowBlocks", "kMaxGridX", "kMaxGridZ",
                                 "kWorkspaceFloats", "kFilterSliceCols",
                                 "kLargeTileMinBlocks", "kSmallTileMaxRows", "kFilterSplitDepth"};

std::string apply_variant(Rng& r, int k) {
  const cn_emu::Schedule sched = static_cast<cn_emu::Schedule>((k / 2) % 3);
  cn_emu::set_schedule(sched, r.g());
  cn_emu::reset_tunables();
  std::string d = std::string("sched=") + cn_emu::schedule_name(sched);
  if (k % 2 == 1) {
    const int64_t ws = r.pick<int64_t>({150, 1000, 5000}), cols = r.pick<int64_t>({8, 64});
    cn_emu::set_tunable("kMaxBlocks", 3);
    cn_emu::set_tunable("kMaxRowBlocks", 2);
    cn_emu::set_tunable("kMaxGridX", 2);
    cn_emu::set_tunable("kMaxGridZ", 2);
    cn_emu::set_tunable("kWorkspaceFloats", ws);
    cn_emu::set_tunable("kFilterSliceCols", cols);
    d += fmt(" tiny-limits(ws=%" PRId64 ",cols=%" PRId64 ")", ws, cols);
  }
  return d;
}

// ---- Direct sgemm_cuda check (transposes, leading dimensions, offsets, batches) --------------

struct GemmResult {
  int cases = 0;
  bool ok = true;
  std::string msg;
  double max_err = 0;
};

GemmResult check_sgemm(Rng& r, int cases, bool verbose) {
  GemmResult res;
  static const int sizes[] = {1, 3, 4, 17, 64, 65, 130};
  for (int it = 0; it < cases && res.ok; ++it) {
    const std::string variant = apply_variant(r, it);
    const bool tA = r.coin(), tB = r.coin();
    const int M = sizes[r.range(0, 6)], N = sizes[r.range(0, 6)];
    const int K = it % 9 == 4 ? 0 : sizes[r.range(0, 6)];
    const float alpha = it % 11 == 0 ? 0.0f : r.pick({1.0f, -0.5f, 1.5f});
    const float beta = r.pick({0.0f, 1.0f, -0.7f});
    const int lda = (tA ? M : K) + (r.coin() ? 0 : r.range(1, 4));
    const int ldb = (tB ? K : N) + (r.coin() ? 0 : r.range(1, 4));
    const int ldc = N + (r.coin() ? 0 : r.range(1, 4));
    const int64_t batch = r.pick<int64_t>({1, 1, 2, 3, 5});
    const int offA = r.coin(0.3) ? r.range(1, 3) : 0;  // unaligned A: the scalar load path
    const int64_t arows = tA ? K : M, brows = tB ? N : K;
    const bool shareA = batch > 1 && r.coin(0.3);       // stride 0
    const int64_t sA = shareA ? 0 : arows * lda + r.range(0, 3);
    const int64_t sB = brows * ldb + r.range(0, 3), sC = int64_t(M) * ldc + r.range(0, 5);
    const size_t an = offA + (shareA ? arows * lda : sA * batch) + 1;
    const size_t bn = sB * batch + 1, cn_ = sC * batch + 1;
    std::vector<float> A = r.floats(an), B = r.floats(bn), C0 = r.floats(cn_);
    std::vector<float> ref = C0;
    for (int64_t z = 0; z < batch; ++z)
      cn::sgemm_reference(tA, tB, M, N, K, alpha, A.data() + offA + z * sA, lda, B.data() + z * sB,
                          ldb, beta, ref.data() + z * sC, ldc);
    float *dA, *dB, *dC;
    cudaMalloc(&dA, an * 4);
    cudaMalloc(&dB, bn * 4);
    cudaMalloc(&dC, cn_ * 4);
    cudaMemcpy(dA, A.data(), an * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(dB, B.data(), bn * 4, cudaMemcpyHostToDevice);
    std::vector<float> Cin = C0;
    if (beta == 0.0f)  // beta == 0 must not read C: NaN there must not leak out
      for (int64_t z = 0; z < batch; ++z)
        for (int i = 0; i < M; ++i)
          for (int j = 0; j < N; ++j) Cin[z * sC + int64_t(i) * ldc + j] = float_of(kPoisonGpu);
    cudaMemcpy(dC, Cin.data(), cn_ * 4, cudaMemcpyHostToDevice);
    const std::string desc = fmt("tA=%d tB=%d M=%d N=%d K=%d alpha=%g beta=%g ld=%d,%d,%d offA=%d "
                                 "batch=%" PRId64 "%s %s", tA, tB, M, N, K, alpha, beta, lda, ldb,
                                 ldc, offA, batch, shareA ? " sharedA" : "", variant.c_str());
    if (verbose) std::printf("  sgemm_cuda: %s\n", desc.c_str());
    try {
      cn::sgemm_strided_batched_cuda(nullptr, tA, tB, M, N, K, alpha, dA + offA, lda, sA, dB, ldb,
                                     sB, beta, dC, ldc, sC, batch);
      cudaDeviceSynchronize();
    } catch (const std::exception& e) {
      res.ok = false;
      res.msg = fmt("%s: threw %s", desc.c_str(), e.what());
    }
    std::vector<float> got(cn_);
    cudaMemcpy(got.data(), dC, cn_ * 4, cudaMemcpyDeviceToHost);
    // Every word, the padding between rows and batch entries included (must be untouched).
    for (size_t e = 0; e < cn_ && res.ok; ++e) {
      const double a = ref[e], b = got[e];
      const double err = std::fabs(a - b) / std::max({std::fabs(a), std::fabs(b), 1.0});
      if (!(err <= kTolGemm)) {
        res.ok = false;
        res.msg = fmt("%s: C[%zu] reference %.9g, cuda %.9g", desc.c_str(), e, a, b);
      }
      if (err == err) res.max_err = std::max(res.max_err, err);
    }
    cudaFree(dA);
    cudaFree(dB);
    cudaFree(dC);
    ++res.cases;
  }
  cn_emu::reset_tunables();
  return res;
}

// ---- conv2d version 2 (implicit GEMM), against the CPU ----------------------------------------

// Runs every pass of version 2 on conv_v2_shape_gen's shapes, alternating the large (128x128)
// and small (64x64) tiles and, for the filter gradient, deep and very shallow K splits (many
// partial sums). Outputs start as NaN (run_case poisons them). One line per pass.
int check_conv_v2(const Devices& dev, uint64_t seed, int cases, bool verbose) {
  struct Pass {
    const char* op;
    Case (*make)(Rng&, const cn::Conv2dShape&, int);
  };
  const Pass passes[] = {{"conv2d_forward", conv_fwd_case},
                         {"conv2d_backward_data", conv_bwd_data_case},
                         {"conv2d_backward_filter", conv_bwd_filter_case}};
  int failed = 0;
  for (const Pass& p : passes) {
    const cn::OpDef* def = cn::find_op(p.op);
    const auto t0 = std::chrono::steady_clock::now();
    Rng r(seed * 7907 + std::hash<std::string>()(p.op));
    int n_fail = 0, n_cases = 0;
    double max_err = 0;
    const int total = std::max(cases, 14);
    for (int k = 0; k < total; ++k) {
      std::string variant = apply_variant(r, k);
      const bool large = (k / 7) % 2 == 0;
      cn_emu::set_tunable("kLargeTileMinBlocks", large ? 0 : int64_t(1) << 40);
      cn_emu::set_tunable("kSmallTileMaxRows", 0);
      const int64_t depth = k % 3 == 0 ? 8 : k % 3 == 1 ? 40 : 512;
      cn_emu::set_tunable("kFilterSplitDepth", depth);
      variant += fmt(" tile=%s split-depth=%" PRId64, large ? "128x128" : "64x64", depth);
      const cn::Conv2dShape shape = conv_v2_shape_gen(r, k);
      Case c = p.make(r, shape, 2);
      if (verbose) std::printf("  %s@v2: %s %s\n", p.op, c.desc.c_str(), variant.c_str());
      Outcome o = run_case(dev, *def, c);
      ++n_cases;
      max_err = std::max(max_err, o.max_err);
      if (!o.ok) {
        if (n_fail < 3)
          std::printf("  mismatch %s@v2 [%s; %s]: %s\n", p.op, c.desc.c_str(), variant.c_str(),
                      o.msg.c_str());
        ++n_fail;
      }
    }
    cn_emu::reset_tunables();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s %-24s cases=%d max_err=%.2g tol %.2fs (version 2, implicit GEMM)%s\n",
                n_fail ? "FAIL" : "ok  ", (std::string(p.op) + "@v2").c_str(), n_cases, max_err, secs,
                n_fail ? fmt(" (%d of %d cases mismatch)", n_fail, n_cases).c_str() : "");
    if (n_fail) ++failed;
  }
  return failed;
}

// ---- conv2d version 3 (tensor cores, TF32 / BF16), against the CPU ---------------------------

// The forward on version 2's shapes (odd sizes, groups, stride 4, tile edges) with precision
// tf32 and bf16, compared by norm: ||y_cuda - y_cpu|| / ||y_cpu|| must stay within 1e-3 (tf32,
// inputs keep 11 significant bits) or 1e-2 (bf16, 8 bits); every element must also be written
// and finite where the CPU's is, within a loose per-element bound (5e-2 or 2e-1 relative to
// max(|y|, 1)). The largest norm error over the cases must exceed 1e-5, so inputs really were
// rounded (an fp32 kernel would not be). The backward passes with version 3 run version 2 in
// fp32: compared per element at the GEMM tolerance. One line per precision and pass.
int check_conv_v3(const Devices& dev, uint64_t seed, int cases, bool verbose) {
  struct Prec {
    const char* name;
    int code;
    double norm_tol, elem_tol;
  };
  const Prec precs[] = {{"tf32", 1, 1e-3, 5e-2}, {"bf16", 2, 1e-2, 2e-1}};
  int failed = 0;
  for (const Prec& pr : precs) {
    const int vp = 3 + 10 * pr.code;
    const cn::OpDef* def = cn::find_op("conv2d_forward");
    const auto t0 = std::chrono::steady_clock::now();
    Rng r(seed * 7919 + 17 * pr.code);
    int n_fail = 0, n_cases = 0;
    double worst = 0;
    const int total = std::max(cases, 14);
    for (int k = 0; k < total; ++k) {
      const std::string variant = apply_variant(r, k);  // schedule, tiny launcher limits
      const cn::Conv2dShape shape = conv_v2_shape_gen(r, k);
      Case c = conv_fwd_case(r, shape, vp);
      c.t[0].tol = pr.elem_tol;
      if (verbose) std::printf("  conv2d_forward@v3-%s: %s %s\n", pr.name, c.desc.c_str(), variant.c_str());
      std::vector<std::pair<std::vector<float>, std::vector<float>>> outs;
      Outcome o = run_case(dev, *def, c, Inject::None, &outs);
      ++n_cases;
      double num = 0, den = 0;
      if (o.ok && !outs.empty()) {
        for (size_t e = 0; e < outs[0].first.size(); ++e) {
          const double d = double(outs[0].second[e]) - outs[0].first[e];
          num += d * d;
          den += double(outs[0].first[e]) * outs[0].first[e];
        }
        const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
        worst = std::max(worst, rel);
        if (rel > pr.norm_tol) {
          o.ok = false;
          o.msg = fmt("norm error %.3g above %.3g", rel, pr.norm_tol);
        }
      }
      if (!o.ok) {
        if (n_fail < 3)
          std::printf("  mismatch conv2d_forward@v3-%s [%s; %s]: %s\n", pr.name, c.desc.c_str(),
                      variant.c_str(), o.msg.c_str());
        ++n_fail;
      }
    }
    cn_emu::reset_tunables();
    cn_emu::set_schedule(cn_emu::Schedule::Forward);
    bool rounded = worst > 1e-5;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s %-24s cases=%d max_norm_err=%.2g tol %.0e %.2fs (version 3, tensor cores)%s%s\n",
                n_fail || !rounded ? "FAIL" : "ok  ", (std::string("conv2d_forward@v3-") + pr.name).c_str(),
                n_cases, worst, pr.norm_tol, secs,
                n_fail ? fmt(" (%d of %d cases mismatch)", n_fail, n_cases).c_str() : "",
                rounded ? "" : " (no case shows input rounding: fp32 math?)");
    if (n_fail || !rounded) ++failed;

    // Backward passes asked for version 3: version 2's fp32 kernels.
    struct Pass {
      const char* op;
      Case (*make)(Rng&, const cn::Conv2dShape&, int);
    };
    const Pass passes[] = {{"conv2d_backward_data", conv_bwd_data_case},
                           {"conv2d_backward_filter", conv_bwd_filter_case}};
    for (const Pass& p : passes) {
      int bad = 0;
      double max_err = 0;
      const int n = std::max(cases / 4, 7);
      for (int k = 0; k < n; ++k) {
        apply_variant(r, k);
        Case c = p.make(r, conv_v2_shape_gen(r, k), vp);
        Outcome o = run_case(dev, *cn::find_op(p.op), c);
        max_err = std::max(max_err, o.max_err);
        if (!o.ok) {
          if (bad < 3) std::printf("  mismatch %s@v3-%s [%s]: %s\n", p.op, pr.name, c.desc.c_str(), o.msg.c_str());
          ++bad;
        }
      }
      cn_emu::reset_tunables();
      cn_emu::set_schedule(cn_emu::Schedule::Forward);
      std::printf("%s %-24s cases=%d max_err=%.2g tol (version 3 asked: version 2, fp32)\n",
                  bad ? "FAIL" : "ok  ", (std::string(p.op) + "@v3-" + pr.name).c_str(), n, max_err);
      if (bad) ++failed;
    }
  }
  return failed;
}

// ---- Self-test ------------------------------------------------------------------------------

// Runs fn in a child process; true when the child was killed by a signal (the emulator aborts on
// a kernel fault) with `expect` on its stderr.
bool dies_with(const std::function<void()>& fn, const std::string& expect, std::string* out) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return false;
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], 2);
    close(pipefd[0]);
    fn();
    cudaDeviceSynchronize();
    _exit(0);
  }
  close(pipefd[1]);
  std::string text;
  char buf[512];
  ssize_t got;
  while ((got = read(pipefd[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(got));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  *out = text;
  const bool died = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
  size_t start = 0;  // `expect` may list alternatives separated by '|'
  for (;;) {
    const size_t bar = expect.find('|', start);
    if (text.find(expect.substr(start, bar - start)) != std::string::npos) return died;
    if (bar == std::string::npos) return false;
    start = bar + 1;
  }
}

int self_test(const Devices& dev, uint64_t seed) {
  int failures = 0;
  auto report = [&](bool ok, const std::string& what) {
    std::printf("%s %s\n", ok ? "caught " : "MISSED ", what.c_str());
    if (!ok) ++failures;
  };
  // 1. The comparison notices a wrong value and an unwritten element in every op's output.
  Rng r(seed);
  for (const std::string& name : cn::op_names()) {
    const cn::OpDef* def = cn::find_op(name);
    if (!def->cuda) continue;
    auto it = generators().find(name);
    if (it == generators().end()) continue;
    for (Inject inj : {Inject::Corrupt, Inject::Unwrite}) {
      Case c = it->second(r, 11);
      Outcome clean = run_case(dev, *def, c);
      Outcome bad = run_case(dev, *def, c, inj);
      const char* kind = inj == Inject::Corrupt ? "a corrupted element" : "an unwritten element";
      report(clean.ok && !bad.ok, fmt("%s in %s (%s)", kind, name.c_str(),
                                      bad.ok ? "not reported" : bad.msg.c_str()));
    }
  }
  // 2. The emulation's semantics (synthetic kernels in selftest_kernels.cu).
  for (const auto& res : emu_selftest::run_semantics_checks())
    report(res.ok, "emulation: " + res.name + (res.detail.empty() ? "" : " (" + res.detail + ")"));
  for (const auto& res : emu_selftest::run_mma_checks())
    report(res.ok, "emulation: " + res.name + (res.detail.empty() ? "" : " (" + res.detail + ")"));
  // 3. Kernel faults end the process with a message.
  for (const auto& fk : emu_selftest::faulting_kernels()) {
    std::string out;
    const bool died = dies_with(fk.run, fk.expect, &out);
    size_t at = out.find(fk.expect.substr(0, fk.expect.find('|')));
    if (at == std::string::npos) at = out.find(fk.expect.substr(fk.expect.find('|') + 1));
    std::string line = at == std::string::npos ? out.substr(0, out.find('\n'))
                                               : out.substr(at, out.find('\n', at) - at);
    report(died, "fault: " + fk.name + (line.empty() ? "" : " -> " + line.substr(0, 200)));
  }
  std::printf("self-test: %s\n", failures ? "FAILED" : "passed");
  return failures ? 1 : 0;
}

// ---- Copies between devices and uploads ----------------------------------------------------
// The real copy_storage / CudaDevice::upload on emulated GPUs: two logical devices on one GPU
// (Same), two GPUs with peer access (Peer), two without (Host), CUDA <-> CPU and CPU <-> CPU.
// Streams of the emulation run newest-first, so a missing event wait shows as a wrong value.
// Queue threads are made busy with host sleeps to force either half of a copy to arrive first.

void sleep_task(Device* d, int ms) {
  d->enqueue([ms] { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); });
}

// Writes every byte of s in d's queue order (on d's stream for a GPU).
void fill_bytes(Device* d, const StoragePtr& s, int byte) {
  d->enqueue([d, s, byte] {
    if (d->kind() == cn::DeviceKind::Cuda) {
      auto* g = static_cast<cn::CudaDevice*>(d);
      g->activate();
      cudaMemsetAsync(s->ptr, byte, s->bytes, g->stream());
    } else {
      std::memset(s->ptr, byte, s->bytes);
    }
  });
}

// Waits until d's queue thread has issued everything queued so far (the GPU may not have run it).
void reach(Device* d) {
  auto p = std::make_shared<std::promise<void>>();
  auto f = p->get_future();
  d->enqueue([p] { p->set_value(); });
  f.wait();
}

StoragePtr upload_of(Device* d, const std::vector<uint32_t>& words) {
  StoragePtr s = d->allocate(words.size() * 4);
  d->upload(s, words.data(), words.size() * 4);
  return s;
}

std::vector<uint32_t> read_words(Device* d, const StoragePtr& s) {
  std::vector<uint32_t> out(s->bytes / 4);
  d->download(s, out.data(), s->bytes);
  d->synchronize();
  return out;
}

std::vector<uint32_t> random_words(Rng& r, size_t n) {
  std::vector<uint32_t> w(n);
  for (auto& x : w) x = static_cast<uint32_t>(r.g());
  return w;
}

std::vector<uint32_t> pattern(int byte, size_t n) {
  uint32_t b = static_cast<uint32_t>(byte) & 0xff;
  return std::vector<uint32_t>(n, b | b << 8 | b << 16 | b << 24);
}

struct CopyReport {
  int cases = 0;
  std::vector<std::string> failures;
  void expect(bool ok, const std::string& what) {
    ++cases;
    if (!ok && failures.size() < 8) failures.push_back(what);
  }
};

// Chains A -> B -> A under the hazards: dst written by B just before the copy, src written by A
// just after it, dst read (copy_within) and overwritten by B after the copy back was queued.
void copy_round_trips(Device* a, Device* b, Rng& r, CopyReport& rep) {
  for (int busy = 0; busy < 3; ++busy) {
    for (int round = 0; round < 3; ++round) {
      const size_t n = static_cast<size_t>(r.coin(0.3) ? r.range(1, 8) : r.range(100, 50000));
      const std::string tag = fmt("%s->%s n=%zu busy=%s", a->id().c_str(), b->id().c_str(), n,
                                  busy == 0 ? "none" : busy == 1 ? "source" : "destination");
      std::vector<uint32_t> u = random_words(r, n);
      StoragePtr x = upload_of(a, u);
      StoragePtr y = b->allocate(n * 4);
      fill_bytes(b, y, 0x11);
      if (busy == 1) sleep_task(a, 15);
      if (busy == 2) sleep_task(b, 15);
      cn::copy_storage(y, x, n * 4);
      fill_bytes(a, x, 0x22);
      StoragePtr z = a->allocate(n * 4);
      cn::copy_storage(z, y, n * 4);
      StoragePtr y2 = b->allocate(n * 4);
      b->copy_within(y2, y, n * 4);
      fill_bytes(b, y, 0x33);
      rep.expect(read_words(b, y2) == u, tag + ": the copy's destination");
      rep.expect(read_words(a, z) == u, tag + ": the copy back");
      rep.expect(read_words(a, x) == pattern(0x22, n), tag + ": the source written after the copy");
      rep.expect(read_words(b, y) == pattern(0x33, n), tag + ": the destination written after the copy back");
    }
  }
}

// A failing copy call on either side: a typed error naming the copy on some synchronize(), no
// hang, and the next copy works.
void copy_failure(Device* a, Device* b, Rng& r, CopyReport& rep) {
  for (int busy = 1; busy <= 2; ++busy) {
    const size_t n = 777;
    std::vector<uint32_t> u = random_words(r, n);
    StoragePtr x = upload_of(a, u);
    StoragePtr y = b->allocate(n * 4);
    a->synchronize();
    b->synchronize();
    sleep_task(busy == 1 ? a : b, 10);
    cn_emu::fail_next_copy(cudaErrorIllegalAddress);
    cn::copy_storage(y, x, n * 4);
    std::string msgs;
    bool typed = false;
    for (Device* d : {b, a}) {
      try {
        d->synchronize();
      } catch (const cn::Error& e) {
        msgs += std::string(e.what()) + " | ";
        typed = typed || (e.kind == cn::ErrorKind::Cuda && e.cuda_name == "cudaErrorIllegalAddress");
      }
    }
    cn_emu::fail_next_copy(0);
    const std::string where = "copy from " + a->id() + " to " + b->id() + ": ";
    rep.expect(typed && msgs.find(where) != std::string::npos,
               fmt("%s->%s busy=%d: a failed copy raises a CudaError naming it, got '%s'",
                   a->id().c_str(), b->id().c_str(), busy, msgs.c_str()));
    if (msgs.find("the source side failed") != std::string::npos)
      rep.expect(msgs.find(where + "the source side failed: ") != std::string::npos,
                 "the destination's error names the copy: " + msgs);
    cn::copy_storage(y, x, n * 4);
    rep.expect(read_words(b, y) == u, a->id() + "->" + b->id() + ": a copy after a failed one");
  }
}

// Both ends dropped right after the copy is queued: every block goes back to its allocator.
void copy_dispose(Device* a, Device* b, Rng& r, CopyReport& rep) {
  a->synchronize();
  b->synchronize();
  const size_t a0 = a->allocator().stats().in_use, b0 = b->allocator().stats().in_use;
  for (int k = 0; k < 4; ++k) {
    const size_t n = static_cast<size_t>(r.range(1, 20000));
    StoragePtr x = upload_of(a, random_words(r, n));
    StoragePtr y = b->allocate(n * 4);
    sleep_task(k % 2 ? a : b, 5);
    cn::copy_storage(y, x, n * 4);
    x.reset();
    y.reset();
  }
  b->synchronize();  // its halves may hand the source's staging back to the source queue
  a->synchronize();
  rep.expect(a->allocator().stats().in_use == a0 && b->allocator().stats().in_use == b0,
             a->id() + "->" + b->id() + ": blocks left in use after disposing mid-copy");
}

// Uploads on the upload stream: into a fresh tensor whose block the compute stream still reads
// (reuse after release), and into a tensor with queued reads.
void upload_hazards(cn::CudaDevice* g, Rng& r, CopyReport& rep) {
  for (int round = 0; round < 4; ++round) {
    const size_t n = static_cast<size_t>(r.range(1, 30000));
    std::vector<uint32_t> u1 = random_words(r, n), u2 = random_words(r, n), u3 = random_words(r, n);
    g->synchronize();
    g->allocator().empty_cache();  // so the block t1 releases is the only one of its size cached
    StoragePtr t1 = upload_of(g, u1);
    StoragePtr t2 = g->allocate(n * 4);
    g->copy_within(t2, t1, n * 4);  // reads t1 on the compute stream
    void* old = t1->ptr;
    t1.reset();
    reach(g);  // the queue has issued the read and released t1's block; the GPU has not run it
    StoragePtr t3 = g->allocate(n * 4);
    rep.expect(t3->ptr == old, "upload: the allocator hands the released block out again");
    g->upload(t3, u2.data(), n * 4);  // fresh: waits only for the block's release event
    StoragePtr t4 = g->allocate(n * 4);
    g->copy_within(t4, t2, n * 4);
    g->upload(t2, u3.data(), n * 4);  // t2 has a queued read: waits for the compute stream
    rep.expect(read_words(g, t4) == u1, "upload: a read queued before an upload into its source");
    rep.expect(read_words(g, t3) == u2, "upload: into a reused block");
    rep.expect(read_words(g, t2) == u3, "upload: into a tensor with queued reads");
  }
}

// Returns the number of failed checks; prints one line per link.
int check_copies(uint64_t seed, bool verbose) {
  cn_emu::set_device_count(4);
  cn_emu::set_peer_capable(0, 1, true);
  cn_emu::set_peer_capable(1, 0, true);
  int failed = 0;
  {
    cn::CudaDevice g0(30, 0), g1(31, 1), g2(32, 2), g3(33, 3), v0(34, 0);
    Device* cpu0 = cn::get_device("cpu:0");
    Device* cpu1 = cn::get_device("cpu:1");
    struct Link {
      const char* name;
      Device *a, *b;
    };
    const Link links[] = {{"copies-same-gpu", &g0, &v0}, {"copies-peer", &g0, &g1},
                          {"copies-staged", &g2, &g3},   {"copies-cuda-cpu", &g2, cpu0},
                          {"copies-cpu-cpu", cpu0, cpu1}, {"copies-upload", &g1, &g1}};
    for (const Link& l : links) {
      const auto t0 = std::chrono::steady_clock::now();
      const cn_emu::Stats s0 = cn_emu::stats();
      Rng r(seed * 31337 + std::hash<std::string>()(l.name));
      CopyReport rep;
      if (l.a == l.b) {
        upload_hazards(static_cast<cn::CudaDevice*>(l.a), r, rep);
      } else {
        copy_round_trips(l.a, l.b, r, rep);
        copy_round_trips(l.b, l.a, r, rep);
        if (l.a->kind() == cn::DeviceKind::Cuda || l.b->kind() == cn::DeviceKind::Cuda) {
          copy_failure(l.a, l.b, r, rep);
          copy_failure(l.b, l.a, r, rep);
        }
        copy_dispose(l.a, l.b, r, rep);
        copy_dispose(l.b, l.a, r, rep);
      }
      const cn_emu::Stats s1 = cn_emu::stats();
      const uint64_t peer = s1.peer_copies - s0.peer_copies;
      const uint64_t peer_off = s1.peer_copies_disabled - s0.peer_copies_disabled;
      const std::string link = l.name;
      if (link == "copies-peer") rep.expect(peer > 0 && peer_off == 0, fmt("peer copies %" PRIu64 ", without peer access %" PRIu64, peer, peer_off));
      else rep.expect(peer == 0, fmt("%" PRIu64 " peer copies where none belong", peer));
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("%s %-24s checks=%d events=%" PRIu64 " waits=%" PRIu64 " peer_copies=%" PRIu64
                  " host_allocs=%" PRIu64 " %.2fs\n",
                  rep.failures.empty() ? "ok  " : "FAIL", l.name, rep.cases,
                  s1.events_recorded - s0.events_recorded, s1.event_waits - s0.event_waits, peer,
                  s1.host_allocs - s0.host_allocs, secs);
      for (const std::string& f : rep.failures) std::printf("  mismatch %s: %s\n", l.name, f.c_str());
      if (verbose) std::printf("  %s: %s <-> %s\n", l.name, l.a->id().c_str(), l.b->id().c_str());
      if (!rep.failures.empty()) ++failed;
    }
    for (Device* d : {static_cast<Device*>(&g0), static_cast<Device*>(&g1), static_cast<Device*>(&g2),
                      static_cast<Device*>(&g3), static_cast<Device*>(&v0)}) {
      d->synchronize();
    }
    cpu0->synchronize();
    cpu1->synchronize();
  }
  // Process exit with copies still queued in every direction between GPUs that live as long
  // as the process (as the addon's devices do): the child must exit 0, not hang or crash.
  {
    const auto t0 = std::chrono::steady_clock::now();
    CopyReport rep;
    std::fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      alarm(60);
      Rng r(seed * 4241);
      Device* devs[3];
      for (int i = 0; i < 3; ++i) devs[i] = new cn::CudaDevice(40 + i, i);  // never freed
      std::vector<StoragePtr> keep;
      for (int k = 0; k < 24; ++k) {
        Device* a = devs[k % 3];
        Device* b = devs[(k + 1 + k / 3 % 2) % 3];
        const size_t n = static_cast<size_t>(r.range(1, 20000));
        StoragePtr x = upload_of(a, random_words(r, n));
        StoragePtr y = b->allocate(n * 4);
        if (r.coin()) sleep_task(r.coin() ? a : b, 3);
        cn::copy_storage(y, x, n * 4);
        if (r.coin()) keep.push_back(y);
      }
      std::exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    rep.expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
               WIFSIGNALED(status) ? fmt("the child died of signal %d", WTERMSIG(status))
                                   : fmt("the child exited with %d", WEXITSTATUS(status)));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s %-24s checks=%d %.2fs\n", rep.failures.empty() ? "ok  " : "FAIL", "copies-exit",
                rep.cases, secs);
    for (const std::string& f : rep.failures) std::printf("  mismatch copies-exit: %s\n", f.c_str());
    if (!rep.failures.empty()) ++failed;
  }
  cn_emu::set_device_count(1);
  return failed;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed = 1;
  int cases = 24;
  bool verbose = false, selftest = false;
  std::set<std::string> only;
  for (int a = 1; a < argc; ++a) {
    std::string s = argv[a];
    if (s == "--seed" && a + 1 < argc) seed = std::strtoull(argv[++a], nullptr, 10);
    else if (s == "--cases" && a + 1 < argc) cases = std::atoi(argv[++a]);
    else if (s == "--only" && a + 1 < argc) only.insert(argv[++a]);
    else if (s == "--verbose") verbose = true;
    else if (s == "--self-test") selftest = true;
    else {
      std::fprintf(stderr, "usage: %s [--seed N] [--cases N] [--only OP]... [--verbose] [--self-test]\n", argv[0]);
      return 2;
    }
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);

  // The emulated device is the real CudaDevice (core/cuda_device.cc) on the emulated runtime.
  cn::CudaDevice cuda(0, 0);
  Devices dev{cn::get_device("cpu:0"), &cuda};

  // prep.py and this file must agree on the launcher limits.
  {
    std::vector<std::string> names = cn_emu::tunable_names();
    for (const char* t : kTunables)
      if (std::find(names.begin(), names.end(), t) == names.end()) {
        std::printf("FAIL setup: tunable %s missing (prep.py TUNABLES and harness.cc disagree)\n", t);
        return 1;
      }
  }

  if (selftest) return self_test(dev, seed);

  const auto t_all = std::chrono::steady_clock::now();
  int failed_ops = 0, tested = 0;
  std::printf("cuda-emu harness: seed %" PRIu64 ", %d random cases per op (+ edge cases)\n", seed, cases);
  for (const std::string& name : cn::op_names()) {
    if (!only.empty() && !only.count(name)) continue;
    const cn::OpDef* def = cn::find_op(name);
    if (!def->cuda) {
      std::printf("skip %-24s (no CUDA launcher in the op table)\n", name.c_str());
      continue;
    }
    auto it = generators().find(name);
    if (it == generators().end()) {
      std::printf("FAIL %-24s no case generator in native/emu/harness.cc for this op\n", name.c_str());
      ++failed_ops;
      continue;
    }
    ++tested;
    const auto t0 = std::chrono::steady_clock::now();
    const cn_emu::Stats s0 = cn_emu::stats();
    Rng r(seed * 1000003 + std::hash<std::string>()(name));
    const int total = cases + 8;
    int n_fail = 0, n_cases = 0;
    double max_err = 0;
    bool exact = true;
    std::string first_fail;
    for (int k = 0; k < total; ++k) {
      const std::string variant = apply_variant(r, k);
      Case c = it->second(r, k);
      if (static_cast<int>(c.t.size()) != def->tensors || static_cast<int>(c.i.size()) != def->ints ||
          static_cast<int>(c.f.size()) != def->floats) {
        std::printf("FAIL %-24s generator gives %zu/%zu/%zu arguments, the op table wants %d/%d/%d\n",
                    name.c_str(), c.t.size(), c.i.size(), c.f.size(), def->tensors, def->ints, def->floats);
        ++n_fail;
        break;
      }
      if (verbose) std::printf("  %s: %s %s\n", name.c_str(), c.desc.c_str(), variant.c_str());
      Outcome o = run_case(dev, *def, c);
      ++n_cases;
      max_err = std::max(max_err, o.max_err);
      exact = exact && o.all_exact;
      if (!o.ok) {
        if (n_fail < 3)
          std::printf("  mismatch %s [%s; %s]: %s\n", name.c_str(), c.desc.c_str(), variant.c_str(),
                      o.msg.c_str());
        ++n_fail;
      }
    }
    cn_emu::reset_tunables();
    const cn_emu::Stats s1 = cn_emu::stats();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s %-24s cases=%d launches=%" PRIu64 " blocks=%" PRIu64 " barriers=%" PRIu64
                " warp_ops=%" PRIu64 " max_err=%.2g %s %.2fs%s\n",
                n_fail ? "FAIL" : "ok  ", name.c_str(), n_cases, s1.launches - s0.launches,
                s1.blocks - s0.blocks, s1.barriers - s0.barriers, s1.warp_ops - s0.warp_ops, max_err,
                exact ? "exact" : "tol", secs,
                n_fail ? fmt(" (%d of %d cases mismatch)", n_fail, n_cases).c_str() : "");
    if (n_fail) ++failed_ops;
  }
  if (only.empty() || only.count("conv2d_v2")) failed_ops += check_conv_v2(dev, seed, cases, verbose);
  if (only.empty() || only.count("conv2d_v3")) failed_ops += check_conv_v3(dev, seed, cases, verbose);
  if (only.empty() || only.count("sgemm_cuda")) {
    const auto t0 = std::chrono::steady_clock::now();
    Rng r(seed * 7919);
    GemmResult g = check_sgemm(r, cases * 3, verbose);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!g.ok) std::printf("  mismatch sgemm_cuda %s\n", g.msg.c_str());
    std::printf("%s %-24s cases=%d max_err=%.2g tol %.2fs (direct, against sgemm_reference)\n",
                g.ok ? "ok  " : "FAIL", "sgemm_cuda", g.cases, g.max_err, secs);
    if (!g.ok) ++failed_ops;
  }
  if (only.empty() || only.count("copies")) failed_ops += check_copies(seed, verbose);
  const cn_emu::Stats st = cn_emu::stats();
  if (st.bytes_allocated != 0) {
    std::printf("FAIL leak: %" PRIu64 " bytes of emulated device memory still allocated\n", st.bytes_allocated);
    ++failed_ops;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();
  std::printf("%s: %d ops tested, %d failed; %" PRIu64 " launches, %" PRIu64 " blocks, %" PRIu64
              " threads; %.1fs\n", failed_ops ? "FAILED" : "PASSED", tested, failed_ops, st.launches,
              st.blocks, st.threads, secs);
  return failed_ops ? 1 : 0;
}
