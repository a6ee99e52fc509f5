// diffrt_kernel_bench: per-kernel GPU benchmark of diffrt's CUDA ops on real model shapes, each figure next
// to yardsticks measured in the same run. This file is the driver (flags, environment, the run loop, JSON);
// the cases live in bench/kernels/, one file per op:
//   ceiling_bench.cu         copy and cuBLAS GEMM ceilings (COPY, GEMM[dtype]), measured first
//   group_norm_bench.cu, layer_norm_bench.cu, geglu_bench.cu, attention_bench.cu, activation_bench.cu,
//   embedding_bench.cu, conv_bench.cu, linear_bench.cu, scheduler_step_bench.cu (op "sched"),
//   dit_bench.cu             DiT-XL/2's ada_ln, gated_linear, patch_embed
// Each states its minimal bytes B, FLOPs F and the baseline it is judged against. Harness: harness.cuh (cases,
// result rows, roofline), timer.cuh (CUDA-event timing, L2 flush), device_data.cuh (random inputs). How to
// run and how the results become the README table: bench/README.md.
//
// Case ids are "op/case/dtype"; each case records one row per impl. Derived columns: GB/s = B / t_median,
// TFLOP/s = F / t_median, roof% = max(B / COPY, F / GEMM) / t_median (the fraction of the roofline bound
// reached; 100% is the floor).
//
// Flags: --filter REGEX (ECMAScript, searched in "op/case/dtype"), --reps N (max timed reps per case,
// default 100), --quick (fp16 only, fewer batches/dtypes, reps <= 30), --hot (no L2 flush), --json PATH,
// --budget-s S (skip remaining cases after S seconds of wall time; 0 = none), --list (print case ids, no GPU
// needed), --no-ceilings. Exit: 0 all ran, 1 some cases failed, 2 fatal CUDA error (JSON still written),
// 3 no CUDA device, 4 bad arguments.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cudnn.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "base/host_env.h"
#include "bench/kernels/harness.cuh"
#include "kernels/common/cuda_check.h"
#include "runtime/cuda/cuda_env.h"

#ifndef DIFFRT_BENCH_GIT_SHA
#define DIFFRT_BENCH_GIT_SHA "unknown"
#endif

using bench::Case;
using bench::Ctx;
using bench::Fatal;
using bench::Options;
using bench::Result;
using json = nlohmann::json;

namespace {

// SIGTERM/SIGINT (e.g. `timeout` in scripts/gpu_pass.sh) stop the run between cases; the JSON is still written.
volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_stop_signal(int) { g_stop = 1; }

void usage() {
  std::fprintf(stderr,
               "usage: diffrt_kernel_bench [--filter REGEX] [--reps N] [--quick] [--hot] [--json PATH]\n"
               "                           [--budget-s S] [--list] [--no-ceilings]\n");
}

json result_json(const Ctx& c, const Result& r) {
  json j = {{"op", r.op}, {"case", r.name}, {"dtype", r.dtype}, {"impl", r.impl}, {"flops", r.flops}, {"bytes", r.bytes},
            {"ceiling", r.ceiling}, {"note", r.note}};
  if (!r.error.empty()) {
    j["error"] = r.error;
    return j;
  }
  double t = r.st.median_us * 1e-6;
  j["median_us"] = r.st.median_us; j["p90_us"] = r.st.p90_us; j["p99_us"] = r.st.p99_us;
  j["min_us"] = r.st.min_us; j["mean_us"] = r.st.mean_us; j["reps"] = r.st.reps;
  j["gbps"] = (r.bytes > 0 && t > 0) ? r.bytes / t / 1e9 : 0.0;
  j["tflops"] = (r.flops > 0 && t > 0) ? r.flops / t / 1e12 : 0.0;
  if (!r.ceiling) j["roof_frac"] = c.roof_frac(r);
  return j;
}

// Writes the JSON file (when --json): after every case (so a killed run keeps what it measured) and at
// the end (final = true prints where it went). Returns the number of failed rows.
int write_json(const Options& opt, const json& env, const Ctx& ctx, int skipped, const std::string& aborted,
               std::chrono::steady_clock::time_point t_start, bool final) {
  int n_err = 0;
  json jr = json::array();
  for (const Result& r : ctx.results) {
    jr.push_back(result_json(ctx, r));
    n_err += !r.error.empty();
  }
  if (opt.json_path.empty()) return n_err;
  json out = {{"schema", "diffrt.kernel_bench.v1"},
              {"env", env},
              {"options", {{"filter", opt.filter}, {"reps", opt.reps}, {"quick", opt.quick}, {"l2", opt.hot ? "hot" : "flushed"},
                           {"budget_s", opt.budget_s}}},
              {"ceilings", {{"copy_gbps", ctx.copy_gbs}, {"gemm_tflops", ctx.gemm_tflops}}},
              {"results", jr},
              {"errors", n_err},
              {"complete", final && aborted.empty()},
              {"skipped_over_budget", skipped},
              {"wall_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count()}};
  if (!aborted.empty()) out["aborted"] = aborted;
  const std::string tmp = opt.json_path + ".tmp";
  {
    std::ofstream f(tmp);
    f << out.dump(1) << "\n";
    if (!f) {
      std::fprintf(stderr, "diffrt_kernel_bench: could not write %s\n", tmp.c_str());
      return n_err;
    }
  }
  if (std::rename(tmp.c_str(), opt.json_path.c_str()) != 0)
    std::fprintf(stderr, "diffrt_kernel_bench: could not rename %s\n", tmp.c_str());
  else if (final)
    std::fprintf(stderr, "diffrt_kernel_bench: wrote %s\n", opt.json_path.c_str());
  return n_err;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 0; i < argc; ++i) opt.command_line += (i ? " " : "") + std::string(argv[i]);
  if (const char* e = std::getenv("DIFFRT_BENCH_JSON")) opt.json_path = e;  // defaults from the environment
  if (const char* e = std::getenv("DIFFRT_BENCH_BUDGET_S")) opt.budget_s = std::atof(e);
  if (const char* e = std::getenv("DIFFRT_BENCH_QUICK")) opt.quick = std::string(e) == "1";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) { usage(); std::exit(4); }
      return argv[++i];
    };
    try {
      if (a == "--filter") opt.filter = next();
      else if (a == "--reps") opt.reps = std::max(1, std::stoi(next()));
      else if (a == "--quick") opt.quick = true;
      else if (a == "--hot") opt.hot = true;
      else if (a == "--json") opt.json_path = next();
      else if (a == "--budget-s") opt.budget_s = std::stod(next());
      else if (a == "--list") opt.list = true;
      else if (a == "--no-ceilings") opt.ceilings = false;
      else if (a == "--help" || a == "-h") { usage(); return 0; }
      else { std::fprintf(stderr, "unknown argument %s\n", a.c_str()); usage(); return 4; }
    } catch (const std::exception&) {
      std::fprintf(stderr, "bad value for %s\n", a.c_str());
      return 4;
    }
  }
  if (opt.quick) opt.reps = std::min(opt.reps, 30);
  std::regex filter_re;
  try {
    filter_re = std::regex(opt.filter.empty() ? std::string(".*") : opt.filter);
  } catch (const std::regex_error& e) {
    std::fprintf(stderr, "bad --filter regex: %s\n", e.what());
    return 4;
  }

  std::vector<Case> ceilings, cases;
  bench::add_ceiling_cases(ceilings, opt);
  bench::add_group_norm_cases(cases, opt);
  bench::add_layer_norm_cases(cases, opt);
  bench::add_geglu_cases(cases, opt);
  bench::add_attention_cases(cases, opt);
  bench::add_activation_cases(cases, opt);
  bench::add_embedding_cases(cases, opt);
  bench::add_conv_cases(cases, opt);
  bench::add_linear_cases(cases, opt);
  bench::add_scheduler_step_cases(cases, opt);
  bench::add_dit_cases(cases, opt);
  std::vector<const Case*> selected;
  for (const Case& c : cases)
    if (std::regex_search(c.id(), filter_re)) selected.push_back(&c);
  if (opt.list) {
    if (opt.ceilings) for (const Case& c : ceilings) std::printf("%s\n", c.id().c_str());
    for (const Case* c : selected) std::printf("%s\n", c->id().c_str());
    return 0;
  }

  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    (void)cudaGetLastError();
    std::fprintf(stderr, "diffrt_kernel_bench: no CUDA device\n");
    if (!opt.json_path.empty()) {  // a record that the run happened and why it produced nothing
      std::ofstream f(opt.json_path);
      f << json{{"schema", "diffrt.kernel_bench.v1"}, {"env", {{"date_utc", diffrt::utc_now_iso()}, {"command", opt.command_line}}},
                {"results", json::array()}, {"aborted", "no CUDA device"}}.dump(1) << "\n";
    }
    return 3;
  }

  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  json env;
  std::string aborted;
  Ctx ctx;
  ctx.opt = opt;
  const auto t_start = std::chrono::steady_clock::now();
  int skipped = 0;
  try {
    int dev = 0;
    DIFFRT_CUDA_CHECK(cudaSetDevice(dev));
    cudaDeviceProp prop{};
    DIFFRT_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    int rt = 0, drv = 0, clk = 0, mclk = 0, bus = 0;
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    cudaDeviceGetAttribute(&clk, cudaDevAttrClockRate, dev);
    cudaDeviceGetAttribute(&mclk, cudaDevAttrMemoryClockRate, dev);
    cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, dev);
    (void)cudaGetLastError();
    diffrt::NvmlInfo nv = diffrt::query_nvml(dev);
    env = {{"gpu", prop.name}, {"cc", std::to_string(prop.major) + "." + std::to_string(prop.minor)},
           {"sm_count", prop.multiProcessorCount}, {"l2_bytes", prop.l2CacheSize},
           {"global_mem_bytes", prop.totalGlobalMem}, {"mem_bus_bits", bus},
           {"cuda_runtime", rt}, {"cuda_driver_api", drv}, {"driver", nv.driver_version},
           {"cudnn", cudnnGetVersion()}, {"cublaslt", cublasLtGetVersion()},
           {"max_sm_clock_mhz_attr", clk / 1000}, {"max_mem_clock_mhz_attr", mclk / 1000},
           {"nvml", nv.ok}, {"sm_clock_mhz_start", nv.sm_clock_mhz}, {"mem_clock_mhz_start", nv.mem_clock_mhz},
           {"max_sm_clock_mhz", nv.max_sm_clock_mhz}, {"max_mem_clock_mhz", nv.max_mem_clock_mhz},
           {"power_limit_w", nv.power_limit_mw / 1000.0}, {"temperature_c_start", nv.temperature_c},
           {"date_utc", diffrt::utc_now_iso()}, {"command", opt.command_line}, {"git_sha", DIFFRT_BENCH_GIT_SHA}};
    if (const char* sha = std::getenv("DIFFRT_GIT_SHA")) env["git_sha"] = sha;
    std::printf("# diffrt_kernel_bench: %s (sm_%d%d, %d SMs, L2 %d MB), driver %s, CUDA runtime %d, cuDNN %zu, %s\n\n",
                prop.name, prop.major, prop.minor, prop.multiProcessorCount, prop.l2CacheSize >> 20,
                nv.driver_version.c_str(), rt, cudnnGetVersion(), opt.hot ? "L2 hot" : "L2 flushed before each rep");

    DIFFRT_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking));
    bench::TimerConfig tc;
    tc.reps = opt.reps;
    tc.min_reps = std::min(opt.reps, 10);
    tc.flush_l2 = !opt.hot;
    tc.case_budget_s = opt.quick ? 0.1 : 0.4;
    ctx.timer = std::make_unique<bench::Timer>(ctx.stream, tc);
    DIFFRT_CUDA_CHECK(cublasCreate(&ctx.cublas));
    DIFFRT_CUDA_CHECK(cublasSetStream(ctx.cublas, ctx.stream));
    DIFFRT_CUDA_CHECK(cublasSetMathMode(ctx.cublas, CUBLAS_DEFAULT_MATH));
    ctx.cublas_ws.allocate(size_t(32) << 20);
    DIFFRT_CUDA_CHECK(cublasSetWorkspace(ctx.cublas, ctx.cublas_ws.get(), ctx.cublas_ws.bytes()));
    diffrt::CudnnConv::Options find_opt, heur_opt;
    heur_opt.exhaustive_search = false;
    ctx.conv_find = std::make_unique<diffrt::CudnnConv>(find_opt);
    ctx.conv_heur = std::make_unique<diffrt::CudnnConv>(heur_opt);
    ctx.lt = std::make_unique<diffrt::CublasLtContext>();

    auto run_case = [&](const Case& c) {
      if (g_stop) throw std::runtime_error("stopped by a signal (SIGTERM/SIGINT): remaining cases not run");
      if (opt.budget_s > 0 &&
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count() > opt.budget_s) {
        ++skipped;
        return;
      }
      ctx.current = &c;
      try {
        c.body(ctx);
      } catch (const Fatal&) {
        throw;
      } catch (const std::exception& e) {  // allocation failure or setup error: this case only
        ctx.fail_case(e.what());
        Ctx::check_sticky();
      }
      write_json(opt, env, ctx, skipped, "running", t_start, false);
    };
    if (opt.ceilings) {
      for (const Case& c : ceilings) run_case(c);
      for (const Result& r : ctx.results) {
        if (!r.ceiling || !r.error.empty() || r.st.median_us <= 0) continue;
        double t = r.st.median_us * 1e-6;
        if (r.flops == 0) ctx.copy_gbs = std::max(ctx.copy_gbs, r.bytes / t / 1e9);
        else if (r.dtype != "tf32") ctx.gemm_tflops[r.dtype] = std::max(ctx.gemm_tflops[r.dtype], r.flops / t / 1e12);
      }
      std::printf("\nceilings: copy %.0f GB/s; GEMM fp16 %.0f, bf16 %.0f, fp32 %.1f TFLOP/s\n\n", ctx.copy_gbs,
                  ctx.gemm_tflops["fp16"], ctx.gemm_tflops["bf16"], ctx.gemm_tflops["fp32"]);
      ctx.header_printed = false;
    }
    for (const Case* c : selected) run_case(*c);
  } catch (const std::exception& e) {
    aborted = e.what();
    std::fprintf(stderr, "diffrt_kernel_bench: aborted: %s\n", aborted.c_str());
  }
  if (skipped) std::printf("\n%d cases skipped: over --budget-s %.0f\n", skipped, opt.budget_s);
  if (!env.is_null()) {
    diffrt::NvmlInfo nv_end = diffrt::query_nvml(0);
    env["sm_clock_mhz_end"] = nv_end.sm_clock_mhz;
    env["mem_clock_mhz_end"] = nv_end.mem_clock_mhz;
    env["temperature_c_end"] = nv_end.temperature_c;
  }
  int n_err = write_json(opt, env, ctx, skipped, aborted, t_start, true);
  if (ctx.cublas) cublasDestroy(ctx.cublas);
  if (!aborted.empty()) return 2;
  return n_err ? 1 : 0;
}
