// Opens cuDNN at run time (dlopen), so the addon builds and runs without it. The search order
// (CONVNET_CUDNN_PATH, the dynamic loader's path, python's site-packages) lives in TypeScript
// (src/cudnn.ts), which hands this loader one candidate at a time; the first candidate that
// opens decides: it must be cuDNN 9 and export every entry point of cudnn_api.h, or the reason
// says which check it failed. Compiled in every build (dlopen needs no CUDA), so the failure
// paths are tested on machines without a GPU.
#pragma once
#include <string>
#include <vector>

#include "bench/cudnn_api.h"

namespace cn::cudnn {

struct LoadResult {
  // "opened": the library is loaded and complete; "absent": dlopen failed (try the next
  // candidate); "rejected": it opened but is the wrong version or lacks a symbol (final).
  std::string outcome;
  std::string path;
  std::string version;  // "9.1.0", when cudnnGetVersion was found
  double version_number = 0;
  std::string reason;   // one line: the dlopen error, or why it was rejected
};

// Tries one candidate path (a file, or a name the dynamic loader resolves). `preload` names
// libraries opened first with RTLD_GLOBAL, ignoring failures (cuBLAS beside a pip cuDNN).
// After one candidate was opened, later calls return that result without opening anything.
LoadResult try_load(const std::string& path, const std::vector<std::string>& preload);

// The loaded API, or null when no candidate was opened yet.
const Api* api();

// 90100 -> "9.1.0"; 8907 -> "8.9.7".
std::string version_text(size_t v);

}  // namespace cn::cudnn
