// CPU reference op throughput: gemm_nt_f32 (1024^3 and the conv's GEMM shape) and conv2d_ref on
// the CIFAR DDPM shapes (N=1, 32x32x128 -> 128 and 16x16x256 -> 256, 3x3, pad 1). Reports GFLOP/s (2*M*N*K per GEMM).
// Run: build/bench/cpu_ops_bench --benchmark_min_time=2 [--benchmark_repetitions=5]
// Numbers depend on the machine's cores and other load; results go to bench/results/.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/conv/conv.h"
#include "kernels/gemm/gemm.h"

namespace {

std::vector<float> random_vec(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// args: M, N, K
void BM_gemm_nt_f32(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0)), n = static_cast<int>(state.range(1)),
            k = static_cast<int>(state.range(2));
  const auto a = random_vec(static_cast<size_t>(m) * k, 1);  // a: [M, K]
  const auto b = random_vec(static_cast<size_t>(n) * k, 2);  // b: [N, K]
  std::vector<float> c(static_cast<size_t>(m) * n);          // c: [M, N]
  for (auto _ : state) {
    diffrt::gemm_nt_f32(m, n, k, a.data(), k, b.data(), k, c.data(), n, false);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * n * k, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_gemm_nt_f32)->Args({1024, 1024, 1024})->Args({1024, 128, 1152})->Unit(benchmark::kMillisecond)->UseRealTime();

// args: N, H=W, Cin, Cout (3x3, stride 1, pad 1, with bias)
void BM_conv2d_ref_3x3(benchmark::State& state) {
  diffrt::Conv2dParams p;
  p.n = static_cast<int>(state.range(0));
  p.h = p.w_in = static_cast<int>(state.range(1));
  p.cin = static_cast<int>(state.range(2));
  p.cout = static_cast<int>(state.range(3));
  p.kh = p.kw = 3;
  p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = 1;
  const auto x = random_vec(static_cast<size_t>(p.n) * p.h * p.w_in * p.cin, 3);  // x: [N, H, W, Cin]
  const auto w = random_vec(static_cast<size_t>(p.cout) * 9 * p.cin, 4);           // w: [Cout, 3, 3, Cin]
  const auto bias = random_vec(p.cout, 5);
  std::vector<float> y(static_cast<size_t>(p.n) * p.h * p.w_in * p.cout);          // y: [N, H, W, Cout]
  std::vector<float> scratch(diffrt::conv2d_ref_scratch_floats(p));
  p.x = x.data();
  p.w = w.data();
  p.bias = bias.data();
  p.y = y.data();
  for (auto _ : state) {
    diffrt::conv2d_ref(p, scratch.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * p.n * p.h * p.w_in * p.cout * 9.0 * p.cin;
  state.counters["GFLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_conv2d_ref_3x3)->Args({1, 32, 128, 128})->Args({1, 16, 256, 256})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
