// Stable Diffusion config parsing: UNet2DConditionModel and AutoencoderKL config.json, and the
// scheduler configs a pipeline folder may carry. Every refusal names the field (and the file).
#include <gtest/gtest.h>

#include <fstream>
#include <stdexcept>

#include "base/error.h"
#include "tests/test_util.h"
#include "weights_converter/scheduler_import.h"
#include "weights_converter/unet2d_condition_config.h"
#include "weights_converter/vae_decoder_builder.h"

using namespace diffrt;
using nlohmann::json;

namespace {

json load(const std::string& rel) { return test::load_source_json(rel); }
json sd15() { return load("tests/fixtures/sd_real/sd15_unet_config.json"); }
json sd21() { return load("tests/fixtures/sd_real/sd21_unet_config.json"); }
json sd_vae() { return load("tests/fixtures/sd_real/sd_vae_config.json"); }

// Sets `field` to `value` in the SD 1.5 config and expects the parser to refuse it with `code`,
// naming the field and the origin.
void expect_unet_refused(const std::string& field, const json& value, ErrorCode code) {
  json j = sd15();
  j[field] = value;
  try {
    parse_unet2d_condition_config(j, "unet/config.json");
    ADD_FAILURE() << field << "=" << value.dump() << " was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(int(e.code()), int(code)) << msg;
    EXPECT_NE(msg.find(field), std::string::npos) << "error does not name " << field << ": " << msg;
    EXPECT_NE(msg.find("unet/config.json"), std::string::npos) << msg;
  }
}

void expect_vae_refused(const std::string& field, const json& value, ErrorCode code) {
  json j = sd_vae();
  j[field] = value;
  try {
    parse_autoencoder_kl_config(j, "vae/config.json");
    ADD_FAILURE() << field << "=" << value.dump() << " was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(int(e.code()), int(code)) << msg;
    EXPECT_NE(msg.find(field), std::string::npos) << "error does not name " << field << ": " << msg;
    EXPECT_NE(msg.find("vae/config.json"), std::string::npos) << msg;
  }
}

constexpr ErrorCode kUnsup = ErrorCode::Unsupported;
constexpr ErrorCode kInvalid = ErrorCode::InvalidModel;

}  // namespace

// ---- accepted configs --------------------------------------------------------------------------

TEST(SdUNetConfig, ParsesSd15) {
  UNet2DConditionConfig c = parse_unet2d_condition_config(sd15(), "sd15");
  EXPECT_EQ(c.block_out_channels, (std::vector<int>{320, 640, 1280, 1280}));
  EXPECT_EQ(c.heads, (std::vector<int>{8, 8, 8, 8}));  // attention_head_dim = head COUNT here
  EXPECT_EQ(c.transformer_layers, (std::vector<int>{1, 1, 1, 1}));
  EXPECT_EQ(c.cross_attention_dim, 768);
  EXPECT_EQ(c.temb_dim(), 1280);
  EXPECT_FALSE(c.use_linear_projection);
  EXPECT_TRUE(c.has_mid_block);
  EXPECT_EQ(c.sample_size, 64);
}

TEST(SdUNetConfig, ParsesSd21PerLevelHeadCounts) {
  UNet2DConditionConfig c = parse_unet2d_condition_config(sd21(), "sd21");
  EXPECT_EQ(c.heads, (std::vector<int>{5, 10, 20, 20}));
  for (int i = 0; i < c.levels(); ++i) EXPECT_EQ(c.block_out_channels[i] / c.heads[i], 64);
  EXPECT_EQ(c.cross_attention_dim, 1024);
  EXPECT_TRUE(c.use_linear_projection);
  EXPECT_TRUE(c.upcast_attention);
}

TEST(SdUNetConfig, MissingKeysTakeDiffusersDefaults) {
  UNet2DConditionConfig c = parse_unet2d_condition_config(json::object(), "empty");
  EXPECT_EQ(c.block_out_channels, (std::vector<int>{320, 640, 1280, 1280}));
  EXPECT_EQ(c.cross_attention_dim, 1280);  // the class default, not SD 1.5's 768
  EXPECT_EQ(c.heads, (std::vector<int>{8, 8, 8, 8}));
  EXPECT_EQ(c.layers_per_block, 2);
  EXPECT_EQ(c.in_channels, 4);
  EXPECT_EQ(c.down_block_types.front(), "CrossAttnDownBlock2D");
  EXPECT_EQ(c.up_block_types.front(), "UpBlock2D");
}

TEST(SdUNetConfig, NumAttentionHeadsOverridesAttentionHeadDim) {
  json j = sd15();
  j["num_attention_heads"] = json::array({4, 8, 16, 16});
  EXPECT_EQ(parse_unet2d_condition_config(j, "x").heads, (std::vector<int>{4, 8, 16, 16}));
  j["num_attention_heads"] = nullptr;  // null: fall back to attention_head_dim
  EXPECT_EQ(parse_unet2d_condition_config(j, "x").heads, (std::vector<int>{8, 8, 8, 8}));
}

TEST(SdUNetConfig, AcceptsTransformerLayersIntOrList) {
  json j = sd15();
  j["transformer_layers_per_block"] = 2;
  EXPECT_EQ(parse_unet2d_condition_config(j, "x").transformer_layers, (std::vector<int>{2, 2, 2, 2}));
  j["transformer_layers_per_block"] = json::array({1, 2, 3, 4});
  EXPECT_EQ(parse_unet2d_condition_config(j, "x").transformer_layers, (std::vector<int>{1, 2, 3, 4}));
}

TEST(SdUNetConfig, AcceptsUniformListsAndNullMidBlock) {
  json j = sd15();
  j["layers_per_block"] = json::array({2, 2, 2, 2});
  j["cross_attention_dim"] = json::array({768, 768, 768, 768});
  j["only_cross_attention"] = json::array({false, false, false, false});
  j["mid_block_type"] = nullptr;
  j["upcast_attention"] = true;
  j["resnet_skip_time_act"] = true;  // read only by blocks SD does not use
  UNet2DConditionConfig c = parse_unet2d_condition_config(j, "x");
  EXPECT_EQ(c.layers_per_block, 2);
  EXPECT_EQ(c.cross_attention_dim, 768);
  EXPECT_FALSE(c.has_mid_block);
}

TEST(SdUNetConfig, AcceptsTheFixtureConfigs) {
  for (const char* name : {"sd1_tiny", "sd2_tiny"}) {
    std::string rel = std::string("tests/fixtures/sd/") + name + "/pipeline/unet/config.json";
    EXPECT_NO_THROW(parse_unet2d_condition_config(load(rel), rel)) << name;
  }
}

// ---- refused UNet2DConditionModel features (one test each) --------------------------------------

TEST(SdUNetConfigRefuses, ClassName) { expect_unet_refused("_class_name", "UNet2DModel", kUnsup); }
TEST(SdUNetConfigRefuses, AdditionEmbedType) { expect_unet_refused("addition_embed_type", "text_time", kUnsup); }
TEST(SdUNetConfigRefuses, AdditionTimeEmbedDim) { expect_unet_refused("addition_time_embed_dim", 256, kUnsup); }
TEST(SdUNetConfigRefuses, ClassEmbedType) { expect_unet_refused("class_embed_type", "timestep", kUnsup); }
TEST(SdUNetConfigRefuses, NumClassEmbeds) { expect_unet_refused("num_class_embeds", 10, kUnsup); }
TEST(SdUNetConfigRefuses, ProjectionClassEmbeddingsInputDim) {
  expect_unet_refused("projection_class_embeddings_input_dim", 2816, kUnsup);
}
TEST(SdUNetConfigRefuses, ClassEmbeddingsConcat) { expect_unet_refused("class_embeddings_concat", true, kUnsup); }
TEST(SdUNetConfigRefuses, EncoderHidDim) { expect_unet_refused("encoder_hid_dim", 1024, kUnsup); }
TEST(SdUNetConfigRefuses, EncoderHidDimType) { expect_unet_refused("encoder_hid_dim_type", "text_proj", kUnsup); }
TEST(SdUNetConfigRefuses, TimeCondProjDim) { expect_unet_refused("time_cond_proj_dim", 256, kUnsup); }
TEST(SdUNetConfigRefuses, TimeEmbeddingActFn) { expect_unet_refused("time_embedding_act_fn", "silu", kUnsup); }
TEST(SdUNetConfigRefuses, TimestepPostAct) { expect_unet_refused("timestep_post_act", "silu", kUnsup); }
TEST(SdUNetConfigRefuses, FourierTimeEmbedding) { expect_unet_refused("time_embedding_type", "fourier", kUnsup); }
TEST(SdUNetConfigRefuses, DualCrossAttention) { expect_unet_refused("dual_cross_attention", true, kUnsup); }
TEST(SdUNetConfigRefuses, OnlyCrossAttention) { expect_unet_refused("only_cross_attention", true, kUnsup); }
TEST(SdUNetConfigRefuses, OnlyCrossAttentionPerLevel) {
  expect_unet_refused("only_cross_attention", json::array({true, false, false, false}), kUnsup);
}
TEST(SdUNetConfigRefuses, OnlyCrossAttentionWrongLength) {
  expect_unet_refused("only_cross_attention", json::array({false, false}), kInvalid);
}
TEST(SdUNetConfigRefuses, MidBlockOnlyCrossAttention) {
  expect_unet_refused("mid_block_only_cross_attention", true, kUnsup);
}
TEST(SdUNetConfigRefuses, GatedAttentionType) { expect_unet_refused("attention_type", "gated", kUnsup); }
TEST(SdUNetConfigRefuses, CrossAttentionNorm) { expect_unet_refused("cross_attention_norm", "group_norm", kUnsup); }
TEST(SdUNetConfigRefuses, ConvInKernel) { expect_unet_refused("conv_in_kernel", 5, kUnsup); }
TEST(SdUNetConfigRefuses, ConvOutKernel) { expect_unet_refused("conv_out_kernel", 1, kUnsup); }
TEST(SdUNetConfigRefuses, ResnetTimeScaleShift) { expect_unet_refused("resnet_time_scale_shift", "scale_shift", kUnsup); }
TEST(SdUNetConfigRefuses, ActFn) { expect_unet_refused("act_fn", "gelu", kUnsup); }
TEST(SdUNetConfigRefuses, MidBlockType) {
  expect_unet_refused("mid_block_type", "UNetMidBlock2DSimpleCrossAttn", kUnsup);
}
TEST(SdUNetConfigRefuses, DownBlockType) {
  expect_unet_refused("down_block_types",
                      json::array({"SimpleCrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}),
                      kUnsup);
}
TEST(SdUNetConfigRefuses, UpBlockType) {
  expect_unet_refused("up_block_types",
                      json::array({"UpBlock2D", "KCrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}), kUnsup);
}
TEST(SdUNetConfigRefuses, ReverseTransformerLayersPerBlock) {
  expect_unet_refused("reverse_transformer_layers_per_block", json::array({json::array({1})}), kUnsup);
}
TEST(SdUNetConfigRefuses, NestedTransformerLayersPerBlock) {
  expect_unet_refused("transformer_layers_per_block",
                      json::array({json::array({1, 1}), json::array({2, 2}), json::array({1, 1}), json::array({1, 1})}),
                      kUnsup);
}
TEST(SdUNetConfigRefuses, TransformerLayersListLength) {
  expect_unet_refused("transformer_layers_per_block", json::array({1, 2}), kInvalid);
}
TEST(SdUNetConfigRefuses, TransformerLayersZero) { expect_unet_refused("transformer_layers_per_block", 0, kInvalid); }
TEST(SdUNetConfigRefuses, CrossAttentionDimPerLevel) {
  expect_unet_refused("cross_attention_dim", json::array({768, 768, 1024, 1024}), kUnsup);
}
TEST(SdUNetConfigRefuses, CrossAttentionDimString) { expect_unet_refused("cross_attention_dim", "768", kInvalid); }
TEST(SdUNetConfigRefuses, LayersPerBlockPerLevel) {
  expect_unet_refused("layers_per_block", json::array({2, 2, 2, 3}), kUnsup);
}
TEST(SdUNetConfigRefuses, LayersPerBlockAbsurd) { expect_unet_refused("layers_per_block", 1000000, kInvalid); }
TEST(SdUNetConfigRefuses, LayersPerBlockFloat) { expect_unet_refused("layers_per_block", 2.5, kInvalid); }
TEST(SdUNetConfigRefuses, HeadListLength) {
  expect_unet_refused("attention_head_dim", json::array({5, 10, 20}), kInvalid);
}
TEST(SdUNetConfigRefuses, HeadsNotDividingChannels) { expect_unet_refused("attention_head_dim", 7, kInvalid); }
TEST(SdUNetConfigRefuses, NullAttentionHeadDim) { expect_unet_refused("attention_head_dim", nullptr, kInvalid); }
TEST(SdUNetConfigRefuses, NumAttentionHeadsNotDividing) {
  expect_unet_refused("num_attention_heads", json::array({3, 8, 8, 8}), kInvalid);
}
TEST(SdUNetConfigRefuses, NormGroupsNotDividing) { expect_unet_refused("norm_num_groups", 7, kInvalid); }
TEST(SdUNetConfigRefuses, NullNormGroups) { expect_unet_refused("norm_num_groups", nullptr, kInvalid); }
TEST(SdUNetConfigRefuses, BlockOutChannelsString) { expect_unet_refused("block_out_channels", "320", kInvalid); }
TEST(SdUNetConfigRefuses, BlockListLengthsDiffer) {
  expect_unet_refused("down_block_types", json::array({"CrossAttnDownBlock2D", "DownBlock2D"}), kInvalid);
}
TEST(SdUNetConfigRefuses, UseLinearProjectionString) { expect_unet_refused("use_linear_projection", "true", kInvalid); }
TEST(SdUNetConfigRefuses, UpcastAttentionNumber) { expect_unet_refused("upcast_attention", 1, kInvalid); }
TEST(SdUNetConfigRefuses, InChannelsZero) { expect_unet_refused("in_channels", 0, kInvalid); }
TEST(SdUNetConfigRefuses, NormEpsString) { expect_unet_refused("norm_eps", "1e-5", kInvalid); }
TEST(SdUNetConfigRefuses, DownsamplePadding) { expect_unet_refused("downsample_padding", 2, kInvalid); }
TEST(SdUNetConfigRefuses, NonSquareSampleSize) { expect_unet_refused("sample_size", json::array({64, 96}), kInvalid); }

// ---- AutoencoderKL ------------------------------------------------------------------------------

TEST(SdVaeConfig, ParsesTheSdVae) {
  AutoencoderKLConfig c = parse_autoencoder_kl_config(sd_vae(), "vae");
  EXPECT_EQ(c.block_out_channels, (std::vector<int>{128, 256, 512, 512}));
  EXPECT_EQ(c.layers_per_block, 2);
  EXPECT_DOUBLE_EQ(c.scaling_factor, 0.18215);  // absent in the SD 1.x file: the class default
  EXPECT_EQ(c.upscale_factor(), 8);
  EXPECT_TRUE(c.use_post_quant_conv);
  json j = sd_vae();
  j["scaling_factor"] = 0.13025;
  EXPECT_DOUBLE_EQ(parse_autoencoder_kl_config(j, "vae").scaling_factor, 0.13025);
}

TEST(SdVaeConfigRefuses, ClassName) { expect_vae_refused("_class_name", "AutoencoderTiny", kUnsup); }
TEST(SdVaeConfigRefuses, LatentsMean) { expect_vae_refused("latents_mean", json::array({0.1, 0.2, 0.3, 0.4}), kUnsup); }
TEST(SdVaeConfigRefuses, LatentsStd) { expect_vae_refused("latents_std", json::array({1, 1, 1, 1}), kUnsup); }
TEST(SdVaeConfigRefuses, ShiftFactor) { expect_vae_refused("shift_factor", 0.0609, kUnsup); }
TEST(SdVaeConfigRefuses, UpBlockType) {
  expect_vae_refused("up_block_types",
                     json::array({"AttnUpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"}), kUnsup);
}
TEST(SdVaeConfigRefuses, UpBlockCount) { expect_vae_refused("up_block_types", json::array({"UpDecoderBlock2D"}), kInvalid); }
TEST(SdVaeConfigRefuses, DownBlockCount) {
  expect_vae_refused("down_block_types", json::array({"DownEncoderBlock2D"}), kInvalid);
}
TEST(SdVaeConfigRefuses, ActFn) { expect_vae_refused("act_fn", "relu", kUnsup); }
TEST(SdVaeConfigRefuses, NormGroupsNotDividing) { expect_vae_refused("norm_num_groups", 48, kInvalid); }
TEST(SdVaeConfigRefuses, NullLayersPerBlock) { expect_vae_refused("layers_per_block", nullptr, kInvalid); }
TEST(SdVaeConfigRefuses, ScalingFactorString) { expect_vae_refused("scaling_factor", "0.18215", kInvalid); }
TEST(SdVaeConfigRefuses, ScalingFactorZero) { expect_vae_refused("scaling_factor", 0, kInvalid); }
TEST(SdVaeConfigRefuses, LatentChannelsAbsurd) { expect_vae_refused("latent_channels", 100000, kInvalid); }

// ---- scheduler configs --------------------------------------------------------------------------

namespace {
json sd_pndm() {
  return {{"_class_name", "PNDMScheduler"}, {"_diffusers_version", "0.6.0"}, {"beta_end", 0.012},
          {"beta_schedule", "scaled_linear"}, {"beta_start", 0.00085}, {"clip_sample", false},
          {"num_train_timesteps", 1000}, {"set_alpha_to_one", false}, {"skip_prk_steps", true},
          {"steps_offset", 1}, {"trained_betas", nullptr}};
}
}  // namespace

TEST(SdScheduler, PndmIsKeptAsDiffusersLoadsIt) {
  ImportedScheduler s = import_scheduler_config(sd_pndm(), "scheduler/scheduler_config.json");
  EXPECT_EQ(s.source_class, "PNDMScheduler");
  EXPECT_EQ(s.config, sd_pndm());  // the model's own scheduler, unchanged
  EXPECT_TRUE(s.warnings.empty());
  EXPECT_EQ(s.description.rfind("PNDMScheduler (pndm): skip_prk_steps=true", 0), 0u) << s.description;
}

TEST(SdScheduler, UnimplementedKarrasFamilyBecomesDdimFromConfig) {
  json j = sd_pndm();
  j["_class_name"] = "KDPM2DiscreteScheduler";
  ImportedScheduler s = import_scheduler_config(j, "scheduler/scheduler_config.json");
  EXPECT_EQ(s.source_class, "KDPM2DiscreteScheduler");
  EXPECT_EQ(s.config["_class_name"], "DDIMScheduler");
  for (const char* k : {"beta_end", "beta_schedule", "beta_start", "clip_sample", "num_train_timesteps",
                        "set_alpha_to_one", "steps_offset", "trained_betas"})
    EXPECT_EQ(s.config[k], j[k]) << k;
  ASSERT_EQ(s.warnings.size(), 1u);
  EXPECT_NE(s.warnings[0].find("KDPM2DiscreteScheduler"), std::string::npos) << s.warnings[0];
  EXPECT_NE(s.warnings[0].find("DDIM"), std::string::npos) << s.warnings[0];
}

TEST(SdScheduler, DdimAndDdpmAreKeptAsTheyAre) {
  json j = sd_pndm();
  j["_class_name"] = "DDIMScheduler";
  ImportedScheduler s = import_scheduler_config(j, "s");
  EXPECT_EQ(s.config, j);
  EXPECT_TRUE(s.warnings.empty());
  j["_class_name"] = "DDPMScheduler";
  EXPECT_EQ(import_scheduler_config(j, "s").config, j);
}

TEST(SdScheduler, EulerAndLmsConvert) {
  for (const char* cls : {"EulerDiscreteScheduler", "LMSDiscreteScheduler", "DPMSolverMultistepScheduler"}) {
    json j = sd_pndm();
    j["_class_name"] = cls;
    j["use_karras_sigmas"] = false;
    j["timestep_spacing"] = "linspace";
    ImportedScheduler s = import_scheduler_config(j, "s");
    EXPECT_EQ(s.config["timestep_spacing"], "linspace") << cls;
    EXPECT_EQ(s.source_class, cls);
  }
}

TEST(SdScheduler, RefusesUnknownClasses) {
  json j = sd_pndm();
  j["_class_name"] = "FlowMatchEulerDiscreteScheduler";
  try {
    import_scheduler_config(j, "scheduler/scheduler_config.json");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    EXPECT_NE(std::string(e.what()).find("FlowMatchEulerDiscreteScheduler"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("PNDMScheduler"), std::string::npos) << e.what();
  }
}

TEST(SdScheduler, KeepsContinuousEulerTimesteps) {
  // Euler's continuous timesteps (0.25 log sigma fed to the model, v-prediction) run as diffusers runs them.
  json j = sd_pndm();
  j["_class_name"] = "EulerDiscreteScheduler";
  j["timestep_type"] = "continuous";
  j["prediction_type"] = "v_prediction";
  EXPECT_EQ(import_scheduler_config(j, "s").config, j);
  j["timestep_type"] = "fractional";
  EXPECT_THROW(import_scheduler_config(j, "s"), Error);
}

TEST(SdScheduler, ValidatesTheKeptFields) {
  json j = sd_pndm();
  j["beta_schedule"] = "quadratic";
  try {
    import_scheduler_config(j, "scheduler/scheduler_config.json");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("beta_schedule"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("scheduler_config.json"), std::string::npos) << e.what();
  }
  j = sd_pndm();
  j["_class_name"] = 3;
  EXPECT_THROW(import_scheduler_config(j, "s"), Error);
}
