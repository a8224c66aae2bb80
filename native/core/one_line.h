// A message from a C library (dlerror, NVRTC, cuDNN) on one line: newlines become spaces, and a
// null pointer becomes "unknown error", so it fits the one-line reasons of buildInfo().
#pragma once
#include <string>

namespace cn {

inline std::string one_line(const char* s) {
  std::string out = s ? s : "unknown error";
  for (char& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  return out;
}

}  // namespace cn
