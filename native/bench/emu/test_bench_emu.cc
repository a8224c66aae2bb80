// The CUDA side of the benchmark facilities without a GPU: cudnn_conv.cc, timer.cc and
// cudnn_loader.cc compiled with CUDA on, over native/emu's emulated runtime and the project's
// own CudaDevice, driving fake_cudnn.so (a plain-loop stand-in for cuDNN's legacy API). Checks:
//   - the loader opens a complete cuDNN 9 and fills every entry point;
//   - for several shapes (groups, stride, padding) each pass's search and run write what our CPU
//     conv2d computes, into the right buffer, with the algorithm the search found first to
//     succeed and a workspace of the size it asked for;
//   - a cuDNN error inside queued work arrives at synchronize() as a CudaError naming the call
//     and the status, and the device keeps working;
//   - plans refuse CPU devices; markers and the cache flush run on the CUDA queue.
// Run by native/bench/emu/build.sh (and test/80-bench.test.ts). Prints "ok ..." lines; exit 0
// when every check passed.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/cudnn_conv.h"
#include "bench/cudnn_loader.h"
#include "bench/timer.h"
#include "core/errors.h"
#include "ops/conv2d.h"

// ---- The runtime call native/emu does not emulate (see cuda_runtime.h here) ----------------
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int) {
  *v = attr == cudaDevAttrL2CacheSize ? 4 << 20 : 0;
  return cudaSuccess;
}

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok" : "FAIL", what.c_str());
  if (!ok) ++failures;
}

std::vector<float> random(size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

cn::StoragePtr upload(cn::Device* d, const std::vector<float>& v) {
  auto s = d->allocate(v.size() * sizeof(float));
  d->upload(s, v.data(), v.size() * sizeof(float));
  return s;
}

std::vector<float> download(cn::Device* d, const cn::StoragePtr& s) {
  std::vector<float> v(s->bytes / sizeof(float));
  d->download(s, v.data(), s->bytes);
  d->synchronize();
  return v;
}

double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0, scale = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) scale = std::max(scale, std::fabs(double(b[i])));
  for (size_t i = 0; i < a.size(); ++i) {
    double e = std::fabs(double(a[i]) - double(b[i]));
    if (std::isnan(e)) return INFINITY;
    m = std::max(m, e / scale);
  }
  return m;
}

struct Case {
  int N, C, H, W, F, K, stride, pad, G;
};

void run_case(cn::Device* d, cn::ThreadPool* pool, const Case& c, unsigned seed) {
  cn::Conv2dShape s{c.N, c.C, c.H, c.W, c.F, c.K, c.K, c.stride, c.stride, c.pad, c.pad, c.G, 0, 0};
  s.OH = (c.H + 2 * c.pad - c.K) / c.stride + 1;
  s.OW = (c.W + 2 * c.pad - c.K) / c.stride + 1;
  std::vector<int64_t> ints{s.N, s.C, s.H, s.W, s.F, s.KH, s.KW, s.sh, s.sw, s.ph, s.pw, s.G, s.OH, s.OW};
  size_t nx = size_t(s.N) * s.C * s.H * s.W, nw = size_t(s.F) * (s.C / s.G) * s.KH * s.KW,
         ny = size_t(s.N) * s.F * s.OH * s.OW;
  auto x = random(nx, seed), w = random(nw, seed + 1), dy = random(ny, seed + 2);
  std::vector<float> y(ny), dx(nx), dw(nw);
  cn::conv2d_forward_cpu(pool, s, x.data(), w.data(), nullptr, y.data());
  cn::conv2d_backward_data_cpu(pool, s, dy.data(), w.data(), dx.data());
  cn::conv2d_backward_filter_cpu(pool, s, x.data(), dy.data(), dw.data(), nullptr);
  auto X = upload(d, x), Wt = upload(d, w), DY = upload(d, dy);
  const std::string name = "N" + std::to_string(c.N) + " C" + std::to_string(c.C) + " " + std::to_string(c.H) + "x" +
                           std::to_string(c.W) + " F" + std::to_string(c.F) + " k" + std::to_string(c.K) + " s" +
                           std::to_string(c.stride) + " p" + std::to_string(c.pad) + " g" + std::to_string(c.G);
  struct PassCase {
    cn::cudnn::Pass pass;
    const char* label;
    size_t n;
    std::vector<cn::StoragePtr> inputs;
    const std::vector<float>* ref;
  };
  std::vector<PassCase> passes{{cn::cudnn::Pass::Forward, "fwd", ny, {X, Wt}, &y},
                               {cn::cudnn::Pass::BackwardData, "bwd_data", nx, {DY, Wt}, &dx},
                               {cn::cudnn::Pass::BackwardFilter, "bwd_filter", nw, {X, DY}, &dw}};
  for (const auto& p : passes) {
    for (const char* math : {"fp32", "tf32"}) {
      auto out = upload(d, std::vector<float>(p.n, NAN));
      auto plan = cn::cudnn::make_plan(d, p.pass, ints, math);
      cn::cudnn::enqueue_find(plan, {out, p.inputs[0], p.inputs[1]});
      auto found = download(d, out);
      auto info = cn::cudnn::plan_info(*plan);
      check(info.found && info.algo == 1 && info.candidates == 2 && info.workspace == 4096 &&
                info.math == (std::string(math) == "fp32" ? 3 : 1),
            name + " " + p.label + " " + math + ": the search keeps the first algorithm that succeeded");
      check(max_rel(found, *p.ref) < 1e-5, name + " " + p.label + " " + math + ": the search's output matches the CPU");
      out = upload(d, std::vector<float>(p.n, NAN));
      cn::cudnn::enqueue_run(plan, {out, p.inputs[0], p.inputs[1]});
      check(max_rel(download(d, out), *p.ref) < 1e-5, name + " " + p.label + " " + math + ": a run matches the CPU");
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: test_bench_emu FAKE_CUDNN.so\n");
    return 2;
  }
  auto r = cn::cudnn::try_load(argv[1], {});
  check(r.outcome == "opened" && r.version == "9.1.0" && cn::cudnn::api() != nullptr, "the loader opens a complete cuDNN 9");
  if (r.outcome != "opened") return 1;
  // Let the fake drain the emulated streams before it computes (see fake_cudnn.cc).
  if (void* lib = dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD)) {
    using SetSync = void (*)(void (*)());
    if (auto set = reinterpret_cast<SetSync>(dlsym(lib, "fake_cudnn_set_sync")))
      set([] { cudaDeviceSynchronize(); });
  }

  cn::Device* cpu = cn::get_device("cpu:0");
  cn::Device* gpu = cn::get_device("cuda:0");
  cn::ThreadPool pool(1);
  try {
    cn::cudnn::make_plan(cpu, cn::cudnn::Pass::Forward, std::vector<int64_t>(14, 1), "fp32");
    check(false, "a plan on cpu:0 is refused");
  } catch (const cn::Error& e) {
    check(e.kind == cn::ErrorKind::Device && std::string(e.what()) == "cudnn: needs a CUDA device, received cpu:0",
          "a plan on cpu:0 is refused");
  }

  const Case cases[] = {{2, 4, 7, 7, 6, 3, 1, 1, 2}, {1, 3, 11, 11, 4, 5, 2, 2, 1}, {2, 6, 5, 6, 6, 3, 1, 0, 3}, {3, 2, 9, 9, 4, 11, 4, 2, 1}};
  unsigned seed = 1;
  for (const auto& c : cases) run_case(gpu, &pool, c, seed += 10);

  // An error inside queued work: kept, raised by synchronize() as a CudaError, and then the
  // device works again.
  {
    const Case c{1, 2, 5, 5, 2, 3, 1, 1, 1};
    std::vector<int64_t> ints{1, 2, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 5, 5};
    auto x = upload(gpu, random(50, 5)), w = upload(gpu, random(36, 6)), y = upload(gpu, std::vector<float>(50, 0));
    auto plan = cn::cudnn::make_plan(gpu, cn::cudnn::Pass::Forward, ints, "fp32");
    cn::cudnn::enqueue_find(plan, {y, x, w});
    gpu->synchronize();
    setenv("FAKE_CUDNN_FAIL", "1", 1);
    cn::cudnn::enqueue_run(plan, {y, x, w});
    std::string what, name;
    try {
      gpu->synchronize();
    } catch (const cn::Error& e) {
      what = e.what();
      name = e.cuda_name;
    }
    unsetenv("FAKE_CUDNN_FAIL");
    check(what == "cudnn: cudnnConvolutionForward failed: CUDNN_STATUS_NOT_SUPPORTED" && name == "CUDNN_STATUS_NOT_SUPPORTED",
          "a failing run arrives at synchronize() as a CudaError naming the call and the status (" + what + ")");
    cn::cudnn::enqueue_run(plan, {y, x, w});
    bool works = true;
    try {
      gpu->synchronize();
    } catch (const cn::Error&) {
      works = false;
    }
    check(works, "the device works after the error");
    (void)c;
  }

  // Markers and the cache flush on the CUDA queue.
  {
    auto a = cn::bench::mark(gpu);
    double bytes = cn::bench::l2_flush(gpu);
    auto b = cn::bench::mark(gpu);
    gpu->synchronize();
    double ms = cn::bench::elapsed_ms(*a, *b);
    check(bytes == 8.0 * (1 << 20), "the flush writes twice the L2 (" + std::to_string(bytes) + " bytes)");
    check(ms >= 0 && ms < 60000, "the markers time the flush (" + std::to_string(ms) + " ms)");
    auto c = cn::bench::mark(cpu);
    cpu->synchronize();
    try {
      cn::bench::elapsed_ms(*a, *c);
      check(false, "markers of two devices are refused");
    } catch (const cn::Error& e) {
      check(std::string(e.what()) == "timerElapsed: the markers are on two devices, cuda:0 and cpu:0",
            "markers of two devices are refused");
    }
  }

  std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
  return failures ? 1 : 0;
}
