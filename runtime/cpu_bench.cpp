// CPU versions of diffrt bench / profile (contracts in cpu_bench.h).
#include "runtime/cpu_bench.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "base/error.h"
#include "runtime/latent_pipeline.h"

namespace diffrt {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

uint64_t peak_rss_bytes() {
  rusage u{};
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
  return uint64_t(u.ru_maxrss) * 1024;  // Linux: kilobytes
}

// Times calls of fn: `warmup` untimed, then `repeat` timed.
template <class F>
std::vector<double> time_calls(int warmup, int repeat, F&& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < repeat; ++i) {
    const auto t0 = Clock::now();
    fn();
    ms.push_back(ms_since(t0, Clock::now()));
  }
  return ms;
}

ProfiledGraph profile_graph(const ModelFile& mf, const CpuWeights& weights, const Graph& g, const PlanInputs& pin,
                            const GraphInputs& in, int warmup, int repeats, const std::string& label) {
  CpuExecutor ex(mf, weights, g, pin);
  ProfiledGraph pg;
  pg.label = label;
  pg.graph = &g;
  pg.plan = ex.plan();
  pg.cost = graph_cost(g, pg.plan, sizeof(float)).nodes;
  pg.repetitions = repeats;
  std::vector<std::vector<double>> samples(g.nodes.size());
  std::vector<float> out(ex.plan().shapes[size_t(g.output)].numel());
  Clock::time_point last;
  bool timed = false;
  ex.on_node = [&](int k, const float*, const ValueShape&) {
    const Clock::time_point now = Clock::now();
    if (timed) samples[size_t(k)].push_back(ms_since(last, now) * 1e3);
    last = Clock::now();  // the callback's own time is not charged to the next node
  };
  for (int r = 0; r < warmup + repeats; ++r) {
    timed = r >= warmup;
    last = Clock::now();
    ex.run(in, out.data());
  }
  pg.node_us.resize(g.nodes.size());
  for (size_t k = 0; k < g.nodes.size(); ++k) pg.node_us[k] = percentile(samples[k], 0.5);
  return pg;
}

}  // namespace

BenchResults bench_cpu(const ModelFile& mf, const CpuWeights& weights, const Workload& w, const BenchOptions& o) {
  if (o.warmup < 0 || o.repeat < 1) fail(ErrorCode::InvalidArgument, "bench: --warmup must be >= 0 and --repeat >= 1");
  BenchResults res;
  res.device = "cpu";
  for (const TensorInfo& t : mf.tensors) res.weights_bytes += t.numel() * sizeof(float);  // widened to fp32

  // Whole steps, as the sampler runs them.
  const int steps = w.req.steps;
  const int runs = (o.warmup + o.repeat + steps - 1) / steps;
  std::vector<double> all;
  for (int run = 0; run < runs; ++run) {
    Clock::time_point last = Clock::now();
    const Clock::time_point start = last;
    ProgressFn progress = [&](int, int) {
      const Clock::time_point now = Clock::now();
      all.push_back(ms_since(last, now));
      last = now;
      return true;
    };
    if (w.text_model) {
      sample_latents_cpu(mf, weights, w.sched, w.req, w.context, w.context_len, progress);
    } else {
      CpuExecutor ex(mf, weights, w.model_batch, w.req.height, w.req.width);
      UNetFn unet = [&](const float* x, const float* t, const int32_t* labels, int n, float* out) {
        if (n != w.model_batch) fail(ErrorCode::Internal, "sampler batch changed");
        ex.run(x, t, labels, out);
      };
      run_sampler(w.sched, w.req, mf.graph.out_channels, unet, progress);
    }
    res.run_ms.push_back(ms_since(start, Clock::now()));
  }
  res.sampler_runs = runs;
  res.step_ms.assign(all.begin() + std::min<size_t>(size_t(o.warmup), all.size()), all.end());
  if (res.step_ms.size() > size_t(o.repeat)) res.step_ms.resize(size_t(o.repeat));
  res.notes.push_back("cpu: no CUDA graph; a step is timed between two progress callbacks of the sampler");

  if (o.unet) {
    CpuExecutor ex(mf, weights, mf.graph, w.unet_in);
    res.unet_arena_bytes = ex.plan().arena_elems * sizeof(float);
    std::vector<float> out(ex.plan().shapes[size_t(mf.graph.output)].numel());
    const GraphInputs in = w.unet_inputs();
    res.unet_ms = time_calls(o.warmup, o.repeat, [&] { ex.run(in, out.data()); });
  }
  if (o.vae && w.latent_model) {
    CpuExecutor ex(mf, weights, mf.vae.graph, w.vae_in);
    res.vae_arena_bytes = ex.plan().arena_elems * sizeof(float);
    std::vector<float> out(ex.plan().shapes[size_t(mf.vae.graph.output)].numel());
    const GraphInputs in = w.vae_inputs();
    res.vae_ms = time_calls(1, std::max(1, o.vae_repeat), [&] { ex.run(in, out.data()); });
    for (float v : out)
      if (!std::isfinite(v)) res.vae_finite = false;
  }
  res.peak_host_rss_bytes = peak_rss_bytes();
  return res;
}

std::vector<ProfiledGraph> profile_cpu(const ModelFile& mf, const CpuWeights& weights, const Workload& w, int warmup,
                                       int repeats, bool vae) {
  if (warmup < 0 || repeats < 1) fail(ErrorCode::InvalidArgument, "profile: --warmup must be >= 0 and --repeat >= 1");
  std::vector<ProfiledGraph> out;
  out.push_back(profile_graph(mf, weights, mf.graph, w.unet_in, w.unet_inputs(), warmup, repeats, "unet"));
  if (vae && w.latent_model)
    out.push_back(profile_graph(mf, weights, mf.vae.graph, w.vae_in, w.vae_inputs(), warmup, repeats, "vae_decode"));
  return out;
}

}  // namespace diffrt
