// Image inputs of image-to-image and inpainting: the PNG reader against what Pillow 9.4 makes of every colour type
// (tests/fixtures/png, made by tests/fixtures/make_png_fixtures.py), the PIL-exact LANCZOS, torch's nearest and
// VaeImageProcessor.preprocess against diffusers 0.27.2 (tests/fixtures/img2img/preprocess, and the preprocessed
// images and masks of the img2img and inpaint runs), all bit for bit.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/image_png.h"
#include "base/image_preprocess.h"
#include "base/image_resize.h"
#include "base/layout.h"
#include "base/npy.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace diffrt;
using nlohmann::json;

namespace {

fs::path img2img(const std::string& rel) { return test::source_path("tests/fixtures/img2img/" + rel); }

std::vector<float> npy_f32(const fs::path& p) { return read_npy(p.string()).as_f32(); }

// uint8 fixtures are stored as numpy uint8 .npy, which read_npy does not take: parse the payload by hand
// ('|u1', C order, version 1.0).
std::vector<uint8_t> npy_u8(const fs::path& p, std::vector<int64_t>* shape) {
  std::ifstream f(p, std::ios::binary);
  std::vector<uint8_t> b((std::istreambuf_iterator<char>(f)), {});
  EXPECT_GT(b.size(), 10u) << p;
  const size_t hlen = size_t(b[8]) | size_t(b[9]) << 8;
  const std::string h(b.begin() + 10, b.begin() + 10 + long(hlen));
  EXPECT_NE(h.find("'descr': '|u1'"), std::string::npos) << h;
  EXPECT_NE(h.find("'fortran_order': False"), std::string::npos) << h;
  shape->clear();
  const size_t a = h.find('('), z = h.find(')');
  std::string dims = h.substr(a + 1, z - a - 1);
  size_t pos = 0;
  while (pos < dims.size()) {
    while (pos < dims.size() && (dims[pos] == ',' || dims[pos] == ' ')) ++pos;
    if (pos >= dims.size()) break;
    size_t end = dims.find(',', pos);
    shape->push_back(std::stoll(dims.substr(pos, end - pos)));
    pos = end == std::string::npos ? dims.size() : end;
  }
  return std::vector<uint8_t>(b.begin() + 10 + long(hlen), b.end());
}

// Some run metadata hold Python's -Infinity / Infinity / NaN (e.g. sigmas), which JSON has not: read them as null.
json meta_of(const fs::path& d) { return test::load_json_nonfinite_as_null((d / "meta.json").string()); }

// Exact equality (the digest says bit for bit), reporting the first difference.
void expect_equal(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i)
    if (got[i] != want[i]) {
      ADD_FAILURE() << what << ": first difference at flat index " << i << ": " << got[i] << " vs " << want[i];
      return;
    }
}

std::vector<float> to_nchw(const ImageBatch& b) { return nhwc_to_nchw(b.data, b.n, b.h, b.w, b.c); }

// "processor.preprocess(input, height=16, width=16)" -> 16, 16; None -> 0.
void call_size(const json& meta, int* height, int* width) {
  const std::string call = meta["call"].get<std::string>();
  auto arg = [&](const std::string& k) {
    const size_t p = call.find(k + "=");
    const std::string v = call.substr(p + k.size() + 1, call.find_first_of(",)", p) - p - k.size() - 1);
    return v == "None" ? 0 : std::stoi(v);
  };
  *height = arg("height");
  *width = arg("width");
}

}  // namespace

TEST(Preprocess, MatchesVaeImageProcessorFixturesBitForBit) {
  int cases = 0;
  for (const auto& e : fs::directory_iterator(img2img("preprocess"))) {
    const fs::path d = e.path();
    const json meta = meta_of(d);
    const std::string proc = meta["processor"].get<std::string>();
    const bool mask = proc.find("do_binarize=True") != std::string::npos;
    const int vsf = std::stoi(proc.substr(proc.find("vae_scale_factor=") + 17));
    int height = 0, width = 0;
    call_size(meta, &height, &width);
    ImageBatch got;
    if (fs::exists(d / "input_u8.npy")) {  // a PIL image
      std::vector<int64_t> s;
      const std::vector<uint8_t> px = npy_u8(d / "input_u8.npy", &s);
      const int c = s.size() == 3 ? int(s[2]) : 1;
      got = mask ? preprocess_mask_u8(px.data(), int(s[0]), int(s[1]), c, vsf, height, width)
                 : preprocess_image_u8(px.data(), int(s[0]), int(s[1]), c, vsf, height, width);
    } else {
      NpyArray a = read_npy((d / "input.npy").string());
      int n = 0, h = 0, w = 0, c = 0;
      npy_image_dims(a.shape, mask, d.string(), &n, &h, &w, &c);
      const std::vector<float> x = a.as_f32();
      got = mask ? preprocess_mask_f32(x.data(), n, h, w, c, vsf, height, width)
                 : preprocess_image_f32(x.data(), n, h, w, c, vsf, height, width);
    }
    NpyArray want = read_npy((d / "output.npy").string());
    EXPECT_EQ(want.shape, (std::vector<int64_t>{got.n, got.c, got.h, got.w})) << d;
    expect_equal(to_nchw(got), want.as_f32(), d.filename().string());
    ++cases;
  }
  EXPECT_EQ(cases, 11);
}

TEST(Preprocess, NotNormalizedWhenTheBatchMinimumIsNegative) {
  NpyArray a = read_npy(img2img("preprocess/np_b2_minus1to1_not_normalized/input.npy").string());
  bool normalized = true;
  const std::vector<float> x = a.as_f32();
  const ImageBatch b = preprocess_image_f32(x.data(), int(a.shape[0]), int(a.shape[1]), int(a.shape[2]),
                                            int(a.shape[3]), 2, 0, 0, &normalized);
  EXPECT_FALSE(normalized);
  EXPECT_EQ(b.data, x);  // same size: nearest is the identity, nothing else applies
  const float ok[4] = {0.0f, 0.5f, 1.0f, 0.25f};
  preprocess_image_f32(ok, 1, 2, 2, 1, 2, 0, 0, &normalized);
  EXPECT_TRUE(normalized);
}

// The image and mask inputs of every img2img and inpaint run, through the same functions.
TEST(Preprocess, PipelineRunInputsMatch) {
  int images = 0, masks = 0;
  auto image_of = [&](const fs::path& d, int vsf, int height, int width) {
    if (fs::exists(d / "image_u8.npy")) {
      std::vector<int64_t> s;
      const std::vector<uint8_t> px = npy_u8(d / "image_u8.npy", &s);
      return preprocess_image_u8(px.data(), int(s[0]), int(s[1]), int(s[2]), vsf, height, width);
    }
    NpyArray a = read_npy((d / "image.npy").string());
    int n = 0, h = 0, w = 0, c = 0;
    npy_image_dims(a.shape, false, d.string(), &n, &h, &w, &c);
    const std::vector<float> x = a.as_f32();
    return preprocess_image_f32(x.data(), n, h, w, c, vsf, height, width);
  };
  for (const char* cfg : {"sd1", "sd2"})
    for (const auto& e : fs::directory_iterator(img2img(std::string("img2img/") + cfg))) {
      // img2img: no height/width arguments, the image's own size floored to vsf = 2.
      expect_equal(to_nchw(image_of(e.path(), 2, 0, 0)), npy_f32(e.path() / "preprocessed.npy"),
                   e.path().filename().string());
      ++images;
    }
  for (const auto& e : fs::directory_iterator(img2img("inpaint"))) {
    const fs::path d = e.path();
    const json meta = meta_of(d);
    const std::string call = meta["call"].get<std::string>();
    // The inpaint pipeline resizes to height/width, by default unet.sample_size * vsf = 16.
    int height = 16, width = 16;
    if (call.find("height=") != std::string::npos) call_size(meta, &height, &width);
    expect_equal(to_nchw(image_of(d, 2, height, width)), npy_f32(d / "init_image.npy"), d.filename().string() + " image");
    ImageBatch m;
    if (fs::exists(d / "mask_u8.npy")) {
      std::vector<int64_t> s;
      const std::vector<uint8_t> px = npy_u8(d / "mask_u8.npy", &s);
      m = preprocess_mask_u8(px.data(), int(s[0]), int(s[1]), s.size() == 3 ? int(s[2]) : 1, 2, height, width);
    } else {
      NpyArray a = read_npy((d / "mask.npy").string());
      int n = 0, h = 0, w = 0, c = 0;
      npy_image_dims(a.shape, true, d.string(), &n, &h, &w, &c);
      const std::vector<float> x = a.as_f32();
      m = preprocess_mask_f32(x.data(), n, h, w, c, 2, height, width);
    }
    expect_equal(to_nchw(m), npy_f32(d / "mask_condition.npy"), d.filename().string() + " mask");
    // mask_latents: nearest to the latent size, then tiled to the batch.
    const ImageBatch ml = mask_to_latent_size(m, m.h / 2, m.w / 2);
    const std::vector<float> want = npy_f32(d / "mask_latents.npy");
    const std::vector<float> one = to_nchw(ml);
    ASSERT_EQ(want.size() % one.size(), 0u) << d;
    for (size_t r = 0; r < want.size() / one.size(); ++r)
      expect_equal(std::vector<float>(want.begin() + long(r * one.size()), want.begin() + long((r + 1) * one.size())), one,
                   d.filename().string() + " mask latents");
    ++masks;
  }
  EXPECT_EQ(images, 14);
  EXPECT_EQ(masks, 9);
}

TEST(Preprocess, NearestIndexIsTorchLegacyNearest) {
  // 20 -> 16 reads 0,1,2,3,5,6,7,8,10,... (README); doubling repeats; an integer ratio takes the block's first.
  const int want20[16] = {0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(nearest_source_index(i, 20, 16), want20[i]) << i;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(nearest_source_index(i, 5, 10), i / 2);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(nearest_source_index(i, 64, 8), 8 * i);
  for (int out = 1; out <= 40; ++out)
    for (int in = 1; in <= 40; ++in)
      for (int i = 0; i < out; ++i) {
        const int s = nearest_source_index(i, in, out);
        ASSERT_TRUE(s >= 0 && s < in) << in << "->" << out << " at " << i;
      }
}

TEST(Preprocess, SizesAndShapesAreChecked) {
  int h = 0, w = 0;
  vae_target_size(37, 29, 8, 0, 0, &h, &w);
  EXPECT_EQ(h, 32);
  EXPECT_EQ(w, 24);
  vae_target_size(37, 29, 8, 17, 100, &h, &w);  // explicit sizes are floored too
  EXPECT_EQ(h, 16);
  EXPECT_EQ(w, 96);
  EXPECT_THROW(vae_target_size(7, 29, 8, 0, 0, &h, &w), Error);
  EXPECT_THROW(vae_target_size(37, 29, 8, -8, 0, &h, &w), Error);
  int n = 0, c = 0;
  npy_image_dims({16, 24, 3}, false, "x", &n, &h, &w, &c);
  EXPECT_EQ(std::vector<int>({n, h, w, c}), std::vector<int>({1, 16, 24, 3}));
  npy_image_dims({16, 24}, false, "x", &n, &h, &w, &c);
  EXPECT_EQ(std::vector<int>({n, h, w, c}), std::vector<int>({1, 16, 24, 1}));
  npy_image_dims({16, 24, 1}, true, "m", &n, &h, &w, &c);
  EXPECT_EQ(std::vector<int>({n, h, w, c}), std::vector<int>({1, 16, 24, 1}));
  npy_image_dims({2, 16, 24}, true, "m", &n, &h, &w, &c);
  EXPECT_EQ(std::vector<int>({n, h, w, c}), std::vector<int>({2, 16, 24, 1}));
  EXPECT_THROW(npy_image_dims({2, 2, 16, 24, 3}, false, "x", &n, &h, &w, &c), Error);
  EXPECT_THROW(npy_image_dims({0, 16, 24, 3}, false, "x", &n, &h, &w, &c), Error);
  EXPECT_THROW(npy_image_dims({5}, true, "m", &n, &h, &w, &c), Error);
  // Binarisation: 0.5 -> 1, just below -> 0; NaN is left as torch leaves it.
  const float m[4] = {0.5f, std::nextafter(0.5f, 0.0f), 0.7f, std::nanf("")};
  const ImageBatch b = preprocess_mask_f32(m, 1, 2, 2, 1, 2, 0, 0);
  EXPECT_EQ(b.data[0], 1.0f);
  EXPECT_EQ(b.data[1], 0.0f);
  EXPECT_EQ(b.data[2], 1.0f);
  EXPECT_TRUE(std::isnan(b.data[3]));
}

TEST(Png, ReadsEveryColourTypeAsPillowConvertsIt) {
  const fs::path dir = test::source_path("tests/fixtures/png");
  int cases = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() != ".png" || name.find("16") != std::string::npos) continue;
    const std::string stem = name.substr(0, name.size() - 4);
    const PngImage img = read_png(e.path().string());
    EXPECT_EQ(img.height, 7) << name;
    EXPECT_EQ(img.width, 5) << name;
    const size_t px = size_t(img.height) * size_t(img.width);
    std::vector<uint8_t> rgb, l;
    if (img.channels == 1) {
      l = img.pixels;
      for (uint8_t v : l) rgb.insert(rgb.end(), {v, v, v});  // convert("RGB") of L
    } else {
      ASSERT_EQ(img.channels, 3) << name;
      rgb = img.pixels;
      l = rgb_to_l_u8(rgb.data(), px);
    }
    const std::vector<float> want_rgb = npy_f32(dir / (stem + ".rgb.npy")), want_l = npy_f32(dir / (stem + ".l.npy"));
    expect_equal(std::vector<float>(rgb.begin(), rgb.end()), want_rgb, name + " as RGB");
    expect_equal(std::vector<float>(l.begin(), l.end()), want_l, name + " as L");
    const bool converted = stem != "rgb8" && stem != "grey8" && stem != "rgb8_interlaced" && stem != "rgb8_trns";
    EXPECT_EQ(!img.converted.empty(), converted) << name << ": '" << img.converted << "'";
    ++cases;
  }
  EXPECT_EQ(cases, 12);
}

TEST(Png, RefusesWhatItCannotReadExactly) {
  const fs::path dir = test::source_path("tests/fixtures/png");
  auto refused = [](const std::string& path, const std::string& what, ErrorCode code = ErrorCode::InvalidArgument) {
    try {
      read_png(path);
      ADD_FAILURE() << path << " was read";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };
  refused((dir / "grey16.png").string(), "16-bit PNG");
  refused((dir / "rgb16.png").string(), "16-bit PNG");
  refused((dir / "missing.png").string(), "cannot open", ErrorCode::Io);
  refused((dir / "rgb8.rgb.npy").string(), "not a PNG");
  // Truncated, and corrupted (CRC), copies of a valid file; and a size cap checked before decompressing.
  std::ifstream f(dir / "rgb8.png", std::ios::binary);
  std::vector<uint8_t> b((std::istreambuf_iterator<char>(f)), {});
  auto decode_fails = [](const std::vector<uint8_t>& bytes, const std::string& what) {
    try {
      decode_png(bytes.data(), bytes.size(), "mem.png");
      ADD_FAILURE() << "decoded";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  decode_fails(std::vector<uint8_t>(b.begin(), b.begin() + long(b.size() - 20)), "mem.png: invalid PNG");
  std::vector<uint8_t> crc = b;
  crc[30] ^= 0x55;  // inside IHDR
  decode_fails(crc, "mem.png: invalid PNG");
  try {
    decode_png(b.data(), b.size(), "mem.png", 4);  // 7x5 > 4
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("5x7 pixels is larger than 4 pixels on a side"), std::string::npos) << e.what();
  }
  // Our own PNG writer's output reads back (grey and RGB).
  const float px[6] = {0.0f, 0.5f, 1.0f, 0.25f, 0.75f, 1.0f};
  for (int c : {1, 3}) {
    const std::vector<unsigned char> bytes = encode_png_grid(px, 1, 1, 6 / c, c, 0, {});
    const PngImage img = decode_png(bytes.data(), bytes.size(), "grid.png");
    EXPECT_EQ(img.channels, c);
    EXPECT_EQ(img.pixels, (std::vector<uint8_t>{0, 128, 255, 64, 191, 255}));
  }
}
