#include "bench/cudnn_loader.h"

#include <dlfcn.h>

#include <mutex>

#include "core/one_line.h"

namespace cn::cudnn {
namespace {

std::mutex mu;
Api loaded_api{};
bool loaded = false;
LoadResult loaded_result;

// Every entry point, in the order of Api's fields.
#define CN_CUDNN_SYMBOLS(X)                                                                   \
  X(GetVersion) X(GetErrorString) X(Create) X(Destroy) X(SetStream) X(CreateTensorDescriptor) \
  X(SetTensor4dDescriptor) X(DestroyTensorDescriptor) X(CreateFilterDescriptor)               \
  X(SetFilter4dDescriptor) X(DestroyFilterDescriptor) X(CreateConvolutionDescriptor)          \
  X(SetConvolution2dDescriptor) X(SetConvolutionGroupCount) X(SetConvolutionMathType)         \
  X(DestroyConvolutionDescriptor) X(FindConvolutionForwardAlgorithmEx)                        \
  X(FindConvolutionBackwardDataAlgorithmEx) X(FindConvolutionBackwardFilterAlgorithmEx)       \
  X(ConvolutionForward) X(ConvolutionBackwardData) X(ConvolutionBackwardFilter)

}  // namespace

std::string version_text(size_t v) {
  size_t major, minor, patch;
  if (v >= 10000) {
    major = v / 10000, minor = (v % 10000) / 100, patch = v % 100;
  } else {
    major = v / 1000, minor = (v % 1000) / 100, patch = v % 100;
  }
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

LoadResult try_load(const std::string& path, const std::vector<std::string>& preload) {
  std::lock_guard<std::mutex> lock(mu);
  if (loaded) return loaded_result;
  LoadResult r;
  r.path = path;
  for (const auto& p : preload) dlopen(p.c_str(), RTLD_NOW | RTLD_GLOBAL);
  dlerror();
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    r.outcome = "absent";
    r.reason = one_line(dlerror());
    return r;
  }
  auto reject = [&](const std::string& why) {
    dlclose(lib);
    r.outcome = "rejected";
    r.reason = why;
    return r;
  };
  auto get_version = reinterpret_cast<GetVersionFn>(dlsym(lib, "cudnnGetVersion"));
  if (!get_version) return reject("cuDNN at " + path + " lacks cudnnGetVersion");
  size_t v = get_version();
  r.version = version_text(v);
  r.version_number = static_cast<double>(v);
  size_t major = v >= 10000 ? v / 10000 : v / 1000;
  if (major != 9)
    return reject("cuDNN at " + path + " is version " + r.version + "; version 9 is needed");
  Api a{};
#define CN_CUDNN_LOAD(name)                                                                \
  a.name = reinterpret_cast<decltype(a.name)>(dlsym(lib, "cudnn" #name));                  \
  if (!a.name) return reject("cuDNN at " + path + " lacks cudnn" #name);
  CN_CUDNN_SYMBOLS(CN_CUDNN_LOAD)
#undef CN_CUDNN_LOAD
  loaded_api = a;
  loaded = true;
  r.outcome = "opened";
  loaded_result = r;
  return r;
}

const Api* api() {
  std::lock_guard<std::mutex> lock(mu);
  return loaded ? &loaded_api : nullptr;
}

}  // namespace cn::cudnn
