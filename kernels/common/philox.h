// Counter-based noise shared by the CPU reference and (later) the CUDA kernels: Philox4x32-10
// (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011) and a
// Box-Muller transform whose every floating-point operation is spelled out, so host and device
// produce the SAME BITS for the same (seed, sample, step, tag, element).
//
// Why not logf/sinf/cosf: the C library and CUDA's libdevice give different last bits (CUDA sinf
// is 2 ulp). Here log and sin/cos are short polynomials built only from IEEE +, -, *, / and sqrt,
// each correctly rounded on both sides. On the device every operation goes through the explicit
// round-to-nearest intrinsics (__fmul_rn etc.) so nvcc cannot contract a*b+c into an FMA; on the
// host the header turns FP contraction off (GCC/Clang pragmas) for the same reason. Accuracy of
// the transform: |error| < 1e-6 relative to exact Box-Muller (tested in tests/rng_test.cpp).
//
// Stream layout (documented contract, used by runtime/sampler.cpp and the scheduler_step kernel):
//   key     = { seed & 0xffffffff, seed >> 32 }
//   counter = { element / 4, sample_index, step, tag }
//   element = the NCHW index within one sample: c*H*W + y*W + x, so noise is layout independent.
//   tag     = kTagInitial (initial x_T, step 0) or kTagStep (scheduler noise at loop step `step`), or
//             kTagPosterior (the VAE encoder's posterior sample; `step` holds the encode's stream: 0 the
//             init image, 1 the masked image of inpainting).
// The sample index sits in the counter (not mixed into the key) so distinct (seed, sample) pairs
// can never collide. Sample i of a batch equals a batch-of-one run with the same seed and index i.
//
// Box-Muller per Philox output {r0, r1, r2, r3} -> 4 normals, pairs (r0, r1) and (r2, r3):
//   ua = (float(r_even >> 8) + 1) * 2^-24          in (0, 1], exact
//   k  = r_odd >> 8 (24 bits); quarter turn q = k >> 22; f = (k & 0x3fffff) * 2^-22 in [0, 1),
//        if f >= 0.5 { f -= 1; q += 1 }             -> angle a = f * (pi/2) in [-pi/4, pi/4)
//   rad = sqrt(-2 * log(ua));  n_even = rad * cos(theta), n_odd = rad * sin(theta),
//   theta = 2*pi*k/2^24 = q*pi/2 + a;  see philox_log() and philox_sincos_turn() for the exact
//   polynomials and operation order.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define DIFFRT_HD __host__ __device__ __forceinline__
#else
#define DIFFRT_HD inline
#endif

#if !defined(__CUDACC__) && defined(__clang__)
#pragma clang fp contract(off)
#elif !defined(__CUDACC__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#define DIFFRT_PHILOX_POP_GCC_OPTIONS 1
#endif

namespace diffrt::philox {

constexpr uint32_t kM0 = 0xD2511F53u;  // round multipliers (Salmon et al. 2011, Table 2)
constexpr uint32_t kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u;  // Weyl key increments (golden ratio, sqrt(3)-1)
constexpr uint32_t kW1 = 0xBB67AE85u;

constexpr uint32_t kTagInitial = 0;  // initial noise x_T
constexpr uint32_t kTagStep = 1;     // per-step scheduler noise
constexpr uint32_t kTagPosterior = 2;  // VAE posterior sample (kernels/vae_posterior); `step` = which encode of a request

struct U32x4 { uint32_t v[4]; };

// Correctly rounded fp32 primitives. Device: explicit _rn intrinsics (no FMA contraction).
DIFFRT_HD float f_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
DIFFRT_HD float f_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
DIFFRT_HD float f_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DIFFRT_HD float f_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
DIFFRT_HD float f_sqrt(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return __builtin_sqrtf(a);  // IEEE correctly rounded
#endif
}
DIFFRT_HD uint32_t f_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u; std::memcpy(&u, &f, 4); return u;
#endif
}
DIFFRT_HD float bits_f(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f; std::memcpy(&f, &u, 4); return f;
#endif
}

DIFFRT_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  uint64_t p = uint64_t(a) * uint64_t(b);
  *lo = uint32_t(p);
  *hi = uint32_t(p >> 32);
}

// Philox4x32 with 10 rounds; the key is bumped before every round but the first.
DIFFRT_HD U32x4 philox4x32_10(U32x4 ctr, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    if (r > 0) { k0 += kW0; k1 += kW1; }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(kM0, ctr.v[0], &hi0, &lo0);
    mulhilo32(kM1, ctr.v[2], &hi1, &lo1);
    U32x4 n;
    n.v[0] = hi1 ^ ctr.v[1] ^ k0;
    n.v[1] = lo1;
    n.v[2] = hi0 ^ ctr.v[3] ^ k1;
    n.v[3] = lo0;
    ctr = n;
  }
  return ctr;
}

// Natural log for a normal, positive float u (here u in [2^-24, 1]).
// u = m * 2^e with m in [sqrt(1/2), sqrt(2)); s = (m-1)/(m+1); ln m = 2 s (1 + s^2/3 + ... + s^12/13),
// Horner from the highest term; result = e*ln2_hi + (e*ln2_lo + ln m). |s| <= 0.1716 so the
// truncation error is < 1e-11; rounding error is a few ulp.
DIFFRT_HD float philox_log(float u) {
  uint32_t b = f_bits(u);
  int e = int((b >> 23) & 0xffu) - 127;
  float m = bits_f((b & 0x007fffffu) | 0x3f800000u);  // [1, 2)
  if (m > 1.41421356f) { m = f_mul(m, 0.5f); e += 1; }  // exact
  float s = f_div(f_sub(m, 1.0f), f_add(m, 1.0f));
  float s2 = f_mul(s, s);
  float p = 1.0f / 13.0f;
  p = f_add(f_mul(p, s2), 1.0f / 11.0f);
  p = f_add(f_mul(p, s2), 1.0f / 9.0f);
  p = f_add(f_mul(p, s2), 1.0f / 7.0f);
  p = f_add(f_mul(p, s2), 1.0f / 5.0f);
  p = f_add(f_mul(p, s2), 1.0f / 3.0f);
  p = f_add(f_mul(p, s2), 1.0f);
  float lnm = f_mul(f_mul(2.0f, s), p);
  const float ln2_hi = 0x1.62e4p-1f;      // 0x3f317200: e*ln2_hi exact for |e| <= 2^8
  const float ln2_lo = 1.42860677e-06f;   // ln 2 - ln2_hi
  float ef = float(e);
  return f_add(f_mul(ef, ln2_hi), f_add(f_mul(ef, ln2_lo), lnm));
}

// sin and cos of theta = 2*pi*k/2^24 for a 24-bit integer k (one full turn = 2^24).
// Reduction is exact in integers; the polynomials are Taylor series on [-pi/4, pi/4)
// (sin to a^11, cos to a^12; truncation < 2e-10).
DIFFRT_HD void philox_sincos_turn(uint32_t k, float* sin_out, float* cos_out) {
  uint32_t q = k >> 22;                                     // quarter turn 0..3
  float f = f_mul(float(k & 0x3fffffu), 0x1p-22f);  // * 2^-22, exact, [0, 1)
  if (f >= 0.5f) { f = f_sub(f, 1.0f); q += 1; }            // exact
  float a = f_mul(f, 1.57079637f);                          // pi/2 (fp32)
  float a2 = f_mul(a, a);
  float ps = -2.50521084e-08f;                              // -1/11!
  ps = f_add(f_mul(ps, a2), 2.75573192e-06f);               //  1/9!
  ps = f_add(f_mul(ps, a2), -1.98412698e-04f);              // -1/7!
  ps = f_add(f_mul(ps, a2), 8.33333333e-03f);               //  1/5!
  ps = f_add(f_mul(ps, a2), -1.66666667e-01f);              // -1/3!
  float sn = f_add(a, f_mul(f_mul(a, a2), ps));
  float pc = 2.08767570e-09f;                               //  1/12!
  pc = f_add(f_mul(pc, a2), -2.75573192e-07f);              // -1/10!
  pc = f_add(f_mul(pc, a2), 2.48015873e-05f);               //  1/8!
  pc = f_add(f_mul(pc, a2), -1.38888889e-03f);              // -1/6!
  pc = f_add(f_mul(pc, a2), 4.16666667e-02f);               //  1/4!
  pc = f_add(f_mul(pc, a2), -0.5f);                         // -1/2!
  float cs = f_add(1.0f, f_mul(a2, pc));
  switch (q & 3u) {
    case 0: *sin_out = sn; *cos_out = cs; break;
    case 1: *sin_out = cs; *cos_out = -sn; break;
    case 2: *sin_out = -sn; *cos_out = -cs; break;
    default: *sin_out = -cs; *cos_out = sn; break;
  }
}

// Two standard normals from two 32-bit words (see the header comment for the formula).
DIFFRT_HD void box_muller(uint32_t r_even, uint32_t r_odd, float* n_even, float* n_odd) {
  float ua = f_mul(f_add(float(r_even >> 8), 1.0f), 0x1p-24f);  // (0, 1]
  float rad = f_sqrt(f_mul(-2.0f, philox_log(ua)));
  float s, c;
  philox_sincos_turn(r_odd >> 8, &s, &c);
  *n_even = f_mul(rad, c);
  *n_odd = f_mul(rad, s);
}

// Four standard normals for elements 4*group .. 4*group+3 of (seed, sample, step, tag).
DIFFRT_HD void normal4(uint64_t seed, uint32_t sample, uint32_t step, uint32_t tag, uint32_t group,
                       float out[4]) {
  U32x4 ctr = {{group, sample, step, tag}};
  U32x4 r = philox4x32_10(ctr, uint32_t(seed), uint32_t(seed >> 32));
  box_muller(r.v[0], r.v[1], &out[0], &out[1]);
  box_muller(r.v[2], r.v[3], &out[2], &out[3]);
}

// One standard normal for NCHW element `element` (within one sample).
DIFFRT_HD float normal_at(uint64_t seed, uint32_t sample, uint32_t step, uint32_t tag,
                          uint32_t element) {
  float o[4];
  normal4(seed, sample, step, tag, element >> 2, o);
  return o[element & 3u];
}

}  // namespace diffrt::philox

#if defined(DIFFRT_PHILOX_POP_GCC_OPTIONS)
#pragma GCC pop_options
#undef DIFFRT_PHILOX_POP_GCC_OPTIONS
#endif
