// Random numbers for sampling.
//  * Philox mode (the default): counter-based normals from kernels/common/philox.h, identical on
//    CPU and GPU and independent of batch size and position. fill_philox_normal() fills one
//    sample's noise in NHWC order from the layout-independent NCHW element index.
//  * torch mode: TorchGenerator reproduces torch.randn(..., generator=torch.Generator().manual_seed(s))
//    on the CPU for float32, so a diffusers pipeline's noise can be replayed from its seed:
//      - mt19937 seeded with the seed's low 32 bits (torch's at::mt19937 == std::mt19937);
//      - n >= 16: all n uniforms u = (u32 & 0xFFFFFF) * 2^-24 first, then per block of 16 Box-Muller
//        r = sqrt(-2 ln(1 - u[j])), theta = float(2 pi) * u[j+8], out[j] = r cos, out[j+8] = r sin;
//        if n % 16 != 0 the last 16 slots get 16 NEW uniforms and are transformed again (overlap);
//      - n < 16: torch's serial double path: per pair two 53-bit uniforms (each from two u32,
//        first = high word), r = sqrt(-2 ln(1 - u2)), theta = 2 pi u1, returns r cos theta and
//        caches r sin theta in the generator for the next draw (the cache survives across calls,
//        is ignored by the n >= 16 path and cleared by manual_seed).
//    torch's AVX2 kernel evaluates log/sin/cos with vectorised polynomials; we use the C library,
//    so values agree to ~1 ulp (measured max 2.4e-7 absolute), not bit for bit.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace diffrt {

class TorchGenerator {
 public:
  explicit TorchGenerator(uint64_t seed = 67280421310721ull) { manual_seed(seed); }
  void manual_seed(uint64_t seed);
  // torch.randn(n) in float32 (any shape: torch fills the contiguous buffer in order).
  void randn(float* out, size_t n);
  std::vector<float> randn(size_t n);
  uint32_t next_u32() { return uint32_t(engine_()); }

 private:
  double next_uniform_f64();  // torch uniform_real_distribution<double>(0, 1)
  std::mt19937 engine_;
  bool has_cached_normal_ = false;
  double cached_normal_ = 0.0;
};

// Philox normals for one sample in NHWC order: out[(y*W + x)*C + c] = normal at NCHW element
// c*H*W + y*W + x of (seed, sample, step, tag).
void fill_philox_normal(uint64_t seed, uint32_t sample, uint32_t step, uint32_t tag, int h, int w,
                        int c, float* out);

// torch.randn(B, C, H, W) from `gen`, returned transposed to NHWC [B, H, W, C].
std::vector<float> torch_randn_nchw_to_nhwc(TorchGenerator& gen, int b, int c, int h, int w);

}  // namespace diffrt
