#include "triton_util.h"

#include <chrono>

namespace diffrt_triton {

TRITONSERVER_Error_Code triton_code(diffrt_status status) {
  switch (status) {
    case DIFFRT_E_INVALID_ARGUMENT: return TRITONSERVER_ERROR_INVALID_ARG;
    case DIFFRT_E_UNSUPPORTED: return TRITONSERVER_ERROR_UNSUPPORTED;
    // Out of memory is a fact of this server (its memory limit, the device's free memory), not a
    // malformed request: UNAVAILABLE, with the bytes needed in diffrt's message.
    case DIFFRT_E_OUT_OF_MEMORY: return TRITONSERVER_ERROR_UNAVAILABLE;
    case DIFFRT_E_CANCELLED: return TRITONSERVER_ERROR_CANCELLED;
    case DIFFRT_E_IO: return TRITONSERVER_ERROR_NOT_FOUND;
    default: return TRITONSERVER_ERROR_INTERNAL;
  }
}

Error diffrt_error(diffrt_status status, const std::string& what) {
  std::string msg = diffrt_last_error();
  if (msg.empty()) msg = "failed";
  return make_error(triton_code(status), (what.empty() ? "" : what + ": ") + msg + " (" + diffrt_status_name(status) + ")");
}

std::string message_of(TRITONSERVER_Error* e) {
  if (!e) return "";
  const char* m = TRITONSERVER_ErrorMessage(e);
  return m ? m : "";
}

void log(TRITONSERVER_LogLevel level, const char* file, int line, const std::string& msg) {
  if (!TRITONSERVER_LogIsEnabled(level)) return;
  TRITONSERVER_Error* e = TRITONSERVER_LogMessage(level, file, line, msg.c_str());
  if (e) TRITONSERVER_ErrorDelete(e);
}

uint64_t now_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}

}  // namespace diffrt_triton
