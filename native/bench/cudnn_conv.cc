#include "bench/cudnn_conv.h"

#include <cstdint>
#include <map>
#include <mutex>

#include "bench/cudnn_loader.h"
#include "core/errors.h"

#ifdef CONVNET_WITH_CUDA
#include "core/cuda_device.h"
#endif

namespace cn::cudnn {

#ifdef CONVNET_WITH_CUDA
namespace {

// The most workspace the algorithm search may use; less when the device has less free.
constexpr size_t kFindWorkspace = size_t(1) << 30;

[[noreturn]] void status_fail(const Api& a, Status s, const std::string& where) {
  const char* name = a.GetErrorString ? a.GetErrorString(s) : nullptr;
  Error e(ErrorKind::Cuda, "cudnn: " + where + " failed: " + (name ? name : "status " + std::to_string(s)));
  e.cuda_name = name ? name : "CUDNN_STATUS_" + std::to_string(s);
  throw e;
}

void check(const Api& a, Status s, const std::string& where) {
  if (s != kSuccess) status_fail(a, s, where);
}

int to_int(int64_t v, const char* what) {
  if (v < 0 || v > INT32_MAX) fail(ErrorKind::Shape, std::string("cudnn: ") + what + " does not fit an int");
  return static_cast<int>(v);
}

std::mutex handles_mu;
std::map<Device*, Handle> handles;  // one cuDNN handle per device, made on its queue thread

Handle handle_for(const Api& a, CudaDevice* dev) {
  std::lock_guard<std::mutex> lock(handles_mu);
  auto it = handles.find(dev);
  if (it != handles.end()) return it->second;
  Handle h = nullptr;
  check(a, a.Create(&h), dev->id() + ": cudnnCreate");
  handles[dev] = h;
  return h;
}

}  // namespace

struct ConvPlan {
  const Api* api;
  CudaDevice* device;
  Pass pass;
  int math;
  TensorDesc x = nullptr, y = nullptr;
  FilterDesc w = nullptr;
  ConvDesc conv = nullptr;
  PlanInfo info;
  StoragePtr workspace;  // exactly what the chosen algorithm asked for

  ~ConvPlan() {
    if (x) api->DestroyTensorDescriptor(x);
    if (y) api->DestroyTensorDescriptor(y);
    if (w) api->DestroyFilterDescriptor(w);
    if (conv) api->DestroyConvolutionDescriptor(conv);
  }
};

std::shared_ptr<ConvPlan> make_plan(Device* device, Pass pass, const std::vector<int64_t>& v,
                                    const std::string& math) {
  const Api* a = api();
  if (!a) fail(ErrorKind::Device, "cudnn: the library is not loaded (see buildInfo().cudnnReason)");
  if (device->kind() != DeviceKind::Cuda)
    fail(ErrorKind::Device, "cudnn: needs a CUDA device, received " + device->id());
  if (v.size() != 14) fail(ErrorKind::Shape, "cudnn: expected the 14 conv2d ints");
  if (math != "fp32" && math != "tf32")
    fail(ErrorKind::Shape, "cudnn: math must be fp32 or tf32, received " + math);
  auto p = std::make_shared<ConvPlan>();
  p->api = a;
  p->device = static_cast<CudaDevice*>(device);
  p->pass = pass;
  p->math = math == "fp32" ? kFmaMath : kTensorOpMath;
  int N = to_int(v[0], "N"), C = to_int(v[1], "C"), H = to_int(v[2], "H"), W = to_int(v[3], "W");
  int F = to_int(v[4], "F"), KH = to_int(v[5], "KH"), KW = to_int(v[6], "KW");
  int sh = to_int(v[7], "sh"), sw = to_int(v[8], "sw"), ph = to_int(v[9], "ph"), pw = to_int(v[10], "pw");
  int G = to_int(v[11], "groups"), OH = to_int(v[12], "OH"), OW = to_int(v[13], "OW");
  if (G < 1 || C % G != 0) fail(ErrorKind::Shape, "cudnn: C must be divisible by groups");
  check(*a, a->CreateTensorDescriptor(&p->x), "cudnnCreateTensorDescriptor");
  check(*a, a->SetTensor4dDescriptor(p->x, kTensorNchw, kDataFloat, N, C, H, W), "cudnnSetTensor4dDescriptor (x)");
  check(*a, a->CreateTensorDescriptor(&p->y), "cudnnCreateTensorDescriptor");
  check(*a, a->SetTensor4dDescriptor(p->y, kTensorNchw, kDataFloat, N, F, OH, OW), "cudnnSetTensor4dDescriptor (y)");
  check(*a, a->CreateFilterDescriptor(&p->w), "cudnnCreateFilterDescriptor");
  check(*a, a->SetFilter4dDescriptor(p->w, kDataFloat, kTensorNchw, F, C / G, KH, KW), "cudnnSetFilter4dDescriptor");
  check(*a, a->CreateConvolutionDescriptor(&p->conv), "cudnnCreateConvolutionDescriptor");
  check(*a, a->SetConvolution2dDescriptor(p->conv, ph, pw, sh, sw, 1, 1, kCrossCorrelation, kDataFloat),
        "cudnnSetConvolution2dDescriptor");
  check(*a, a->SetConvolutionGroupCount(p->conv, G), "cudnnSetConvolutionGroupCount");
  check(*a, a->SetConvolutionMathType(p->conv, p->math), "cudnnSetConvolutionMathType");
  return p;
}

namespace {

void check_buffers(const ConvPlan& p, const std::vector<StoragePtr>& b) {
  if (b.size() != 3) fail(ErrorKind::Shape, "cudnn: expected three buffers");
  for (const auto& s : b)
    if (!s || s->device != p.device)
      fail(ErrorKind::Device, "cudnn: every buffer must be on " + p.device->id());
}

// Runs the search on the queue thread; keeps the fastest algorithm that succeeded.
void find_now(ConvPlan& p, const std::vector<StoragePtr>& b) {
  const Api& a = *p.api;
  CudaDevice* dev = p.device;
  dev->activate();
  Handle h = handle_for(a, dev);
  check(a, a.SetStream(h, dev->stream()), "cudnnSetStream");
  StoragePtr ws;
  for (size_t bytes = kFindWorkspace; !ws && bytes >= (size_t(1) << 20); bytes /= 4) {
    try {
      ws = dev->allocate(bytes);
    } catch (const Error& e) {
      if (e.kind != ErrorKind::OutOfMemory) throw;
    }
  }
  void* wsp = ws ? ws->ptr : nullptr;
  size_t wsb = ws ? ws->bytes : 0;
  AlgoPerf perf[16] = {};
  int n = 0;
  void *o = b[0]->ptr, *i1 = b[1]->ptr, *i2 = b[2]->ptr;
  switch (p.pass) {
    case Pass::Forward:
      check(a, a.FindConvolutionForwardAlgorithmEx(h, p.x, i1, p.w, i2, p.conv, p.y, o, 16, &n, perf, wsp, wsb),
            "cudnnFindConvolutionForwardAlgorithmEx");
      break;
    case Pass::BackwardData:
      check(a, a.FindConvolutionBackwardDataAlgorithmEx(h, p.w, i2, p.y, i1, p.conv, p.x, o, 16, &n, perf, wsp, wsb),
            "cudnnFindConvolutionBackwardDataAlgorithmEx");
      break;
    case Pass::BackwardFilter:
      check(a, a.FindConvolutionBackwardFilterAlgorithmEx(h, p.x, i1, p.y, i2, p.conv, p.w, o, 16, &n, perf, wsp, wsb),
            "cudnnFindConvolutionBackwardFilterAlgorithmEx");
      break;
  }
  ws.reset();
  p.info.candidates = n;
  // The results come sorted by time; the first that succeeded wins.
  for (int k = 0; k < n; ++k) {
    if (perf[k].status != kSuccess) continue;
    p.info.found = true;
    p.info.algo = perf[k].algo;
    p.info.find_ms = perf[k].time;
    p.info.workspace = static_cast<double>(perf[k].memory);
    p.info.math = perf[k].mathType;
    if (perf[k].memory > 0) p.workspace = dev->allocate(perf[k].memory);
    return;
  }
  fail(ErrorKind::Cuda, "cudnn: no algorithm succeeded for this convolution (" + std::to_string(n) + " tried)");
}

void run_now(ConvPlan& p, const std::vector<StoragePtr>& b) {
  const Api& a = *p.api;
  if (!p.info.found) fail(ErrorKind::Device, "cudnn: run before the algorithm search");
  CudaDevice* dev = p.device;
  dev->activate();
  Handle h = handle_for(a, dev);
  check(a, a.SetStream(h, dev->stream()), "cudnnSetStream");
  const float one = 1.0f, zero = 0.0f;
  void* wsp = p.workspace ? p.workspace->ptr : nullptr;
  size_t wsb = p.workspace ? p.workspace->bytes : 0;
  void *o = b[0]->ptr, *i1 = b[1]->ptr, *i2 = b[2]->ptr;
  switch (p.pass) {
    case Pass::Forward:
      check(a, a.ConvolutionForward(h, &one, p.x, i1, p.w, i2, p.conv, p.info.algo, wsp, wsb, &zero, p.y, o),
            "cudnnConvolutionForward");
      break;
    case Pass::BackwardData:
      check(a, a.ConvolutionBackwardData(h, &one, p.w, i2, p.y, i1, p.conv, p.info.algo, wsp, wsb, &zero, p.x, o),
            "cudnnConvolutionBackwardData");
      break;
    case Pass::BackwardFilter:
      check(a, a.ConvolutionBackwardFilter(h, &one, p.x, i1, p.y, i2, p.conv, p.info.algo, wsp, wsb, &zero, p.w, o),
            "cudnnConvolutionBackwardFilter");
      break;
  }
}

}  // namespace

void enqueue_find(const std::shared_ptr<ConvPlan>& plan, std::vector<StoragePtr> buffers) {
  check_buffers(*plan, buffers);
  plan->device->enqueue([plan, buffers] { find_now(*plan, buffers); }, "cudnn_find");
}

void enqueue_run(const std::shared_ptr<ConvPlan>& plan, std::vector<StoragePtr> buffers) {
  check_buffers(*plan, buffers);
  plan->device->enqueue([plan, buffers] { run_now(*plan, buffers); }, "cudnn_conv");
}

PlanInfo plan_info(const ConvPlan& plan) { return plan.info; }

#else  // CPU-only build

struct ConvPlan {};

std::shared_ptr<ConvPlan> make_plan(Device*, Pass, const std::vector<int64_t>&, const std::string&) {
  fail(ErrorKind::Device, "cudnn: this build of convnet-cuda has no CUDA support");
}
void enqueue_find(const std::shared_ptr<ConvPlan>&, std::vector<StoragePtr>) {
  fail(ErrorKind::Device, "cudnn: this build of convnet-cuda has no CUDA support");
}
void enqueue_run(const std::shared_ptr<ConvPlan>&, std::vector<StoragePtr>) {
  fail(ErrorKind::Device, "cudnn: this build of convnet-cuda has no CUDA support");
}
PlanInfo plan_info(const ConvPlan&) { return {}; }

#endif

}  // namespace cn::cudnn
