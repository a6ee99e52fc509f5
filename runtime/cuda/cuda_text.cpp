// Text encoder on the GPU (contract in cuda_text.h). Tested by tests/gpu/text_encoder_test.cpp (vs the CPU
// executor and the transformers fixtures).
#include "runtime/cuda/cuda_text.h"

#include <cmath>
#include <string>

#include "base/error.h"

namespace diffrt {

TextEmbeds encode_ids_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                           const std::vector<int32_t>& ids, int batch, int len) {
  if (!mf.text_encoder.present()) fail(ErrorCode::InvalidArgument, "this model file has no text encoder");
  const Graph& g = mf.text_encoder.graph;
  if (batch < 1 || len < 1 || ids.size() != size_t(batch) * size_t(len))
    fail(ErrorCode::InvalidArgument, "token ids do not match [" + std::to_string(batch) + ", " + std::to_string(len) + "]");
  PlanInputs in;
  in.n = batch; in.h = 1; in.w = 1; in.seq_len = len;
  CudaExecutor ex(mf, weights, ctx, g, in);
  TextEmbeds e;
  e.batch = batch; e.len = len; e.dim = g.out_channels;
  e.data.resize(ex.plan().shapes[size_t(g.output)].numel());
  GraphInputs gi;
  gi.input_ids = ids.data();
  ex.run(gi, e.data.data());
  for (float v : e.data)
    if (!std::isfinite(v))
      fail(ErrorCode::Unsupported, std::string("text encoder produced NaN/Inf in ") + dtype_name(ex.dtype()) +
                                       (ex.dtype() == DType::F16 ? ": the activations overflow fp16; re-convert with "
                                                                   "--text-encoder-dtype fp32 or bf16, or encode with "
                                                                   "--device cpu"
                                                                 : ""));
  return e;
}

}  // namespace diffrt
