// diffrt C++ API (diffrt.hpp): version, Model (the parsed file and its info; backend weights made lazily by
// the first session that needs them, shared by all), device counts.
// Tested by tests/api_test.cpp (through the C API), tests/concurrency_test.cpp and tests/gpu/api_test.cpp.
#include <algorithm>
#include <new>

#include "api/api_internal.h"
#include "model/model_file.h"
#include "runtime/latent_pipeline.h"
#include "runtime/plan.h"

namespace diffrt {

// ---- version -----------------------------------------------------------------------------------

const char* version_string() { return DIFFRT_VERSION_STRING; }

void version(int* major, int* minor, int* patch) {
  int parts[3] = {0, 0, 0};
  const char* s = DIFFRT_VERSION_STRING;
  for (int i = 0; i < 3 && *s; ++i) {
    while (*s >= '0' && *s <= '9') parts[i] = parts[i] * 10 + (*s++ - '0');
    if (*s == '.') ++s;
  }
  if (major) *major = parts[0];
  if (minor) *minor = parts[1];
  if (patch) *patch = parts[2];
}

int device_count(Device device, std::string* why) {
  if (why) why->clear();
  switch (device) {
    case Device::Cpu: return 1;
    case Device::Cuda: {
      std::string reason;
      const int n = engine::cuda_device_count(&reason);
      if (why) *why = reason;
      return n;
    }
  }
  api::bad("device: unknown value " + std::to_string(int(device)));
}

// ---- Model -------------------------------------------------------------------------------------

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
const ModelInfo& Model::info() const { return impl_->info; }

std::shared_ptr<const Model> Model::load(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->loaded = engine::LoadedModel::load(path);
  const ModelFile& mf = impl->loaded->file();
  ModelInfo& in = impl->info;
  in.in_channels = mf.graph.in_channels;
  in.out_channels = mf.graph.out_channels;
  const auto ss = mf.config.find("sample_size");
  if (ss != mf.config.end() && ss->is_number_integer() && ss->get<int64_t>() > 0 && ss->get<int64_t>() <= 8192)
    in.sample_size = ss->get<int>();
  in.downsample_factor = std::max(1, mf.graph.downsample_factor);
  in.num_classes = mf.conditioning.num_classes;
  in.null_class = mf.conditioning.null_class;
  const nlohmann::json sj = mf.scheduler.is_object() ? mf.scheduler : nlohmann::json::object();
  try {
    const SchedulerConfig sc = scheduler_config_from_json(sj, path + " (scheduler)");
    in.num_train_timesteps = sc.num_train_timesteps;
    in.default_sampler = sampler_display_name(sc);
    in.scheduler = describe_scheduler(sc);
  } catch (const Error& e) {
    in.num_train_timesteps = 0;  // reported when sampling without a scheduler config that fixes it
    in.scheduler = std::string("invalid: ") + e.what();
  }
  in.context_dim = mf.graph.context >= 0 ? mf.graph.context_dim : 0;
  in.has_vae = mf.vae.present();
  in.vae_scale_factor = in.has_vae ? vae_scale_factor(mf) : 1;
  in.vae_scaling_factor = in.has_vae ? mf.vae.scaling_factor : 0.0f;
  in.image_channels = in.has_vae ? mf.vae.graph.out_channels : in.in_channels;
  in.image_size = in.sample_size * in.vae_scale_factor;
  in.has_vae_encoder = mf.vae_encoder.present();
  in.encoder_image_channels = in.has_vae_encoder ? mf.vae_encoder.graph.in_channels : 0;
  in.family = mf.family;
  in.has_text_encoder = mf.text_encoder.present() && mf.has_tokenizer;
  in.default_guidance_scale = in.context_dim > 0 ? 7.5f : 1.0f;
  in.scheduler_config = sj.dump();
  return std::shared_ptr<const Model>(new Model(std::move(impl)));
}

PlanSummary Model::plan_summary(int n, int h, int w) const {
  const ModelFile& mf = impl_->loaded->file();
  const MemoryPlan p = plan_memory(mf.graph, n, h, w);
  PlanSummary s;
  s.arena_bytes_fp32 = p.arena_elems * sizeof(float);
  s.naive_bytes_fp32 = p.naive_elems * sizeof(float);
  for (const Node& nd : mf.graph.nodes) s.nodes.push_back({op_name(nd.attrs), nd.name, p.shapes[size_t(nd.output)].str()});
  return s;
}

int Model::weight_uploads() const { return impl_->loaded->weight_uploads(); }

}  // namespace diffrt
