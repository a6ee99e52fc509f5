// activation cases of diffrt_kernel_bench (CLIP text encoder MLP; minimal bytes B, FLOPs F; s = dtype size):
//   activation   y = act(x) over [rows, F] (CLIP MLP: quick_gelu at F = 3072 for SD 1.x, gelu at 4096 for
//                SD 2.x).  B = 2 rows F s, F = 0.  impls: diffrt (activation_cuda); judged against COPY.
#include <string>
#include <vector>

#include "bench/kernels/harness.cuh"
#include "kernels/activation/activation.h"

namespace bench {

void add_activation_cases(std::vector<Case>& cases, const Options& o) {
  struct Act { const char* name; long long rows; int f; diffrt::ActivationKind kind; };
  const Act acts[] = {{"clip_mlp_T77x3072_B2_quick_gelu", 2 * 77, 3072, diffrt::ActivationKind::QuickGelu},
                      {"clip_mlp_T77x4096_B2_gelu", 2 * 77, 4096, diffrt::ActivationKind::Gelu}};
  for (DType t : dtypes_for(o, kHalfAndFloat))
    for (const Act& a : acts)
      cases.push_back({"activation", a.name, diffrt::dtype_name(t), [=](Ctx& c) {
        const size_t count = size_t(a.rows) * a.f;
        bench::DevArray x(count, t, 91, -4.f, 4.f), y(count, t, 92);
        diffrt::ActivationParams p;
        p.x = x.get(); p.y = y.get(); p.count = (long long)count; p.kind = a.kind; p.dtype = t;
        c.measure("diffrt", 0, 2.0 * count * diffrt::dtype_size(t), [&] { diffrt::activation_cuda(p, c.stream); });
      }});
}

}  // namespace bench
