// The one error type native code throws. Its kind picks the JavaScript class the addon raises
// (ShapeError, DeviceError, ...); the message already names the op, the argument, what was
// expected and what was received. Nothing in native code aborts the process.
#pragma once
#include <stdexcept>
#include <string>

namespace cn {

enum class ErrorKind { Shape, Device, Disposed, OutOfMemory, Cuda, Format, Compile, Internal };

inline const char* error_class_name(ErrorKind k) {
  switch (k) {
    case ErrorKind::Shape: return "ShapeError";
    case ErrorKind::Device: return "DeviceError";
    case ErrorKind::Disposed: return "DisposedError";
    case ErrorKind::OutOfMemory: return "OutOfMemoryError";
    case ErrorKind::Cuda: return "CudaError";
    case ErrorKind::Format: return "FormatError";
    case ErrorKind::Compile: return "CompileError";
    default: return "Error";
  }
}

struct Error : std::runtime_error {
  ErrorKind kind;
  std::string cuda_name;  // e.g. "cudaErrorIllegalAddress" for ErrorKind::Cuda
  double bytes_asked = 0, bytes_free = 0;  // for ErrorKind::OutOfMemory
  std::string device;                      // the device involved, when there is one
  std::string log;                         // the compiler's log, for ErrorKind::Compile
  Error(ErrorKind k, const std::string& msg) : std::runtime_error(msg), kind(k) {}
};

[[noreturn]] inline void fail(ErrorKind k, const std::string& msg) { throw Error(k, msg); }

}  // namespace cn
