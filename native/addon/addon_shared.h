// What addon.cc shares with the other N-API files of the addon (bench_addon.cc): the storage
// behind a JS handle, and the mapping of C++ exceptions to the typed JS errors.
#pragma once
#include <napi.h>

#include <functional>

#include "core/device.h"

namespace cn::addon {

// The live storage of a handle; DisposedError when it was released.
const StoragePtr& storage_of(Napi::Value v);
// Runs fn; every C++ exception becomes a JS exception of the matching class.
Napi::Value run_guarded(const Napi::CallbackInfo& info, const std::function<Napi::Value(Napi::Env)>& fn);
// Adds the benchmark functions (timers, cache flush, cuDNN) to the exports.
void register_bench(Napi::Env env, Napi::Object exports);
// Adds the run-time compiled kernels (NVRTC, driver API launches) to the exports.
void register_rtc(Napi::Env env, Napi::Object exports);

}  // namespace cn::addon
