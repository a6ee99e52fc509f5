// Sending the responses of one request. Non-decoupled models answer once (the images, or an error);
// decoupled models (model_transaction_policy { decoupled: true }) stream one progress response per
// sampling step (STEP, TOTAL) and then a final response with the images, or a final error.
// Each response is created just before it is filled and sent (over gRPC, a response created before
// earlier ones were sent fails with "response output count mismatch").
#pragma once
#include <cstdint>
#include <vector>

#include "image_bytes.h"
#include "request_inputs.h"
#include "sample_request.h"
#include "triton_util.h"

namespace diffrt_triton {

class Responder {
 public:
  Responder(TRITONBACKEND_Request* request, bool decoupled, RequestedOutputs outputs);
  ~Responder();
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;

  // Set the outputs the client asked for (before the first send).
  void set_outputs(RequestedOutputs o) { outputs_ = o; }
  // Decoupled: one progress response (STEP = step, TOTAL = total), when the client asked for either;
  // a no-op otherwise. A failure means the client is gone: the caller stops the request.
  Error send_progress(int step, int total);
  // The final response: IMAGES uint8 [n, h, w, c] from `images` (floats in [0, 1], NHWC), rounded as
  // diffrt's PNG writer rounds; with STEP = TOTAL = total when asked for.
  Error send_images(const std::vector<float>& images, const ImageShape& shape, int total);
  // The final response carrying `error` (kept by the caller). Logged when even that cannot be sent.
  void send_error(TRITONSERVER_Error* error);
  // Whether the client cancelled the request (gRPC cancel, stream closed).
  bool cancelled() const;

 private:
  Error new_response(TRITONBACKEND_Response** r);
  TRITONBACKEND_Request* request_;
  TRITONBACKEND_ResponseFactory* factory_ = nullptr;
  bool decoupled_;
  RequestedOutputs outputs_;
  bool final_sent_ = false;
};

}  // namespace diffrt_triton
