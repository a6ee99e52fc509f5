// Batch chunks for cuDNN's 32-bit tensor descriptors (contract in conv.h). Pure arithmetic: tested on the CPU
// by tests/conv_split_test.cpp, used by CudnnConv::forward (conv_cudnn.cu) and the device memory planner
// (runtime/cuda_plan.cpp, which sizes the padding scratch per chunk).
#include <algorithm>
#include <string>

#include "base/error.h"
#include "kernels/conv/conv.h"

namespace diffrt {
namespace {

bool asymmetric(const Conv2dParams& p) { return p.pad_top != p.pad_bottom || p.pad_left != p.pad_right; }

void check_shape(const Conv2dParams& p) {
  DIFFRT_REQUIRE(p.n > 0 && p.h > 0 && p.w_in > 0 && p.cin > 0 && p.cout > 0 && p.kh > 0 && p.kw > 0 &&
                     p.stride > 0 && p.pad_top >= 0 && p.pad_left >= 0 && p.pad_bottom >= 0 && p.pad_right >= 0,
                 ErrorCode::InvalidArgument, "conv: bad shape or padding");
  DIFFRT_REQUIRE(int64_t(p.h) + p.pad_top + p.pad_bottom >= p.kh && int64_t(p.w_in) + p.pad_left + p.pad_right >= p.kw,
                 ErrorCode::InvalidArgument, "conv: kernel larger than the padded input");
}

}  // namespace

uint64_t conv_padded_input_elems(const Conv2dParams& p, int count) {
  if (!asymmetric(p) || count <= 0) return 0;
  return uint64_t(count) * uint64_t(int64_t(p.h) + p.pad_top + p.pad_bottom) *
         uint64_t(int64_t(p.w_in) + p.pad_left + p.pad_right) * uint64_t(p.cin);
}

std::vector<ConvBatchChunk> conv_batch_chunks(const Conv2dParams& p, int64_t max_elems) {
  check_shape(p);
  DIFFRT_REQUIRE(max_elems > 0, ErrorCode::InvalidArgument, "conv: max_elems must be positive");
  const int64_t ho = conv_out_dim(p.h, p.kh, p.stride, p.pad_top, p.pad_bottom);
  const int64_t wo = conv_out_dim(p.w_in, p.kw, p.stride, p.pad_left, p.pad_right);
  // Every factor is below 2^31, so each product of two fits in 63 bits; three or four factors can overflow, so
  // the per-image sizes are compared against the limit step by step (a size above it is "too large" anyway).
  auto prod_capped = [max_elems](std::initializer_list<int64_t> f) {
    int64_t v = 1;
    for (int64_t x : f) {
      if (x != 0 && v > max_elems / x) return max_elems + 1;  // above the limit: the exact value does not matter
      v *= x;
    }
    return v;
  };
  const int64_t in_h = asymmetric(p) ? int64_t(p.h) + p.pad_top + p.pad_bottom : p.h;
  const int64_t in_w = asymmetric(p) ? int64_t(p.w_in) + p.pad_left + p.pad_right : p.w_in;
  const int64_t per_image = std::max(prod_capped({in_h, in_w, p.cin}), prod_capped({ho, wo, p.cout}));
  const int64_t filter = prod_capped({p.cout, p.kh, p.kw, p.cin});
  const std::string shape = std::to_string(p.h) + "x" + std::to_string(p.w_in) + "x" + std::to_string(p.cin) + " -> " +
                            std::to_string(ho) + "x" + std::to_string(wo) + "x" + std::to_string(p.cout);
  DIFFRT_REQUIRE(filter <= max_elems, ErrorCode::Unsupported,
                 "conv: the filter has more than " + std::to_string(max_elems) +
                     " elements, beyond cuDNN's 32-bit tensor sizes (" + shape + ")");
  DIFFRT_REQUIRE(per_image <= max_elems, ErrorCode::Unsupported,
                 "conv: one image has more than " + std::to_string(max_elems) +
                     " elements in a tensor, beyond cuDNN's 32-bit tensor sizes (" + shape + "); use a smaller image");
  const int64_t per_chunk = max_elems / per_image;  // >= 1
  const int64_t n = p.n;
  const int64_t k = (n + per_chunk - 1) / per_chunk;  // fewest chunks
  std::vector<ConvBatchChunk> out;
  out.reserve(size_t(k));
  const int64_t base = n / k, extra = n % k;
  int64_t first = 0;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t c = base + (i < extra ? 1 : 0);
    out.push_back({int(first), int(c)});
    first += c;
  }
  return out;
}

}  // namespace diffrt
