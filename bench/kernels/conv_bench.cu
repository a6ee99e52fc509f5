// conv cases of diffrt_kernel_bench (minimal bytes B, FLOPs F; s = dtype size):
//   conv         NHWC x [N, H, W, Cin] * KRSC w [Cout, k, k, Cin] + bias -> y [N, Ho, Wo, Cout].
//                F = 2 N Ho Wo Cout k k Cin, B = (N H W Cin + Cout k k Cin + N Ho Wo Cout + Cout) s.
//                impls: diffrt_cudnn (CudnnConv, exhaustive algorithm search: this IS diffrt's conv path),
//                cudnn_heuristic (same, cuDNN heuristic's first algorithm). fp32 without TF32.
#include <cmath>
#include <string>
#include <vector>

#include "bench/kernels/harness.cuh"
#include "kernels/conv/conv_cuda.h"

namespace bench {

void add_conv_cases(std::vector<Case>& cases, const Options& o) {
  struct C { std::string name; int h, w, cin, cout, k, stride, pt, pl, pb, pr; std::vector<int> batches; };
  const std::vector<int> cifar_b = {1, 256}, celeb_b = {1, 16}, sd_b = {2};
  const std::vector<C> cs = {
      {"cifar_conv_in_32x32_3to128", 32, 32, 3, 128, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_res_32x32_128to128", 32, 32, 128, 128, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_down_32x32_128_s2", 32, 32, 128, 128, 3, 2, 0, 0, 1, 1, cifar_b},
      {"cifar_res_16x16_128to256", 16, 16, 128, 256, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_res_16x16_256to256", 16, 16, 256, 256, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_res_8x8_256to256", 8, 8, 256, 256, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_res_4x4_256to256", 4, 4, 256, 256, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_upres_16x16_512to256", 16, 16, 512, 256, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_upres_32x32_384to128", 32, 32, 384, 128, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_shortcut1x1_32x32_384to128", 32, 32, 384, 128, 1, 1, 0, 0, 0, 0, cifar_b},
      {"cifar_conv_out_32x32_128to3", 32, 32, 128, 3, 3, 1, 1, 1, 1, 1, cifar_b},
      {"celebahq_res_256x256_128to128", 256, 256, 128, 128, 3, 1, 1, 1, 1, 1, celeb_b},
      {"celebahq_res_16x16_512to512", 16, 16, 512, 512, 3, 1, 1, 1, 1, 1, celeb_b},
      {"celebahq_res_8x8_512to512", 8, 8, 512, 512, 3, 1, 1, 1, 1, 1, celeb_b},
      {"sd_res_64x64_320to320", 64, 64, 320, 320, 3, 1, 1, 1, 1, 1, sd_b},
      {"sd_res_32x32_640to640", 32, 32, 640, 640, 3, 1, 1, 1, 1, 1, sd_b},
      {"sd_res_16x16_1280to1280", 16, 16, 1280, 1280, 3, 1, 1, 1, 1, 1, sd_b},
      {"sd_res_8x8_1280to1280", 8, 8, 1280, 1280, 3, 1, 1, 1, 1, 1, sd_b},
  };
  const bool quick = o.quick;
  for (DType t : dtypes_for(o, kHalfAndFloat))
    for (const C& cc : cs)
      for (int n : cc.batches) {
        cases.push_back({"conv", cc.name + "_N" + std::to_string(n), diffrt::dtype_name(t), [=](Ctx& c) {
          const int ho = diffrt::conv_out_dim(cc.h, cc.k, cc.stride, cc.pt, cc.pb);
          const int wo = diffrt::conv_out_dim(cc.w, cc.k, cc.stride, cc.pl, cc.pr);
          const size_t nx = size_t(n) * cc.h * cc.w * cc.cin, nw = size_t(cc.cout) * cc.k * cc.k * cc.cin;
          const size_t ny = size_t(n) * ho * wo * cc.cout;
          const float wscale = 1.0f / std::sqrt(float(cc.k * cc.k * cc.cin));
          bench::DevArray x(nx, t, 41), w(nw, t, 42, -wscale, wscale), bias(cc.cout, t, 43), y(ny, t, 44);
          diffrt::Conv2dParams p;
          p.x = x.get(); p.w = w.get(); p.bias = bias.get(); p.y = y.get();
          p.n = n; p.h = cc.h; p.w_in = cc.w; p.cin = cc.cin; p.cout = cc.cout; p.kh = p.kw = cc.k; p.stride = cc.stride;
          p.pad_top = cc.pt; p.pad_left = cc.pl; p.pad_bottom = cc.pb; p.pad_right = cc.pr; p.dtype = t;
          const double flops = 2.0 * n * ho * wo * double(cc.cout) * cc.k * cc.k * cc.cin;
          const double bytes = double(nx + nw + ny + cc.cout) * diffrt::dtype_size(t);
          c.measure("diffrt_cudnn", flops, bytes, [&] { c.conv_find->forward(p, c.stream); }, "CudnnConv, Find");
          if (!quick) c.measure("cudnn_heuristic", flops, bytes, [&] { c.conv_heur->forward(p, c.stream); }, "CudnnConv, heuristic");
        }});
      }
}

}  // namespace bench
