// embedding cases of diffrt_kernel_bench (CLIP text encoder; minimal bytes B, FLOPs F; s = dtype size):
//   embedding    y [B, 77, C] = token_table[ids] + pos_table (CLIP, vocab 49408).  B = (2 B 77 C + 77 C) s
//                + 4 B 77 (ids), F = 0.  impls: diffrt (embedding_cuda); judged against COPY.
#include <cstdint>
#include <string>
#include <vector>

#include "bench/kernels/harness.cuh"
#include "kernels/embedding/embedding.h"

namespace bench {

void add_embedding_cases(std::vector<Case>& cases, const Options& o) {
  struct Emb { const char* name; int batch, c; };
  const Emb embs[] = {{"clip_T77x768_B2_V49408", 2, 768}, {"clip_T77x1024_B2_V49408", 2, 1024}};
  for (DType t : dtypes_for(o, kHalfAndFloat))
    for (const Emb& e : embs)
      cases.push_back({"embedding", e.name, diffrt::dtype_name(t), [=](Ctx& c) {
        const int vocab = 49408, l = 77;
        bench::DevArray tok(size_t(vocab) * e.c, t, 93), pos(size_t(l) * e.c, t, 94), y(size_t(e.batch) * l * e.c, t, 95);
        std::vector<int32_t> ids(size_t(e.batch) * l);
        for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919 + 49406) % vocab);
        diffrt::DeviceBuffer dids(ids.size() * sizeof(int32_t));
        DIFFRT_CUDA_CHECK(cudaMemcpy(dids.get(), ids.data(), ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
        diffrt::EmbeddingParams p;
        p.ids = static_cast<const int32_t*>(dids.get()); p.token_table = tok.get(); p.pos_table = pos.get(); p.y = y.get();
        p.n = e.batch; p.l = l; p.c = e.c; p.vocab = vocab; p.max_positions = l; p.dtype = t;
        const double bytes = (2.0 * e.batch * l * e.c + double(l) * e.c) * diffrt::dtype_size(t) + 4.0 * e.batch * l;
        c.measure("diffrt", 0, bytes, [&] { diffrt::embedding_cuda(p, c.stream); });
      }});
}

}  // namespace bench
