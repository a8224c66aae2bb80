// The N-API surface of run-time compiled kernels (native/rtc/): opening NVRTC, compiling a
// source to PTX, and queueing a launch on a CUDA device. TypeScript (src/rtc.ts) validates the
// arguments against the kernel's signature before anything reaches this file.
#include <napi.h>

#include <string>
#include <vector>

#include "addon/addon_shared.h"
#include "core/errors.h"
#include "rtc/rtc.h"

namespace cn::addon {
namespace {

[[noreturn]] void arg_fail(const std::string& msg) { fail(ErrorKind::Internal, msg); }

std::string string_of(Napi::Value v, const char* what) {
  if (!v.IsString()) arg_fail(std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

double number_of(Napi::Value v, const char* what) {
  if (!v.IsNumber()) arg_fail(std::string(what) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

// nvrtcTryLoad(path) -> { outcome, path, version?, reason? }
Napi::Value NvrtcTryLoad(const Napi::CallbackInfo& info) {
  return run_guarded(info, [&](Napi::Env env) -> Napi::Value {
    rtc::LoadResult r = rtc::try_load_nvrtc(string_of(info[0], "path"));
    Napi::Object o = Napi::Object::New(env);
    o.Set("outcome", r.outcome);
    o.Set("path", r.path);
    if (!r.version.empty()) o.Set("version", r.version);
    if (!r.reason.empty()) o.Set("reason", r.reason);
    return o;
  });
}

// rtcCompile(source, name, sm, options[]) -> { ptx, loweredName, arch, log }
Napi::Value RtcCompile(const Napi::CallbackInfo& info) {
  return run_guarded(info, [&](Napi::Env env) -> Napi::Value {
    std::string source = string_of(info[0], "source");
    std::string name = string_of(info[1], "name");
    int sm = static_cast<int>(number_of(info[2], "sm"));
    std::vector<std::string> options;
    if (info.Length() > 3 && info[3].IsArray()) {
      Napi::Array a = info[3].As<Napi::Array>();
      for (uint32_t k = 0; k < a.Length(); ++k) options.push_back(string_of(a.Get(k), "options[k]"));
    }
    rtc::Compiled c = rtc::compile(source, name, sm, options);
    Napi::Object o = Napi::Object::New(env);
    o.Set("ptx", c.ptx);
    o.Set("loweredName", c.lowered_name);
    o.Set("arch", c.arch);
    o.Set("log", c.log);
    return o;
  });
}

void dims_of(Napi::Value v, unsigned out[3], const char* what) {
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 3) arg_fail(std::string(what) + " must be [x, y, z]");
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t k = 0; k < 3; ++k) out[k] = static_cast<unsigned>(number_of(a.Get(k), what));
}

// rtcLaunch(deviceId, { ptx, loweredName, arch }, grid[3], block[3], sharedBytes, args[])
// args: { kind: 'ptr', handle } or { kind: 'i32' | 'i64' | 'f32' | 'f64', value }.
Napi::Value RtcLaunch(const Napi::CallbackInfo& info) {
  return run_guarded(info, [&](Napi::Env env) -> Napi::Value {
    Device* device = get_device(string_of(info[0], "device"));
    if (!info[1].IsObject()) arg_fail("kernel must be an object");
    Napi::Object k = info[1].As<Napi::Object>();
    rtc::Compiled compiled;
    compiled.ptx = string_of(k.Get("ptx"), "kernel.ptx");
    compiled.lowered_name = string_of(k.Get("loweredName"), "kernel.loweredName");
    compiled.arch = string_of(k.Get("arch"), "kernel.arch");
    rtc::LaunchShape shape{};
    dims_of(info[2], shape.grid, "grid");
    dims_of(info[3], shape.block, "block");
    shape.shared_bytes = static_cast<unsigned>(number_of(info[4], "sharedBytes"));
    if (!info[5].IsArray()) arg_fail("args must be an array");
    Napi::Array a = info[5].As<Napi::Array>();
    std::vector<rtc::Arg> args;
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Object e = a.Get(i).As<Napi::Object>();
      std::string kind = string_of(e.Get("kind"), "args[i].kind");
      rtc::Arg arg{rtc::Arg::Ptr, nullptr, 0};
      if (kind == "ptr") {
        arg.storage = storage_of(e.Get("handle"));
        if (arg.storage->device != device)
          fail(ErrorKind::Device, "kernel.launch: args[" + std::to_string(i) + "] is on " +
                                      arg.storage->device->id() + ", not on " + device->id());
      } else {
        arg.value = number_of(e.Get("value"), "args[i].value");
        if (kind == "i32") arg.kind = rtc::Arg::I32;
        else if (kind == "i64") arg.kind = rtc::Arg::I64;
        else if (kind == "f32") arg.kind = rtc::Arg::F32;
        else if (kind == "f64") arg.kind = rtc::Arg::F64;
        else arg_fail("args[i].kind must be ptr, i32, i64, f32 or f64");
      }
      args.push_back(std::move(arg));
    }
    rtc::launch(device, compiled, shape, std::move(args));
    return env.Undefined();
  });
}

}  // namespace

void register_rtc(Napi::Env env, Napi::Object exports) {
  exports.Set("nvrtcTryLoad", Napi::Function::New(env, NvrtcTryLoad));
  exports.Set("rtcCompile", Napi::Function::New(env, RtcCompile));
  exports.Set("rtcLaunch", Napi::Function::New(env, RtcLaunch));
}

}  // namespace cn::addon
