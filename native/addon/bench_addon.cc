// The N-API surface of the benchmark facilities (native/bench/): timing markers, the cache flush,
// the cuDNN loader and the cuDNN convolution driver. Registered by addon.cc's Init.
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "addon/addon_shared.h"
#include "bench/cudnn_conv.h"
#include "bench/cudnn_loader.h"
#include "bench/timer.h"
#include "core/errors.h"

namespace cn::addon {
namespace {

const napi_type_tag kMarkerTag = {0x2f6c0d94b51e7a38ULL, 0x93d15e0c7b2a4f61ULL};
const napi_type_tag kPlanTag = {0x5a0e7c3b19d24f86ULL, 0x0c8b6e2f4d3a1957ULL};

struct MarkerBox {
  std::shared_ptr<bench::Marker> marker;
};
struct PlanBox {
  std::shared_ptr<cudnn::ConvPlan> plan;
};

[[noreturn]] void arg_fail(const std::string& msg) { fail(ErrorKind::Internal, msg); }

std::string string_arg(const Napi::CallbackInfo& info, size_t k, const char* what) {
  if (info.Length() <= k || !info[k].IsString()) arg_fail(std::string(what) + " must be a string");
  return info[k].As<Napi::String>().Utf8Value();
}

template <typename T>
T* unbox(Napi::Value v, const napi_type_tag& tag, const char* what) {
  bool ok = false;
  if (v.IsExternal()) napi_check_object_type_tag(v.Env(), v, &tag, &ok);
  if (!ok) arg_fail(std::string("expected ") + what);
  return v.As<Napi::External<T>>().Data();
}

template <typename T>
Napi::Value box(Napi::Env env, T* p, const napi_type_tag& tag) {
  auto ext = Napi::External<T>::New(env, p, [](Napi::Env, T* q) { delete q; });
  napi_type_tag_object(env, ext, &tag);
  return ext;
}

// timerMark(deviceId) -> marker: queued on the device like an op.
Napi::Value TimerMark(const Napi::CallbackInfo& info) {
  return run_guarded(info, [&](Napi::Env env) -> Napi::Value {
    Device* d = get_device(string_arg(info, 0, "device"));
    return box(env, new MarkerBox{bench::mark(d)}, kMarkerTag);
  });
}

// timerElapsed(a, b) -> milliseconds between two reached markers of one device.
Napi::Value TimerElapsed(const Napi::CallbackInfo& info) {
  return run_guarded(info, [&](Napi::Env env) -> Napi::Value {
    if (info.Length() < 2) arg_fail("timerElapsed: expected two markers");
    auto* a = unbox<MarkerBox>(info[0], kMarkerTag, "a timer marker");
    auto* b = unbox<MarkerBox>(info[1], kMarkerTag, "a timer marker");
    return Napi::Number::New(env, bench::elapsed_ms(*a->marker, *b->marker));
  });
}

// l2Flush(deviceId) -> bytes written by the queued flush.
Napi::Value L2Flush(const Napi::CallbackInfo& info) {
  return run_guarded(info, [&](Napi::Env env) -> Napi::Value {
    return Napi::Number::New(env, bench::l2_flush(get_device(string_arg(info, 0, "device"))));
  });
}

// cudnnTryLoad(path, preload[]) -> { outcome, path, version?, versionNumber?, reason? }
Napi::Value CudnnTryLoad(const Napi::CallbackInfo& info) {
  return run_guarded(info, [&](Napi::Env env) -> Napi::Value {
    std::string path = string_arg(info, 0, "path");
    std::vector<std::string> preload;
    if (info.Length() > 1 && info[1].IsArray()) {
      Napi::Array a = info[1].As<Napi::Array>();
      for (uint32_t k = 0; k < a.Length(); ++k) {
        Napi::Value v = a.Get(k);
        if (!v.IsString()) arg_fail("cudnnTryLoad: preload must hold strings");
        preload.push_back(v.As<Napi::String>().Utf8Value());
      }
    }
    cudnn::LoadResult r = cudnn::try_load(path, preload);
    Napi::Object o = Napi::Object::New(env);
    o.Set("outcome", r.outcome);
    o.Set("path", r.path);
    if (!r.version.empty()) {
      o.Set("version", r.version);
      o.Set("versionNumber", Napi::Number::New(env, r.version_number));
    }
    if (!r.reason.empty()) o.Set("reason", r.reason);
    return o;
  });
}

PlanBox* live_plan(Napi::Value v) {
  auto* p = unbox<PlanBox>(v, kPlanTag, "a cuDNN plan");
  if (!p->plan) fail(ErrorKind::Disposed, "cudnn: the plan was already released");
  return p;
}

cudnn::Pass pass_arg(const std::string& s) {
  if (s == "fwd") return cudnn::Pass::Forward;
  if (s == "bwd_data") return cudnn::Pass::BackwardData;
  if (s == "bwd_filter") return cudnn::Pass::BackwardFilter;
  arg_fail("cudnnPlan: pass must be fwd, bwd_data or bwd_filter, received " + s);
}

// cudnnPlan(deviceId, pass, ints[14], math) -> plan
Napi::Value CudnnPlan(const Napi::CallbackInfo& info) {
  return run_guarded(info, [&](Napi::Env env) -> Napi::Value {
    Device* d = get_device(string_arg(info, 0, "device"));
    cudnn::Pass pass = pass_arg(string_arg(info, 1, "pass"));
    if (info.Length() < 3 || !info[2].IsArray()) arg_fail("cudnnPlan: ints must be an array");
    Napi::Array a = info[2].As<Napi::Array>();
    std::vector<int64_t> ints;
    for (uint32_t k = 0; k < a.Length(); ++k) {
      Napi::Value v = a.Get(k);
      if (!v.IsNumber()) arg_fail("cudnnPlan: ints must be numbers");
      ints.push_back(v.As<Napi::Number>().Int64Value());
    }
    std::string math = string_arg(info, 3, "math");
    return box(env, new PlanBox{cudnn::make_plan(d, pass, ints, math)}, kPlanTag);
  });
}

std::vector<StoragePtr> buffers_arg(const Napi::CallbackInfo& info, size_t k) {
  if (info.Length() <= k || !info[k].IsArray()) arg_fail("cudnn: buffers must be an array of three handles");
  Napi::Array a = info[k].As<Napi::Array>();
  std::vector<StoragePtr> out;
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(storage_of(a.Get(i)));
  return out;
}

// cudnnFind(plan, [out, in1, in2]): queues the algorithm search.
Napi::Value CudnnFind(const Napi::CallbackInfo& info) {
  return run_guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto* p = live_plan(info[0]);
    cudnn::enqueue_find(p->plan, buffers_arg(info, 1));
    return env.Undefined();
  });
}

// cudnnRun(plan, [out, in1, in2]): queues one run with the algorithm found.
Napi::Value CudnnRun(const Napi::CallbackInfo& info) {
  return run_guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto* p = live_plan(info[0]);
    cudnn::enqueue_run(p->plan, buffers_arg(info, 1));
    return env.Undefined();
  });
}

// cudnnPlanInfo(plan) -> { found, algo, findMs, workspaceBytes, mathType, candidates }
Napi::Value CudnnPlanInfo(const Napi::CallbackInfo& info) {
  return run_guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto* p = live_plan(info[0]);
    cudnn::PlanInfo i = cudnn::plan_info(*p->plan);
    Napi::Object o = Napi::Object::New(env);
    o.Set("found", i.found);
    o.Set("algo", i.algo);
    o.Set("findMs", i.find_ms);
    o.Set("workspaceBytes", i.workspace);
    o.Set("mathType", i.math);
    o.Set("candidates", i.candidates);
    return o;
  });
}

// cudnnPlanRelease(plan): drops the plan (descriptors, workspace) once queued work is done with it.
Napi::Value CudnnPlanRelease(const Napi::CallbackInfo& info) {
  return run_guarded(info, [&](Napi::Env env) -> Napi::Value {
    unbox<PlanBox>(info[0], kPlanTag, "a cuDNN plan")->plan.reset();
    return env.Undefined();
  });
}

}  // namespace

void register_bench(Napi::Env env, Napi::Object exports) {
  exports.Set("timerMark", Napi::Function::New(env, TimerMark));
  exports.Set("timerElapsed", Napi::Function::New(env, TimerElapsed));
  exports.Set("l2Flush", Napi::Function::New(env, L2Flush));
  exports.Set("cudnnTryLoad", Napi::Function::New(env, CudnnTryLoad));
  exports.Set("cudnnPlan", Napi::Function::New(env, CudnnPlan));
  exports.Set("cudnnFind", Napi::Function::New(env, CudnnFind));
  exports.Set("cudnnRun", Napi::Function::New(env, CudnnRun));
  exports.Set("cudnnPlanInfo", Napi::Function::New(env, CudnnPlanInfo));
  exports.Set("cudnnPlanRelease", Napi::Function::New(env, CudnnPlanRelease));
}

}  // namespace cn::addon
