// Host scalar math for the sampler plans, reproducing how diffusers 0.27.2 computes its schedules and step
// scalars with numpy 1.24 and torch 1.13 on the CPU (tests/fixtures/samplers/README.md §D0, §D1):
//  * float32 transcendentals (torch.exp / log / expm1 on 0-dim float32 tensors): correctly rounded, i.e. the
//    double result rounded to float. torch uses Sleef u10 here, which differs from correctly rounded in a
//    small fraction of arguments (DPM replays move by <= 9e-7 relative; see the fixture README);
//  * numpy helpers with numpy's exact arithmetic: linspace, arange with a negative float step, interp on an
//    integer grid, round half to even;
//  * _sigma_to_t under numpy < 2 value-based casting (a float32 computation returning a double), Karras sigmas
//    (libm pow in double);
//  * numpy's float32 log (np.log on a float32 array, the table log_sigmas): see np_logf;
//  * UniPC's torch.linalg.solve in float32 as reference LAPACK (sgetrf2 + sgetrs) does it: see lapack_solve.
// Everything here is plain double/float code written for diffrt from those descriptions.
#pragma once
#include <cstdint>
#include <vector>

namespace diffrt::smath {

float exp_f(float x);    // torch.exp(float32)
float log_f(float x);    // torch.log(float32)
float expm1_f(float x);  // torch.expm1(float32)
// np.log on a float32 array (numpy 1.24's AVX2/FMA3 float32 routine): the table log_sigmas uses it.
float np_logf(float x);

// np.round (half to even) of a double, as an integer.
int64_t np_round(double x);
// np.linspace(a, b, n) in double: y_i = i*step + a, y[n-1] = b; n = 1 -> [a].
std::vector<double> np_linspace(double a, double b, int64_t n);
// np.arange(start, 0, -step) for start > 0 and a float step: ceil(start/step) values start + i*delta.
std::vector<double> np_arange_down(double start, double step);
// np.interp(x, arange(len(fp)), fp) with fp float32 values (as doubles).
double np_interp_grid(double x, const std::vector<float>& fp);
// diffusers' _sigma_to_t(sigma, log_sigmas) under numpy value-based casting (log_sigmas float32). `sorted`:
// log_sigmas is non-decreasing (std::is_sorted), which allows an O(log T) search with the same result; trained betas
// that make it unsorted take diffusers' literal O(T) scan.
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas, bool sorted);
// diffusers' _convert_to_karras: (smax^(1/7) + ramp_i (smin^(1/7) - smax^(1/7)))^7, ramp = linspace(0, 1, n).
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n);

// torch.linalg.solve(A, b) for a small n x n float32 system (n <= 4), as reference LAPACK 3.11 computes it:
// `contiguous` true: A is C-contiguous, so LAPACK sees A^T and solves with trans='T' (UniPC's corrector);
// false: the predictor's non-contiguous slice, factored directly (trans='N'). a: row-major [n*n].
std::vector<float> lapack_solve(const std::vector<float>& a, const std::vector<float>& b, int n, bool contiguous);

}  // namespace diffrt::smath
