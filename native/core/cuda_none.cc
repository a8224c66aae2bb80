// The CPU-only build: every CUDA entry point reports that CUDA was not built in.
#include "core/device.h"
#include "core/errors.h"

namespace cn {

int cuda_device_count(std::string* why_none) {
  *why_none = "this build of convnet-cuda has no CUDA support (built without nvcc or with "
              "CONVNET_CUDA=0; reinstall on a machine with the CUDA toolkit)";
  return 0;
}

Device* make_cuda_device(int, int) {
  fail(ErrorKind::Device, "device: this build of convnet-cuda has no CUDA support");
}

void cuda_copy_storage(const StoragePtr&, const StoragePtr&, size_t) {
  fail(ErrorKind::Device, "copy: this build of convnet-cuda has no CUDA support");
}

void cuda_build_facts(BuildFacts* f) { f->cuda = false; }

}  // namespace cn
