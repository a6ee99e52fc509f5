// Shared test helpers: fixture paths, JSON files, error metrics, expected errors, converter runs.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "model/model_file.h"
#include "runtime/sampler.h"
#include "weights_converter/block_builder.h"
#include "weights_converter/converter.h"
#include "weights_converter/safetensors.h"

namespace diffrt::test {

// Absolute path of a file under the source tree (tests/fixtures/..., models/...).
std::string source_path(const std::string& rel);
// One fixture folder, tests/fixtures/<dir>: fx(rel) is the absolute path of a file in it.
struct FixtureDir {
  std::string dir;
  std::string operator()(const std::string& rel) const;
  // Its manifest.json (read once per test binary).
  const nlohmann::json& manifest() const;
};
// Fresh, empty temporary directory for one test.
std::string temp_dir(const std::string& tag);

// max |a - b| and relative L2 error ||a - b|| / ||b|| (double accumulation). NaN anywhere -> inf.
double max_abs_diff(const float* a, const float* b, size_t n);
double rel_l2(const float* a, const float* b, size_t n);

// A NaN-poisoned output buffer of `count` floats followed by kGuardN guard elements, so unwritten or
// out-of-bounds elements fail a comparison. `init` (if given) fills the body, for in-place calls.
struct GuardedOut {
  static constexpr float kGuard = 1234.5f;
  static constexpr int kGuardN = 17;
  std::vector<float> buf;
  size_t n;
  explicit GuardedOut(size_t count, const std::vector<float>* init = nullptr);
  float* data() { return buf.data(); }
  bool guards_ok() const;
};

// Uniform random floats in [lo, hi).
std::vector<float> random_vec(size_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f);

// Expects rel_l2 <= tol_rel and max_abs <= tol_abs, printing both as "[errors] <what> ..." (the reports quote
// them; `width` pads `what`). Both metrics are inf on NaN.
void expect_close(const float* got, const float* ref, size_t n, double tol_rel, double tol_abs,
                  const std::string& what, int width = 40);

// JSON file at `path` (throws std::runtime_error naming it when it cannot be opened); load_source_json takes
// a path relative to the source tree. save_json writes j.dump(2).
nlohmann::json load_json(const std::string& path);
nlohmann::json load_source_json(const std::string& rel);
// As load_json, for files with Python's -Infinity / Infinity / NaN (which JSON has not): they read as null.
nlohmann::json load_json_nonfinite_as_null(const std::string& path);
void save_json(const std::string& path, const nlohmann::json& j);

// Expects `fn` to throw diffrt::Error with `code` and a message containing `needle`.
template <typename F>
void expect_error(F&& fn, ErrorCode code, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown; expected one naming " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(int(e.code()), int(code)) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

// The folders under tests/fixtures/models with a forward case (x.npy and out.npy), sorted.
std::vector<std::string> model_fixture_dirs();
// The SampleRequest of a recorded DDPM/DDIM pipeline run (its meta.json, torch RNG mode).
SampleRequest pipeline_request(const nlohmann::json& meta);

// ---- model files ----
// A model file taken apart: its JSON header and the data section after the header's padding.
struct ModelFileParts {
  nlohmann::json header;
  std::vector<uint8_t> data;
};
// The little-endian u64 at p.
uint64_t le64(const uint8_t* p);
ModelFileParts split_model_file(const std::vector<uint8_t>& f);
// A file with this exact header text and data section (preamble and padding made consistent).
std::vector<uint8_t> assemble_model_file(const std::string& text, const std::vector<uint8_t>& data,
                                         uint32_t version = kFormatVersion);
// `f` with its header passed through `edit` (written as header.dump()).
std::vector<uint8_t> edit_model_file(const std::vector<uint8_t>& f, const std::function<void(nlohmann::json&)>& edit);

// Expects launch(p) to throw diffrt::Error with `code`; `what` names the case.
template <typename Launch, typename Params>
void expect_rejected(Launch&& launch, const Params& p, ErrorCode code, const char* what) {
  try {
    launch(p);
    ADD_FAILURE() << what << " accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << what;
  }
}

// ---- weights converter ----
// google/ddpm-cifar10-32's UNet2DModel config (spec section 8.1; as scripts/make_bench_models.py has it).
nlohmann::json ddpm_cifar10_config();
// A converted model file: its path and contents.
struct ConvertedModel {
  std::string path;
  ModelFile file;
};
// Options converting `input` into a fresh temporary .drt named by `tag`.
ConvertOptions convert_options(const std::string& input, const std::string& tag);
// The conversion with options() done once per test binary and `key`, then served from a cache.
const ConvertedModel& converted_once(const std::string& key, const std::function<ConvertOptions()>& options);
// Converts the diffusers folder `dir` (in `dtype`) into a fresh temporary .drt named by `tag` and reads it back.
ModelFile convert_and_read(const std::string& dir, DType dtype, const std::string& tag);
// A "name<TAB>(a, b, c)" key/shape list under the source tree (blank and '#' lines skipped) -> name -> shape.
std::map<std::string, TensorShape> read_key_shapes(const std::string& rel);
// The differences between two name -> shape maps, one "\n  ..." line each (empty when equal).
std::string shape_map_diff(const std::map<std::string, TensorShape>& want,
                           const std::map<std::string, TensorShape>& got);

// A private copy of the folder `src` (absolute) that a test may mutate: temp_dir(tag) + "/" + leaf.
std::string copy_tree(const std::string& src, const std::string& tag, const std::string& leaf);
// Converts the diffusers folder `dir` into `out` with `opt`.
ConvertReport convert(const std::string& dir, const std::string& out, ConvertOptions opt = {});
// Runs the converter into dir/../out.drt and returns the error (code + message); fails the test if it
// succeeds or leaves an output file behind.
std::pair<ErrorCode, std::string> convert_error(const std::string& dir, ConvertOptions opt = {});
// Rewrites one safetensors file (of a copied fixture) through `f`.
void edit_weights(const std::string& file, const std::function<void(std::map<std::string, SafeTensor>&)>& f);
// True when one of the report's warnings contains `what`.
bool has_warning(const ConvertReport& r, const std::string& what);

}  // namespace diffrt::test
