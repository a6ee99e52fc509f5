// The diffusers -> .drt converter: supported layouts, and every refusal names what it refuses.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/atomic_file.h"
#include "model/model_file.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"
#include "weights_converter/safetensors.h"

namespace fs = std::filesystem;
using namespace diffrt;
using nlohmann::json;

namespace {

// A private copy of a fixture model folder that a test may mutate.
std::string copy_fixture(const std::string& name) {
  return test::copy_tree(test::source_path("tests/fixtures/models/" + name), "conv_" + name, "model");
}

using test::load_json, test::save_json;

using test::convert_error;

void mutate_config(const std::string& dir, const std::function<void(json&)>& f) {
  json j = load_json(dir + "/config.json");
  f(j);
  save_json(dir + "/config.json", j);
}

}  // namespace

TEST(Converter, ConvertsEveryFixtureLayout) {
  for (const char* name : {"cifar_like", "legacy_names", "sharded", "pipeline_layout", "class_cond"}) {
    if (!fs::exists(test::source_path(std::string("tests/fixtures/models/") + name))) {
      ADD_FAILURE() << "missing fixture " << name;
      continue;
    }
    std::string out = test::temp_dir("conv_ok") + "/m.drt";
    ConvertOptions opt;
    opt.input = test::source_path(std::string("tests/fixtures/models/") + name);
    opt.output = out;
    ConvertReport r = convert_diffusers(opt);
    EXPECT_GT(r.tensors, 10u) << name;
    ModelFile mf = read_model_file(out);
    EXPECT_EQ(mf.family, "unet2d");
    EXPECT_EQ(mf.graph.nodes.size(), r.nodes);
  }
}

TEST(Converter, RefusesPickleCheckpoints) {
  std::string dir = copy_fixture("cifar_like");
  fs::remove(dir + "/diffusion_pytorch_model.safetensors");
  std::ofstream(dir + "/diffusion_pytorch_model.bin") << "not really a pickle";
  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::Unsupported);
  EXPECT_NE(msg.find("diffusion_pytorch_model.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("pickle"), std::string::npos) << msg;

  ConvertOptions opt;
  opt.input = dir + "/diffusion_pytorch_model.bin";
  opt.output = dir + "/../x.drt";
  EXPECT_THROW(convert_diffusers(opt), Error);
}

TEST(Converter, RefusesUnsupportedConfigValuesByName) {
  struct Case { const char* field; json value; ErrorCode code; };
  const Case cases[] = {
      {"down_block_types", json::array({"CrossAttnDownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"}), ErrorCode::Unsupported},
      {"up_block_types", json::array({"UpBlock2D", "UpBlock2D", "AttnSkipUpBlock2D", "UpBlock2D"}), ErrorCode::Unsupported},
      {"time_embedding_type", "fourier", ErrorCode::Unsupported},
      {"resnet_time_scale_shift", "spatial", ErrorCode::Unsupported},
      {"class_embed_type", "timestep", ErrorCode::Unsupported},
      {"downsample_type", "resnet", ErrorCode::Unsupported},
      {"act_fn", "gelu", ErrorCode::Unsupported},
      {"_class_name", "UNet3DConditionModel", ErrorCode::Unsupported},
      {"block_out_channels", "320", ErrorCode::InvalidModel},
      {"block_out_channels", json::array({32, 64}), ErrorCode::InvalidModel},  // lengths differ
      {"layers_per_block", 1000000, ErrorCode::InvalidModel},
      {"layers_per_block", -1, ErrorCode::InvalidModel},
      {"layers_per_block", 2.5, ErrorCode::InvalidModel},
      {"norm_num_groups", 7, ErrorCode::InvalidModel},
      {"norm_eps", "1e-6", ErrorCode::InvalidModel},
      {"in_channels", 0, ErrorCode::InvalidModel},
      {"downsample_padding", 2, ErrorCode::InvalidModel},
      {"attention_head_dim", 7, ErrorCode::InvalidModel},
      {"center_input_sample", "yes", ErrorCode::InvalidModel},
  };
  for (const auto& c : cases) {
    std::string dir = copy_fixture("cifar_like");
    mutate_config(dir, [&](json& j) { j[c.field] = c.value; });
    auto [code, msg] = convert_error(dir);
    EXPECT_EQ(int(code), int(c.code)) << c.field << " = " << c.value.dump() << ": " << msg;
    std::string field = c.field;
    bool names_it = msg.find(field) != std::string::npos ||
                    (field == "block_out_channels" && msg.find("down_block_types") != std::string::npos);
    EXPECT_TRUE(names_it) << "error does not name " << c.field << ": " << msg;
    EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  }
}

TEST(Converter, RejectsInvalidJsonAndDuplicateKeys) {
  std::string dir = copy_fixture("cifar_like");
  std::ofstream(dir + "/config.json") << "{\"in_channels\": 3, \"in_channels\": 4}";
  EXPECT_NE(convert_error(dir).second.find("duplicate"), std::string::npos);
  std::ofstream(dir + "/config.json") << "{\"in_channels\": 3,";
  EXPECT_NE(convert_error(dir).second.find("config.json"), std::string::npos);
  std::ofstream(dir + "/config.json") << "[1, 2]";
  EXPECT_NE(convert_error(dir).second.find("object"), std::string::npos);
}

TEST(Converter, ListsAllMissingExtraAndMisshapedTensors) {
  std::string dir = copy_fixture("cifar_like");
  const std::string st = dir + "/diffusion_pytorch_model.safetensors";
  SafeTensorsFile f = read_safetensors(st);
  ASSERT_TRUE(f.tensors.count("conv_in.bias"));
  ASSERT_TRUE(f.tensors.count("conv_out.weight"));
  f.tensors.erase("conv_in.bias");
  f.tensors.erase("time_embedding.linear_1.weight");
  SafeTensor& w = f.tensors.at("conv_out.weight");
  w.shape = {w.shape[0], w.shape[1] * w.shape[2] * w.shape[3], 1, 1};  // same bytes, wrong shape
  SafeTensor extra;
  extra.name = "ema.extra_weight";
  extra.shape = {2};
  extra.bytes.assign(8, 0);
  f.tensors[extra.name] = extra;
  std::vector<SafeTensor> all;
  for (auto& [k, v] : f.tensors) all.push_back(v);
  auto bytes = encode_safetensors(all);
  write_file_atomic(st, bytes.data(), bytes.size());

  auto [code, msg] = convert_error(dir);
  EXPECT_EQ(code, ErrorCode::InvalidModel);
  for (const char* name : {"conv_in.bias", "time_embedding.linear_1.weight", "conv_out.weight"})
    EXPECT_NE(msg.find(name), std::string::npos) << name << " not listed in: " << msg;
  EXPECT_EQ(msg.find("ema.extra_weight"), std::string::npos) << "extras are warnings unless --strict";

  // Only the extra tensor left: a warning by default, an error with --strict.
  std::string dir2 = copy_fixture("cifar_like");
  SafeTensorsFile g = read_safetensors(dir2 + "/diffusion_pytorch_model.safetensors");
  g.tensors[extra.name] = extra;
  all.clear();
  for (auto& [k, v] : g.tensors) all.push_back(v);
  bytes = encode_safetensors(all);
  write_file_atomic(dir2 + "/diffusion_pytorch_model.safetensors", bytes.data(), bytes.size());
  ConvertOptions opt;
  opt.input = dir2;
  opt.output = dir2 + "/../ok.drt";
  ConvertReport r = convert_diffusers(opt);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("ema.extra_weight"), std::string::npos);
  opt.strict = true;
  opt.output = dir2 + "/../strict.drt";
  try {
    convert_diffusers(opt);
    ADD_FAILURE() << "--strict accepted an unexpected tensor";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ema.extra_weight"), std::string::npos);
  }
}

TEST(Converter, NullClassChoices) {
  std::string src = test::source_path("tests/fixtures/models/class_cond");
  std::string tmp = test::temp_dir("nullclass");
  ConvertOptions opt;
  opt.input = src;
  opt.output = tmp + "/auto.drt";
  convert_diffusers(opt);
  ModelFile mf = read_model_file(opt.output);
  EXPECT_GT(mf.conditioning.num_classes, 1);
  EXPECT_EQ(mf.conditioning.null_class, mf.conditioning.num_classes - 1);
  opt.null_class = -1;
  opt.output = tmp + "/none.drt";
  convert_diffusers(opt);
  EXPECT_EQ(read_model_file(opt.output).conditioning.null_class, -1);
  opt.null_class = 0;
  opt.output = tmp + "/zero.drt";
  convert_diffusers(opt);
  EXPECT_EQ(read_model_file(opt.output).conditioning.null_class, 0);
  opt.null_class = 1000;
  opt.output = tmp + "/bad.drt";
  EXPECT_THROW(convert_diffusers(opt), Error);
  EXPECT_FALSE(fs::exists(opt.output));
}

TEST(Converter, ValidatesTheSchedulerConfig) {
  std::string dir = copy_fixture("cifar_like");
  save_json(dir + "/scheduler_config.json", json{{"_class_name", "DDPMScheduler"}, {"beta_schedule", "quadratic"}});
  auto [code, msg] = convert_error(dir);
  EXPECT_NE(msg.find("beta_schedule"), std::string::npos) << msg;
  EXPECT_NE(msg.find("scheduler_config.json"), std::string::npos) << msg;
}

TEST(Converter, StoresConvWeightsChannelsLast) {
  std::string out = test::temp_dir("krsc") + "/m.drt";
  ConvertOptions opt;
  opt.input = test::source_path("tests/fixtures/models/cifar_like");
  opt.output = out;
  convert_diffusers(opt);
  ModelFile mf = read_model_file(out);
  SafeTensorsFile src = read_safetensors(opt.input + "/diffusion_pytorch_model.safetensors");
  const SafeTensor& w = src.tensors.at("conv_in.weight");  // [Co, Ci, 3, 3]
  const TensorInfo* t = mf.find("conv_in.weight");
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->shape, (std::vector<int64_t>{w.shape[0], 3, 3, w.shape[1]}));
  std::vector<float> a = w.to_f32();
  const float* b = reinterpret_cast<const float*>(mf.tensor_data(*t));
  const int64_t ci = w.shape[1];
  for (int64_t o = 0; o < w.shape[0]; ++o)
    for (int64_t i = 0; i < ci; ++i)
      for (int y = 0; y < 3; ++y)
        for (int x = 0; x < 3; ++x) ASSERT_EQ(a[((o * ci + i) * 3 + y) * 3 + x], b[((o * 3 + y) * 3 + x) * ci + i]);
}
