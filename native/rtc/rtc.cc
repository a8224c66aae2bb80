// See rtc.h. NVRTC's and the driver's entry points are declared here from their documentation
// (only what is called), so neither header is needed to build.
#include "rtc/rtc.h"

#include <dlfcn.h>

#include <map>
#include <memory>
#include <mutex>

#include "core/errors.h"
#include "core/one_line.h"
#ifdef CONVNET_WITH_CUDA
#include "core/cuda_device.h"
#endif

namespace cn::rtc {
namespace {

// ---- NVRTC ----------------------------------------------------------------------------------
using nvrtcProgram = struct _nvrtcProgram*;
using nvrtcResult = int;  // NVRTC_SUCCESS == 0
constexpr nvrtcResult kNvrtcSuccess = 0;

struct Nvrtc {
  nvrtcResult (*Version)(int*, int*);
  const char* (*GetErrorString)(nvrtcResult);
  nvrtcResult (*CreateProgram)(nvrtcProgram*, const char*, const char*, int, const char* const*, const char* const*);
  nvrtcResult (*DestroyProgram)(nvrtcProgram*);
  nvrtcResult (*CompileProgram)(nvrtcProgram, int, const char* const*);
  nvrtcResult (*GetPTXSize)(nvrtcProgram, size_t*);
  nvrtcResult (*GetPTX)(nvrtcProgram, char*);
  nvrtcResult (*GetProgramLogSize)(nvrtcProgram, size_t*);
  nvrtcResult (*GetProgramLog)(nvrtcProgram, char*);
  nvrtcResult (*AddNameExpression)(nvrtcProgram, const char*);
  nvrtcResult (*GetLoweredName)(nvrtcProgram, const char*, const char**);
  nvrtcResult (*GetNumSupportedArchs)(int*);
  nvrtcResult (*GetSupportedArchs)(int*);
};

#define CN_NVRTC_SYMBOLS(X)                                                                  \
  X(Version) X(GetErrorString) X(CreateProgram) X(DestroyProgram) X(CompileProgram)          \
  X(GetPTXSize) X(GetPTX) X(GetProgramLogSize) X(GetProgramLog) X(AddNameExpression)         \
  X(GetLoweredName) X(GetNumSupportedArchs) X(GetSupportedArchs)

std::mutex nvrtc_mu;
Nvrtc nvrtc{};
bool nvrtc_loaded = false;
LoadResult nvrtc_result;

const Nvrtc& nvrtc_api(const std::string& op) {
  std::lock_guard<std::mutex> lock(nvrtc_mu);
  if (!nvrtc_loaded) fail(ErrorKind::Device, op + ": NVRTC is not loaded (cn.buildInfo().nvrtcReason says why)");
  return nvrtc;
}

// The program is destroyed whatever happens.
struct Program {
  const Nvrtc& api;
  nvrtcProgram p = nullptr;
  ~Program() {
    if (p) api.DestroyProgram(&p);
  }
};

}  // namespace

LoadResult try_load_nvrtc(const std::string& path) {
  std::lock_guard<std::mutex> lock(nvrtc_mu);
  if (nvrtc_loaded) return nvrtc_result;
  LoadResult r;
  r.path = path;
  dlerror();
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    r.outcome = "absent";
    r.reason = one_line(dlerror());
    return r;
  }
  Nvrtc a{};
#define CN_NVRTC_LOAD(name)                                                                 \
  a.name = reinterpret_cast<decltype(a.name)>(dlsym(lib, "nvrtc" #name));                   \
  if (!a.name) {                                                                            \
    dlclose(lib);                                                                           \
    r.outcome = "rejected";                                                                 \
    r.reason = "NVRTC at " + path + " lacks nvrtc" #name;                                   \
    return r;                                                                               \
  }
  CN_NVRTC_SYMBOLS(CN_NVRTC_LOAD)
#undef CN_NVRTC_LOAD
  int major = 0, minor = 0;
  a.Version(&major, &minor);
  r.version = std::to_string(major) + "." + std::to_string(minor);
  if (major < 11) {
    dlclose(lib);
    r.outcome = "rejected";
    r.reason = "NVRTC at " + path + " is version " + r.version + "; 11.2 or later is needed";
    return r;
  }
  nvrtc = a;
  nvrtc_loaded = true;
  r.outcome = "opened";
  nvrtc_result = r;
  return r;
}

Compiled compile(const std::string& source, const std::string& name, int sm,
                 const std::vector<std::string>& options) {
  const std::string op = "cuda.compile";
  const Nvrtc& api = nvrtc_api(op);
  auto check = [&](nvrtcResult rc, const char* what) {
    if (rc != kNvrtcSuccess)
      fail(ErrorKind::Device, op + ": " + what + " failed: " + one_line(api.GetErrorString(rc)));
  };
  // The highest virtual architecture this NVRTC knows that the device can run.
  int count = 0;
  check(api.GetNumSupportedArchs(&count), "nvrtcGetNumSupportedArchs");
  std::vector<int> archs(static_cast<size_t>(count > 0 ? count : 0));
  if (count > 0) check(api.GetSupportedArchs(archs.data()), "nvrtcGetSupportedArchs");
  int chosen = 0;
  for (int a : archs)
    if (a <= sm && a > chosen) chosen = a;
  if (chosen == 0) {
    fail(ErrorKind::Device, op + ": this NVRTC cannot compile for compute capability " +
                                std::to_string(sm / 10) + "." + std::to_string(sm % 10));
  }
  Compiled out;
  out.arch = "compute_" + std::to_string(chosen);
  Program prog{api};
  check(api.CreateProgram(&prog.p, source.c_str(), (name + ".cu").c_str(), 0, nullptr, nullptr),
        "nvrtcCreateProgram");
  check(api.AddNameExpression(prog.p, name.c_str()), "nvrtcAddNameExpression");
  std::vector<std::string> opts = {"--gpu-architecture=" + out.arch, "-default-device"};
  opts.insert(opts.end(), options.begin(), options.end());
  std::vector<const char*> argv;
  for (const auto& o : opts) argv.push_back(o.c_str());
  const nvrtcResult rc = api.CompileProgram(prog.p, static_cast<int>(argv.size()), argv.data());
  size_t log_size = 0;
  if (api.GetProgramLogSize(prog.p, &log_size) == kNvrtcSuccess && log_size > 1) {
    out.log.resize(log_size);
    api.GetProgramLog(prog.p, out.log.data());
    out.log.resize(log_size - 1);  // drop the terminating NUL
  }
  if (rc != kNvrtcSuccess) {
    Error e(ErrorKind::Compile, op + ": '" + name + "' does not compile for " + out.arch + " (" +
                                    one_line(api.GetErrorString(rc)) + "):\n" + out.log);
    e.log = out.log;
    throw e;
  }
  const char* lowered = nullptr;
  if (api.GetLoweredName(prog.p, name.c_str(), &lowered) != kNvrtcSuccess || !lowered) {
    Error e(ErrorKind::Compile, op + ": the source compiles but defines no __global__ function named '" + name + "'");
    e.log = out.log;
    throw e;
  }
  out.lowered_name = lowered;
  size_t ptx_size = 0;
  check(api.GetPTXSize(prog.p, &ptx_size), "nvrtcGetPTXSize");
  out.ptx.resize(ptx_size);
  check(api.GetPTX(prog.p, out.ptx.data()), "nvrtcGetPTX");
  return out;
}

#ifndef CONVNET_WITH_CUDA

void launch(Device* device, const Compiled&, const LaunchShape&, std::vector<Arg>) {
  fail(ErrorKind::Device, "kernel.launch: cannot use '" + device->id() + "': this build has no CUDA (built without nvcc)");
}

#else

namespace {

// ---- the CUDA driver API ----------------------------------------------------------------------
using CUresult = int;  // CUDA_SUCCESS == 0
using CUdevice = int;
using CUcontext = struct CUctx_st*;
using CUmodule = struct CUmod_st*;
using CUfunction = struct CUfunc_st*;
using CUstream = struct CUstream_st*;
constexpr int kMaxDynamicSharedAttr = 8;  // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES

struct Driver {
  CUresult (*Init)(unsigned);
  CUresult (*DeviceGet)(CUdevice*, int);
  CUresult (*DevicePrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*CtxSetCurrent)(CUcontext);
  CUresult (*ModuleLoadData)(CUmodule*, const void*);
  CUresult (*ModuleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*FuncSetAttribute)(CUfunction, int, int);
  CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                           unsigned, CUstream, void**, void**);
  CUresult (*GetErrorName)(CUresult, const char**);
};

std::mutex driver_mu;
Driver driver{};
bool driver_loaded = false;
std::map<int, CUcontext> contexts;           // physical device -> its primary context
std::map<std::string, CUfunction> functions;  // physical, name and PTX -> the loaded function

const Driver& driver_api(const std::string& op) {
  std::lock_guard<std::mutex> lock(driver_mu);
  if (driver_loaded) return driver;
  dlerror();
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) fail(ErrorKind::Device, op + ": the CUDA driver library libcuda.so.1 does not open: " + one_line(dlerror()));
  Driver d{};
#define CN_DRIVER_LOAD(field, symbol)                                                      \
  d.field = reinterpret_cast<decltype(d.field)>(dlsym(lib, symbol));                       \
  if (!d.field) fail(ErrorKind::Device, op + ": libcuda.so.1 lacks " symbol);
  CN_DRIVER_LOAD(Init, "cuInit")
  CN_DRIVER_LOAD(DeviceGet, "cuDeviceGet")
  CN_DRIVER_LOAD(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain")
  CN_DRIVER_LOAD(CtxSetCurrent, "cuCtxSetCurrent")
  CN_DRIVER_LOAD(ModuleLoadData, "cuModuleLoadData")
  CN_DRIVER_LOAD(ModuleGetFunction, "cuModuleGetFunction")
  CN_DRIVER_LOAD(FuncSetAttribute, "cuFuncSetAttribute")
  CN_DRIVER_LOAD(LaunchKernel, "cuLaunchKernel")
  CN_DRIVER_LOAD(GetErrorName, "cuGetErrorName")
#undef CN_DRIVER_LOAD
  if (d.Init(0) != 0) fail(ErrorKind::Device, op + ": cuInit failed: no usable CUDA driver");
  driver = d;
  driver_loaded = true;
  return driver;
}

[[noreturn]] void driver_fail(const Driver& d, CUresult rc, const std::string& what) {
  const char* name = nullptr;
  d.GetErrorName(rc, &name);
  Error e(ErrorKind::Cuda, what + ": " + (name ? name : "CUDA error " + std::to_string(rc)));
  e.cuda_name = name ? name : "";
  throw e;
}

// On the queue thread: the primary context of the device made current, and the function loaded
// into it (once per physical device, name and PTX).
CUfunction function_for(const Driver& d, int physical, const Compiled& k, const std::string& where) {
  std::lock_guard<std::mutex> lock(driver_mu);
  auto ctx = contexts.find(physical);
  if (ctx == contexts.end()) {
    CUdevice dev = 0;
    CUcontext c = nullptr;
    if (CUresult rc = d.DeviceGet(&dev, physical)) driver_fail(d, rc, where + ": cuDeviceGet");
    if (CUresult rc = d.DevicePrimaryCtxRetain(&c, dev)) driver_fail(d, rc, where + ": cuDevicePrimaryCtxRetain");
    ctx = contexts.emplace(physical, c).first;
  }
  if (CUresult rc = d.CtxSetCurrent(ctx->second)) driver_fail(d, rc, where + ": cuCtxSetCurrent");
  std::string key = std::to_string(physical) + '\n' + k.lowered_name + '\n' + k.ptx;
  auto f = functions.find(key);
  if (f != functions.end()) return f->second;
  CUmodule mod = nullptr;
  CUfunction fn = nullptr;
  if (CUresult rc = d.ModuleLoadData(&mod, k.ptx.c_str())) driver_fail(d, rc, where + ": loading its PTX (cuModuleLoadData)");
  if (CUresult rc = d.ModuleGetFunction(&fn, mod, k.lowered_name.c_str())) driver_fail(d, rc, where + ": cuModuleGetFunction");
  functions.emplace(std::move(key), fn);
  return fn;
}

}  // namespace

void launch(Device* device, const Compiled& kernel, const LaunchShape& shape, std::vector<Arg> args) {
  const std::string where = "kernel '" + kernel.lowered_name + "' on " + device->id();
  if (device->kind() != DeviceKind::Cuda)
    fail(ErrorKind::Device, "kernel.launch: " + device->id() + " is not a CUDA device");
  const Driver& d = driver_api("kernel.launch");
  auto* dev = static_cast<CudaDevice*>(device);
  auto k = std::make_shared<Compiled>(kernel);
  device->enqueue([&d, dev, k, shape, args = std::move(args), where] {
    dev->activate();
    CUfunction fn = function_for(d, dev->physical(), *k, where);
    if (shape.shared_bytes > 48 * 1024) {
      if (CUresult rc = d.FuncSetAttribute(fn, kMaxDynamicSharedAttr, static_cast<int>(shape.shared_bytes)))
        driver_fail(d, rc, where + ": asking for " + std::to_string(shape.shared_bytes) + " bytes of shared memory");
    }
    // Each parameter's value lives in `values`; the driver reads them through `params`.
    std::vector<uint64_t> values(args.size());
    std::vector<void*> params(args.size());
    for (size_t i = 0; i < args.size(); ++i) {
      void* slot = &values[i];
      switch (args[i].kind) {
        case Arg::Ptr: *static_cast<void**>(slot) = args[i].storage->ptr; break;
        case Arg::I32: *static_cast<int32_t*>(slot) = static_cast<int32_t>(args[i].value); break;
        case Arg::I64: *static_cast<int64_t*>(slot) = static_cast<int64_t>(args[i].value); break;
        case Arg::F32: *static_cast<float*>(slot) = static_cast<float>(args[i].value); break;
        case Arg::F64: *static_cast<double*>(slot) = args[i].value; break;
      }
      params[i] = slot;
    }
    CUresult rc = d.LaunchKernel(fn, shape.grid[0], shape.grid[1], shape.grid[2], shape.block[0],
                                 shape.block[1], shape.block[2], shape.shared_bytes,
                                 reinterpret_cast<CUstream>(dev->stream()), params.data(), nullptr);
    if (rc) driver_fail(d, rc, where + ": cuLaunchKernel");
  }, "rtc_kernel");
}

#endif

}  // namespace cn::rtc
