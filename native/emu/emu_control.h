// Knobs and counters of the CUDA emulation (native/emu/emu.cc), for the harness only.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cn_emu {

// The order in which the scheduler resumes a block's runnable threads: by thread index,
// reversed, or shuffled (seeded; reshuffled at every pass).
enum class Schedule { Forward, Reverse, Shuffle };
void set_schedule(Schedule s, uint64_t seed = 0);
const char* schedule_name(Schedule s);

// Tunables (launcher constants prep.py made run-time values): names, set, reset.
std::vector<std::string> tunable_names();
bool set_tunable(const std::string& name, int64_t value);  // false: no such tunable
void reset_tunables();                                      // back to the source's values

struct Stats {
  uint64_t launches = 0, blocks = 0, threads = 0, barriers = 0, warp_ops = 0;
  uint64_t bytes_allocated = 0;  // cudaMalloc'd and not yet freed
};
Stats stats();

// Runs everything queued (what cudaStreamSynchronize does).
void drain();

}  // namespace cn_emu
