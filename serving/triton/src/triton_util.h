// Small helpers of the diffrt Triton backend: errors as values (TRITONSERVER_Error owned by a
// unique_ptr), diffrt status -> Triton error code, logging through the server's log, timestamps.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "diffrt.h"
#include "triton_api.h"

namespace diffrt_triton {

struct ErrorDeleter {
  void operator()(TRITONSERVER_Error* e) const { TRITONSERVER_ErrorDelete(e); }
};
// An owned Triton error; null means success.
using Error = std::unique_ptr<TRITONSERVER_Error, ErrorDeleter>;

inline Error make_error(TRITONSERVER_Error_Code code, const std::string& msg) {
  return Error(TRITONSERVER_ErrorNew(code, msg.c_str()));
}
inline Error invalid_arg(const std::string& msg) { return make_error(TRITONSERVER_ERROR_INVALID_ARG, msg); }
inline Error internal_error(const std::string& msg) { return make_error(TRITONSERVER_ERROR_INTERNAL, msg); }

// The Triton error code for a diffrt status (see the mapping table in serving/triton/README.md):
// bad input -> INVALID_ARG (HTTP 400), unsupported -> UNSUPPORTED, out of memory -> UNAVAILABLE,
// cancelled -> CANCELLED, the rest -> INTERNAL.
TRITONSERVER_Error_Code triton_code(diffrt_status status);
// The error of the last failed diffrt call on this thread: its code mapped by triton_code and
// "<what>: <diffrt's message> (<status name>)" ("<diffrt's message> (<status name>)" for an empty what).
Error diffrt_error(diffrt_status status, const std::string& what);

// A message for logs and clients: the error's text (or "" for null).
std::string message_of(TRITONSERVER_Error* e);

void log(TRITONSERVER_LogLevel level, const char* file, int line, const std::string& msg);
#define DIFFRT_TRITON_LOG(level, msg) ::diffrt_triton::log(level, __FILE__, __LINE__, (msg))

// Steady-clock nanoseconds, the clock Triton's statistics use.
uint64_t now_ns();

}  // namespace diffrt_triton

// Returns from the enclosing function (which returns TRITONSERVER_Error* or Error) on a Triton error.
#define DIFFRT_TRITON_TRY(expr)                                  \
  do {                                                           \
    ::diffrt_triton::Error err__((expr));                        \
    if (err__) return err__;                                     \
  } while (0)
