// Kernels compiled at run time: CUDA C++ source compiled by NVRTC to PTX, loaded and launched
// through the CUDA driver API on a device's stream, in order with every other op of that device.
// NVRTC and the driver library are opened with dlopen, so the addon builds and runs without
// them; what is missing is said when a kernel is compiled or launched, never at load time.
//
// The search for NVRTC (CONVNET_NVRTC_PATH, the loader's path, python's site-packages) lives in
// TypeScript (src/rtc.ts), which hands try_load_nvrtc one candidate at a time, as for cuDNN.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"

namespace cn::rtc {

struct LoadResult {
  std::string outcome;  // "opened", "absent" (dlopen failed: try the next) or "rejected" (final)
  std::string path;
  std::string version;  // "12.8", when nvrtcVersion was found
  std::string reason;   // one line, when not opened
};

// Tries one candidate; after one was opened, returns that result without opening anything.
LoadResult try_load_nvrtc(const std::string& path);

struct Compiled {
  std::string ptx;
  std::string lowered_name;  // the kernel's symbol in the PTX (C++ names are mangled)
  std::string arch;          // the virtual architecture compiled for, e.g. "compute_90"
  std::string log;           // NVRTC's log (warnings), possibly empty
};

// Compiles `source` for the highest architecture NVRTC supports that does not exceed `sm`
// (compute capability as major*10+minor). Throws Error(Compile) with NVRTC's log when the source
// does not compile, Error(Device) when NVRTC was not opened.
Compiled compile(const std::string& source, const std::string& name, int sm,
                 const std::vector<std::string>& options);

// One kernel argument: a device pointer (storage), or a scalar of the given width.
struct Arg {
  enum Kind { Ptr, I32, I64, F32, F64 } kind;
  StoragePtr storage;  // Ptr
  double value = 0;    // scalars
};

struct LaunchShape {
  unsigned grid[3], block[3];
  unsigned shared_bytes;
};

// Queues the launch on `device` (a CUDA device). The task holds every storage it uses until it
// has run. Errors of the driver arrive as CudaError, like those of the built-in kernels.
void launch(Device* device, const Compiled& kernel, const LaunchShape& shape, std::vector<Arg> args);

}  // namespace cn::rtc
