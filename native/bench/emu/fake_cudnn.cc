// A stand-in for libcudnn.so.9 with the legacy convolution API of native/bench/cudnn_api.h,
// computing on host pointers (native/emu's device memory is host memory) with plain loops, so
// test_bench_emu.cc can check how cudnn_conv.cc wires descriptors, buffers and workspaces.
// Every call is checked the way cuDNN would reject it (null handles, wrong enum values, a
// workspace smaller than the algorithm asked for).
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace {

struct Tensor { int n = 0, c = 0, h = 0, w = 0; };
struct Filter { int k = 0, c = 0, h = 0, w = 0; };
struct Conv { int ph = 0, pw = 0, sh = 1, sw = 1, groups = 1, math = -1, mode = -1; };
struct Perf { int algo; int status; float time; size_t memory; int determinism; int mathType; int reserved[3]; };

constexpr int kOk = 0, kBadParam = 3, kNotSupported = 9;
constexpr size_t kWorkspace = 4096;  // what the fake's one working algorithm asks for
int handles = 0;
// The fake computes at call time on the host, but the emulated runtime runs queued stream work
// (uploads on the upload stream, say) only at synchronising calls: the test hands in a function
// that drains the emulated streams, called before every computation.
void (*g_sync)() = nullptr;

// y = conv(x, w) with groups; pass 0: forward, 1: dx from dy and w, 2: dw from x and dy.
int conv(int pass, const Tensor& x, const Filter& f, const Conv& cv, const Tensor& y, const float* xp, const float* wp,
         const float* yp, float* out) {
  if (g_sync) g_sync();
  int G = cv.groups;
  if (G < 1 || x.c % G || f.k % G || f.c != x.c / G || y.c != f.k || x.n != y.n) return kBadParam;
  if (y.h != (x.h + 2 * cv.ph - f.h) / cv.sh + 1 || y.w != (x.w + 2 * cv.pw - f.w) / cv.sw + 1) return kBadParam;
  size_t outSize = pass == 0 ? size_t(y.n) * y.c * y.h * y.w : pass == 1 ? size_t(x.n) * x.c * x.h * x.w : size_t(f.k) * f.c * f.h * f.w;
  std::memset(out, 0, outSize * sizeof(float));
  int Fg = f.k / G;
  for (int n = 0; n < x.n; ++n)
    for (int k = 0; k < f.k; ++k)
      for (int oh = 0; oh < y.h; ++oh)
        for (int ow = 0; ow < y.w; ++ow)
          for (int c = 0; c < f.c; ++c)
            for (int kh = 0; kh < f.h; ++kh)
              for (int kw = 0; kw < f.w; ++kw) {
                int ih = oh * cv.sh - cv.ph + kh, iw = ow * cv.sw - cv.pw + kw;
                if (ih < 0 || ih >= x.h || iw < 0 || iw >= x.w) continue;
                size_t xi = ((size_t(n) * x.c + (k / Fg) * f.c + c) * x.h + ih) * x.w + iw;
                size_t wi = ((size_t(k) * f.c + c) * f.h + kh) * f.w + kw;
                size_t yi = ((size_t(n) * y.c + k) * y.h + oh) * y.w + ow;
                if (pass == 0) out[yi] += xp[xi] * wp[wi];
                else if (pass == 1) out[xi] += yp[yi] * wp[wi];
                else out[wi] += yp[yi] * xp[xi];
              }
  return kOk;
}

int check_run(const Conv* cv, int algo, void* ws, size_t wsb, const float* alpha, const float* beta) {
  if (!cv || cv->mode != 1 || (cv->math != 1 && cv->math != 3)) return kBadParam;
  if (algo != 1) return kBadParam;
  if (!ws || wsb < kWorkspace) return kBadParam;
  if (!alpha || !beta || *alpha != 1.0f || *beta != 0.0f) return kNotSupported;
  return kOk;
}

int find(int* returned, Perf* perf, int requested, void* ws, size_t wsb, const Conv* cv) {
  if (requested < 2 || !returned || !perf || !ws || wsb < kWorkspace) return kBadParam;
  // The fastest candidate failed; the second works and needs a workspace.
  perf[0] = {0, kNotSupported, 0.5f, 0, 0, cv->math, {0, 0, 0}};
  perf[1] = {1, kOk, 1.5f, kWorkspace, 1, cv->math, {0, 0, 0}};
  *returned = 2;
  return kOk;
}

}  // namespace

extern "C" {
void fake_cudnn_set_sync(void (*fn)()) { g_sync = fn; }
size_t cudnnGetVersion() { return 90100; }
const char* cudnnGetErrorString(int s) {
  return s == kBadParam ? "CUDNN_STATUS_BAD_PARAM" : s == kNotSupported ? "CUDNN_STATUS_NOT_SUPPORTED" : "CUDNN_STATUS_OTHER";
}
int cudnnCreate(void** h) { *h = new int(++handles); return kOk; }
int cudnnDestroy(void* h) { delete static_cast<int*>(h); return kOk; }
int cudnnSetStream(void* h, void*) { return h ? kOk : kBadParam; }
int cudnnCreateTensorDescriptor(Tensor** d) { *d = new Tensor; return kOk; }
int cudnnSetTensor4dDescriptor(Tensor* d, int format, int type, int n, int c, int h, int w) {
  if (format != 0 || type != 0) return kBadParam;
  *d = {n, c, h, w};
  return kOk;
}
int cudnnDestroyTensorDescriptor(Tensor* d) { delete d; return kOk; }
int cudnnCreateFilterDescriptor(Filter** d) { *d = new Filter; return kOk; }
int cudnnSetFilter4dDescriptor(Filter* d, int type, int format, int k, int c, int h, int w) {
  if (format != 0 || type != 0) return kBadParam;
  *d = {k, c, h, w};
  return kOk;
}
int cudnnDestroyFilterDescriptor(Filter* d) { delete d; return kOk; }
int cudnnCreateConvolutionDescriptor(Conv** d) { *d = new Conv; return kOk; }
int cudnnSetConvolution2dDescriptor(Conv* d, int ph, int pw, int sh, int sw, int dh, int dw, int mode, int type) {
  if (dh != 1 || dw != 1 || type != 0) return kBadParam;
  d->ph = ph, d->pw = pw, d->sh = sh, d->sw = sw, d->mode = mode;
  return kOk;
}
int cudnnSetConvolutionGroupCount(Conv* d, int g) { d->groups = g; return kOk; }
int cudnnSetConvolutionMathType(Conv* d, int m) { d->math = m; return kOk; }
int cudnnDestroyConvolutionDescriptor(Conv* d) { delete d; return kOk; }

int cudnnFindConvolutionForwardAlgorithmEx(void* h, const Tensor* xd, const float* x, const Filter* wd, const float* w,
                                           const Conv* cv, const Tensor* yd, float* y, int req, int* ret, Perf* perf,
                                           void* ws, size_t wsb) {
  if (!h) return kBadParam;
  int s = conv(0, *xd, *wd, *cv, *yd, x, w, nullptr, y);
  return s != kOk ? s : find(ret, perf, req, ws, wsb, cv);
}
int cudnnFindConvolutionBackwardDataAlgorithmEx(void* h, const Filter* wd, const float* w, const Tensor* dyd, const float* dy,
                                                const Conv* cv, const Tensor* dxd, float* dx, int req, int* ret, Perf* perf,
                                                void* ws, size_t wsb) {
  if (!h) return kBadParam;
  int s = conv(1, *dxd, *wd, *cv, *dyd, nullptr, w, dy, dx);
  return s != kOk ? s : find(ret, perf, req, ws, wsb, cv);
}
int cudnnFindConvolutionBackwardFilterAlgorithmEx(void* h, const Tensor* xd, const float* x, const Tensor* dyd, const float* dy,
                                                  const Conv* cv, const Filter* dwd, float* dw, int req, int* ret, Perf* perf,
                                                  void* ws, size_t wsb) {
  if (!h) return kBadParam;
  int s = conv(2, *xd, *dwd, *cv, *dyd, x, nullptr, dy, dw);
  return s != kOk ? s : find(ret, perf, req, ws, wsb, cv);
}
int cudnnConvolutionForward(void* h, const float* alpha, const Tensor* xd, const float* x, const Filter* wd, const float* w,
                            const Conv* cv, int algo, void* ws, size_t wsb, const float* beta, const Tensor* yd, float* y) {
  if (std::getenv("FAKE_CUDNN_FAIL")) return kNotSupported;  // the test's way to make a run fail
  int s = h ? check_run(cv, algo, ws, wsb, alpha, beta) : kBadParam;
  return s != kOk ? s : conv(0, *xd, *wd, *cv, *yd, x, w, nullptr, y);
}
int cudnnConvolutionBackwardData(void* h, const float* alpha, const Filter* wd, const float* w, const Tensor* dyd,
                                 const float* dy, const Conv* cv, int algo, void* ws, size_t wsb, const float* beta,
                                 const Tensor* dxd, float* dx) {
  int s = h ? check_run(cv, algo, ws, wsb, alpha, beta) : kBadParam;
  return s != kOk ? s : conv(1, *dxd, *wd, *cv, *dyd, nullptr, w, dy, dx);
}
int cudnnConvolutionBackwardFilter(void* h, const float* alpha, const Tensor* xd, const float* x, const Tensor* dyd,
                                   const float* dy, const Conv* cv, int algo, void* ws, size_t wsb, const float* beta,
                                   const Filter* dwd, float* dw) {
  int s = h ? check_run(cv, algo, ws, wsb, alpha, beta) : kBadParam;
  return s != kOk ? s : conv(2, *xd, *dwd, *cv, *dyd, x, nullptr, dy, dw);
}
}
