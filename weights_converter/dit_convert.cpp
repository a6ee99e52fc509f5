// DiTPipeline / Transformer2DModel folder -> .drt (contract in dit_convert.h). Every config is parsed and checked
// before any weights are read. Tested by tests/dit_converter_test.cpp.
#include "weights_converter/dit_convert.h"

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/error.h"
#include "base/json_fields.h"
#include "model/model_file.h"
#include "model/pipeline_json.h"
#include "weights_converter/convert_parts.h"
#include "weights_converter/dit_builder.h"
#include "weights_converter/dit_config.h"
#include "weights_converter/scheduler_import.h"
#include "weights_converter/vae_decoder_builder.h"

namespace fs = std::filesystem;

namespace diffrt {

namespace {

using nlohmann::json;
using namespace convert_detail;

constexpr uint64_t kMaxIndexBytes = 1 << 20;

struct Component {
  bool present = false;
  std::string library, cls;
};

struct DiTIndex {
  std::map<std::string, Component> components;
  std::vector<std::pair<int, std::string>> id2label;  // file order
};

// model_index.json of a DiTPipeline: components as [library, class] pairs (or [null, null]), optional id2label.
DiTIndex read_dit_index(const fs::path& file) {
  const std::string origin = file.string();
  const std::string text = read_file_bytes(origin, kMaxIndexBytes);
  const json j = parse_json_strict(text, origin);  // rejects duplicate keys, bad UTF-8, ...
  if (!j.is_object()) fail(ErrorCode::InvalidModel, origin + ": expected a JSON object");
  if (j.contains("_class_name")) {
    if (!j["_class_name"].is_string())
      fail(ErrorCode::InvalidModel, origin + ": field '_class_name': expected a string");
    if (j["_class_name"] != "DiTPipeline")
      fail(ErrorCode::Unsupported, origin + ": unsupported pipeline _class_name=" + j["_class_name"].dump() +
                                       " with a transformer component (supported: DiTPipeline)");
  }
  DiTIndex out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (k.empty() || k[0] == '_' || !v.is_array()) continue;
    auto bad = [&] {
      fail(ErrorCode::InvalidModel, origin + ": field '" + k +
                                        "': expected [library, class] (strings, or null, null), got " + v.dump());
    };
    if (v.size() != 2) bad();
    Component c;
    if (!(v[0].is_null() && v[1].is_null())) {
      if (!v[0].is_string() || !v[1].is_string()) bad();
      c.present = true;
      c.library = v[0].get<std::string>();
      c.cls = v[1].get<std::string>();
    }
    out.components[k] = c;
  }
  if (j.contains("id2label")) {
    // DiTPipeline.labels depends on the file order (a later duplicate name wins): read it order-preserving.
    const nlohmann::ordered_json oj = nlohmann::ordered_json::parse(text);
    const nlohmann::ordered_json& m = oj["id2label"];
    if (!m.is_object()) fail(ErrorCode::InvalidModel, origin + ": field 'id2label': expected an object {\"0\": \"name\", ...}");
    for (auto it = m.begin(); it != m.end(); ++it) {
      const std::string& key = it.key();
      const bool digits = !key.empty() && key.size() <= 7 &&
                          key.find_first_not_of("0123456789") == std::string::npos;
      if (!digits)
        fail(ErrorCode::InvalidModel, origin + ": field 'id2label': key " + quote_for_error(key) +
                                          " is not a class index (decimal digits)");
      if (!it.value().is_string())
        fail(ErrorCode::InvalidModel, origin + ": field 'id2label." + key + "': expected a string, got " +
                                          it.value().dump());
      std::string name = it.value().get<std::string>();
      if (name.size() > kMaxClassNameBytes)
        fail(ErrorCode::InvalidModel, origin + ": field 'id2label." + key + "': longer than " +
                                          std::to_string(kMaxClassNameBytes) + " bytes");
      out.id2label.emplace_back(std::stoi(key), std::move(name));
    }
  }
  return out;
}

const Component* component(const DiTIndex& ix, const std::string& name) {
  auto it = ix.components.find(name);
  return it == ix.components.end() || !it->second.present ? nullptr : &it->second;
}

}  // namespace

bool is_dit_source(const fs::path& dir) {
  auto read = [](const fs::path& p) -> json {
    try {
      return json::parse(read_file_bytes(p.string(), kMaxIndexBytes), nullptr, false);
    } catch (const std::exception&) {
      return json();
    }
  };
  std::error_code ec;
  if (fs::exists(dir / "model_index.json", ec)) {
    const json j = read(dir / "model_index.json");
    return j.is_object() && j.contains("transformer") && j["transformer"].is_array() && !j.contains("unet");
  }
  if (fs::exists(dir / "config.json", ec)) {
    const json j = read(dir / "config.json");
    return j.is_object() && j.contains("_class_name") && j["_class_name"] == "Transformer2DModel";
  }
  return false;
}

ConvertReport convert_dit(const ConvertOptions& opt) {
  ConvertReport rep;
  rep.family = "dit";
  const fs::path in(opt.input);
  const bool pipeline = fs::exists(in / "model_index.json");
  const fs::path index_file = in / "model_index.json";

  // ---- locate the parts and parse every config before reading weights ----
  DiTIndex index;
  fs::path tdir = in, sched_file = in / "scheduler_config.json", vae_dir;
  if (pipeline) {
    index = read_dit_index(index_file);
    const Component* t = component(index, "transformer");
    if (!t) fail(ErrorCode::InvalidModel, index_file.string() + ": the pipeline names no transformer component");
    if (t->cls != "Transformer2DModel")
      fail(ErrorCode::Unsupported, index_file.string() + ": unsupported transformer class \"" + t->cls +
                                       "\" (supported: Transformer2DModel)");
    tdir = component_dir(in, "transformer");
    if (tdir.empty()) fail(ErrorCode::InvalidModel, index_file.string() + ": pipeline folder has no transformer/ folder");
    const fs::path sdir = component_dir(in, "scheduler");
    sched_file = (sdir.empty() ? in / "scheduler" : sdir) / "scheduler_config.json";
    if (!opt.no_vae) {
      const Component* v = component(index, "vae");
      if (!v)
        fail(ErrorCode::InvalidModel, index_file.string() + ": the pipeline has no vae component; convert with no_vae "
                                                            "(--no-vae) to store the transformer alone");
      if (v->cls != "AutoencoderKL")
        fail(ErrorCode::Unsupported, index_file.string() + ": unsupported vae class \"" + v->cls +
                                         "\" (supported: AutoencoderKL)");
      vae_dir = component_dir(in, "vae");
      if (vae_dir.empty())
        fail(ErrorCode::InvalidModel, (in / "vae").string() + ": missing (model_index.json names an AutoencoderKL); "
                                                              "convert with no_vae (--no-vae) to store the transformer alone");
    }
    for (const auto& [name, c] : index.components)
      if (c.present && name != "transformer" && name != "vae" && name != "scheduler")
        rep.warnings.push_back(index_file.string() + ": component '" + name + "' is not used by DiTPipeline; ignored");
  } else {
    rep.warnings.push_back("no VAE: a bare Transformer2DModel folder converts to a model file without a decoder "
                           "(convert the DiTPipeline folder to include vae/)");
  }
  if (!opt.scheduler_config.empty()) sched_file = opt.scheduler_config;
  rep.unet_dir = tdir.string();

  const fs::path cfg_path = tdir / "config.json";
  if (!fs::exists(cfg_path)) fail(ErrorCode::InvalidModel, tdir.string() + ": no config.json");
  const json cfg_json = read_json_file(cfg_path);
  if (!cfg_json.is_object()) fail(ErrorCode::InvalidModel, cfg_path.string() + ": expected a JSON object");
  const DiTConfig cfg = parse_dit_config(cfg_json, cfg_path.string());

  for (const auto& [id, name] : index.id2label)
    if (id >= cfg.label_rows())
      fail(ErrorCode::InvalidModel, index_file.string() + ": field 'id2label': class " + std::to_string(id) +
                                        " is not a row of the label table (" + std::to_string(cfg.label_rows()) +
                                        " rows: num_embeds_ada_norm " + std::to_string(cfg.num_embeds_ada_norm) +
                                        " + the null class)");

  ImportedScheduler sched;
  sched.config = json::object();
  if (fs::exists(sched_file)) {
    json sj = read_json_file(sched_file);
    // diffusers instantiates the scheduler class model_index.json names, with this file's fields.
    const Component* named = component(index, "scheduler");
    if (pipeline && opt.scheduler_config.empty() && named && sj.is_object() &&
        !(sj.contains("_class_name") && sj["_class_name"] == named->cls)) {
      if (sj.contains("_class_name"))
        rep.warnings.push_back(index_file.string() + " names scheduler class " + named->cls + " but " +
                               sched_file.string() + " says " + sj["_class_name"].dump() + "; using " + named->cls +
                               " as diffusers does");
      sj["_class_name"] = named->cls;
    }
    sched = import_scheduler_config(sj, sched_file.string());
    rep.scheduler_source = sched_file.string();
    rep.warnings.insert(rep.warnings.end(), sched.warnings.begin(), sched.warnings.end());
  } else if (!opt.scheduler_config.empty()) {
    fail(ErrorCode::InvalidArgument, opt.scheduler_config + ": no such file");
  }

  if (!vae_dir.empty()) {  // the VAE decodes the transformer's latents: in_channels of them
    const fs::path vcfg = vae_dir / "config.json";
    if (!fs::exists(vcfg)) fail(ErrorCode::InvalidModel, vae_dir.string() + ": no config.json");
    const AutoencoderKLConfig vc = parse_autoencoder_kl_config(read_json_file(vcfg), vcfg.string());
    if (vc.latent_channels != cfg.in_channels)
      fail(ErrorCode::InvalidModel, vcfg.string() + ": field 'latent_channels': " + std::to_string(vc.latent_channels) +
                                        " but the transformer's in_channels is " + std::to_string(cfg.in_channels));
  }

  Conditioning cond;
  cond.num_classes = cfg.label_rows();
  if (opt.null_class >= 0) {
    if (opt.null_class >= cfg.label_rows())
      fail(ErrorCode::InvalidArgument, "--null-class " + std::to_string(opt.null_class) + " is not a row of this "
                                       "model's label table (" + std::to_string(cfg.label_rows()) + " rows)");
    cond.null_class = opt.null_class;
    if (opt.null_class != kDiTNullClass)
      rep.warnings.push_back("--null-class " + std::to_string(opt.null_class) + ": guidance will differ from "
                             "DiTPipeline, which always uses class " + std::to_string(kDiTNullClass));
  } else if (opt.null_class == -2) {
    if (cfg.label_rows() > kDiTNullClass) {
      cond.null_class = kDiTNullClass;
    } else {
      rep.warnings.push_back(cfg_path.string() + ": num_embeds_ada_norm " + std::to_string(cfg.num_embeds_ada_norm) +
                             ": DiTPipeline's unconditional class " + std::to_string(kDiTNullClass) +
                             " is not in the label table, so diffusers cannot guide this model (IndexError); stored "
                             "without a null class. Convert with --null-class " +
                             std::to_string(cfg.num_embeds_ada_norm) + " to guide with the learned null row");
    }
  }

  // ---- weights ----
  std::map<std::string, SafeTensor> weights = load_weights(tdir, &rep.weights_source);
  BuiltModel m = build_dit(cfg, weights, opt.dtype, opt.strict, rep.weights_source);
  weights.clear();
  rep.warnings.insert(rep.warnings.end(), m.warnings.begin(), m.warnings.end());

  VaeDecoder vae;
  std::string vae_config_path;
  if (!vae_dir.empty()) {
    vae = convert_vae_component(vae_dir, cfg.in_channels, opt, &m.tensors, &rep.warnings, &vae_config_path,
                                &rep.vae_source);
    rep.vae_nodes = vae.graph.nodes.size();
  }

  PipelineInfo pinfo;
  pinfo.class_name = "DiTPipeline";
  pinfo.cfg_order = CfgOrder::CondFirst;
  pinfo.drop_extra_channels = cfg.out_channels == 2 * cfg.in_channels;  // DiTPipeline: out // 2 == in
  pinfo.id2label = index.id2label;

  // ---- write ----
  const json dv = cfg_json.contains("_diffusers_version") ? cfg_json["_diffusers_version"] : json();
  json prov = {{"converter", "diffrt convert " DIFFRT_VERSION_STRING},
               {"source_config", pipeline ? "transformer/config.json" : "config.json"},
               {"source_weights", (pipeline ? "transformer/" : "") + fs::path(rep.weights_source).filename().string()},
               {"source_scheduler", rep.scheduler_source.empty() ? "" : fs::path(rep.scheduler_source).filename().string()},
               {"diffusers_version", dv.is_string() ? dv.get<std::string>() : std::string("unknown")},
               {"dtype", dtype_name(opt.dtype)},
               {"created", utc_now()}};
  if (!sched.source_class.empty()) prov["source_scheduler_class"] = sched.source_class;
  if (pipeline) prov["source_pipeline"] = "model_index.json";
  if (!rep.vae_source.empty()) {
    prov["source_vae_config"] = "vae/" + fs::path(vae_config_path).filename().string();
    prov["source_vae_weights"] = "vae/" + fs::path(rep.vae_source).filename().string();
  }
  std::vector<uint8_t> bytes = serialize_model_file(rep.family, cfg_json, m.graph, m.tensors, sched.config, cond, prov,
                                                    vae.present() ? &vae : nullptr, nullptr, nullptr, nullptr, &pinfo);
  rep.tensors = m.tensors.size();
  rep.nodes = m.graph.nodes.size();
  std::vector<TensorBlob>().swap(m.tensors);
  write_file_atomic(opt.output, bytes.data(), bytes.size());
  rep.bytes = bytes.size();
  return rep;
}

}  // namespace diffrt
