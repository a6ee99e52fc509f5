// CLIP tokenizer vs transformers 4.39.3's slow CLIPTokenizer (no ftfy), as StableDiffusionPipeline calls it:
// ids for ~250 strings (ASCII, punctuation, contractions, numbers, accents and combining marks, Greek final
// sigma, Turkish dotted I, scripts with marks, CJK, emoji sequences, control/format/unassigned characters,
// whitespace of every kind, special tokens inside the text, SD 2's "!" pad token, long prompts that are
// truncated, the empty string, seeded random mixes) from tests/fixtures/make_clip_fixtures.py:
//  * the committed truncated vocabulary (1,000 merges), SD 1 (pad <|endoftext|>) and SD 2 (pad "!")
//    configs, in the published layout and in transformers' save_pretrained layout;
//  * the full public vocabulary when scripts/fetch_clip_vocab.sh has fetched it into .clip_vocab/
//    (or DIFFRT_CLIP_VOCAB names such a folder); skipped otherwise.
// Plus the BasicTokenizer step alone, padding/truncation sides, concurrent use, and hostile tokenizer files.
#include "runtime/tokenizer/clip_tokenizer.h"
#include "weights_converter/tokenizer_import.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "base/error.h"
#include "tests/test_util.h"

namespace diffrt::test {
namespace {

using nlohmann::json;

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}
bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

const json& cases() {
  static const json j = json::parse(read_text(source_path("tests/fixtures/clip_tokenizer/cases.json")));
  return j;
}

// A tokenizer folder: the committed truncated vocabulary with the sd1 or sd2 configs.
std::string tiny_dir(const std::string& style, const std::string& tag) {
  const std::string d = temp_dir("clip_tok_" + tag);
  const std::string src = source_path("tests/fixtures/clip_tokenizer/");
  for (const char* f : {"vocab.json", "merges.txt"}) write_text(d + "/" + f, read_text(src + f));
  for (const char* f : {"special_tokens_map.json", "tokenizer_config.json"})
    write_text(d + "/" + f, read_text(src + style + "/" + f));
  return d;
}

std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out;
}

// Every case string must encode to transformers' ids followed by padding.
void expect_cases(const ClipTokenizer& tok, const std::string& key) {
  const json& strings = cases()["strings"];
  const json& ids = cases()["ids"][key];
  ASSERT_EQ(strings.size(), ids.size());
  ASSERT_GE(strings.size(), 200u);
  int bad = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const std::string s = strings[i].get<std::string>();
    std::vector<int32_t> want = ids[i].get<std::vector<int32_t>>();
    want.resize(77, tok.spec().pad_id);
    const std::vector<int32_t> got = tok.encode(s);
    if (got != want && ++bad <= 5) {
      std::string g, w;
      for (int32_t v : got) g += std::to_string(v) + " ";
      for (int32_t v : want) w += std::to_string(v) + " ";
      ADD_FAILURE() << key << " case " << i << " \"" << printable(s) << "\"\n got  " << g << "\n want " << w;
    }
  }
  EXPECT_EQ(bad, 0) << key << ": " << bad << " of " << strings.size() << " strings differ";
}

TEST(ClipTokenizer, TinyVocabPublishedLayout) {
  for (const std::string style : {"sd1", "sd2"}) {
    ClipTokenizer tok(load_clip_tokenizer_dir(tiny_dir(style, style)));
    EXPECT_EQ(tok.spec().vocab.size(), 1514u);
    EXPECT_EQ(tok.spec().merges.size(), 1000u);
    EXPECT_EQ(tok.spec().bos_id, 1512);
    EXPECT_EQ(tok.spec().eos_id, 1513);
    EXPECT_EQ(tok.spec().pad_id, style == "sd1" ? 1513 : 0);  // SD 2 pads with "!"
    EXPECT_EQ(tok.max_length(), 77);
    EXPECT_EQ(tok.spec().added.size(), style == "sd1" ? 2u : 3u);
    expect_cases(tok, "tiny_" + style);
  }
}

TEST(ClipTokenizer, TinyVocabSavedByTransformers) {
  // tokenizer_config.json with "added_tokens_decoder" (transformers >= 4.34 save_pretrained layout).
  for (const std::string style : {"sd1", "sd2"}) {
    ClipTokenizer tok(load_clip_tokenizer_dir(source_path("tests/fixtures/sd/clip_tiny_" + style + "/tokenizer")));
    expect_cases(tok, "tiny_" + style);
  }
}

TEST(ClipTokenizer, BasicTokenizerStep) {
  ClipTokenizer tok(load_clip_tokenizer_dir(tiny_dir("sd1", "basic")));
  const json& strings = cases()["strings"];
  const json& clean = cases()["clean"];
  int bad = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const std::string got = tok.basic_clean(strings[i].get<std::string>());
    const std::string want = clean[i].get<std::string>();
    if (got != want && ++bad <= 5)
      ADD_FAILURE() << "case " << i << " \"" << printable(strings[i].get<std::string>()) << "\": got \"" << printable(got)
                    << "\" want \"" << printable(want) << "\"";
  }
  EXPECT_EQ(bad, 0);
}

std::string full_vocab_dir() {
  if (const char* e = std::getenv("DIFFRT_CLIP_VOCAB")) return e;
  return source_path(".clip_vocab");
}

TEST(ClipTokenizer, FullVocab) {
  const std::string root = full_vocab_dir();
  if (!is_dir(root + "/sd1") || !is_dir(root + "/sd2"))
    GTEST_SKIP() << "no full CLIP vocabulary at " << root << " (bash scripts/fetch_clip_vocab.sh fetches it)";
  for (const std::string style : {"sd1", "sd2"}) {
    ClipTokenizer tok(load_clip_tokenizer_dir(root + "/" + style));
    EXPECT_EQ(tok.spec().vocab.size(), 49408u);
    EXPECT_EQ(tok.spec().merges.size(), 48894u);
    const std::vector<int32_t> cat = tok.encode("a photo of a cat");
    const std::vector<int32_t> head(cat.begin(), cat.begin() + 8);
    EXPECT_EQ(head, (std::vector<int32_t>{49406, 320, 1125, 539, 320, 2368, 49407, style == "sd1" ? 49407 : 0}));
    expect_cases(tok, "full_" + style);
  }
}

// Every code point in five contexts (tests/fixtures/make_clip_sweep.py writes the expected id hashes).
TEST(ClipTokenizer, UnicodeSweep) {
  const std::string path = full_vocab_dir() + "/sweep.jsonl";
  std::ifstream f(path);
  if (!f || !is_dir(full_vocab_dir() + "/sd1"))
    GTEST_SKIP() << "no " << path << " (.venv/bin/python tests/fixtures/make_clip_sweep.py writes it)";
  ClipTokenizer tok(load_clip_tokenizer_dir(full_vocab_dir() + "/sd1"));
  std::string line;
  size_t n = 0, bad = 0;
  while (std::getline(f, line)) {
    const json j = json::parse(line);
    const std::string s = j["s"].get<std::string>();
    std::string joined;
    for (int32_t id : tok.tokenize(s)) joined += (joined.empty() ? "" : ",") + std::to_string(id);
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char b : joined) h = (h ^ b) * 0x100000001b3ull;
    if (std::to_string(h) != j["h"].get<std::string>() && ++bad <= 5)
      ADD_FAILURE() << "sweep line " << n << ": " << json(s).dump().substr(0, 120);
    ++n;
  }
  EXPECT_GT(n, 80000u);
  EXPECT_EQ(bad, 0u) << bad << " of " << n << " sweep strings differ";
}

TEST(ClipTokenizer, PaddingAndTruncationSides) {
  const std::string d = tiny_dir("sd1", "sides");
  json cfg = json::parse(read_text(d + "/tokenizer_config.json"));
  cfg["model_max_length"] = 6;
  write_text(d + "/tokenizer_config.json", cfg.dump());
  ClipTokenizer right(load_clip_tokenizer_dir(d));
  const std::vector<int32_t> ids = right.tokenize("1 2 3 4 5 6");  // digits are single tokens
  ASSERT_EQ(ids.size(), 6u);
  EXPECT_EQ(right.encode("1 2 3 4 5 6"), (std::vector<int32_t>{1512, ids[0], ids[1], ids[2], ids[3], 1513}));
  EXPECT_EQ(right.encode("1"), (std::vector<int32_t>{1512, ids[0], 1513, 1513, 1513, 1513}));
  cfg["padding_side"] = "left";
  cfg["truncation_side"] = "left";
  write_text(d + "/tokenizer_config.json", cfg.dump());
  ClipTokenizer left(load_clip_tokenizer_dir(d));
  EXPECT_EQ(left.encode("1 2 3 4 5 6"), (std::vector<int32_t>{1512, ids[2], ids[3], ids[4], ids[5], 1513}));
  EXPECT_EQ(left.encode("1"), (std::vector<int32_t>{1513, 1513, 1513, 1512, ids[0], 1513}));
  // SD 2's pad token "!" is an added token: split out unless split_special_tokens is set.
  const std::string d2 = tiny_dir("sd2", "split");
  ClipTokenizer sd2(load_clip_tokenizer_dir(d2));
  EXPECT_EQ(sd2.tokenize("!!"), (std::vector<int32_t>{0, 0}));
  cfg = json::parse(read_text(d2 + "/tokenizer_config.json"));
  cfg["split_special_tokens"] = true;
  write_text(d2 + "/tokenizer_config.json", cfg.dump());
  ClipTokenizer split(load_clip_tokenizer_dir(d2));
  EXPECT_EQ(split.tokenize("!!"), ClipTokenizer(load_clip_tokenizer_dir(tiny_dir("sd1", "nosplit"))).tokenize("!!"));
}

TEST(ClipTokenizer, ConcurrentUseMatchesSerial) {
  ClipTokenizer tok(load_clip_tokenizer_dir(tiny_dir("sd2", "threads")));
  const json& strings = cases()["strings"];
  std::vector<std::vector<int32_t>> serial;
  for (const auto& s : strings) serial.push_back(tok.encode(s.get<std::string>()));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep)
        for (size_t i = 0; i < strings.size(); ++i)
          if (tok.encode(strings[(i * 7 + t) % strings.size()].get<std::string>()) != serial[(i * 7 + t) % strings.size()])
            ++mismatches[size_t(t)];
    });
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

TEST(ClipTokenizer, RejectsBadPrompts) {
  ClipTokenizer tok(load_clip_tokenizer_dir(tiny_dir("sd1", "badprompt")));
  for (const std::string& bad : {std::string("\xff"), std::string("a\xc3"), std::string("\xc0\xaf"),  // overlong
                                std::string("\xed\xa0\x80"),                                    // surrogate
                                std::string("\xf4\x90\x80\x80")}) {                             // > U+10FFFF
    try {
      tok.encode(bad);
      ADD_FAILURE() << "accepted invalid UTF-8 " << printable(bad);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find("UTF-8"), std::string::npos) << e.what();
    }
  }
  try {
    tok.encode(std::string(kClipMaxPromptBytes + 1, 'a'));
    ADD_FAILURE() << "accepted an oversized prompt";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
  }
  EXPECT_EQ(tok.encode(std::string(kClipMaxPromptBytes, 'a')).size(), 77u);  // one long word: still fast
}

// Writes `file` of a fresh tiny folder with `text`, loads it, and expects `code` with `needle` in the message.
// drop_map: remove special_tokens_map.json (whose entries would override tokenizer_config.json's).
void expect_load_error(const std::string& file, const std::string& text, ErrorCode code, const std::string& needle,
                       bool drop_map = false) {
  static int n = 0;
  const std::string d = tiny_dir("sd1", "bad" + std::to_string(n++));
  write_text(d + "/" + file, text);
  if (drop_map) std::remove((d + "/special_tokens_map.json").c_str());
  try {
    load_clip_tokenizer_dir(d);
    ADD_FAILURE() << file << " = " << printable(text.substr(0, 80)) << " was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what() << "\nwanted: " << needle;
  }
}

TEST(ClipTokenizer, RejectsHostileFiles) {
  const ErrorCode bad = ErrorCode::InvalidModel, unsupported = ErrorCode::Unsupported;
  expect_load_error("vocab.json", "{not json", bad, "vocab.json");
  expect_load_error("vocab.json", "[1, 2]", bad, "vocab.json");
  expect_load_error("vocab.json", "{}", bad, "empty vocabulary");
  expect_load_error("vocab.json", R"({"a": 0, "a": 1})", bad, "vocab.json");  // duplicate key
  expect_load_error("vocab.json", R"({"a": 0, "b": 0})", bad, "used twice");
  expect_load_error("vocab.json", R"({"a": 0, "b": 2})", bad, "vocab.json");  // hole: 2 out of range
  expect_load_error("vocab.json", R"({"a": 0, "b": -1})", bad, "vocab.json");
  expect_load_error("vocab.json", R"({"a": 0, "b": 1.5})", bad, "vocab.json");
  expect_load_error("vocab.json", R"({"a": 0, "b": "1"})", bad, "vocab.json");
  expect_load_error("vocab.json", "{\"a\xff\": 0}", bad, "vocab.json");  // invalid UTF-8
  expect_load_error("vocab.json", R"({"a": 0, "b": 1})", unsupported, "not in vocab.json");  // no specials
  expect_load_error("merges.txt", "#version: 0.2\ni n\nt h e\n", bad, "merges.txt: line 3");
  expect_load_error("merges.txt", "#version: 0.2\ni n\nt\n", bad, "merges.txt: line 3");
  expect_load_error("merges.txt", "#version: 0.2\ni n\n\xff h\n", bad, "not valid UTF-8");
  expect_load_error("merges.txt", "#version: 0.2\ni \xe2\x80\x8b\n", bad, "line 2");  // U+200B is no byte symbol
  expect_load_error("merges.txt", "#version: 0.2\ni n\n\nt h\n", bad, "line 3");     // blank line inside
  expect_load_error("tokenizer_config.json", "{}", bad, "model_max_length");
  expect_load_error("tokenizer_config.json", R"({"model_max_length": 1e30})", bad, "model_max_length");
  expect_load_error("tokenizer_config.json", R"({"model_max_length": 1})", bad, "model_max_length");
  expect_load_error("tokenizer_config.json", R"({"model_max_length": 77, "padding_side": "up"})", bad, "padding_side");
  expect_load_error("tokenizer_config.json", R"({"model_max_length": 77, "pad_token": 3})", bad, "pad_token");
  expect_load_error("tokenizer_config.json", R"({"model_max_length": 77, "pad_token": "<|nope|>"})", unsupported,
                    "not in vocab.json", true);
  expect_load_error("tokenizer_config.json",
                    R"({"model_max_length": 77, "bos_token": {"content": "<|startoftext|>", "lstrip": true}})",
                    unsupported, "lstrip");
  expect_load_error("tokenizer_config.json",
                    R"({"model_max_length": 77, "added_tokens_decoder": {"5": {"content": "<|endoftext|>"}}})",
                    unsupported, "added_tokens_decoder");
  expect_load_error("tokenizer_config.json",
                    R"({"model_max_length": 77, "added_tokens_decoder": {"x": {"content": "a"}}})", bad, "token id");
  expect_load_error("tokenizer_config.json",
                    R"({"model_max_length": 77, "additional_special_tokens": ["th", "the</w>"]})", unsupported, "inside");
  expect_load_error("special_tokens_map.json", R"({"pad_token": null})", unsupported, "no pad token");
  expect_load_error("special_tokens_map.json", R"({"unk_token": {"content": 1}})", bad, "special_tokens_map.json");
  expect_load_error("added_tokens.json", R"({"x": 1514})", unsupported, "added_tokens.json");
  // A missing file names itself.
  const std::string d = tiny_dir("sd1", "missing");
  std::remove((d + "/merges.txt").c_str());
  try {
    load_clip_tokenizer_dir(d);
    ADD_FAILURE() << "accepted a folder without merges.txt";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("merges.txt"), std::string::npos) << e.what();
  }
}

TEST(ClipTokenizer, SpecValidation) {
  ClipTokenizerSpec s = load_clip_tokenizer_dir(tiny_dir("sd2", "spec"));
  EXPECT_NO_THROW(validate_clip_tokenizer_spec(s, "t"));
  auto expect_bad = [](ClipTokenizerSpec x, const char* what) {
    EXPECT_THROW(validate_clip_tokenizer_spec(x, "t"), Error) << what;
  };
  ClipTokenizerSpec x = s; x.pad_id = int32_t(s.vocab.size()); expect_bad(x, "pad id out of range");
  x = s; x.bos_id = -1; expect_bad(x, "negative bos");
  x = s; x.max_length = 1; expect_bad(x, "max_length 1");
  x = s; x.vocab[5] = x.vocab[6]; expect_bad(x, "duplicate vocab token");
  x = s; x.vocab[5] = ""; expect_bad(x, "empty vocab token");
  x = s; x.merges[0].first = "a b"; expect_bad(x, "space inside a merge symbol");
  x = s; x.added[0].id = 7; expect_bad(x, "added token id mismatch");
  x = s; x.added.push_back({"<|end", 1513, true}); expect_bad(x, "added token content mismatch");
}

}  // namespace
}  // namespace diffrt::test
