// Typed errors. Library code throws these and never exits; the CLI and the C API turn them into
// exit codes / error codes plus the message.
#pragma once
#include <stdexcept>
#include <string>

namespace diffrt {

enum class ErrorCode {
  InvalidArgument = 1,  // bad CLI/API argument
  InvalidModel,         // model file, checkpoint or config rejected
  Unsupported,          // valid input we do not support (names the field and value)
  Io,                   // open/read/write/rename failed
  OutOfMemory,          // host or device allocation failed (message says how much)
  Cuda,                 // CUDA/cuBLAS/cuDNN failure
  Cancelled,            // cancelled by a progress callback
  Internal,
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  ErrorCode code() const { return code_; }
 private:
  ErrorCode code_;
};

[[noreturn]] inline void fail(ErrorCode code, const std::string& msg) { throw Error(code, msg); }
#define DIFFRT_REQUIRE(cond, code, msg) \
  do { if (!(cond)) ::diffrt::fail((code), (msg)); } while (0)

}  // namespace diffrt
