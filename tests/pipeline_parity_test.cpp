// Full sampling runs against diffusers' DDPMPipeline/DDIMPipeline (fixtures under
// tests/fixtures/models/*/pipelines/*): same seed, --rng torch, the CPU backend, the final [0,1]
// images. Bounds from the issue: max abs <= 1e-3 for DDIM runs, <= 5e-3 for DDPM runs.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "runtime/cpu_executor.h"
#include "base/npy.h"
#include "runtime/sampler.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;
using namespace diffrt;

namespace {

struct Run { fs::path model, dir; };

std::vector<Run> pipeline_runs() {
  std::vector<Run> runs;
  for (const auto& m : fs::directory_iterator(test::source_path("tests/fixtures/models")))
    if (fs::is_directory(m.path() / "pipelines"))
      for (const auto& r : fs::directory_iterator(m.path() / "pipelines")) runs.push_back({m.path(), r.path()});
  std::sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.dir < b.dir; });
  return runs;
}

}  // namespace

TEST(PipelineParity, TorchRngReproducesDiffusersPipelines) {
  auto runs = pipeline_runs();
  ASSERT_GE(runs.size(), 5u);
  for (const auto& run : runs) {
    nlohmann::json meta = nlohmann::json::parse(std::ifstream(run.dir / "meta.json"));
    std::string drt = test::temp_dir("pipe") + "/m.drt";
    ConvertOptions opt;
    opt.input = run.model.string();
    opt.output = drt;
    convert_diffusers(opt);
    ModelFile mf = read_model_file(drt);
    SchedulerConfig sched = scheduler_config_from_json(meta["effective_scheduler_config"], "meta.json");
    SampleRequest req = test::pipeline_request(meta);
    CpuWeights weights(mf);
    CpuExecutor ex(mf, weights, req.batch, req.height, req.width);
    UNetFn unet = [&](const float* x, const float* t, const int32_t* l, int, float* out) { ex.run(x, t, l, out); };
    std::vector<float> img = to_image_01(run_sampler(sched, req, mf.graph.out_channels, unet, {}));

    auto want = read_npy((run.dir / "images.npy").string()).as_f32();
    ASSERT_EQ(img.size(), want.size()) << run.dir;
    double err = test::max_abs_diff(img.data(), want.data(), want.size());
    std::printf("[pipeline] %-24s %-16s steps %4d  max_abs %.3g\n", run.model.filename().c_str(),
                run.dir.filename().c_str(), req.steps, err);
    EXPECT_LE(err, req.sampler == SamplerKind::Ddim ? 1e-3 : 5e-3) << run.dir;
  }
}
