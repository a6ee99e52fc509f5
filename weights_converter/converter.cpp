#include "weights_converter/converter.h"

#include <ctime>
#include <filesystem>

#include "kernels/common/error.h"
#include "runtime/format/atomic_file.h"
#include "runtime/format/json_fields.h"
#include "runtime/format/model_file.h"
#include "runtime/schedule.h"
#include "weights_converter/safetensors.h"
#include "weights_converter/unet2d_builder.h"
#include "weights_converter/unet2d_config.h"

namespace fs = std::filesystem;

namespace diffrt {

namespace {

constexpr uint64_t kMaxConfigBytes = 1 << 20;
constexpr const char* kPickleExts[] = {".bin", ".ckpt", ".pt", ".pth", ".pkl"};

bool is_pickle(const fs::path& p) {
  for (const char* e : kPickleExts)
    if (p.extension() == e) return true;
  return false;
}

nlohmann::json read_json_file(const fs::path& p) {
  return parse_json_strict(read_file_bytes(p.string(), kMaxConfigBytes), p.string());
}

// Finds the checkpoint in a UNet folder; refuses pickles by name.
std::map<std::string, SafeTensor> load_weights(const fs::path& dir, std::string* source) {
  const fs::path single = dir / "diffusion_pytorch_model.safetensors";
  const fs::path index = dir / "diffusion_pytorch_model.safetensors.index.json";
  SafeTensorsFile f;
  if (fs::exists(single)) {
    *source = single.string();
    f = read_safetensors(single.string());
  } else if (fs::exists(index)) {
    *source = index.string();
    f = read_sharded_safetensors(dir.string(), index.filename().string());
  } else {
    std::string pickles;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (is_pickle(e.path())) pickles += " " + e.path().filename().string();
    if (!pickles.empty())
      fail(ErrorCode::Unsupported, dir.string() + ": only pickle checkpoints found (" + pickles.substr(1) +
                                       "); pickle files can execute code and are refused. Re-save the model "
                                       "with save_pretrained(..., safe_serialization=True).");
    fail(ErrorCode::InvalidModel, dir.string() + ": no diffusion_pytorch_model.safetensors or "
                                                 "diffusion_pytorch_model.safetensors.index.json");
  }
  return std::move(f.tensors);
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace

ConvertReport convert_diffusers(const ConvertOptions& opt) {
  ConvertReport rep;
  fs::path in(opt.input);
  if (is_pickle(in))
    fail(ErrorCode::Unsupported, opt.input + ": pickle checkpoints can execute code and are refused; "
                                             "convert a safetensors diffusers folder instead");
  if (!fs::is_directory(in)) fail(ErrorCode::InvalidArgument, opt.input + ": not a directory");

  fs::path unet_dir = in, sched_file = in / "scheduler_config.json";
  if (fs::exists(in / "model_index.json")) {  // pipeline folder
    read_json_file(in / "model_index.json");  // must at least be valid JSON
    unet_dir = in / "unet";
    sched_file = in / "scheduler" / "scheduler_config.json";
    if (!fs::is_directory(unet_dir))
      fail(ErrorCode::InvalidModel, (in / "model_index.json").string() + ": pipeline folder has no unet/ folder");
  }
  if (!opt.scheduler_config.empty()) sched_file = opt.scheduler_config;
  rep.unet_dir = unet_dir.string();

  const fs::path cfg_path = unet_dir / "config.json";
  if (!fs::exists(cfg_path)) fail(ErrorCode::InvalidModel, unet_dir.string() + ": no config.json");
  nlohmann::json cfg_json = read_json_file(cfg_path);
  UNet2DConfig cfg = parse_unet2d_config(cfg_json, cfg_path.string());

  nlohmann::json sched = nlohmann::json::object();
  if (fs::exists(sched_file)) {
    sched = read_json_file(sched_file);
    scheduler_config_from_json(sched, sched_file.string());  // validate now, not at sampling time
    rep.scheduler_source = sched_file.string();
  } else if (!opt.scheduler_config.empty()) {
    fail(ErrorCode::InvalidArgument, opt.scheduler_config + ": no such file");
  }

  auto weights = load_weights(unet_dir, &rep.weights_source);
  rename_legacy_attention(weights);
  BuiltModel m = build_unet2d(cfg, weights, opt.dtype, opt.strict, rep.weights_source);
  rep.warnings = m.warnings;

  Conditioning cond;
  cond.num_classes = cfg.num_class_embeds;
  if (opt.null_class >= 0) {
    if (opt.null_class >= cfg.num_class_embeds)
      fail(ErrorCode::InvalidArgument, "--null-class " + std::to_string(opt.null_class) + " is not a class of this model (" +
                                           std::to_string(cfg.num_class_embeds) + " classes)");
    cond.null_class = opt.null_class;
  } else if (opt.null_class == -2 && cfg.num_class_embeds > 1) {
    cond.null_class = cfg.num_class_embeds - 1;
  }

  const nlohmann::json dv = cfg_json.contains("_diffusers_version") ? cfg_json["_diffusers_version"] : nlohmann::json();
  nlohmann::json prov = {{"converter", "diffrt convert " DIFFRT_VERSION_STRING},
                         {"source_config", cfg_path.filename().string()},
                         {"source_weights", fs::path(rep.weights_source).filename().string()},
                         {"source_scheduler", rep.scheduler_source.empty() ? "" : fs::path(rep.scheduler_source).filename().string()},
                         {"diffusers_version", dv.is_string() ? dv.get<std::string>() : std::string("unknown")},
                         {"dtype", dtype_name(opt.dtype)},
                         {"created", utc_now()}};
  std::vector<uint8_t> bytes = serialize_model_file("unet2d", cfg_json, m.graph, m.tensors, sched, cond, prov);
  // Read back what we wrote: the writer and the validating reader must agree.
  parse_model_file(bytes.data(), bytes.size(), opt.output);
  write_file_atomic(opt.output, bytes.data(), bytes.size());
  rep.tensors = m.tensors.size();
  rep.nodes = m.graph.nodes.size();
  rep.bytes = bytes.size();
  return rep;
}

}  // namespace diffrt
