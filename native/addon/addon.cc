// The N-API surface, and nothing else: argument conversion, async workers and error mapping.
// Validation of shapes and options happens in TypeScript (src/ops); this layer checks only what
// would otherwise crash the process (handle types, argument counts, sizes).
//
// Storage handles are Externals tagged with kStorageTag. A handle holds one reference to its
// storage; release() drops it early (dispose) and the finaliser is the safety net for handles
// the program forgot.
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "addon/addon_shared.h"
#include "core/device.h"
#include "core/errors.h"
#include "ops/registry.h"

namespace {

using cn::Error;
using cn::ErrorKind;

const napi_type_tag kStorageTag = {0x6e3b1f0a9c2d4e57ULL, 0xa1c4b2d3e5f60718ULL};

struct Handle {
  cn::StoragePtr storage;
  // Bytes reported to V8 as external memory for this handle (its storage's size while it holds
  // it), so that the garbage collector sees what a forgotten tensor costs and runs in time.
  int64_t reported = 0;
};

// Drops the handle's storage reference and takes its bytes back from V8's external count.
void drop(Napi::Env env, Handle* h) {
  h->storage.reset();
  if (h->reported) {
    Napi::MemoryManagement::AdjustExternalMemory(env, -h->reported);
    h->reported = 0;
  }
}

Napi::Error to_js(Napi::Env env, const std::string& cls, const std::string& msg,
                  const Error* detail) {
  Napi::Error e = Napi::Error::New(env, msg);
  Napi::Object o = e.Value();
  o.Set("name", cls);
  o.Set("convnetClass", cls);
  if (detail) {
    if (!detail->cuda_name.empty()) o.Set("cudaError", detail->cuda_name);
    if (!detail->device.empty()) o.Set("device", detail->device);
    if (detail->kind == ErrorKind::Compile) o.Set("log", detail->log);
    if (detail->kind == ErrorKind::OutOfMemory) {
      o.Set("bytesAsked", Napi::Number::New(env, detail->bytes_asked));
      o.Set("bytesFree", Napi::Number::New(env, detail->bytes_free));
    }
  }
  return e;
}

// Runs fn and turns every C++ exception into a JS exception of the matching class.
template <typename Fn>
Napi::Value guarded(const Napi::CallbackInfo& info, Fn fn) {
  Napi::Env env = info.Env();
  try {
    return fn(env);
  } catch (const Napi::Error& e) {
    throw;
  } catch (const Error& e) {
    throw to_js(env, cn::error_class_name(e.kind), e.what(), &e);
  } catch (const std::bad_alloc&) {
    throw to_js(env, "OutOfMemoryError", "out of host memory in the native addon", nullptr);
  } catch (const std::exception& e) {
    throw to_js(env, "Error", std::string("internal error: ") + e.what(), nullptr);
  }
}

[[noreturn]] void type_fail(const std::string& msg) { cn::fail(ErrorKind::Internal, msg); }

std::string arg_string(const Napi::CallbackInfo& info, size_t k, const char* what) {
  if (info.Length() <= k || !info[k].IsString()) type_fail(std::string(what) + " must be a string");
  return info[k].As<Napi::String>().Utf8Value();
}

double arg_number(const Napi::CallbackInfo& info, size_t k, const char* what) {
  if (info.Length() <= k || !info[k].IsNumber()) type_fail(std::string(what) + " must be a number");
  return info[k].As<Napi::Number>().DoubleValue();
}

Handle* as_handle(Napi::Value v) {
  if (!v.IsExternal()) type_fail("expected a storage handle");
  bool ok = false;
  napi_check_object_type_tag(v.Env(), v, &kStorageTag, &ok);
  if (!ok) type_fail("expected a storage handle");
  return v.As<Napi::External<Handle>>().Data();
}

const cn::StoragePtr& live_storage(Napi::Value v) {
  Handle* h = as_handle(v);
  if (!h->storage) cn::fail(ErrorKind::Disposed, "storage: the tensor's memory was already disposed");
  return h->storage;
}

Napi::Value Devices(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto list = cn::list_devices();
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t k = 0; k < list.size(); ++k) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("id", list[k].id);
      d.Set("kind", list[k].kind);
      d.Set("name", list[k].name);
      if (!list[k].compute_capability.empty())
        d.Set("computeCapability", list[k].compute_capability);
      d.Set("memoryBytes", Napi::Number::New(env, list[k].memory_bytes));
      out.Set(k, d);
    }
    return out;
  });
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    cn::BuildFacts f = cn::build_facts();
    Napi::Object o = Napi::Object::New(env);
    o.Set("cuda", f.cuda);
    if (f.cuda) {
      o.Set("cudaVersion", f.cuda_version);
      Napi::Array archs = Napi::Array::New(env, f.archs.size());
      for (size_t k = 0; k < f.archs.size(); ++k) archs.Set(k, f.archs[k]);
      o.Set("archs", archs);
    }
    Napi::Array ops = Napi::Array::New(env);
    uint32_t k = 0;
    for (const auto& name : cn::op_names()) {
      const cn::OpDef* d = cn::find_op(name);
      Napi::Object op = Napi::Object::New(env);
      op.Set("name", name);
      op.Set("cuda", d->cuda != nullptr);
      ops.Set(k++, op);
    }
    o.Set("ops", ops);
    return o;
  });
}

// alloc(deviceId, bytes) -> handle
Napi::Value Alloc(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    std::string id = arg_string(info, 0, "device");
    double bytes = arg_number(info, 1, "bytes");
    if (!(bytes >= 0) || bytes > 9.0e18) type_fail("bytes must be a non-negative size");
    cn::Device* dev = cn::get_device(id);
    auto h = std::make_unique<Handle>();
    h->storage = dev->allocate(static_cast<size_t>(bytes));
    Napi::External<Handle> ext = Napi::External<Handle>::New(env, h.get(), [](Napi::Env e, Handle* p) {
      drop(e, p);
      delete p;
    });
    Handle* owned = h.release();
    napi_type_tag_object(env, ext, &kStorageTag);
    owned->reported = static_cast<int64_t>(bytes);
    Napi::MemoryManagement::AdjustExternalMemory(env, owned->reported);
    return ext;
  });
}

// release(handle): drops the handle's reference now; harmless when already released.
Napi::Value Release(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    drop(env, as_handle(info[0]));
    return env.Undefined();
  });
}

// upload(handle, typedArray): copies the bytes now; the array may change once this returns.
Napi::Value Upload(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    const cn::StoragePtr& s = live_storage(info[0]);
    if (!info[1].IsTypedArray()) type_fail("upload: data must be a typed array");
    Napi::TypedArray a = info[1].As<Napi::TypedArray>();
    size_t bytes = a.ByteLength();
    if (bytes > s->bytes) type_fail("upload: more data than the storage holds");
    const uint8_t* src =
        static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
    s->device->upload(s, src, bytes);
    return env.Undefined();
  });
}

class DownloadWorker : public Napi::AsyncWorker {
 public:
  DownloadWorker(Napi::Env env, cn::StoragePtr s)
      : Napi::AsyncWorker(env), storage_(std::move(s)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      data_.resize(storage_->bytes);
      storage_->device->download(storage_, data_.data(), storage_->bytes);
      storage_->device->synchronize();
    } catch (const Error& e) {
      cls_ = cn::error_class_name(e.kind);
      detail_ = std::make_unique<Error>(e);
      SetError(e.what());
    } catch (const std::exception& e) {
      cls_ = "Error";
      SetError(std::string("internal error: ") + e.what());
    }
    storage_.reset();
  }
  void OnOK() override {
    Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(Env(), data_.size());
    if (!data_.empty()) std::memcpy(buf.Data(), data_.data(), data_.size());
    deferred_.Resolve(buf);
  }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(to_js(Env(), cls_, e.Message(), detail_.get()).Value());
  }

 private:
  cn::StoragePtr storage_;
  std::vector<uint8_t> data_;
  Napi::Promise::Deferred deferred_;
  std::string cls_;
  std::unique_ptr<Error> detail_;
};

// download(handle) -> Promise<ArrayBuffer>: waits for the queue off the JS thread.
Napi::Value Download(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto* w = new DownloadWorker(env, live_storage(info[0]));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  });
}

// downloadSync(handle) -> ArrayBuffer: the same, blocking the JS thread.
Napi::Value DownloadSync(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    const cn::StoragePtr& s = live_storage(info[0]);
    Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, s->bytes);
    s->device->download(s, buf.Data(), s->bytes);
    s->device->synchronize();
    return buf;
  });
}

// copy(dst, src): same byte size; within a device or across devices, in queue order.
Napi::Value Copy(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    const cn::StoragePtr& dst = live_storage(info[0]);
    const cn::StoragePtr& src = live_storage(info[1]);
    if (dst->bytes != src->bytes) type_fail("copy: storages differ in size");
    cn::copy_storage(dst, src, src->bytes);
    return env.Undefined();
  });
}

// launch(op, handles, ints, floats): queues op on the device of its first tensor.
Napi::Value Launch(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    std::string name = arg_string(info, 0, "op");
    const cn::OpDef* def = cn::find_op(name);
    if (!def) type_fail("launch: unknown op '" + name + "'");
    if (info.Length() < 4 || !info[1].IsArray() || !info[2].IsArray() || !info[3].IsArray())
      type_fail("launch: expected (op, tensors[], ints[], floats[])");
    Napi::Array ts = info[1].As<Napi::Array>(), is = info[2].As<Napi::Array>(),
                fs = info[3].As<Napi::Array>();
    if (ts.Length() != static_cast<uint32_t>(def->tensors) ||
        is.Length() != static_cast<uint32_t>(def->ints) ||
        fs.Length() != static_cast<uint32_t>(def->floats))
      type_fail("launch: wrong argument counts for op '" + name + "'");
    cn::OpCall call;
    call.device = nullptr;
    for (uint32_t k = 0; k < ts.Length(); ++k) {
      Napi::Value v = ts.Get(k);
      if (v.IsNull() || v.IsUndefined()) {
        call.t.push_back(nullptr);
        continue;
      }
      const cn::StoragePtr& s = live_storage(v);
      if (!call.device) call.device = s->device;
      if (s->device != call.device)
        cn::fail(ErrorKind::Device, name + ": tensors on two devices, " + call.device->id() +
                                        " and " + s->device->id());
      call.t.push_back(s);
    }
    if (!call.device) type_fail("launch: op '" + name + "' has no tensor");
    for (uint32_t k = 0; k < is.Length(); ++k) {
      // Exact integers only, never narrowed: the op's check below bounds each one further.
      Napi::Value v = is.Get(k);
      const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
      if (!(std::fabs(d) <= 9007199254740992.0) || d != std::trunc(d)) {
        cn::fail(ErrorKind::Shape, name + ": integer argument " + std::to_string(k) +
                                       " must be an integer of at most 2^53 in magnitude, received " +
                                       (v.IsNumber() ? v.ToString().Utf8Value() : std::string("a non-number")));
      }
      call.i.push_back(static_cast<int64_t>(d));
    }
    for (uint32_t k = 0; k < fs.Length(); ++k) {
      Napi::Value v = fs.Get(k);
      if (!v.IsNumber()) type_fail("launch: floats must be numbers");
      call.f.push_back(v.As<Napi::Number>().DoubleValue());
    }
    if (def->check) def->check(call);
    cn::OpFn fn = call.device->kind() == cn::DeviceKind::Cpu ? def->cpu : def->cuda;
    if (!fn)
      cn::fail(ErrorKind::Device, name + ": no CUDA kernel for this op yet on " +
                                      call.device->id());
    cn::Device* device = call.device;
    device->enqueue([fn, call = std::move(call)] { fn(call); }, def->name);
    return env.Undefined();
  });
}

class SyncWorker : public Napi::AsyncWorker {
 public:
  SyncWorker(Napi::Env env, cn::Device* d)
      : Napi::AsyncWorker(env), device_(d), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      device_->synchronize();
    } catch (const Error& e) {
      cls_ = cn::error_class_name(e.kind);
      detail_ = std::make_unique<Error>(e);
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(to_js(Env(), cls_, e.Message(), detail_.get()).Value());
  }

 private:
  cn::Device* device_;
  Napi::Promise::Deferred deferred_;
  std::string cls_;
  std::unique_ptr<Error> detail_;
};

// synchronize(deviceId) -> Promise<void>; synchronizeSync(deviceId).
Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto* w = new SyncWorker(env, cn::get_device(arg_string(info, 0, "device")));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  });
}

Napi::Value SynchronizeSync(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    cn::get_device(arg_string(info, 0, "device"))->synchronize();
    return env.Undefined();
  });
}

// memoryStats(deviceId) -> { inUse, cached, peak, blocks, inUseAtFailure } of the device's allocator.
Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    cn::AllocatorStats s = cn::get_device(arg_string(info, 0, "device"))->allocator().stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("inUse", Napi::Number::New(env, static_cast<double>(s.in_use)));
    o.Set("cached", Napi::Number::New(env, static_cast<double>(s.cached)));
    o.Set("peak", Napi::Number::New(env, static_cast<double>(s.peak)));
    o.Set("blocks", Napi::Number::New(env, static_cast<double>(s.blocks)));
    o.Set("inUseAtFailure", Napi::Number::New(env, static_cast<double>(s.in_use_at_failure)));
    return o;
  });
}

// resetPeak(deviceId): the allocator's peak starts over from the bytes in use now.
Napi::Value ResetPeak(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    cn::get_device(arg_string(info, 0, "device"))->allocator().reset_peak();
    return env.Undefined();
  });
}

// setMemoryLimit(deviceId, bytes | null): the allocator refuses to go past `bytes` in use.
Napi::Value SetMemoryLimit(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    cn::Device* device = cn::get_device(arg_string(info, 0, "device"));
    size_t limit = SIZE_MAX;
    if (info.Length() > 1 && info[1].IsNumber()) {
      double v = info[1].As<Napi::Number>().DoubleValue();
      limit = v >= 18446744073709549568.0 ? SIZE_MAX : static_cast<size_t>(v);
    }
    device->allocator().set_limit(limit);
    return env.Undefined();
  });
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    cn::get_device(arg_string(info, 0, "device"))->allocator().empty_cache();
    return env.Undefined();
  });
}

// traceStart(): records every op run from now on; traceStop() -> [{ device, op, start, end }]
// with times in microseconds on one process-wide clock.
Napi::Value TraceStart(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    cn::trace_start();
    return env.Undefined();
  });
}

Napi::Value TraceStop(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto events = cn::trace_stop();
    Napi::Array out = Napi::Array::New(env, events.size());
    for (size_t k = 0; k < events.size(); ++k) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("device", events[k].device);
      e.Set("op", events[k].label);
      e.Set("start", events[k].start_us);
      e.Set("end", events[k].end_us);
      out.Set(k, e);
    }
    return out;
  });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("traceStart", Napi::Function::New(env, TraceStart));
  exports.Set("traceStop", Napi::Function::New(env, TraceStop));
  exports.Set("devices", Napi::Function::New(env, Devices));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo));
  exports.Set("alloc", Napi::Function::New(env, Alloc));
  exports.Set("release", Napi::Function::New(env, Release));
  exports.Set("upload", Napi::Function::New(env, Upload));
  exports.Set("download", Napi::Function::New(env, Download));
  exports.Set("downloadSync", Napi::Function::New(env, DownloadSync));
  exports.Set("copy", Napi::Function::New(env, Copy));
  exports.Set("launch", Napi::Function::New(env, Launch));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize));
  exports.Set("synchronizeSync", Napi::Function::New(env, SynchronizeSync));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats));
  exports.Set("emptyCache", Napi::Function::New(env, EmptyCache));
  exports.Set("resetPeak", Napi::Function::New(env, ResetPeak));
  exports.Set("setMemoryLimit", Napi::Function::New(env, SetMemoryLimit));
  cn::addon::register_bench(env, exports);
  cn::addon::register_rtc(env, exports);
  return exports;
}

}  // namespace

namespace cn::addon {

const StoragePtr& storage_of(Napi::Value v) { return live_storage(v); }

Napi::Value run_guarded(const Napi::CallbackInfo& info, const std::function<Napi::Value(Napi::Env)>& fn) {
  return guarded(info, fn);
}

}  // namespace cn::addon

NODE_API_MODULE(convnet, Init)
