// Ctx's measuring and reporting: result rows, the roofline fraction, the markdown table on stdout.
#include <cstdio>

#include "bench/kernels/harness.cuh"

namespace bench {

void Ctx::measure(const std::string& impl, double flops, double bytes, const std::function<void()>& fn,
                  const std::string& note, bool ceiling) {
  Result r;
  r.op = current->op; r.name = current->name; r.dtype = current->dtype; r.impl = impl;
  r.flops = flops; r.bytes = bytes; r.note = note; r.ceiling = ceiling;
  try {
    r.st = timer->time(fn);
  } catch (const std::exception& e) {
    r.error = e.what();
    check_sticky();
  }
  results.push_back(r);
  print_row(results.back());
}

void Ctx::fail_case(const std::string& what) {
  Result r;
  r.op = current->op; r.name = current->name; r.dtype = current->dtype; r.impl = "-"; r.error = what;
  results.push_back(r);
  print_row(results.back());
}

void Ctx::check_sticky() {
  (void)cudaGetLastError();
  cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) throw Fatal(std::string("fatal CUDA error: ") + cudaGetErrorName(e) + " " + cudaGetErrorString(e));
}

double Ctx::roof_frac(const Result& r) const {
  if (r.st.median_us <= 0) return 0;
  double t = r.st.median_us * 1e-6, floor_s = 0;
  if (copy_gbs > 0 && r.bytes > 0) floor_s = std::max(floor_s, r.bytes / (copy_gbs * 1e9));
  auto it = gemm_tflops.find(r.dtype);
  if (it != gemm_tflops.end() && it->second > 0 && r.flops > 0) floor_s = std::max(floor_s, r.flops / (it->second * 1e12));
  return floor_s / t;
}

void Ctx::print_row(const Result& r) {
  if (!header_printed) {
    std::printf("| op | case | dtype | impl | median us | p90 us | p99 us | GB/s | TFLOP/s | roof%% | reps | note |\n");
    std::printf("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    header_printed = true;
  }
  if (!r.error.empty()) {
    std::printf("| %s | %s | %s | %s | ERROR | | | | | | | %s |\n", r.op.c_str(), r.name.c_str(), r.dtype.c_str(),
                r.impl.c_str(), r.error.substr(0, 160).c_str());
    std::fflush(stdout);
    return;
  }
  double t = r.st.median_us * 1e-6;
  char gbs[32] = "", tfs[32] = "", roof[32] = "";
  if (r.bytes > 0 && t > 0) std::snprintf(gbs, sizeof gbs, "%.0f", r.bytes / t / 1e9);
  if (r.flops > 0 && t > 0) std::snprintf(tfs, sizeof tfs, "%.1f", r.flops / t / 1e12);
  if (!r.ceiling) std::snprintf(roof, sizeof roof, "%.0f", 100 * roof_frac(r));
  std::printf("| %s | %s | %s | %s | %.2f | %.2f | %.2f | %s | %s | %s | %d | %s |\n", r.op.c_str(), r.name.c_str(),
              r.dtype.c_str(), r.impl.c_str(), r.st.median_us, r.st.p90_us, r.st.p99_us, gbs, tfs, roof, r.st.reps,
              r.note.c_str());
  std::fflush(stdout);
}

}  // namespace bench
