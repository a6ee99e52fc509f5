// The diffrt model file (.drt):
//   bytes 0..7   magic "DIFFRT\0\1"
//   bytes 8..11  u32 LE format version (kMinFormatVersion..kFormatVersion; written as kFormatVersion)
//   bytes 12..15 u32 LE reserved, must be 0
//   bytes 16..23 u64 LE header length H (<= kMaxHeaderBytes)
//   bytes 24..   H bytes of UTF-8 JSON (the header), then zero padding to kDataAlignment
//   data section: tensors at offsets relative to the data start, each kDataAlignment-aligned;
//   the file ends exactly at the end of the data section (header field "data_size").
// Header JSON: {"format":"diffrt","version":1|2|3,"family":"unet2d"|"unet2d_condition","config":{...},
//   "graph":{...},"tensors":[{"name","dtype","shape","offset","nbytes"}...],
//   "scheduler":{...diffusers scheduler config...},"conditioning":{...},"provenance":{...},
//   optional "vae":{"config":{...},"scaling_factor":f,"graph":{...}},
//   optional "text_encoder":{"config":{...},"graph":{...}}, optional "tokenizer":{...},
//   optional "vae_encoder":{"graph":{...}} (version 2),
//   optional "pipeline":{"class","cfg_order","extra_channels","id2label"},"data_size":N}
// "graph" is the denoiser; "vae" is the VAE decoder of a latent-diffusion model (its tensors are
// named "vae.<diffusers name>" in the same table); "text_encoder" is a CLIP text model (input_ids ->
// last_hidden_state, tensors "text_encoder.<transformers name>") and "tokenizer" its BPE tokenizer
// (model/tokenizer_json.h). The two come together, with a text-conditioned denoiser whose
// context_dim is the text encoder's width. "vae_encoder" (format version 2 and later) is the VAE's encoder
// + quant_conv (images -> the posterior's moments, tensors "vae.encoder.*", "vae.quant_conv.*"); it needs
// "vae". Version 1 files (no encoder) are read unchanged.
// Every graph records its dtype ("dtype": the dtype its weights are stored in and its activations run in;
// version 3): components of one file may differ, e.g. an fp16 UNet beside an fp32 VAE (diffusers' force_upcast).
// Version 1 and 2 files (no graph dtype) stay readable: each graph's dtype is taken from its tensors.
// The reader treats the file as hostile: every field is type-checked, offsets and sizes are
// overflow-checked and must lie inside the data section without overlapping.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/cfg_order.h"
#include "base/dtype.h"
#include "model/graph.h"
#include "model/tokenizer_spec.h"

namespace diffrt {

constexpr char kMagic[8] = {'D', 'I', 'F', 'F', 'R', 'T', '\0', '\1'};
// The version this build writes, and the oldest it reads. 2 added the optional "vae_encoder" section; 3 records
// each graph's dtype (mixed precision per component). A version 1 file is a version 2 file without the encoder; a
// version 2 file a version 3 file whose graphs take their dtype from their tensors.
constexpr uint32_t kFormatVersion = 3;
constexpr uint32_t kMinFormatVersion = 1;
constexpr uint64_t kDataAlignment = 256;
constexpr uint64_t kMaxHeaderBytes = 64ull << 20;
constexpr int kMaxRank = 8;

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // from the start of the data section
  uint64_t nbytes = 0;
  uint64_t numel() const;
};

// Conditioning metadata: class-conditional models record the class count and the null class used
// for classifier-free guidance (-1 when the model has none).
struct Conditioning {
  int num_classes = 0;
  int null_class = -1;
};

// Pipeline semantics a sampler needs beyond the graph: header object "pipeline" (optional; absent for the UNet
// families, whose class-conditional guidance batches [uncond; cond] and whose extra output channels are what the
// scheduler's variance type says). Written for DiTPipeline folders (family "dit").
struct PipelineInfo {
  std::string class_name;            // the diffusers pipeline class, e.g. "DiTPipeline" ("" when absent)
  // Row order of the guided model batch: [uncond; cond] (StableDiffusionPipeline, diffrt's class-conditional
  // UNets) or [cond; uncond] (DiTPipeline: latents duplicated, labels [y; null_class]).
  CfgOrder cfg_order = CfgOrder::UncondFirst;
  // True: output channels [in_channels, out_channels) (DiT's learned sigma) are dropped before the scheduler step
  // whatever its variance type (DiTPipeline does this whenever out_channels // 2 == in_channels); guidance applies
  // to the first in_channels channels.
  bool drop_extra_channels = false;
  // model_index.json's id2label in file order: (class id, "name, synonym, ..."). Empty when the folder had none.
  std::vector<std::pair<int, std::string>> id2label;
  bool present() const { return !class_name.empty(); }
};
// DiTPipeline.labels: every id2label value split on ',', each piece stripped of surrounding whitespace, name -> id;
// for a name listed twice the later entry in file order wins (ImageNet's "crane" is 134 and 517 -> 517).
std::map<std::string, int> class_label_ids(const PipelineInfo& p);
// The class id of `name` under class_label_ids (exact match after stripping `name`), or -1.
int class_label_id(const PipelineInfo& p, const std::string& name);

// The VAE decoder of a latent-diffusion model: latents [N,h,w,latent_channels] -> image
// [N,f*h,f*w,3] in about [-1, 1]. Its graph starts by dividing by scaling_factor (diffusers'
// `latents / vae.config.scaling_factor`) and has no timestep input.
struct VaeDecoder {
  nlohmann::json config;  // the diffusers AutoencoderKL config, as converted
  float scaling_factor = 0;  // fp32, as diffusers divides an fp32 tensor by it
  Graph graph;            // empty (no nodes) when the model file has no VAE
  bool present() const { return !graph.nodes.empty(); }
};

// The VAE encoder of a latent-diffusion model (AutoencoderKL.encoder + quant_conv): images [N,H,W,in_channels]
// in [-1, 1] -> moments [N, floor(H/f), floor(W/f), 2*latent_channels] NHWC = quant_conv(encoder(x)), channels
// [0, L) the posterior's mean and [L, 2L) its raw logvar (before DiagonalGaussianDistribution's clamp).
// The posterior and the scaling factor (vae.scaling_factor) are applied by the runtime, outside the graph.
struct VaeEncoder {
  Graph graph;  // empty (no nodes) when the model file has no VAE encoder
  bool present() const { return !graph.nodes.empty(); }
};

// The text encoder of a latent-diffusion pipeline (transformers' CLIPTextModel): input_ids [N, L] int32 ->
// last_hidden_state [N, L, hidden], what StableDiffusionPipeline feeds the UNet as encoder_hidden_states.
struct TextEncoder {
  nlohmann::json config;  // the transformers CLIPTextConfig, as converted
  Graph graph;            // empty (no nodes) when the model file has no text encoder
  bool present() const { return !graph.nodes.empty(); }
};

struct ModelFile {
  std::string family;            // "unet2d" (UNet2DModel), "unet2d_condition" (UNet2DConditionModel) or "dit"
                                 // (Transformer2DModel with norm_type ada_norm_zero, DiTPipeline)
  nlohmann::json config;         // the diffusers model config, as converted
  Graph graph;
  std::vector<TensorInfo> tensors;
  nlohmann::json scheduler;      // diffusers scheduler config (object; may be empty)
  Conditioning conditioning;
  nlohmann::json provenance;     // converter version, source files, dtype, date
  VaeDecoder vae;                // latent-diffusion models only
  VaeEncoder vae_encoder;        // latent-diffusion models converted with the VAE's encoder (format version 2)
  uint32_t version = kFormatVersion;  // the version the file was written with
  TextEncoder text_encoder;      // latent-diffusion models converted with their text encoder
  bool has_tokenizer = false;
  ClipTokenizerSpec tokenizer;   // valid when has_tokenizer (always together with text_encoder)
  PipelineInfo pipeline;         // optional "pipeline" header object
  std::vector<uint8_t> data;     // the data section (tensor bytes)

  const TensorInfo* find(const std::string& name) const;
  const uint8_t* tensor_data(const TensorInfo& t) const { return data.data() + t.offset; }
};

// The file's graphs with their header paths: ("graph", denoiser), then ("vae.graph", VAE decoder),
// ("vae_encoder.graph", VAE encoder) and ("text_encoder.graph", text encoder) when present.
std::vector<std::pair<std::string, const Graph*>> model_graphs(const ModelFile& mf);

// What the writer needs for one tensor: bytes already in `dtype`.
struct TensorBlob {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Reads and validates a model file. Throws Error(InvalidModel) naming the file and the field.
ModelFile read_model_file(const std::string& path);
// Parses from memory (used by the reader, tests and the fuzzer). `origin` names the source in errors.
ModelFile parse_model_file(const uint8_t* bytes, size_t size, const std::string& origin);
// Serialises to bytes (tensor offsets are assigned here, in the given order).
std::vector<uint8_t> serialize_model_file(const std::string& family, const nlohmann::json& config,
                                          const Graph& graph, const std::vector<TensorBlob>& tensors,
                                          const nlohmann::json& scheduler, const Conditioning& cond,
                                          const nlohmann::json& provenance, const VaeDecoder* vae = nullptr,
                                          const TextEncoder* text_encoder = nullptr,
                                          const ClipTokenizerSpec* tokenizer = nullptr,
                                          const VaeEncoder* vae_encoder = nullptr,
                                          const PipelineInfo* pipeline = nullptr);

// Graph <-> JSON; graph_from_json validates op names, attribute types/ranges and value references.
nlohmann::json graph_to_json(const Graph& g);
// `path` names the graph in errors ("graph", "vae.graph").
Graph graph_from_json(const nlohmann::json& j, const std::string& origin, const std::string& path = "graph");

}  // namespace diffrt
