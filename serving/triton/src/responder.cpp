#include "responder.h"

#include <cstring>

namespace diffrt_triton {

namespace {

struct ResponseGuard {  // deletes a response that was not handed to Triton
  TRITONBACKEND_Response* r = nullptr;
  ~ResponseGuard() {
    if (r) TRITONSERVER_ErrorDelete(TRITONBACKEND_ResponseDelete(r));
  }
  TRITONBACKEND_Response* release() {
    TRITONBACKEND_Response* x = r;
    r = nullptr;
    return x;
  }
};

// Adds output `name` of `bytes` bytes to the response and returns its host buffer.
Error add_output(TRITONBACKEND_Response* r, const char* name, TRITONSERVER_DataType dtype, const int64_t* shape,
                 uint32_t dims, uint64_t bytes, void** buffer) {
  TRITONBACKEND_Output* out = nullptr;
  DIFFRT_TRITON_TRY(TRITONBACKEND_ResponseOutput(r, &out, name, dtype, shape, dims));
  TRITONSERVER_MemoryType mt = TRITONSERVER_MEMORY_CPU;
  int64_t mt_id = 0;
  DIFFRT_TRITON_TRY(TRITONBACKEND_OutputBuffer(out, buffer, bytes, &mt, &mt_id));
  if (mt == TRITONSERVER_MEMORY_GPU)
    return internal_error(std::string("output ") + name + ": the server gave a GPU buffer for a host output");
  return nullptr;
}

Error add_int32(TRITONBACKEND_Response* r, const char* name, int32_t v) {
  const int64_t shape[1] = {1};
  void* buf = nullptr;
  DIFFRT_TRITON_TRY(add_output(r, name, TRITONSERVER_TYPE_INT32, shape, 1, 4, &buf));
  std::memcpy(buf, &v, 4);
  return nullptr;
}

}  // namespace

Responder::Responder(TRITONBACKEND_Request* request, bool decoupled, RequestedOutputs outputs)
    : request_(request), decoupled_(decoupled), outputs_(outputs) {
  if (decoupled_) {
    Error e(TRITONBACKEND_ResponseFactoryNew(&factory_, request_));
    if (e) {
      factory_ = nullptr;
      DIFFRT_TRITON_LOG(TRITONSERVER_LOG_ERROR, "cannot create a response factory: " + message_of(e.get()));
    }
  }
}

Responder::~Responder() {
  if (factory_) {
    if (!final_sent_)  // never leave a decoupled stream open
      TRITONSERVER_ErrorDelete(TRITONBACKEND_ResponseFactorySendFlags(factory_, TRITONSERVER_RESPONSE_COMPLETE_FINAL));
    TRITONSERVER_ErrorDelete(TRITONBACKEND_ResponseFactoryDelete(factory_));
  }
}

Error Responder::new_response(TRITONBACKEND_Response** r) {
  if (decoupled_) {
    if (!factory_) return internal_error("no response factory for this request");
    return Error(TRITONBACKEND_ResponseNewFromFactory(r, factory_));
  }
  return Error(TRITONBACKEND_ResponseNew(r, request_));
}

bool Responder::cancelled() const {
  bool c = false;
  Error e(TRITONBACKEND_RequestIsCancelled(request_, &c));
  if (!e && c) return true;
  if (factory_) {
    bool fc = false;
    Error fe(TRITONBACKEND_ResponseFactoryIsCancelled(factory_, &fc));
    if (!fe && fc) return true;
  }
  return false;
}

Error Responder::send_progress(int step, int total) {
  if (!decoupled_ || !(outputs_.step || outputs_.total)) return nullptr;
  ResponseGuard g;
  DIFFRT_TRITON_TRY(new_response(&g.r));
  if (outputs_.step) DIFFRT_TRITON_TRY(add_int32(g.r, "STEP", step));
  if (outputs_.total) DIFFRT_TRITON_TRY(add_int32(g.r, "TOTAL", total));
  return Error(TRITONBACKEND_ResponseSend(g.release(), 0, nullptr));
}

Error Responder::send_images(const std::vector<float>& images, const ImageShape& s, int total) {
  ResponseGuard g;
  DIFFRT_TRITON_TRY(new_response(&g.r));
  if (outputs_.images) {
    const int64_t shape[4] = {s.n, s.h, s.w, s.c};
    void* buf = nullptr;
    DIFFRT_TRITON_TRY(add_output(g.r, "IMAGES", TRITONSERVER_TYPE_UINT8, shape, 4, images.size(), &buf));
    uint8_t* dst = static_cast<uint8_t*>(buf);
    for (size_t i = 0; i < images.size(); ++i) dst[i] = to_u8(images[i]);
  }
  // A non-decoupled response answers every requested output; the final values of STEP and TOTAL.
  if (!decoupled_ && outputs_.step) DIFFRT_TRITON_TRY(add_int32(g.r, "STEP", total));
  if (!decoupled_ && outputs_.total) DIFFRT_TRITON_TRY(add_int32(g.r, "TOTAL", total));
  final_sent_ = true;  // even if the send fails, the response and its FINAL flag are Triton's now
  return Error(TRITONBACKEND_ResponseSend(g.release(), TRITONSERVER_RESPONSE_COMPLETE_FINAL, nullptr));
}

void Responder::send_error(TRITONSERVER_Error* error) {
  if (final_sent_) return;
  TRITONBACKEND_Response* r = nullptr;
  Error e = new_response(&r);
  if (!e) {
    final_sent_ = true;
    e.reset(TRITONBACKEND_ResponseSend(r, TRITONSERVER_RESPONSE_COMPLETE_FINAL, error));
  }
  if (e)
    DIFFRT_TRITON_LOG(TRITONSERVER_LOG_ERROR, "cannot send the error response (" + message_of(error) +
                                                  "): " + message_of(e.get()));
}

}  // namespace diffrt_triton
