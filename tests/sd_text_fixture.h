// Test helper: the prompt -> image pipeline folder of tests/fixtures/sd/sd1_text, assembled as
// tests/fixtures/make_sd_fixtures.py assembles it: sd1_tiny/pipeline/{scheduler,unet,vae} +
// clip_tiny_<clip>/{text_encoder,tokenizer} + sd1_text/model_index.json. clip is "sd1" (quick_gelu, pad
// <|endoftext|>: the sd1_text runs) or "sd2" (gelu, pad "!": the same UNet with the SD2-style text encoder).
#pragma once
#include <filesystem>
#include <string>

#include "tests/test_util.h"

namespace diffrt::test {

inline std::string assemble_text_pipeline(const std::string& clip, const std::string& tag) {
  namespace fs = std::filesystem;
  const fs::path sd = source_path("tests/fixtures/sd");
  const fs::path dst = fs::path(temp_dir(tag)) / "pipeline";
  fs::create_directories(dst);
  for (const char* c : {"scheduler", "unet", "vae"})
    fs::copy(sd / "sd1_tiny" / "pipeline" / c, dst / c, fs::copy_options::recursive);
  for (const char* c : {"text_encoder", "tokenizer"})
    fs::copy(sd / ("clip_tiny_" + clip) / c, dst / c, fs::copy_options::recursive);
  fs::copy_file(sd / "sd1_text" / "model_index.json", dst / "model_index.json");
  return dst.string();
}

}  // namespace diffrt::test
