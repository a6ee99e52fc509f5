// conv_batch_chunks (kernels/conv/conv.h): how the CUDA conv splits a batch for cuDNN's 32-bit tensor
// descriptors. Pure arithmetic, so it is tested here on the CPU: the real case the issue names (a batch-16 SD VAE
// decode at 1024x1024: 16 x 1024 x 1024 x 128 = 2^31 elements), chunks covering the batch exactly, each chunk
// within the limit, near-equal sizes (at most two plan shapes), the explicitly padded input counted, and the
// refusals (one image or the filter above the limit, bad shapes).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "base/error.h"
#include "kernels/conv/conv.h"

using namespace diffrt;

namespace {

Conv2dParams conv(int n, int h, int w, int cin, int cout, int k = 3, int stride = 1, int pt = 1, int pl = 1, int pb = 1,
                  int pr = 1) {
  Conv2dParams p;
  p.n = n; p.h = h; p.w_in = w; p.cin = cin; p.cout = cout; p.kh = p.kw = k; p.stride = stride;
  p.pad_top = pt; p.pad_left = pl; p.pad_bottom = pb; p.pad_right = pr;
  return p;
}

// The largest tensor of one chunk of `count` images, computed independently of the implementation.
int64_t largest_tensor(const Conv2dParams& p, int count) {
  const bool asym = p.pad_top != p.pad_bottom || p.pad_left != p.pad_right;
  const int64_t ih = asym ? p.h + p.pad_top + p.pad_bottom : p.h, iw = asym ? p.w_in + p.pad_left + p.pad_right : p.w_in;
  const int64_t ho = conv_out_dim(p.h, p.kh, p.stride, p.pad_top, p.pad_bottom);
  const int64_t wo = conv_out_dim(p.w_in, p.kw, p.stride, p.pad_left, p.pad_right);
  return std::max(int64_t(count) * ih * iw * p.cin, int64_t(count) * ho * wo * p.cout);
}

void check_chunks(const Conv2dParams& p, int64_t limit, size_t want_chunks) {
  const std::vector<ConvBatchChunk> c = conv_batch_chunks(p, limit);
  ASSERT_EQ(c.size(), want_chunks) << "n=" << p.n << " limit=" << limit;
  int next = 0;
  std::set<int> sizes;
  for (size_t i = 0; i < c.size(); ++i) {
    EXPECT_EQ(c[i].first, next);
    EXPECT_GE(c[i].count, 1);
    EXPECT_LE(largest_tensor(p, c[i].count), limit) << "chunk " << i;
    if (i > 0) {
      EXPECT_LE(c[i].count, c[i - 1].count) << "larger chunks first";
    }
    sizes.insert(c[i].count);
    next += c[i].count;
  }
  EXPECT_EQ(next, p.n) << "chunks must cover the batch exactly";
  EXPECT_LE(sizes.size(), 2u) << "sizes differ by at most one: at most two cuDNN plans";
  if (sizes.size() == 2) {
    EXPECT_EQ(*sizes.rbegin() - *sizes.begin(), 1);
  }
  // The fewest chunks: one chunk fewer would need a chunk above the limit.
  if (c.size() > 1) {
    EXPECT_GT(largest_tensor(p, (p.n + int(c.size()) - 2) / int(c.size() - 1)), limit);
  }
}

}  // namespace

TEST(ConvSplit, WholeBatchWhenItFits) {
  const Conv2dParams p = conv(16, 128, 128, 512, 512);  // SD VAE mid block at 1024^2 / 8, batch 16
  EXPECT_EQ(conv_batch_chunks(p), (std::vector<ConvBatchChunk>{{0, 16}}));
  EXPECT_EQ(conv_batch_chunks(conv(1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0)), (std::vector<ConvBatchChunk>{{0, 1}}));
}

TEST(ConvSplit, SdVaeDecodeBatch16At1024) {
  // The VAE's last up block: 1024 x 1024 x 128 -> 128 (3x3): 2^27 elements per image, 2^31 for 16 images: one
  // element over cuDNN's limit. Two chunks of 8 (2^30 each).
  const Conv2dParams p = conv(16, 1024, 1024, 128, 128);
  EXPECT_EQ(conv_batch_chunks(p), (std::vector<ConvBatchChunk>{{0, 8}, {8, 8}}));
  check_chunks(p, kCudnnMaxTensorElems, 2);
  // 256 -> 128 channels at 1024^2 (the first conv of that block): input 2^28 per image, 7 images per chunk at most.
  const Conv2dParams q = conv(16, 1024, 1024, 256, 128);
  EXPECT_EQ(conv_batch_chunks(q), (std::vector<ConvBatchChunk>{{0, 6}, {6, 5}, {11, 5}}));
  check_chunks(q, kCudnnMaxTensorElems, 3);
  // Batch 15 of 2^27-element images fits (15 * 2^27 < 2^31).
  EXPECT_EQ(conv_batch_chunks(conv(15, 1024, 1024, 128, 128)).size(), 1u);
}

TEST(ConvSplit, ChunksCoverTheBatchWithinTheLimit) {
  for (int n : {1, 2, 3, 5, 7, 16, 31, 100})
    for (int64_t per_chunk : {1, 2, 3, 4, 7, 64}) {
      const Conv2dParams p = conv(n, 8, 8, 4, 4);  // 256 elements per image in and out
      const size_t want = size_t((n + per_chunk - 1) / per_chunk);
      check_chunks(p, 256 * per_chunk, want);
      check_chunks(p, 256 * per_chunk + 255, want);  // a limit between multiples rounds down
    }
}

TEST(ConvSplit, CountsTheLargerOfInputAndOutputAndThePaddedInput) {
  // Output larger than the input: 8x8x4 -> 8x8x64.
  check_chunks(conv(10, 8, 8, 4, 64), 8 * 8 * 64 * 3, 4);
  // Input larger: stride 2 halves the output.
  check_chunks(conv(10, 16, 16, 16, 16, 3, 2), 16 * 16 * 16 * 2, 5);
  // Asymmetric padding (Downsample2D padding=0): the padded input 17x17x32 is what cuDNN sees.
  const Conv2dParams a = conv(6, 16, 16, 32, 32, 3, 2, 0, 0, 1, 1);
  EXPECT_EQ(conv_padded_input_elems(a, 2), uint64_t(2 * 17 * 17 * 32));
  EXPECT_EQ(conv_padded_input_elems(conv(6, 16, 16, 32, 32), 2), 0u);  // symmetric: cuDNN pads
  EXPECT_EQ(conv_batch_chunks(a, 17 * 17 * 32 * 2).size(), 3u);
  EXPECT_EQ(conv_batch_chunks(a, 16 * 16 * 32 * 2).size(), 6u);  // the unpadded size would not be enough
  check_chunks(a, 17 * 17 * 32 * 2, 3);
}

TEST(ConvSplit, RefusesWhatCannotBeSplit) {
  // One image above the limit: a clear Unsupported error, not a cuDNN failure later.
  try {
    conv_batch_chunks(conv(1, 8192, 8192, 64, 64));  // 2^32 elements in one image
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    EXPECT_NE(std::string(e.what()).find("32-bit"), std::string::npos) << e.what();
  }
  EXPECT_THROW(conv_batch_chunks(conv(2, 8, 8, 4, 4), 100), Error);  // 256 per image > 100
  // The filter cannot be split.
  EXPECT_THROW(conv_batch_chunks(conv(1, 4, 4, 8, 8, 3), 8 * 9 * 8 - 1), Error);
  // Products that overflow 64 bits are still refused cleanly.
  EXPECT_THROW(conv_batch_chunks(conv(1, 2000000000, 2000000000, 2000000000, 4, 1, 1, 0, 0, 0, 0)), Error);
  // Bad shapes.
  EXPECT_THROW(conv_batch_chunks(conv(0, 8, 8, 4, 4)), Error);
  EXPECT_THROW(conv_batch_chunks(conv(1, 1, 1, 4, 4, 5, 1, 0, 0, 0, 0)), Error);  // kernel larger than the input
  EXPECT_THROW(conv_batch_chunks(conv(1, 8, 8, 4, 4), 0), Error);
}
