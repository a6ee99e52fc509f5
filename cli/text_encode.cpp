#include "cli/text_encode.h"

#include "base/error.h"
#ifdef DIFFRT_HAVE_CUDA
#include "runtime/cuda/cuda_text.h"
#endif

namespace diffrt::cli {

TextEncodeFn text_encoder_on(const std::string& device, const ModelFile& mf) {
  return [device, &mf](const std::vector<int32_t>& ids, int batch, int len) -> TextEmbeds {
    if (device == "cuda") {
#ifdef DIFFRT_HAVE_CUDA
      CudaContext ctx;
      CudaWeights weights(mf);
      return encode_ids_cuda(mf, weights, ctx, ids, batch, len);
#else
      fail(ErrorCode::Unsupported, "this build has no CUDA backend");
#endif
    }
    CpuWeights weights(mf);
    return encode_ids_cpu(mf, weights, ids, batch, len);
  };
}

}  // namespace diffrt::cli
