// Converting Stable Diffusion pipeline folders (tests/fixtures/sd/{sd1_tiny,sd2_tiny}/pipeline, made by
// diffusers with random weights): one model file with the UNet, the VAE decoder and the scheduler;
// and every corruption of such a folder gives an error naming the file, field or tensor.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "base/error.h"
#include "model/scheduler_config.h"
#include "base/atomic_file.h"
#include "model/model_file.h"
#include "runtime/plan.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"
#include "weights_converter/safetensors.h"

namespace fs = std::filesystem;
using namespace diffrt;
using nlohmann::json;

namespace {

const char* const kFixtures[] = {"sd1_tiny", "sd2_tiny"};

std::string fixture(const std::string& name) { return test::source_path("tests/fixtures/sd/" + name + "/pipeline"); }

// A private copy of a fixture pipeline that a test may mutate.
std::string copy_fixture(const std::string& name) { return test::copy_tree(fixture(name), "sdconv_" + name, "pipeline"); }

using test::convert, test::convert_error, test::edit_weights, test::has_warning, test::load_json, test::save_json;

}  // namespace

TEST(SdConverter, ConvertsBothFixturePipelines) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(fs::exists(fixture(name))) << "missing fixture " << fixture(name);
    const std::string out = test::temp_dir("sdconv_ok") + "/m.drt";
    ConvertReport r = convert(fixture(name), out);
    EXPECT_EQ(r.family, "unet2d_condition");
    EXPECT_FALSE(r.vae_source.empty());
    EXPECT_GT(r.vae_nodes, 10u);

    ModelFile mf = read_model_file(out);
    json unet_cfg = load_json(fixture(name) + "/unet/config.json");
    json vae_cfg = load_json(fixture(name) + "/vae/config.json");
    EXPECT_EQ(mf.family, "unet2d_condition");
    EXPECT_EQ(mf.config, unet_cfg);
    EXPECT_EQ(mf.graph.nodes.size(), r.nodes);
    EXPECT_EQ(mf.tensors.size(), r.tensors);
    EXPECT_EQ(mf.graph.context_dim, unet_cfg["cross_attention_dim"].get<int>());
    EXPECT_GE(mf.graph.timestep, 0);
    ASSERT_TRUE(mf.vae.present());
    EXPECT_EQ(mf.vae.config, vae_cfg);
    EXPECT_FLOAT_EQ(float(mf.vae.scaling_factor), vae_cfg["scaling_factor"].get<float>());  // stored as f32
    EXPECT_EQ(mf.vae.graph.in_channels, 4);
    EXPECT_EQ(mf.vae.graph.out_channels, 3);
    size_t vae_tensors = 0;
    for (const TensorInfo& t : mf.tensors) vae_tensors += t.name.rfind("vae.", 0) == 0;
    EXPECT_GT(vae_tensors, 10u);
    EXPECT_EQ(mf.provenance["source_vae_weights"], "vae/diffusion_pytorch_model.safetensors");
    // The model's own scheduler is kept (sd1_tiny: PNDMScheduler; sd2_tiny: DDIMScheduler).
    EXPECT_EQ(mf.scheduler, load_json(fixture(name) + "/scheduler/scheduler_config.json"));

    // Both graphs plan at the fixture's latent size with a 77-token context.
    const int s = unet_cfg["sample_size"].get<int>();
    MemoryPlan pu = plan_memory(mf.graph, PlanInputs{2, s, s, 77});
    EXPECT_EQ(pu.shapes[mf.graph.output].str(), "[2," + std::to_string(s) + "," + std::to_string(s) + ",4]");
    const int f = 1 << (int(vae_cfg["block_out_channels"].size()) - 1);
    MemoryPlan pv = plan_memory(mf.vae.graph, PlanInputs{1, s, s, 0});
    EXPECT_EQ(pv.shapes[mf.vae.graph.output].str(), "[1," + std::to_string(s * f) + "," + std::to_string(s * f) + ",3]");
  }
}

TEST(SdConverter, StoredTensorsRoundTripFromTheCheckpoint) {
  const std::string out = test::temp_dir("sdconv_rt") + "/m.drt";
  convert(fixture("sd1_tiny"), out);
  ModelFile mf = read_model_file(out);
  SafeTensorsFile unet = read_safetensors(fixture("sd1_tiny") + "/unet/diffusion_pytorch_model.safetensors");
  SafeTensorsFile vae = read_safetensors(fixture("sd1_tiny") + "/vae/diffusion_pytorch_model.safetensors");
  auto stored = [&](const std::string& name) {
    const TensorInfo* t = mf.find(name);
    EXPECT_NE(t, nullptr) << name;
    std::vector<float> v(t ? t->numel() : 0);
    if (t) std::memcpy(v.data(), mf.tensor_data(*t), v.size() * 4);
    return v;
  };
  // Fused self-attention projection = [to_q; to_k; to_v].
  const std::string b = "down_blocks.0.attentions.0.transformer_blocks.0.attn1";
  std::vector<float> cat;
  for (const char* s : {".to_q.weight", ".to_k.weight", ".to_v.weight"}) {
    auto v = unet.tensors.at(b + s).to_f32();
    cat.insert(cat.end(), v.begin(), v.end());
  }
  EXPECT_EQ(stored(b + ".to_qkv.weight"), cat);
  // Copied tensors are bit-identical (fp32 file).
  for (const char* n : {"time_embedding.linear_1.weight", "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj.bias",
                        "down_blocks.0.attentions.0.proj_in.weight"})
    EXPECT_EQ(stored(n), unet.tensors.at(n).to_f32()) << n;
  EXPECT_EQ(mf.find("down_blocks.0.attentions.0.proj_in.weight")->shape.size(), 2u);  // conv [C,C,1,1] -> [C,C]
  // VAE: prefixed names; post_quant_conv stored channels-last.
  EXPECT_EQ(stored("vae.decoder.conv_norm_out.weight"), vae.tensors.at("decoder.conv_norm_out.weight").to_f32());
  EXPECT_EQ(mf.find("vae.post_quant_conv.weight")->shape, (std::vector<int64_t>{4, 1, 1, 4}));
  // The encoder and quant_conv too (format version 2), in the same layouts.
  EXPECT_EQ(stored("vae.encoder.conv_norm_out.weight"), vae.tensors.at("encoder.conv_norm_out.weight").to_f32());
  EXPECT_EQ(mf.find("vae.encoder.conv_in.weight")->shape, (std::vector<int64_t>{16, 3, 3, 3}));
  EXPECT_EQ(mf.find("vae.quant_conv.weight")->shape, (std::vector<int64_t>{8, 1, 1, 8}));
}

TEST(SdConverter, Fp16AndBf16) {
  for (DType dt : {DType::F16, DType::BF16}) {
    ConvertOptions opt;
    opt.dtype = dt;
    const std::string out = test::temp_dir("sdconv_half") + "/m.drt";
    ConvertReport r = convert(fixture("sd2_tiny"), out, opt);
    ModelFile mf = read_model_file(out);
    // fp16: the VAE (force_upcast in its config) stays fp32, as diffusers decodes it; bf16 needs no upcast.
    for (const TensorInfo& t : mf.tensors) {
      const bool vae = t.name.rfind("vae.", 0) == 0;
      EXPECT_EQ(t.dtype, vae && dt == DType::F16 ? DType::F32 : dt) << t.name;
    }
    EXPECT_EQ(mf.graph.dtype, dt);
    EXPECT_EQ(mf.vae.graph.dtype, dt == DType::F16 ? DType::F32 : dt);
    EXPECT_FALSE(has_warning(r, "force_upcast"));
  }
  // An fp16 VAE on request: stored, with the warning.
  ConvertOptions opt;
  opt.dtype = DType::F16;
  opt.vae_dtype = DType::F16;
  const std::string out = test::temp_dir("sdconv_half") + "/m16.drt";
  ConvertReport r = convert(fixture("sd2_tiny"), out, opt);
  EXPECT_TRUE(has_warning(r, "force_upcast"));
  for (const TensorInfo& t : read_model_file(out).tensors) EXPECT_EQ(t.dtype, DType::F16) << t.name;
}

TEST(SdConverter, PndmSchedulerIsKeptAsDiffusersLoadsIt) {
  const std::string out = test::temp_dir("sdconv_pndm") + "/m.drt";
  ConvertReport r = convert(fixture("sd1_tiny"), out);  // sd1_tiny ships the SD PNDMScheduler config
  json src = load_json(fixture("sd1_tiny") + "/scheduler/scheduler_config.json");
  ASSERT_EQ(src["_class_name"], "PNDMScheduler");
  EXPECT_FALSE(has_warning(r, "PNDMScheduler"));
  ModelFile mf = read_model_file(out);
  EXPECT_EQ(mf.scheduler, src);  // unchanged: the sampler reads it as PNDMScheduler.from_config(file)
  EXPECT_EQ(mf.provenance["source_scheduler_class"], "PNDMScheduler");
  const SchedulerConfig c = scheduler_config_from_json(mf.scheduler, "m.drt");
  EXPECT_EQ(c.klass, SchedulerClass::Pndm);
  EXPECT_TRUE(c.skip_prk_steps);
}

TEST(SdConverter, UnimplementedSchedulerIsStoredAsDdimFromConfig) {
  std::string dir = copy_fixture("sd1_tiny");
  json j = load_json(dir + "/scheduler/scheduler_config.json");
  j["_class_name"] = "LMSDiscreteScheduler";
  save_json(dir + "/scheduler/scheduler_config.json", j);
  json index = load_json(dir + "/model_index.json");
  index["scheduler"] = json::array({"diffusers", "LMSDiscreteScheduler"});
  save_json(dir + "/model_index.json", index);
  ConvertReport r = convert(dir, dir + "/../m.drt");
  EXPECT_TRUE(has_warning(r, "LMSDiscreteScheduler is not implemented"));
  ModelFile mf = read_model_file(dir + "/../m.drt");
  EXPECT_EQ(mf.scheduler["_class_name"], "DDIMScheduler");
  EXPECT_EQ(mf.scheduler["steps_offset"], j["steps_offset"]);
  EXPECT_EQ(mf.provenance["source_scheduler_class"], "LMSDiscreteScheduler");
}

// model_index.json names no text encoder ([null, null], as these fixtures are saved): a text_encoder/ folder
// is ignored, as diffusers ignores it. Pipelines with one: tests/text_encoder_format_test.cpp.
TEST(SdConverter, StrayTextEncoderFolderIsIgnored) {
  std::string dir = copy_fixture("sd1_tiny");
  fs::create_directory(dir + "/text_encoder");
  ConvertReport r = convert(dir, dir + "/../m.drt");
  EXPECT_TRUE(r.text_encoder_source.empty());
  EXPECT_FALSE(read_model_file(dir + "/../m.drt").text_encoder.present());
}

TEST(SdConverter, BareUNetFolderConvertsWithoutVae) {
  const std::string out = test::temp_dir("sdconv_bare") + "/m.drt";
  ConvertReport r = convert(fixture("sd2_tiny") + "/unet", out);
  EXPECT_EQ(r.family, "unet2d_condition");
  EXPECT_TRUE(r.vae_source.empty());
  EXPECT_TRUE(has_warning(r, "VAE"));
  ModelFile mf = read_model_file(out);
  EXPECT_FALSE(mf.vae.present());
  EXPECT_EQ(mf.graph.context_dim, 48);
}

TEST(SdConverter, NoVaeOption) {
  std::string dir = copy_fixture("sd1_tiny");
  fs::remove_all(dir + "/vae");
  ConvertOptions opt;
  opt.no_vae = true;
  convert(dir, dir + "/../m.drt", opt);
  EXPECT_FALSE(read_model_file(dir + "/../m.drt").vae.present());
}

// ---- corrupted pipelines ------------------------------------------------------------------------

TEST(SdConverterRefuses, MissingUNetTensor) {
  std::string dir = copy_fixture("sd1_tiny");
  const std::string victim = "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight";
  edit_weights(dir + "/unet/diffusion_pytorch_model.safetensors", [&](auto& t) { ASSERT_EQ(t.erase(victim), 1u); });
  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::InvalidModel);
  EXPECT_NE(msg.find(victim), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unet/diffusion_pytorch_model.safetensors"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, MisshapedUNetTensor) {
  std::string dir = copy_fixture("sd2_tiny");
  const std::string victim = "down_blocks.0.attentions.0.proj_in.weight";  // linear [C,C]; as a conv it is wrong
  edit_weights(dir + "/unet/diffusion_pytorch_model.safetensors", [&](auto& t) {
    SafeTensor& w = t.at(victim);
    w.shape = {w.shape[0], w.shape[1], 1, 1};
  });
  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::InvalidModel);
  EXPECT_NE(msg.find(victim + ": expected [16,16], got [16,16,1,1]"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, MissingAndMisshapedVaeTensors) {
  std::string dir = copy_fixture("sd1_tiny");
  edit_weights(dir + "/vae/diffusion_pytorch_model.safetensors", [&](auto& t) {
    ASSERT_EQ(t.erase("decoder.mid_block.attentions.0.to_v.bias"), 1u);
    SafeTensor& w = t.at("post_quant_conv.weight");
    w.shape = {w.shape[0] * w.shape[1], 1, 1, 1};
    t.erase("encoder.conv_in.weight");  // the encoder's own report comes after the decoder's (vae_encoder_test.cpp)
  });
  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::InvalidModel);
  EXPECT_NE(msg.find("decoder.mid_block.attentions.0.to_v.bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find("post_quant_conv.weight: expected [4,4,1,1], got [16,1,1,1]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("vae/diffusion_pytorch_model.safetensors"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("encoder.conv_in"), std::string::npos) << msg;
}

TEST(SdConverter, LegacyVaeAttentionNamesAreRenamed) {
  std::string dir = copy_fixture("sd1_tiny");
  edit_weights(dir + "/vae/diffusion_pytorch_model.safetensors", [&](auto& t) {
    const std::string p = "decoder.mid_block.attentions.0.";
    for (auto [from, to] : {std::pair<std::string, std::string>{"query", "to_q"}, {"key", "to_k"}, {"value", "to_v"},
                            {"proj_attn", "to_out.0"}})
      for (const char* s : {".weight", ".bias"}) {
        SafeTensor x = t.at(p + to + s);
        t.erase(p + to + s);
        x.name = p + from + s;
        t[x.name] = x;
      }
  });
  ConvertOptions opt;
  opt.strict = true;
  EXPECT_NO_THROW(convert(dir, dir + "/../m.drt", opt));
}

TEST(SdConverterRefuses, UnexpectedTensorUnderStrict) {
  std::string dir = copy_fixture("sd2_tiny");
  edit_weights(dir + "/unet/diffusion_pytorch_model.safetensors", [&](auto& t) {
    SafeTensor x = t.at("conv_in.bias");
    x.name = "add_embedding.linear_1.bias";
    t[x.name] = x;
  });
  ConvertReport r = convert(dir, dir + "/../lax.drt");
  EXPECT_TRUE(has_warning(r, "add_embedding.linear_1.bias"));
  ConvertOptions opt;
  opt.strict = true;
  auto [code, msg] = convert_error(dir, opt);
  EXPECT_NE(msg.find("add_embedding.linear_1.bias"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, ModelIndexNotJson) {
  std::string dir = copy_fixture("sd1_tiny");
  std::ofstream(dir + "/model_index.json") << "{\"unet\": [\"diffusers\", ";
  auto [code, msg] = convert_error(dir);
  EXPECT_NE(msg.find("model_index.json"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, ModelIndexComponentNotAPair) {
  std::string dir = copy_fixture("sd1_tiny");
  json j = load_json(dir + "/model_index.json");
  j["vae"] = json::array({"diffusers"});
  save_json(dir + "/model_index.json", j);
  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::InvalidModel);
  EXPECT_NE(msg.find("model_index.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'vae'"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, ModelIndexWithoutUNet) {
  std::string dir = copy_fixture("sd1_tiny");
  json j = load_json(dir + "/model_index.json");
  j.erase("unet");
  save_json(dir + "/model_index.json", j);
  auto [code, msg] = convert_error(dir);
  EXPECT_NE(msg.find("unet"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, ModelIndexUnsupportedUNetClass) {
  std::string dir = copy_fixture("sd1_tiny");
  json j = load_json(dir + "/model_index.json");
  j["unet"] = json::array({"diffusers", "UNet3DConditionModel"});
  save_json(dir + "/model_index.json", j);
  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::Unsupported);
  EXPECT_NE(msg.find("UNet3DConditionModel"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, ModelIndexDisagreesWithUNetConfig) {
  std::string dir = copy_fixture("sd1_tiny");
  json j = load_json(dir + "/model_index.json");
  j["unet"] = json::array({"diffusers", "UNet2DModel"});
  save_json(dir + "/model_index.json", j);
  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::InvalidModel);
  EXPECT_NE(msg.find("UNet2DConditionModel"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unet/config.json"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, ModelIndexUnsupportedVaeClass) {
  std::string dir = copy_fixture("sd1_tiny");
  json j = load_json(dir + "/model_index.json");
  j["vae"] = json::array({"diffusers", "AutoencoderTiny"});
  save_json(dir + "/model_index.json", j);
  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::Unsupported);
  EXPECT_NE(msg.find("AutoencoderTiny"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, MissingVaeFolder) {
  std::string dir = copy_fixture("sd2_tiny");
  fs::remove_all(dir + "/vae");
  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::InvalidModel);
  EXPECT_NE(msg.find("/vae"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no-vae"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, VaeNullInModelIndex) {
  std::string dir = copy_fixture("sd2_tiny");
  json j = load_json(dir + "/model_index.json");
  j["vae"] = json::array({nullptr, nullptr});
  save_json(dir + "/model_index.json", j);
  auto [code, msg] = convert_error(dir);
  EXPECT_NE(msg.find("vae"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, BrokenVaeConfig) {
  std::string dir = copy_fixture("sd2_tiny");
  json j = load_json(dir + "/vae/config.json");
  j["latents_mean"] = json::array({0, 0, 0, 0});
  save_json(dir + "/vae/config.json", j);
  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::Unsupported);
  EXPECT_NE(msg.find("vae/config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("latents_mean"), std::string::npos) << msg;

  std::ofstream(dir + "/vae/config.json") << "[]";
  std::tie(code, msg) = convert_error(dir);
  EXPECT_NE(msg.find("vae/config.json"), std::string::npos) << msg;

  fs::remove(dir + "/vae/config.json");
  std::tie(code, msg) = convert_error(dir);
  EXPECT_NE(msg.find("vae"), std::string::npos) << msg;
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, VaeLatentChannelsDisagreeWithUNet) {
  std::string dir = copy_fixture("sd2_tiny");
  json j = load_json(dir + "/vae/config.json");
  j["latent_channels"] = 8;
  save_json(dir + "/vae/config.json", j);
  auto [code, msg] = convert_error(dir);
  EXPECT_NE(msg.find("latent_channels"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, PickleVae) {
  std::string dir = copy_fixture("sd2_tiny");
  fs::remove(dir + "/vae/diffusion_pytorch_model.safetensors");
  std::ofstream(dir + "/vae/diffusion_pytorch_model.bin") << "not really a pickle";
  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::Unsupported);
  EXPECT_NE(msg.find("pickle"), std::string::npos) << msg;
  EXPECT_NE(msg.find("vae"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, ComponentSymlinkOutsideThePipeline) {
  std::string dir = copy_fixture("sd2_tiny");
  std::string outside = test::temp_dir("sdconv_outside") + "/vae";
  fs::rename(dir + "/vae", outside);
  fs::create_directory_symlink(outside, dir + "/vae");
  auto [code, msg] = convert_error(dir);
  EXPECT_NE(msg.find("outside"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, UnsupportedUNetFeatureNamesTheFile) {
  std::string dir = copy_fixture("sd1_tiny");
  json j = load_json(dir + "/unet/config.json");
  j["addition_embed_type"] = "text_time";
  save_json(dir + "/unet/config.json", j);
  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::Unsupported);
  EXPECT_NE(msg.find("addition_embed_type"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unet/config.json"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, UnknownSchedulerClass) {
  std::string dir = copy_fixture("sd1_tiny");
  json j = load_json(dir + "/scheduler/scheduler_config.json");
  j["_class_name"] = "ScoreSdeVeScheduler";
  save_json(dir + "/scheduler/scheduler_config.json", j);
  json index = load_json(dir + "/model_index.json");
  index["scheduler"] = json::array({"diffusers", "ScoreSdeVeScheduler"});  // the class diffusers would load
  save_json(dir + "/model_index.json", index);
  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::Unsupported);
  EXPECT_NE(msg.find("scheduler_config.json"), std::string::npos) << msg;
}

TEST(SdConverterRefuses, NullClassOnATextModel) {
  ConvertOptions opt;
  opt.null_class = 0;
  auto [code, msg] = convert_error(copy_fixture("sd2_tiny"), opt);
  EXPECT_EQ(code, ErrorCode::InvalidArgument);
}

TEST(SdConverterRefuses, LegacyAndCurrentAttentionNamesTogether) {
  std::string dir = copy_fixture("sd1_tiny");
  edit_weights(dir + "/vae/diffusion_pytorch_model.safetensors", [&](auto& t) {
    SafeTensor x = t.at("decoder.mid_block.attentions.0.to_q.weight");
    x.name = "decoder.mid_block.attentions.0.query.weight";
    t[x.name] = x;
  });
  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::InvalidModel);
  EXPECT_NE(msg.find("decoder.mid_block.attentions.0.query.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("decoder.mid_block.attentions.0.to_q.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("vae/diffusion_pytorch_model.safetensors"), std::string::npos) << msg;
}

TEST(SdConverter, ModelIndexSchedulerClassWinsAsInDiffusers) {
  std::string dir = copy_fixture("sd2_tiny");
  json j = load_json(dir + "/model_index.json");
  j["scheduler"] = json::array({"diffusers", "PNDMScheduler"});
  save_json(dir + "/model_index.json", j);
  ConvertReport r = convert(dir, dir + "/../m.drt");
  EXPECT_TRUE(has_warning(r, "model_index.json names scheduler class PNDMScheduler"));
  ModelFile mf = read_model_file(dir + "/../m.drt");
  EXPECT_EQ(mf.provenance["source_scheduler_class"], "PNDMScheduler");
  EXPECT_EQ(mf.scheduler["_class_name"], "PNDMScheduler");
  EXPECT_EQ(mf.scheduler["prediction_type"], "v_prediction");
}
