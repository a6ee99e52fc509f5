// CUDA sessions through the embedding API (runtime/api): every test skips without a device. Models converted
// here in fp32 from tests/fixtures/models/class_cond (pixel UNet, 11 classes) and tests/fixtures/sd/sd1_tiny
// (text-conditioned UNet + VAE decoder).
//   * sessions: device count, creation, a bad device ordinal;
//   * results: pixel and text sampling on CUDA vs a CPU session on the same model (Philox; the bounds of
//     tests/gpu/executor_test.cpp and sd_test.cpp), eval vs the diffusers fixture, StableDiffusionPipeline
//     fixtures reproduced with the torch RNG (DDIM 1e-3, DDPM 5e-3 max abs on [0, 1]), latents output;
//   * out of memory: an absurd batch is refused up front (DIFFRT_E_OUT_OF_MEMORY naming the bytes needed and
//     free), and with the preflight off, a request that cannot fit beside a test-held allocation fails while
//     running (cudaMalloc) with OUT_OF_MEMORY; in both cases the same session then samples exactly what a
//     fresh session samples;
//   * concurrency: four threads with their own CUDA sessions (deterministic conv algorithms) on shared models
//     give bit for bit the images each request gives alone; cancellation leaves the session usable.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/diffrt.h"
#include "api/diffrt.hpp"
#include "base/npy.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/sd_text_fixture.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;

namespace {

bool msg_has(const std::string& needle) { return std::string(diffrt_last_error()).find(needle) != std::string::npos; }

// One conversion per fixture per test binary.
const std::string& model_path(const std::string& fixture) {
  static std::map<std::string, std::string> cache;
  auto it = cache.find(fixture);
  if (it != cache.end()) return it->second;
  diffrt::ConvertOptions opt;
  opt.input = diffrt::test::source_path(fixture);
  opt.output = diffrt::test::temp_dir("gpu_api") + "/m.drt";
  diffrt::convert_diffusers(opt);
  return cache.emplace(fixture, opt.output).first->second;
}
const char* kPixel = "tests/fixtures/models/class_cond";
const char* kSd = "tests/fixtures/sd/sd1_tiny/pipeline";

diffrt_model* load(const char* fixture) {
  diffrt_model* m = nullptr;
  EXPECT_EQ(diffrt_model_load(model_path(fixture).c_str(), &m), DIFFRT_OK) << diffrt_last_error();
  return m;
}

diffrt_session* session(diffrt_model* m, diffrt_device device, int deterministic = 1) {
  diffrt_session_options so;
  diffrt_session_options_init(&so);
  so.device = device;
  so.threads = 1;
  so.deterministic = deterministic;
  diffrt_session* s = nullptr;
  EXPECT_EQ(diffrt_session_create(m, &so, &s), DIFFRT_OK) << diffrt_last_error();
  return s;
}

std::vector<float> sample(diffrt_session* s, const diffrt_sample_params& p) {
  size_t n = 0;
  EXPECT_EQ(diffrt_sample_output_size(s, &p, &n), DIFFRT_OK) << diffrt_last_error();
  std::vector<float> out(n, -1.0f);
  EXPECT_EQ(diffrt_sample(s, &p, out.data(), out.size(), nullptr), DIFFRT_OK) << diffrt_last_error();
  return out;
}

// Requests (the embeddings they point at live in the struct).
struct Request {
  std::vector<float> pos, neg;
  int32_t label = 0;
  diffrt_sample_params p;
};
Request pixel_request(uint64_t seed, int32_t label, int batch, float guidance) {
  Request r;
  r.label = label;
  diffrt_params_init(&r.p);
  r.p.sampler = DIFFRT_SAMPLER_DDIM;
  r.p.steps = 8;
  r.p.seed = seed;
  r.p.batch = batch;
  r.p.guidance_scale = guidance;
  r.p.num_class_labels = 1;
  return r;
}
Request text_request(uint64_t seed, int batch, float guidance, int side = 0) {
  Request r;
  r.pos = diffrt::test::random_normal(77 * 32, uint32_t(seed) + 1);
  r.neg = diffrt::test::random_normal(77 * 32, uint32_t(seed) + 2);
  diffrt_params_init(&r.p);
  r.p.steps = 6;
  r.p.seed = seed;
  r.p.batch = batch;
  r.p.height = r.p.width = side;
  r.p.guidance_scale = guidance;
  return r;
}
// Points the params at the request's own buffers (after copies or moves).
diffrt_sample_params params(Request& r) {
  diffrt_sample_params p = r.p;
  if (!r.pos.empty()) {
    p.prompt_embeds = diffrt_text_embeds{r.pos.data(), 1, 77, 32};
    p.negative_prompt_embeds = diffrt_text_embeds{r.neg.data(), 1, 77, 32};
  } else {
    p.class_labels = &r.label;
  }
  return p;
}

}  // namespace

TEST(ApiCuda, DeviceCountSessionsAndOrdinal) {
  DIFFRT_SKIP_WITHOUT_GPU();
  int n = 0;
  ASSERT_EQ(diffrt_device_count(DIFFRT_DEVICE_CUDA, &n), DIFFRT_OK) << diffrt_last_error();
  ASSERT_GE(n, 1);
  diffrt_model* m = load(kPixel);
  diffrt_session* s = session(m, DIFFRT_DEVICE_CUDA);
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
  diffrt_session_options so;
  diffrt_session_options_init(&so);
  so.device = DIFFRT_DEVICE_CUDA;
  so.device_ordinal = n;
  s = reinterpret_cast<diffrt_session*>(0x1);
  EXPECT_EQ(diffrt_session_create(m, &so, &s), DIFFRT_E_INVALID_ARGUMENT);
  EXPECT_TRUE(msg_has("device_ordinal = " + std::to_string(n))) << diffrt_last_error();
  EXPECT_EQ(s, nullptr);
  diffrt_model_free(m);
}

TEST(ApiCuda, PixelSamplesMatchCpuSession) {
  DIFFRT_SKIP_WITHOUT_GPU();
  diffrt_model* m = load(kPixel);
  diffrt_session *gpu = session(m, DIFFRT_DEVICE_CUDA), *cpu = session(m, DIFFRT_DEVICE_CPU);
  Request r = pixel_request(7, 4, 3, 2.5f);
  const diffrt_sample_params p = params(r);
  const std::vector<float> got = sample(gpu, p), ref = sample(cpu, p);
  ASSERT_EQ(got.size(), size_t(3 * 16 * 16));
  EXPECT_LE(diffrt::test::max_abs_diff(got.data(), ref.data(), ref.size()), 1e-3);
  EXPECT_EQ(diffrt_session_free(gpu), DIFFRT_OK);
  EXPECT_EQ(diffrt_session_free(cpu), DIFFRT_OK);
  diffrt_model_free(m);
}

TEST(ApiCuda, EvalMatchesDiffusersFixture) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const std::string fx = diffrt::test::source_path("tests/fixtures/models/class_cond/");
  diffrt::NpyArray x = diffrt::read_npy(fx + "x.npy"), t = diffrt::read_npy(fx + "t.npy"),
                   l = diffrt::read_npy(fx + "labels.npy"), ref = diffrt::read_npy(fx + "out.npy");
  const int n = int(x.shape[0]), h = int(x.shape[2]), w = int(x.shape[3]);
  std::vector<float> ts(static_cast<size_t>(n));
  if (t.type == diffrt::NpyType::F32) { auto v = t.as_f32(); for (int i = 0; i < n; ++i) ts[size_t(i)] = v[t.shape[0] == 1 ? 0 : size_t(i)]; }
  else { auto v = t.as_i64(); for (int i = 0; i < n; ++i) ts[size_t(i)] = float(v[t.shape[0] == 1 ? 0 : size_t(i)]); }
  std::vector<int32_t> labels;
  for (int64_t v : l.as_i64()) labels.push_back(int32_t(v));
  const std::vector<float> xin = x.as_f32(), want = ref.as_f32();
  diffrt_model* m = load(kPixel);
  diffrt_session* s = session(m, DIFFRT_DEVICE_CUDA);
  std::vector<float> out(want.size());
  for (int rep = 0; rep < 2; ++rep) {  // the second run reuses the cached executor
    ASSERT_EQ(diffrt_eval(s, xin.data(), n, h, w, ts.data(), labels.data(), out.data(), out.size(), nullptr), DIFFRT_OK)
        << diffrt_last_error();
    EXPECT_LT(diffrt::test::rel_l2(out.data(), want.data(), want.size()), 1e-5);
  }
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
  diffrt_model_free(m);
}

TEST(ApiCuda, TextSamplesMatchCpuSession) {
  DIFFRT_SKIP_WITHOUT_GPU();
  diffrt_model* m = load(kSd);
  diffrt_session *gpu = session(m, DIFFRT_DEVICE_CUDA), *cpu = session(m, DIFFRT_DEVICE_CPU);
  int checked = 0;
  for (float guidance : {1.0f, 7.5f}) {
    Request r = text_request(3, 2, guidance);
    diffrt_sample_params p = params(r);
    const std::vector<float> got = sample(gpu, p), ref = sample(cpu, p);
    ASSERT_EQ(got.size(), size_t(2 * 16 * 16 * 3));
    EXPECT_LE(diffrt::test::max_abs_diff(got.data(), ref.data(), ref.size()), 1e-3) << "g=" << guidance;
    p.output = DIFFRT_OUTPUT_LATENTS;
    const std::vector<float> lg = sample(gpu, p), lr = sample(cpu, p);
    ASSERT_EQ(lg.size(), size_t(2 * 4 * 8 * 8));
    EXPECT_LE(diffrt::test::rel_l2(lg.data(), lr.data(), lr.size()), 1e-4) << "g=" << guidance;
    ++checked;
  }
  EXPECT_EQ(checked, 2);
  EXPECT_EQ(diffrt_session_free(gpu), DIFFRT_OK);
  EXPECT_EQ(diffrt_session_free(cpu), DIFFRT_OK);
  diffrt_model_free(m);
}

TEST(ApiCuda, SdPipelinesMatchStableDiffusionPipeline) {
  DIFFRT_SKIP_WITHOUT_GPU();
  diffrt_model* m = load(kSd);
  diffrt_session* s = session(m, DIFFRT_DEVICE_CUDA);
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(diffrt::test::source_path("tests/fixtures/sd/sd1_tiny/pipelines")))
    dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  int runs = 0;
  for (const fs::path& d : dirs) {
    const nlohmann::json meta = nlohmann::json::parse(std::ifstream(d / "meta.json"));
    const std::string sched = meta["effective_scheduler_config"].dump();
    diffrt::NpyArray pos = diffrt::read_npy((d / "prompt_embeds.npy").string());
    const std::vector<float> pv = pos.as_f32();
    std::vector<float> nv;
    diffrt_sample_params p;
    diffrt_params_init(&p);
    const bool ddim = meta["sampler"] == "ddim";
    p.sampler = ddim ? DIFFRT_SAMPLER_DDIM : DIFFRT_SAMPLER_DDPM;
    p.steps = meta["steps"].get<int>();
    p.eta = meta["eta"].get<float>();
    p.seed = meta["seed"].get<uint64_t>();
    p.rng = DIFFRT_RNG_TORCH;
    p.batch = meta["batch"].get<int>();
    p.height = meta["height"].get<int>();
    p.width = meta["width"].get<int>();
    p.guidance_scale = meta["guidance_scale"].get<float>();
    p.scheduler_config_json = sched.c_str();
    p.prompt_embeds = diffrt_text_embeds{pv.data(), int(pos.shape[0]), int(pos.shape[1]), int(pos.shape[2])};
    if (p.guidance_scale > 1.0f) {
      nv = diffrt::read_npy((d / "negative_prompt_embeds.npy").string()).as_f32();
      p.negative_prompt_embeds = p.prompt_embeds;
      p.negative_prompt_embeds.data = nv.data();
    }
    const std::vector<float> want = diffrt::read_npy((d / "images.npy").string()).as_f32();
    const std::vector<float> got = sample(s, p);
    ASSERT_EQ(got.size(), want.size()) << d;
    const double err = diffrt::test::max_abs_diff(got.data(), want.data(), want.size());
    std::printf("[api cuda sd] %-18s images max_abs %.3g\n", d.filename().c_str(), err);
    EXPECT_LE(err, ddim ? 1e-3 : 5e-3) << d;
    ++runs;
  }
  EXPECT_GE(runs, 4);
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
  diffrt_model_free(m);
}

// Up front: the estimate is far above the device; the message gives the bytes needed and free, and the session
// then samples a normal request exactly as a fresh session does.
TEST(ApiCuda, AbsurdBatchIsOutOfMemoryThenTheSessionSamples) {
  DIFFRT_SKIP_WITHOUT_GPU();
  diffrt_model* m = load(kSd);
  diffrt_session* s = session(m, DIFFRT_DEVICE_CUDA);
  Request big = text_request(9, 4096, 1.0f, 8192);
  diffrt_sample_params bp = params(big);
  uint64_t need = 0;
  ASSERT_EQ(diffrt_sample_memory_estimate(s, &bp, &need), DIFFRT_OK) << diffrt_last_error();
  size_t free = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free, &total), cudaSuccess);
  ASSERT_GT(need, uint64_t(total));
  std::vector<float> tiny(16);
  size_t written = 0;
  EXPECT_EQ(diffrt_sample(s, &bp, tiny.data(), tiny.size(), &written), DIFFRT_E_OUT_OF_MEMORY) << diffrt_last_error();
  EXPECT_TRUE(msg_has(std::to_string(need) + " bytes")) << diffrt_last_error();
  EXPECT_TRUE(msg_has(" free of ")) << diffrt_last_error();
  EXPECT_TRUE(msg_has("CUDA device 0")) << diffrt_last_error();
  EXPECT_EQ(written, size_t(4096) * 8192 * 8192 * 3);  // the size needed is still reported

  Request small = text_request(9, 1, 7.5f);
  const std::vector<float> got = sample(s, params(small));
  diffrt_session* fresh = session(m, DIFFRT_DEVICE_CUDA);
  const std::vector<float> want = sample(fresh, params(small));
  EXPECT_EQ(got, want);
  EXPECT_EQ(diffrt_session_free(fresh), DIFFRT_OK);
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
  diffrt_model_free(m);
}

// While running: with the preflight off, a request that cannot fit beside memory this test holds fails inside
// the run (a cudaMalloc), is reported as OutOfMemory with the figures, and the session recovers.
TEST(ApiCuda, DeviceOomWhileRunningIsReportedAndTheSessionRecovers) {
  DIFFRT_SKIP_WITHOUT_GPU();
  auto model = diffrt::Model::load(model_path(kSd));
  diffrt::SessionOptions so;
  so.device = diffrt::Device::Cuda;
  so.deterministic = true;
  diffrt::SessionOptions checked = so;
  so.memory_preflight = false;
  diffrt::Session s(model, so), pre(model, checked), fresh(model, so);
  std::vector<float> pos = diffrt::test::random_normal(77 * 32, 1), neg = diffrt::test::random_normal(77 * 32, 2);
  diffrt::SampleOptions small;
  small.steps = 4;
  small.seed = 3;
  small.guidance_scale = 7.5f;
  small.prompt_embeds = {pos.data(), 1, 77, 32};
  small.negative_prompt_embeds = {neg.data(), 1, 77, 32};
  const std::vector<float> want = fresh.sample(small);
  diffrt::SampleOptions big = small;
  big.batch = 16;
  big.height = big.width = 1024;  // latents 512 x 512, 32 UNet rows: about 9 GB
  const uint64_t need = s.memory_estimate(big);
  constexpr uint64_t kLeave = uint64_t(1) << 30;
  ASSERT_GT(need, 4 * kLeave) << "the request must not fit in what the test leaves free";

  // Hold all but ~1 GiB of the device.
  size_t free = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free, &total), cudaSuccess);
  void* blocker = nullptr;
  size_t hold = free > kLeave ? free - kLeave : 0;
  while (hold > 0 && cudaMalloc(&blocker, hold) != cudaSuccess) {
    (void)cudaGetLastError();
    hold -= std::min<size_t>(hold, size_t(256) << 20);
  }
  ASSERT_NE(blocker, nullptr);

  try {
    s.sample(big);
    ADD_FAILURE() << "expected Error(OutOfMemory)";
  } catch (const diffrt::Error& e) {
    EXPECT_EQ(e.code(), diffrt::ErrorCode::OutOfMemory) << e.what();
    const std::string m = e.what();
    EXPECT_NE(m.find("out of device memory on CUDA device 0 while sampling"), std::string::npos) << m;
    EXPECT_NE(m.find(std::to_string(need) + " bytes"), std::string::npos) << m;
  }
  try {
    pre.sample(big);  // the same request with the preflight: refused before allocating
    ADD_FAILURE() << "expected Error(OutOfMemory)";
  } catch (const diffrt::Error& e) {
    EXPECT_EQ(e.code(), diffrt::ErrorCode::OutOfMemory) << e.what();
    EXPECT_NE(std::string(e.what()).find(" free of "), std::string::npos) << e.what();
  }
  // The next, smaller request runs on the same session, still beside the held memory.
  EXPECT_EQ(s.sample(small), want);
  ASSERT_EQ(cudaFree(blocker), cudaSuccess);
  EXPECT_EQ(s.sample(small), want);
}

TEST(ApiCuda, ConcurrentSessionsMatchRunsAlone) {
  DIFFRT_SKIP_WITHOUT_GPU();
  diffrt_model *sd = load(kSd), *px = load(kPixel);
  std::vector<Request> jobs = {text_request(1, 2, 7.5f), text_request(2, 1, 1.0f), pixel_request(3, 5, 2, 3.0f),
                               pixel_request(4, 8, 3, 1.0f)};
  auto model_of = [&](size_t i) { return i < 2 ? sd : px; };
  std::vector<std::vector<float>> ref;
  for (size_t i = 0; i < jobs.size(); ++i) {
    diffrt_session* s = session(model_of(i), DIFFRT_DEVICE_CUDA);
    ref.push_back(sample(s, params(jobs[i])));
    EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
  }
  std::vector<std::vector<float>> got(jobs.size());
  std::vector<diffrt_status> status(jobs.size(), DIFFRT_E_INTERNAL);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (size_t i = 0; i < jobs.size(); ++i)
    threads.emplace_back([&, i] {
      diffrt_session* s = session(model_of(i), DIFFRT_DEVICE_CUDA);
      const diffrt_sample_params p = params(jobs[i]);
      got[i].assign(ref[i].size(), -1.0f);
      ++ready;
      while (ready.load() < int(jobs.size())) std::this_thread::yield();
      for (int rep = 0; rep < 3 && (rep == 0 || status[i] == DIFFRT_OK); ++rep)
        status[i] = diffrt_sample(s, &p, got[i].data(), got[i].size(), nullptr);
      diffrt_session_free(s);
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_EQ(status[i], DIFFRT_OK) << "thread " << i;
    EXPECT_EQ(got[i], ref[i]) << "thread " << i;
  }
  diffrt_model_free(sd);
  diffrt_model_free(px);
}

namespace {
int cancel_at_2(int step, int, void*) { return step == 2; }
}  // namespace

TEST(ApiCuda, CancelledRunThenSessionServesNormally) {
  DIFFRT_SKIP_WITHOUT_GPU();
  diffrt_model* m = load(kSd);
  diffrt_session *s = session(m, DIFFRT_DEVICE_CUDA), *fresh = session(m, DIFFRT_DEVICE_CUDA);
  Request r = text_request(5, 1, 7.5f);
  diffrt_sample_params p = params(r);
  p.progress = cancel_at_2;
  std::vector<float> out(16 * 16 * 3);
  EXPECT_EQ(diffrt_sample(s, &p, out.data(), out.size(), nullptr), DIFFRT_E_CANCELLED) << diffrt_last_error();
  p.progress = nullptr;
  EXPECT_EQ(sample(s, p), sample(fresh, p));
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
  EXPECT_EQ(diffrt_session_free(fresh), DIFFRT_OK);
  diffrt_model_free(m);
}

// One upload per model and device (issue 16 item 8), counted through the API: a prompted request on CUDA runs the
// text encoder, the loop and the VAE decode, on two sessions, plus eval / decode / encode_prompts: the model's
// weights reach the device once. A CPU session adds the one fp32 host copy. The model is stored mixed (fp16 UNet
// and text encoder, fp32 VAE) as `convert --dtype fp16` writes it, so one CudaWeights serves graphs of two dtypes.
TEST(ApiCuda, OneWeightUploadPerDeviceForEveryPhaseAndSession) {
  DIFFRT_SKIP_WITHOUT_GPU();
  diffrt::ConvertOptions opt;
  opt.input = diffrt::test::assemble_text_pipeline("sd1", "gpu_api_uploads");
  opt.output = diffrt::test::temp_dir("gpu_api_uploads_m") + "/m.drt";
  opt.dtype = diffrt::DType::F16;
  diffrt::convert_diffusers(opt);
  auto m = diffrt::Model::load(opt.output);
  EXPECT_EQ(m->weight_uploads(), 0);
  diffrt::SessionOptions so;
  so.device = diffrt::Device::Cuda;
  int phases = 0;
  {
    diffrt::Session a(m, so), b(m, so);
    diffrt::SampleOptions o;
    o.prompts = {"a photo of a cat", "a dog"};
    o.guidance_scale = 7.5f;
    o.steps = 3;
    for (diffrt::Session* s : {&a, &b}) {
      const std::vector<float> img = s->sample(o);  // text encoder + loop + decode
      EXPECT_EQ(diffrt::test::count_nonfinite(img), 0u);
      int len = 0, dim = 0;
      const std::vector<float> e = s->encode_prompts(o.prompts, &len, &dim);
      std::vector<float> z(size_t(2) * 4 * 8 * 8, 0.1f);
      const float t[2] = {10.0f, 500.0f};
      s->eval(z.data(), 2, 8, 8, t, nullptr, diffrt::TextEmbeddings{e.data(), 2, len, dim});
      s->decode(z.data(), 2, 8, 8);
      phases += 5;
    }
    EXPECT_EQ(m->weight_uploads(), 1) << "one CudaWeights for device 0, shared by both sessions and every phase";
    diffrt::SessionOptions cpu;
    diffrt::Session c(m, cpu);
    c.sample(o);
    EXPECT_EQ(m->weight_uploads(), 2) << "plus the one fp32 host copy";
  }
  EXPECT_EQ(phases, 10);
}
