// sched cases of diffrt_kernel_bench (minimal bytes B, FLOPs F; s = dtype size):
//   sched        one fused DDIM (eta 0, eps, clip) or DDPM (fixed_large, Philox noise) update.
//                x fp32 [B, C, H, W]; model_out [Bm, ...] in the model dtype (Bm = 2B with CFG); the next
//                model input (model dtype) is written. B = Bm C HW sm (model_out) + 2 B C HW 4 (x in/out)
//                + Bm C HW sm (model_in), sm = model dtype size; F = 0.
//                impls: diffrt (scheduler_step_cuda_ex), eager (one kernel per torch op, fp32, as diffusers'
//                step runs in eager PyTorch: casts, CFG 3 ops, x0 3 ops, clamp, update 3-5 ops, cast back).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>
#include <vector>

#include "bench/kernels/harness.cuh"
#include "bench/kernels/baseline_math.cuh"
#include "kernels/scheduler_step/scheduler_step.h"
#include "kernels/scheduler_step/scheduler_step_cuda.h"

namespace bench {
namespace {

// Eager-style elementwise kernels (one torch op each), fp32.
__global__ void ew_scale(float* y, const float* a, float s, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = a[i] * s;
}
__global__ void ew_axpy(float* y, const float* a, float alpha, const float* b, size_t n) {  // y = a + alpha b
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = a[i] + alpha * b[i];
}
__global__ void ew_clamp(float* y, const float* a, float lo, float hi, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = fminf(fmaxf(a[i], lo), hi);
}
template <class S, class D>
__global__ void ew_cast(D* y, const S* a, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    st(y, i, ld(a, i));
}

}  // namespace

void add_scheduler_step_cases(std::vector<Case>& cases, const Options& o) {
  struct S { std::string name; int b, c, h, w; bool cfg; };
  std::vector<S> ss = {
      {"cifar_3x32x32_B1", 1, 3, 32, 32, false},      {"cifar_3x32x32_B64", 64, 3, 32, 32, false},
      {"cifar_3x32x32_B256", 256, 3, 32, 32, false},  {"celebahq_3x256x256_B1", 1, 3, 256, 256, false},
      {"celebahq_3x256x256_B16", 16, 3, 256, 256, false}, {"sd_latent_4x64x64_B1_cfg", 1, 4, 64, 64, true},
      {"sd_latent_4x64x64_B8_cfg", 8, 4, 64, 64, true},
  };
  for (const char* kind : {"ddim", "ddpm"})
    for (DType t : dtypes_for(o, {DType::F32, DType::F16}))
      for (const S& s : ss) {
        cases.push_back({"sched", std::string(kind) + "_" + s.name, diffrt::dtype_name(t), [=](Ctx& c) {
          const bool ddim = std::string(kind) == "ddim";
          const int bm = s.cfg ? 2 * s.b : s.b;
          const size_t per = size_t(s.c) * s.h * s.w, nx = size_t(s.b) * per, nm = size_t(bm) * per;
          bench::DevArray model_out(nm, t, 61), x(nx, DType::F32, 62), model_in(nm, t, 63), noise(nx, DType::F32, 64);
          diffrt::SchedulerStepDeviceParams dp;
          diffrt::SchedulerStepParams& p = dp.base;
          p.x = x.as<float>(); p.b = s.b; p.h = s.h; p.w = s.w; p.c = s.c; p.cm = s.c;
          p.cfg = s.cfg; p.guidance_scale = 7.5f;
          p.kind = ddim ? diffrt::SamplerKind::Ddim : diffrt::SamplerKind::Ddpm;
          p.prediction = diffrt::PredictionType::Epsilon;
          p.variance = diffrt::VarianceType::FixedLarge;
          p.clip_sample = true;
          auto& k = p.k;
          k.timestep = 500; k.prev_timestep = ddim ? 480 : 499;
          k.alpha_prod_t = 0.25f; k.alpha_prod_prev = 0.27f; k.beta_prod_t = 0.75f; k.beta_prod_prev = 0.73f;
          k.sqrt_alpha_prod_t = 0.5f; k.sqrt_beta_prod_t = 0.8660254f;
          k.current_alpha_t = 0.99f; k.current_beta_t = 0.01f; k.x0_coeff = 0.02f; k.xt_coeff = 0.97f; k.noise_std = 0.1f;
          k.sqrt_alpha_prod_prev = 0.5196f; k.std_dev_t = 0.f; k.dir_coeff = 0.8544f;
          k.add_noise = !ddim;
          p.noise_source = ddim ? diffrt::NoiseSource::None : diffrt::NoiseSource::Philox;
          p.seed = 1234;
          dp.model_dtype = t; dp.model_out = model_out.get(); dp.model_in = model_in.get();
          const size_t sm = diffrt::dtype_size(t);
          const double bytes = double(nm) * sm * 2 + double(nx) * 4 * 2;
          c.measure("diffrt", 0, bytes, [&] { diffrt::scheduler_step_cuda_ex(dp, c.stream); DIFFRT_CUDA_CHECK_LAUNCH(); },
                    ddim ? "DDIM eta=0 eps clip, writes next input" : "DDPM fixed_large, Philox noise, writes next input");

          // Eager chain: one launch per torch op, fp32 temporaries.
          diffrt::DeviceBuffer tmp(5 * nm * sizeof(float) + nx * sizeof(float));
          float* mo = tmp.as<float>();  // model_out as fp32 [Bm]
          float* eps = mo + nm;         // [B]
          float* t1 = eps + nm;
          float* t2 = t1 + nm;
          float* x0 = t2 + nm;
          float* xf = x.as<float>();
          const float* nz = noise.as<float>();
          const unsigned gb = ew_blocks(nm);
          c.measure("eager", 0, bytes, [&] {
            cudaStream_t st = c.stream;
            const float* e = mo;
            if (t == DType::F16) ew_cast<__half, float><<<gb, 256, 0, st>>>(mo, model_out.as<__half>(), nm);
            else ew_cast<float, float><<<gb, 256, 0, st>>>(mo, model_out.as<float>(), nm);
            if (s.cfg) {  // eps = u + s (c - u)
              ew_axpy<<<gb, 256, 0, st>>>(t1, mo + nx, -1.f, mo, nx);
              ew_scale<<<gb, 256, 0, st>>>(t2, t1, 7.5f, nx);
              ew_axpy<<<gb, 256, 0, st>>>(eps, mo, 1.f, t2, nx);
              e = eps;
            }
            ew_scale<<<gb, 256, 0, st>>>(t1, e, k.sqrt_beta_prod_t, nx);  // x0 = (x - sqrt_b eps) / sqrt_a
            ew_axpy<<<gb, 256, 0, st>>>(t2, xf, -1.f, t1, nx);
            ew_scale<<<gb, 256, 0, st>>>(x0, t2, 1.f / k.sqrt_alpha_prod_t, nx);
            ew_clamp<<<gb, 256, 0, st>>>(x0, x0, -1.f, 1.f, nx);
            if (ddim) {  // x = sqrt_a_prev x0 + dir eps
              ew_scale<<<gb, 256, 0, st>>>(t1, x0, k.sqrt_alpha_prod_prev, nx);
              ew_scale<<<gb, 256, 0, st>>>(t2, e, k.dir_coeff, nx);
              ew_axpy<<<gb, 256, 0, st>>>(xf, t1, 1.f, t2, nx);
            } else {  // x = c0 x0 + ct x + std z
              ew_scale<<<gb, 256, 0, st>>>(t1, x0, k.x0_coeff, nx);
              ew_scale<<<gb, 256, 0, st>>>(t2, xf, k.xt_coeff, nx);
              ew_axpy<<<gb, 256, 0, st>>>(t1, t1, 1.f, t2, nx);
              ew_scale<<<gb, 256, 0, st>>>(t2, nz, k.noise_std, nx);
              ew_axpy<<<gb, 256, 0, st>>>(xf, t1, 1.f, t2, nx);
            }
            // Next model input (both CFG halves) in the model dtype.
            for (int h = 0; h < (s.cfg ? 2 : 1); ++h) {
              if (t == DType::F16) ew_cast<float, __half><<<gb, 256, 0, st>>>(model_in.as<__half>() + h * nx, xf, nx);
              else ew_cast<float, float><<<gb, 256, 0, st>>>(model_in.as<float>() + h * nx, xf, nx);
            }
            DIFFRT_CUDA_CHECK_LAUNCH();
          }, ddim ? "torch-op chain, DDIM" : "torch-op chain, DDPM (noise from a buffer)");
        }});
      }
}

}  // namespace bench
