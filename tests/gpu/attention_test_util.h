// Shared by attention_test.cpp and attention_causal_test.cpp: random q/k/v (separate buffers, or one packed QKV
// buffer) uploaded for an AttentionParams, and one attention_cuda run checked against attention_ref.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"
#include "tests/gpu/gpu_test_util.h"

namespace diffrt::test {

// The host inputs (rounded to the dtype, as uploaded) and the device buffers p points at.
struct AttentionInputs {
  std::vector<float> hq, hk, hv, hqkv;
  std::vector<DevTensor> keep;
};

// Sets p's q/k/v and their strides for hd = heads * head_dim: packed, one [b, lq, 3*hd] buffer (random_normal(seed));
// else separate [b, lq|lkv, hd] buffers (seeds seed, seed + 1, seed + 2), each `off` elements past an aligned base;
// edit_v, when given, changes V before it is rounded and uploaded.
inline AttentionInputs upload_attention_inputs(AttentionParams& p, DType t, bool packed, size_t off, uint32_t seed,
                                               const std::function<void(std::vector<float>&)>& edit_v = {}) {
  const int hd = p.heads * p.head_dim;
  AttentionInputs in;
  if (packed) {
    p.ldq = p.ldk = p.ldv = 3 * hd;
    in.hqkv = random_normal(size_t(p.batch) * p.lq * 3 * hd, seed);
    in.keep.push_back(upload_rounded(in.hqkv, t));
    char* base = static_cast<char*>(in.keep[0].ptr());
    const size_t es = dtype_size(t);
    p.q = base;
    p.k = base + size_t(hd) * es;
    p.v = base + size_t(2 * hd) * es;
  } else {
    p.ldq = p.ldk = p.ldv = hd;
    in.hq = random_normal(size_t(p.batch) * p.lq * hd, seed);
    in.hk = random_normal(size_t(p.batch) * p.lkv * hd, seed + 1);
    in.hv = random_normal(size_t(p.batch) * p.lkv * hd, seed + 2);
    if (edit_v) edit_v(in.hv);
    in.keep.push_back(upload_rounded(in.hq, t, off));
    in.keep.push_back(upload_rounded(in.hk, t, off));
    in.keep.push_back(upload_rounded(in.hv, t, off));
    p.q = in.keep[0].ptr();
    p.k = in.keep[1].ptr();
    p.v = in.keep[2].ptr();
  }
  return in;
}

// Runs p (inputs from upload_attention_inputs) on the GPU into a poisoned [b * lq, ldo] output `off` elements past
// an aligned base (smem_limit != 0: with the tiles of a GPU with that opt-in shared memory per block), and compares
// the hd valid columns of every row with attention_ref on the host inputs; the gap columns must still hold the 0xFF
// poison.
inline void expect_attention_matches_ref(AttentionParams p, const AttentionInputs& in, size_t off, size_t smem_limit,
                                         const std::string& what) {
  const int hd = p.heads * p.head_dim;
  const size_t out_count = size_t(p.batch) * p.lq * p.ldo;
  DevTensor dout(out_count, p.dtype, off);
  dout.poison();
  p.o = dout.ptr();
  if (smem_limit)
    attention_cuda_with_smem_limit(p, nullptr, smem_limit);
  else
    attention_cuda(p, nullptr);
  sync_check();

  std::vector<float> ref(out_count, 0.0f);
  AttentionParams r = p;
  r.dtype = DType::F32;
  if (!in.hqkv.empty()) {
    r.q = in.hqkv.data();
    r.k = in.hqkv.data() + hd;
    r.v = in.hqkv.data() + 2 * hd;
  } else {
    r.q = in.hq.data();
    r.k = in.hk.data();
    r.v = in.hv.data();
  }
  r.o = ref.data();
  attention_ref(r);
  expect_strided_output_ok(dout, ref, size_t(p.batch) * p.lq, p.ldo, hd, what);
}

}  // namespace diffrt::test
