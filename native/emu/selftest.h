// The emulation's self-test kernels (selftest_kernels.cu), run by `harness --self-test`.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace emu_selftest {

struct Result {
  std::string name;
  bool ok;
  std::string detail;
};
// Semantics the harness relies on: barriers, warp shuffles, per-block poisoned shared memory,
// thread/block numbering, launch-configuration errors, schedules exposing a missing barrier.
std::vector<Result> run_semantics_checks();
// The emulated tensor-core primitives (selftest_mma.cu): cvt roundings and mma.sync layouts.
std::vector<Result> run_mma_checks();

struct FaultCase {
  std::string name;
  std::string expect;  // text the child's stderr must contain
  std::function<void()> run;
};
// Each must end the process (run in a child) with `expect` on stderr.
std::vector<FaultCase> faulting_kernels();

}  // namespace emu_selftest
