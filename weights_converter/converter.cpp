#include "weights_converter/converter.h"

#include <ctime>
#include <filesystem>
#include <map>

#include "base/error.h"
#include "base/atomic_file.h"
#include "base/json_fields.h"
#include "model/model_file.h"
#include "weights_converter/tokenizer_import.h"
#include "weights_converter/clip_text_builder.h"
#include "weights_converter/convert_parts.h"
#include "weights_converter/dit_convert.h"
#include "weights_converter/safetensors.h"
#include "model/scheduler_config.h"
#include "weights_converter/scheduler_import.h"
#include "weights_converter/unet2d_builder.h"
#include "weights_converter/unet2d_condition_builder.h"
#include "weights_converter/unet2d_condition_config.h"
#include "weights_converter/unet2d_config.h"
#include "weights_converter/vae_decoder_builder.h"
#include "weights_converter/vae_encoder_builder.h"

namespace fs = std::filesystem;

namespace diffrt {

// Helpers shared with the other pipeline converters (weights_converter/convert_parts.h).
namespace convert_detail {

using nlohmann::json;

constexpr uint64_t kMaxConfigBytes = 1 << 20;
constexpr const char* kPickleExts[] = {".bin", ".ckpt", ".pt", ".pth", ".pkl"};

bool is_pickle(const fs::path& p) {
  for (const char* e : kPickleExts)
    if (p.extension() == e) return true;
  return false;
}

json read_json_file(const fs::path& p) {
  return parse_json_strict(read_file_bytes(p.string(), kMaxConfigBytes), p.string());
}

// Finds the checkpoint in a model folder; refuses pickles by name.
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

std::string string_or(const json& j, const char* key, const std::string& def) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : def;
}

// A component entry of model_index.json: ["diffusers", "AutoencoderKL"]; [null, null] = absent.
struct Component {
  bool present = false;
  std::string library, cls;
};

// model_index.json: keys not starting with '_' whose value is a list are components; other values
// (e.g. "requires_safety_checker": false) are pipeline options and ignored.
std::map<std::string, Component> read_model_index(const fs::path& file) {
  const std::string origin = file.string();
  json j = read_json_file(file);
  if (!j.is_object()) fail(ErrorCode::InvalidModel, origin + ": expected a JSON object");
  std::map<std::string, Component> out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (k.empty() || k[0] == '_' || !v.is_array()) continue;
    auto bad = [&] {
      fail(ErrorCode::InvalidModel, origin + ": field '" + k + "': expected [library, class] (strings, or null, null), got " +
                                        v.dump());
    };
    if (v.size() != 2) bad();
    Component c;
    if (v[0].is_null() && v[1].is_null()) {
      out[k] = c;
      continue;
    }
    if (!v[0].is_string() || !v[1].is_string()) bad();
    c.present = true;
    c.library = v[0].get<std::string>();
    c.cls = v[1].get<std::string>();
    out[k] = c;
  }
  auto unet = out.find("unet");
  if (unet == out.end() || !unet->second.present)
    fail(ErrorCode::InvalidModel, origin + ": the pipeline names no unet component");
  if (unet->second.cls != "UNet2DModel" && unet->second.cls != "UNet2DConditionModel")
    fail(ErrorCode::Unsupported, origin + ": unsupported unet class \"" + unet->second.cls +
                                     "\" (supported: UNet2DModel, UNet2DConditionModel)");
  return out;
}

// A pipeline component folder; it must resolve inside the pipeline folder (no symlink escapes).
// Returns an empty path when it does not exist.
fs::path component_dir(const fs::path& root, const std::string& name) {
  const fs::path p = root / name;
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(p, ec))) return {};
  const fs::path croot = fs::canonical(root, ec);
  const fs::path cp = fs::weakly_canonical(p, ec);
  auto rel = cp.lexically_relative(croot);
  if (ec || croot.empty() || rel.empty() || *rel.begin() == "..")
    fail(ErrorCode::InvalidModel, p.string() + ": resolves outside the pipeline folder (symlink?)");
  if (!fs::is_directory(p)) fail(ErrorCode::InvalidModel, p.string() + ": not a directory");
  return p;
}

// The VAE folder of a latent-diffusion pipeline: its config is parsed (and checked against the
// UNet) before any weights are read.
struct VaePart {
  AutoencoderKLConfig cfg;
  VaeDecoder decoder;
  VaeEncoder encoder;  // empty when not converted (no_vae_encoder, or a checkpoint without encoder weights)
  BuiltModel built, built_encoder;
  fs::path dir;
  std::string config_path, weights_path;
};

VaePart read_vae_config(const fs::path& vae_dir, int unet_out_channels) {
  VaePart v;
  v.dir = vae_dir;
  const fs::path cfg_path = vae_dir / "config.json";
  if (!fs::exists(cfg_path)) fail(ErrorCode::InvalidModel, vae_dir.string() + ": no config.json");
  v.config_path = cfg_path.string();
  v.decoder.config = read_json_file(cfg_path);
  v.cfg = parse_autoencoder_kl_config(v.decoder.config, v.config_path);
  if (v.cfg.latent_channels != unet_out_channels)
    fail(ErrorCode::InvalidModel, v.config_path + ": field 'latent_channels': " + std::to_string(v.cfg.latent_channels) +
                                      " but the UNet outputs " + std::to_string(unet_out_channels) + " channels");
  return v;
}

// The VAE's storage dtype (ConvertOptions): as asked, else diffusers' force_upcast rule.
DType vae_dtype_for(const AutoencoderKLConfig& cfg, const ConvertOptions& opt) {
  if (opt.vae_dtype) return *opt.vae_dtype;
  return opt.dtype == DType::F16 && cfg.force_upcast ? DType::F32 : opt.dtype;
}
VaeDecoder convert_vae_component(const fs::path& vae_dir, int latent_channels, const ConvertOptions& opt,
                                 std::vector<TensorBlob>* tensors, std::vector<std::string>* warnings,
                                 std::string* config_path, std::string* weights_path);

void convert_vae(VaePart& v, const ConvertOptions& opt) {
  auto weights = load_weights(v.dir, &v.weights_path);
  rename_legacy_attention(weights, v.weights_path);  // older SD VAEs store query/key/value/proj_attn
  const DType dt = vae_dtype_for(v.cfg, opt);
  v.built = build_vae_decoder(v.cfg, weights, dt, opt.strict, v.weights_path);
  v.decoder.scaling_factor = v.cfg.scaling_factor;
  v.decoder.graph = std::move(v.built.graph);
  if (v.cfg.force_upcast && dt == DType::F16)
    v.built.warnings.push_back(v.config_path + ": force_upcast is set (this VAE overflows in fp16); its decoder and "
                                               "encoder are stored in fp16 as requested -- prefer --vae-dtype fp32 (the "
                                               "default) or bf16");
  if (opt.no_vae_encoder) return;
  if (!has_vae_encoder_weights(weights)) {
    v.built.warnings.push_back(v.weights_path + " holds no encoder weights (encoder.*): the model file gets the "
                                                "decoder alone, so image-to-image and inpainting will not work");
    return;
  }
  // The encoder is the same VAE: the same dtype (diffusers upcasts the whole VAE).
  v.built_encoder = build_vae_encoder(v.cfg, weights, dt, opt.strict, v.weights_path);
  v.encoder.graph = std::move(v.built_encoder.graph);
}

// The text_encoder/ and tokenizer/ folders of a latent-diffusion pipeline: configs and vocabulary are read
// (and checked against the UNet) before any weights.
struct TextPart {
  ClipTextConfig cfg;
  TextEncoder encoder;
  ClipTokenizerSpec tokenizer;
  BuiltModel built;
  fs::path dir;
  std::string config_path, weights_path;
};

TextPart read_text_parts(const fs::path& in, const std::map<std::string, Component>& index, int context_dim,
                         std::vector<std::string>& warnings) {
  const std::string index_file = (in / "model_index.json").string();
  const std::string hint = "; convert with no_text_encoder (--no-text-encoder) to leave the text encoder out";
  const Component& te = index.at("text_encoder");
  const Component& tk = index.at("tokenizer");
  if (te.cls != "CLIPTextModel")
    fail(ErrorCode::Unsupported, index_file + ": unsupported text_encoder class \"" + te.cls +
                                     "\" (supported: CLIPTextModel)" + hint);
  if (tk.cls != "CLIPTokenizer" && tk.cls != "CLIPTokenizerFast")
    fail(ErrorCode::Unsupported, index_file + ": unsupported tokenizer class \"" + tk.cls +
                                     "\" (supported: CLIPTokenizer)" + hint);
  if (tk.cls == "CLIPTokenizerFast")
    warnings.push_back(index_file + " names CLIPTokenizerFast; diffrt tokenizes as the slow CLIPTokenizer does "
                                    "(the two differ on some unusual Unicode input)");
  TextPart t;
  t.dir = component_dir(in, "text_encoder");
  const fs::path tok_dir = component_dir(in, "tokenizer");
  if (t.dir.empty() || tok_dir.empty())
    fail(ErrorCode::InvalidModel, (in / (t.dir.empty() ? "text_encoder" : "tokenizer")).string() +
                                      ": missing (model_index.json names it)" + hint);
  const fs::path cfg_path = t.dir / "config.json";
  if (!fs::exists(cfg_path)) fail(ErrorCode::InvalidModel, t.dir.string() + ": no config.json");
  t.config_path = cfg_path.string();
  t.encoder.config = read_json_file(cfg_path);
  t.cfg = parse_clip_text_config(t.encoder.config, t.config_path);
  if (t.cfg.hidden_size != context_dim)
    fail(ErrorCode::InvalidModel, t.config_path + ": field 'hidden_size': " + std::to_string(t.cfg.hidden_size) +
                                      " but the UNet's cross_attention_dim is " + std::to_string(context_dim));
  t.tokenizer = load_clip_tokenizer_dir(tok_dir.string());
  if (t.tokenizer.vocab.size() > size_t(t.cfg.vocab_size))
    fail(ErrorCode::InvalidModel, (tok_dir / "vocab.json").string() + ": " + std::to_string(t.tokenizer.vocab.size()) +
                                      " tokens but the text encoder's vocab_size is " + std::to_string(t.cfg.vocab_size));
  if (t.tokenizer.max_length > t.cfg.max_position_embeddings)
    fail(ErrorCode::InvalidModel, (tok_dir / "tokenizer_config.json").string() + ": model_max_length " +
                                      std::to_string(t.tokenizer.max_length) + " but the text encoder has " +
                                      std::to_string(t.cfg.max_position_embeddings) + " positions");
  return t;
}

void convert_text_encoder(TextPart& t, const ConvertOptions& opt) {
  const std::set<std::string> skip = {kClipPositionIdsTensor};
  const fs::path single = t.dir / "model.safetensors", index = t.dir / "model.safetensors.index.json";
  SafeTensorsFile f;
  if (fs::exists(single)) {
    t.weights_path = single.string();
    f = read_safetensors(single.string(), skip);
  } else if (fs::exists(index)) {
    t.weights_path = index.string();
    f = read_sharded_safetensors(t.dir.string(), index.filename().string(), skip);
  } else {
    std::string pickles;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(t.dir, ec))
      if (is_pickle(e.path())) pickles += " " + e.path().filename().string();
    if (!pickles.empty())
      fail(ErrorCode::Unsupported, t.dir.string() + ": only pickle checkpoints found (" + pickles.substr(1) +
                                       "); pickle files can execute code and are refused. Re-save the text encoder "
                                       "with save_pretrained(..., safe_serialization=True).");
    fail(ErrorCode::InvalidModel, t.dir.string() + ": no model.safetensors or model.safetensors.index.json");
  }
  t.built = build_clip_text_encoder(t.cfg, f.tensors, opt.text_encoder_dtype.value_or(opt.dtype), opt.strict,
                                    t.weights_path);
  t.encoder.graph = std::move(t.built.graph);
}

VaeDecoder convert_vae_component(const fs::path& vae_dir, int latent_channels, const ConvertOptions& opt,
                                 std::vector<TensorBlob>* tensors, std::vector<std::string>* warnings,
                                 std::string* config_path, std::string* weights_path) {
  VaePart v = read_vae_config(vae_dir, latent_channels);
  ConvertOptions decoder_only = opt;  // the callers' pipelines (DiT) take no image input: no encoder
  decoder_only.no_vae_encoder = true;
  convert_vae(v, decoder_only);
  *config_path = v.config_path;
  *weights_path = v.weights_path;
  for (const auto& w : v.built.warnings) warnings->push_back("vae: " + w);
  for (auto& t : v.built.tensors) tensors->push_back(std::move(t));
  return std::move(v.decoder);
}

}  // namespace convert_detail

using namespace convert_detail;

ConvertReport convert_diffusers(const ConvertOptions& opt) {
  ConvertReport rep;
  fs::path in(opt.input);
  if (is_pickle(in))
    fail(ErrorCode::Unsupported, opt.input + ": pickle checkpoints can execute code and are refused; "
                                             "convert a safetensors diffusers folder instead");
  if (!fs::is_directory(in)) fail(ErrorCode::InvalidArgument, opt.input + ": not a directory");

  if (is_dit_source(in)) return convert_dit(opt);  // DiTPipeline folder or bare Transformer2DModel (dit_convert.h)

  // ---- locate the parts ----
  const bool pipeline = fs::exists(in / "model_index.json");
  std::map<std::string, Component> index;
  fs::path unet_dir = in, sched_file = in / "scheduler_config.json";
  if (pipeline) {
    const fs::path index_file = in / "model_index.json";
    index = read_model_index(index_file);
    unet_dir = component_dir(in, "unet");
    if (unet_dir.empty())
      fail(ErrorCode::InvalidModel, index_file.string() + ": pipeline folder has no unet/ folder");
    fs::path sched_dir = component_dir(in, "scheduler");
    sched_file = (sched_dir.empty() ? in / "scheduler" : sched_dir) / "scheduler_config.json";
  }
  if (!opt.scheduler_config.empty()) sched_file = opt.scheduler_config;
  rep.unet_dir = unet_dir.string();

  const fs::path cfg_path = unet_dir / "config.json";
  if (!fs::exists(cfg_path)) fail(ErrorCode::InvalidModel, unet_dir.string() + ": no config.json");
  json cfg_json = read_json_file(cfg_path);
  if (!cfg_json.is_object()) fail(ErrorCode::InvalidModel, cfg_path.string() + ": expected a JSON object");
  if (cfg_json.contains("_class_name") && !cfg_json["_class_name"].is_string())
    fail(ErrorCode::InvalidModel, cfg_path.string() + ": field '_class_name': expected a string");
  const std::string cls = string_or(cfg_json, "_class_name", "UNet2DModel");
  if (cls != "UNet2DModel" && cls != "UNet2DConditionModel")
    fail(ErrorCode::Unsupported, cfg_path.string() + ": unsupported _class_name=\"" + cls +
                                     "\" (supported: UNet2DModel, UNet2DConditionModel)");
  if (pipeline && index["unet"].cls != cls)
    fail(ErrorCode::InvalidModel, (in / "model_index.json").string() + ": names unet class " + index["unet"].cls +
                                      " but " + cfg_path.string() + " is a " + cls);
  const bool conditional = cls == "UNet2DConditionModel";
  rep.family = conditional ? "unet2d_condition" : "unet2d";

  // ---- parse every config before reading any weights ----
  UNet2DConfig cfg2d;
  UNet2DConditionConfig cfgc;
  if (conditional) cfgc = parse_unet2d_condition_config(cfg_json, cfg_path.string());
  else cfg2d = parse_unet2d_config(cfg_json, cfg_path.string());

  ImportedScheduler sched;
  sched.config = json::object();
  if (fs::exists(sched_file)) {
    // diffusers writes lambda_min_clipped = -inf as -Infinity: the scheduler file is Python's JSON.
    json sj = parse_scheduler_config_text(read_file_bytes(sched_file.string(), kMaxConfigBytes), sched_file.string());
    // diffusers instantiates the scheduler class model_index.json names, with this file's fields.
    auto named = index.find("scheduler");
    if (pipeline && opt.scheduler_config.empty() && named != index.end() && named->second.present && sj.is_object() &&
        !(sj.contains("_class_name") && sj["_class_name"] == named->second.cls)) {
      if (sj.contains("_class_name"))
        rep.warnings.push_back((in / "model_index.json").string() + " names scheduler class " + named->second.cls +
                               " but " + sched_file.string() + " says " + sj["_class_name"].dump() +
                               "; using " + named->second.cls + " as diffusers does");
      sj["_class_name"] = named->second.cls;
    }
    sched = import_scheduler_config(sj, sched_file.string());
    rep.scheduler_source = sched_file.string();
    rep.warnings.insert(rep.warnings.end(), sched.warnings.begin(), sched.warnings.end());
  } else if (!opt.scheduler_config.empty()) {
    fail(ErrorCode::InvalidArgument, opt.scheduler_config + ": no such file");
  }

  if (conditional && opt.null_class >= 0)
    fail(ErrorCode::InvalidArgument, "--null-class " + std::to_string(opt.null_class) +
                                         " given, but this model is not class-conditional");
  fs::path vae_dir;
  VaePart vae;
  if (conditional && pipeline && !opt.no_vae) {
    auto it = index.find("vae");
    if (it == index.end() || !it->second.present)
      fail(ErrorCode::InvalidModel, (in / "model_index.json").string() +
                                        ": the pipeline has no vae component; convert with no_vae (--no-vae) to "
                                        "store the UNet alone");
    if (it->second.cls != "AutoencoderKL")
      fail(ErrorCode::Unsupported, (in / "model_index.json").string() + ": unsupported vae class \"" + it->second.cls +
                                       "\" (supported: AutoencoderKL)");
    vae_dir = component_dir(in, "vae");
    if (vae_dir.empty())
      fail(ErrorCode::InvalidModel, (in / "vae").string() + ": missing (model_index.json names an AutoencoderKL); "
                                                            "convert with no_vae (--no-vae) to store the UNet alone");
    vae = read_vae_config(vae_dir, cfgc.out_channels);
  } else if (conditional && !pipeline) {
    rep.warnings.push_back("no VAE: a bare UNet folder converts to a model file without a decoder (convert the "
                           "pipeline folder to include vae/)");
  } else if (!conditional && pipeline && index.count("vae") && index["vae"].present) {
    rep.warnings.push_back("vae/ is not converted for a UNet2DModel pipeline");
  }
  TextPart text;
  bool with_text = false;
  {
    const bool has_te = index.count("text_encoder") && index["text_encoder"].present;
    const bool has_tok = index.count("tokenizer") && index["tokenizer"].present;
    if (conditional && pipeline && !opt.no_text_encoder && (has_te || has_tok)) {
      if (!has_te || !has_tok)
        fail(ErrorCode::InvalidModel, (in / "model_index.json").string() + ": names a " +
                                          (has_te ? "text_encoder but no tokenizer" : "tokenizer but no text_encoder") +
                                          "; convert with no_text_encoder (--no-text-encoder) to leave them out");
      text = read_text_parts(in, index, cfgc.cross_attention_dim, rep.warnings);
      with_text = true;
    } else if (!conditional && pipeline && (has_te || has_tok)) {
      rep.warnings.push_back("text_encoder/ and tokenizer/ are not converted for a UNet2DModel pipeline");
    }
  }

  // A component dtype for a component this conversion does not store is a mistake, not a no-op.
  if (opt.vae_dtype && vae_dir.empty())
    fail(ErrorCode::InvalidArgument, "--vae-dtype " + std::string(dtype_name(*opt.vae_dtype)) +
                                         " given, but no VAE is converted (" +
                                         (opt.no_vae ? "--no-vae" : !conditional ? "a UNet2DModel has none"
                                                                                 : "no vae/ in this folder") + ")");
  if (opt.text_encoder_dtype && !with_text)
    fail(ErrorCode::InvalidArgument, "--text-encoder-dtype " + std::string(dtype_name(*opt.text_encoder_dtype)) +
                                         " given, but no text encoder is converted (" +
                                         (opt.no_text_encoder ? "--no-text-encoder" : "this folder has none") + ")");

  // ---- weights ----
  auto weights = load_weights(unet_dir, &rep.weights_source);
  BuiltModel m;
  Conditioning cond;
  if (conditional) {
    m = build_unet2d_condition(cfgc, weights, opt.dtype, opt.strict, rep.weights_source);
  } else {
    rename_legacy_attention(weights, rep.weights_source);
    m = build_unet2d(cfg2d, weights, opt.dtype, opt.strict, rep.weights_source);
    cond.num_classes = cfg2d.num_class_embeds;
    if (opt.null_class >= 0) {
      if (opt.null_class >= cfg2d.num_class_embeds)
        fail(ErrorCode::InvalidArgument, "--null-class " + std::to_string(opt.null_class) +
                                             " is not a class of this model (" + std::to_string(cfg2d.num_class_embeds) +
                                             " classes)");
      cond.null_class = opt.null_class;
    } else if (opt.null_class == -2 && cfg2d.num_class_embeds > 1) {
      cond.null_class = cfg2d.num_class_embeds - 1;
    }
  }
  weights.clear();
  rep.warnings.insert(rep.warnings.end(), m.warnings.begin(), m.warnings.end());

  if (!vae_dir.empty()) {
    convert_vae(vae, opt);
    rep.vae_source = vae.weights_path;
    rep.vae_nodes = vae.decoder.graph.nodes.size();
    rep.vae_encoder_nodes = vae.encoder.graph.nodes.size();
    for (const auto& w : vae.built.warnings) rep.warnings.push_back("vae: " + w);
    for (const auto& w : vae.built_encoder.warnings) rep.warnings.push_back("vae encoder: " + w);
    for (auto& t : vae.built.tensors) m.tensors.push_back(std::move(t));
    for (auto& t : vae.built_encoder.tensors) m.tensors.push_back(std::move(t));
  }

  if (with_text) {
    convert_text_encoder(text, opt);
    rep.text_encoder_source = text.weights_path;
    rep.text_encoder_nodes = text.encoder.graph.nodes.size();
    for (const auto& w : text.built.warnings) rep.warnings.push_back("text_encoder: " + w);
    for (auto& t : text.built.tensors) m.tensors.push_back(std::move(t));
  }

  // ---- write ----
  const json dv = cfg_json.contains("_diffusers_version") ? cfg_json["_diffusers_version"] : json();
  json prov = {{"converter", "diffrt convert " DIFFRT_VERSION_STRING},
               {"source_config", cfg_path.filename().string()},
               {"source_weights", fs::path(rep.weights_source).filename().string()},
               {"source_scheduler", rep.scheduler_source.empty() ? "" : fs::path(rep.scheduler_source).filename().string()},
               {"diffusers_version", dv.is_string() ? dv.get<std::string>() : std::string("unknown")},
               {"dtype", dtype_name(opt.dtype)},
               {"created", utc_now()}};
  rep.dtype = opt.dtype;
  if (!sched.source_class.empty()) prov["source_scheduler_class"] = sched.source_class;
  if (!rep.vae_source.empty()) {
    rep.vae_dtype = vae.decoder.graph.dtype;
    prov["vae_dtype"] = dtype_name(rep.vae_dtype);
    prov["source_vae_config"] = "vae/" + fs::path(vae.config_path).filename().string();
    prov["source_vae_weights"] = "vae/" + fs::path(rep.vae_source).filename().string();
  }
  if (with_text) {
    rep.text_encoder_dtype = text.encoder.graph.dtype;
    prov["text_encoder_dtype"] = dtype_name(rep.text_encoder_dtype);
    prov["source_text_encoder_config"] = "text_encoder/config.json";
    prov["source_text_encoder_weights"] = "text_encoder/" + fs::path(rep.text_encoder_source).filename().string();
    prov["source_tokenizer"] = "tokenizer/";
  }
  std::vector<uint8_t> bytes = serialize_model_file(rep.family, cfg_json, m.graph, m.tensors, sched.config, cond, prov,
                                                    vae.decoder.present() ? &vae.decoder : nullptr,
                                                    with_text ? &text.encoder : nullptr, with_text ? &text.tokenizer : nullptr,
                                                    vae.encoder.present() ? &vae.encoder : nullptr);
  rep.tensors = m.tensors.size();
  rep.nodes = m.graph.nodes.size();
  std::vector<TensorBlob>().swap(m.tensors);  // peak memory: the blobs are in `bytes` now
  // serialize_model_file already ran the validating reader over the header it wrote (without copying
  // the data section, which would double the peak memory of an SD-sized model).
  write_file_atomic(opt.output, bytes.data(), bytes.size());
  rep.bytes = bytes.size();
  return rep;
}

}  // namespace diffrt
