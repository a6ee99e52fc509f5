#include "tests/test_util.h"

#include "base/atomic_file.h"
#include "base/checked_math.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <limits>
#include <regex>
#include <random>

namespace diffrt::test {

std::string source_path(const std::string& rel) { return std::string(DIFFRT_SOURCE_DIR) + "/" + rel; }

std::string FixtureDir::operator()(const std::string& rel) const {
  return source_path("tests/fixtures/" + dir + "/" + rel);
}

const nlohmann::json& FixtureDir::manifest() const {
  static std::map<std::string, nlohmann::json> cache;
  auto it = cache.find(dir);
  if (it == cache.end()) it = cache.emplace(dir, load_json((*this)("manifest.json"))).first;
  return it->second;
}

std::string temp_dir(const std::string& tag) {
  std::random_device rd;
  auto dir = std::filesystem::temp_directory_path() /
             ("diffrt_test_" + tag + "_" + std::to_string(rd()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

double max_abs_diff(const float* a, const float* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = std::fabs(double(a[i]) - double(b[i]));
    if (!std::isfinite(d)) return std::numeric_limits<double>::infinity();
    m = std::max(m, d);
  }
  return m;
}

double rel_l2(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = double(a[i]) - double(b[i]);
    if (!std::isfinite(d)) return std::numeric_limits<double>::infinity();
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

GuardedOut::GuardedOut(size_t count, const std::vector<float>* init)
    : buf(count + kGuardN, std::numeric_limits<float>::quiet_NaN()), n(count) {
  if (init) std::copy(init->begin(), init->end(), buf.begin());
  for (int i = 0; i < kGuardN; ++i) buf[count + i] = kGuard;
}

bool GuardedOut::guards_ok() const {
  for (int i = 0; i < kGuardN; ++i)
    if (buf[n + i] != kGuard) return false;
  return true;
}

std::vector<float> random_vec(size_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void expect_close(const float* got, const float* ref, size_t n, double tol_rel, double tol_abs,
                  const std::string& what, int width) {
  const double ma = max_abs_diff(got, ref, n), rl = rel_l2(got, ref, n);
  std::printf("[errors] %-*s max_abs=%.3e rel_l2=%.3e\n", width, what.c_str(), ma, rl);
  EXPECT_LE(rl, tol_rel) << what;
  EXPECT_LE(ma, tol_abs) << what;
}

std::vector<std::string> model_fixture_dirs() {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(source_path("tests/fixtures/models")))
    if (fs::exists(e.path() / "x.npy") && fs::exists(e.path() / "out.npy")) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

SampleRequest pipeline_request(const nlohmann::json& meta) {
  const bool ddim = meta["pipeline"] == "DDIMPipeline";
  auto shape = meta["image_shape_nhwc"].get<std::vector<int>>();
  SampleRequest req;
  req.sampler = ddim ? SamplerKind::Ddim : SamplerKind::Ddpm;
  req.steps = meta["num_inference_steps"].get<int>();
  req.eta = meta["eta"].is_number() ? meta["eta"].get<float>() : 0.0f;
  req.seed = meta["seed"].get<uint64_t>();
  req.rng = RngKind::Torch;
  req.batch = shape[0];
  req.height = shape[1];
  req.width = shape[2];
  req.channels = shape[3];
  return req;
}

uint64_t le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

ModelFileParts split_model_file(const std::vector<uint8_t>& f) {
  const uint64_t h = le64(f.data() + 16);
  ModelFileParts p;
  p.header = nlohmann::json::parse(f.begin() + 24, f.begin() + 24 + long(h));
  p.data.assign(f.begin() + long(align_up(24 + h, kDataAlignment)), f.end());
  return p;
}

std::vector<uint8_t> assemble_model_file(const std::string& text, const std::vector<uint8_t>& data, uint32_t version) {
  std::vector<uint8_t> f(kMagic, kMagic + 8);
  auto put = [&](uint64_t v, int n) { for (int i = 0; i < n; ++i) f.push_back(uint8_t(v >> (8 * i))); };
  put(version, 4);
  put(0, 4);
  put(text.size(), 8);
  f.insert(f.end(), text.begin(), text.end());
  f.resize(align_up(f.size(), kDataAlignment), 0);
  f.insert(f.end(), data.begin(), data.end());
  return f;
}

std::vector<uint8_t> edit_model_file(const std::vector<uint8_t>& f, const std::function<void(nlohmann::json&)>& edit) {
  ModelFileParts p = split_model_file(f);
  edit(p.header);
  return assemble_model_file(p.header.dump(), p.data);
}

nlohmann::json load_json(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("missing test data " + path);
  return nlohmann::json::parse(f);
}

nlohmann::json load_json_nonfinite_as_null(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("missing test data " + path);
  std::string t((std::istreambuf_iterator<char>(f)), {});
  for (const char* w : {"-Infinity", "Infinity", "NaN"})
    for (size_t p = t.find(w); p != std::string::npos; p = t.find(w, p)) t.replace(p, std::strlen(w), "null");
  return nlohmann::json::parse(t);
}

nlohmann::json load_source_json(const std::string& rel) { return load_json(source_path(rel)); }

void save_json(const std::string& path, const nlohmann::json& j) { std::ofstream(path) << j.dump(2); }

std::map<std::string, TensorShape> read_key_shapes(const std::string& rel) {
  std::ifstream f(source_path(rel));
  EXPECT_TRUE(f.good()) << rel;
  std::map<std::string, TensorShape> out;
  std::string line;
  const std::regex num("[0-9]+");
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.find('\t');
    EXPECT_NE(tab, std::string::npos) << line;
    TensorShape s;
    const std::string dims = line.substr(tab + 1);
    for (std::sregex_iterator it(dims.begin(), dims.end(), num), end; it != end; ++it) s.push_back(std::stoll(it->str()));
    out[line.substr(0, tab)] = s;
  }
  return out;
}

std::string shape_map_diff(const std::map<std::string, TensorShape>& want,
                           const std::map<std::string, TensorShape>& got) {
  std::string r;
  for (const auto& [k, s] : want) {
    auto it = got.find(k);
    if (it == got.end()) r += "\n  not built: " + k;
    else if (it->second != s) r += "\n  " + k + ": diffusers " + shape_str(s) + ", built " + shape_str(it->second);
  }
  for (const auto& [k, s] : got)
    if (!want.count(k)) r += "\n  not in diffusers: " + k;
  return r;
}

nlohmann::json ddpm_cifar10_config() {
  return {{"_class_name", "UNet2DModel"}, {"act_fn", "silu"}, {"attention_head_dim", nullptr},
          {"block_out_channels", {128, 256, 256, 256}}, {"center_input_sample", false},
          {"down_block_types", {"DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"}},
          {"downsample_padding", 0}, {"flip_sin_to_cos", false}, {"freq_shift", 1}, {"in_channels", 3},
          {"layers_per_block", 2}, {"mid_block_scale_factor", 1}, {"norm_eps", 1e-6}, {"norm_num_groups", 32},
          {"out_channels", 3}, {"sample_size", 32}, {"time_embedding_type", "positional"},
          {"up_block_types", {"UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"}}};
}

ConvertOptions convert_options(const std::string& input, const std::string& tag) {
  ConvertOptions opt;
  opt.input = input;
  opt.output = temp_dir(tag) + "/m.drt";
  return opt;
}

const ConvertedModel& converted_once(const std::string& key, const std::function<ConvertOptions()>& options) {
  static std::map<std::string, ConvertedModel> cache;
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  const ConvertOptions opt = options();
  convert_diffusers(opt);
  return cache.emplace(key, ConvertedModel{opt.output, read_model_file(opt.output)}).first->second;
}

ModelFile convert_and_read(const std::string& dir, DType dtype, const std::string& tag) {
  const std::string drt = temp_dir(tag) + "/m.drt";
  ConvertOptions opt;
  opt.input = dir;
  opt.output = drt;
  opt.dtype = dtype;
  convert_diffusers(opt);
  return read_model_file(drt);
}

std::string copy_tree(const std::string& src, const std::string& tag, const std::string& leaf) {
  std::string dst = temp_dir(tag) + "/" + leaf;
  std::filesystem::copy(src, dst, std::filesystem::copy_options::recursive);
  return dst;
}

ConvertReport convert(const std::string& dir, const std::string& out, ConvertOptions opt) {
  opt.input = dir;
  opt.output = out;
  return convert_diffusers(opt);
}

std::pair<ErrorCode, std::string> convert_error(const std::string& dir, ConvertOptions opt) {
  opt.input = dir;
  opt.output = dir + "/../out.drt";
  try {
    convert_diffusers(opt);
  } catch (const Error& e) {
    EXPECT_FALSE(std::filesystem::exists(opt.output)) << "a failed conversion must not leave an output file";
    return {e.code(), e.what()};
  }
  ADD_FAILURE() << "conversion of " << dir << " unexpectedly succeeded";
  return {ErrorCode::Internal, ""};
}

void edit_weights(const std::string& file, const std::function<void(std::map<std::string, SafeTensor>&)>& f) {
  SafeTensorsFile st = read_safetensors(file);
  f(st.tensors);
  std::vector<SafeTensor> all;
  for (auto& [k, v] : st.tensors) all.push_back(v);
  auto bytes = encode_safetensors(all, st.metadata);
  write_file_atomic(file, bytes.data(), bytes.size());
}

bool has_warning(const ConvertReport& r, const std::string& what) {
  for (const auto& w : r.warnings)
    if (w.find(what) != std::string::npos) return true;
  return false;
}

}  // namespace diffrt::test
