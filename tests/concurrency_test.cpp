// Concurrency through the C API: one model shared read-only by sessions on several threads.
//  * 4 threads, each with its own session on ONE model, each sampling a different seed/class
//    (and first making a request that fails): every image equals, bit for bit, what the same
//    request gives when run alone on the main thread.
//  * Overlapping calls on ONE session are refused ("busy") instead of racing: deterministically
//    (a call made while another is paused inside its progress callback) and best effort (several
//    threads hammering one session: each call either succeeds with the right images or is refused).
//  * The model handle may be freed while its sessions still run.
//  * A text-conditioned latent model (tests/fixtures/sd/sd1_tiny): 3 threads with their own sessions, prompt
//    embeddings and guidance, one of them also hitting its session's memory limit first: the same images as alone.
// Sessions use threads = 1 so results do not depend on OpenMP team sizes. CUDA sessions: tests/gpu/api_test.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "api/diffrt.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace {

constexpr int kThreads = 4;
constexpr int kBatch = 2, kSide = 16, kSteps = 6;
constexpr size_t kFloats = size_t(kBatch) * kSide * kSide;  // 1 channel

std::string convert_model(const std::string& tag) {
  const std::string dir = diffrt::test::temp_dir(tag);
  diffrt::ConvertOptions opt;
  opt.input = diffrt::test::source_path("tests/fixtures/models/class_cond");
  opt.output = dir + "/cc.drt";
  diffrt::convert_diffusers(opt);
  return opt.output;
}

diffrt_session* new_session(diffrt_model* m) {
  diffrt_session_options so;
  diffrt_session_options_init(&so);
  so.threads = 1;
  diffrt_session* s = nullptr;
  EXPECT_EQ(diffrt_session_create(m, &so, &s), DIFFRT_OK) << diffrt_last_error();
  return s;
}

struct Job {
  uint64_t seed;
  int32_t label;
  float guidance;
};

diffrt_sample_params params_for(const Job& j, diffrt_progress_fn cb = nullptr, void* user = nullptr) {
  diffrt_sample_params p;
  diffrt_params_init(&p);
  p.steps = kSteps;
  p.seed = j.seed;
  p.batch = kBatch;
  p.class_labels = &j.label;
  p.num_class_labels = 1;
  p.guidance_scale = j.guidance;
  p.progress = cb;
  p.user = user;
  return p;
}

class Concurrency : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = convert_model("concurrency");
    ASSERT_EQ(diffrt_model_load(path.c_str(), &model_), DIFFRT_OK) << diffrt_last_error();
  }
  static void TearDownTestSuite() { diffrt_model_free(model_); model_ = nullptr; }
  static inline diffrt_model* model_ = nullptr;
};

std::vector<float> run_alone(diffrt_model* m, const Job& j) {
  diffrt_session* s = new_session(m);
  std::vector<float> out(kFloats);
  const diffrt_sample_params p = params_for(j);
  EXPECT_EQ(diffrt_sample(s, &p, out.data(), out.size(), nullptr), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
  return out;
}

TEST_F(Concurrency, FourSessionsOnOneModelMatchSingleThreadedRuns) {
  const Job jobs[kThreads] = {{1, 0, 1.0f}, {2, 3, 2.5f}, {3, 7, 1.0f}, {4, 9, 4.0f}};
  std::vector<std::vector<float>> ref;
  for (const Job& j : jobs) ref.push_back(run_alone(model_, j));
  for (int i = 1; i < kThreads; ++i) ASSERT_NE(ref[0], ref[size_t(i)]);  // the jobs differ

  std::vector<std::vector<float>> got(kThreads, std::vector<float>(kFloats, -1.0f));
  std::vector<diffrt_status> failed_status(kThreads), status(kThreads);
  std::vector<std::string> messages(kThreads);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      diffrt_session* s = new_session(model_);
      // A failed request first (absurd size): the session must serve the next one normally.
      diffrt_sample_params bad = params_for(jobs[i]);
      bad.height = bad.width = 100000;
      failed_status[size_t(i)] = diffrt_sample(s, &bad, got[size_t(i)].data(), kFloats, nullptr);
      ++ready;
      while (ready.load() < kThreads) std::this_thread::yield();  // start sampling together
      const diffrt_sample_params p = params_for(jobs[i]);
      status[size_t(i)] = diffrt_sample(s, &p, got[size_t(i)].data(), kFloats, nullptr);
      messages[size_t(i)] = diffrt_last_error();  // thread-local
      diffrt_session_free(s);
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(failed_status[size_t(i)], DIFFRT_E_INVALID_ARGUMENT);
    EXPECT_EQ(status[size_t(i)], DIFFRT_OK) << messages[size_t(i)];
    EXPECT_EQ(messages[size_t(i)], "");
    EXPECT_EQ(got[size_t(i)], ref[size_t(i)]) << "thread " << i;
  }
}

// Thread A pauses inside its progress callback; thread B's calls on the same session are refused.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool inside = false, release = false;
};
int pause_cb(int step, int, void* user) {
  auto* g = static_cast<Gate*>(user);
  if (step != 2) return 0;
  std::unique_lock<std::mutex> lock(g->mu);
  g->inside = true;
  g->cv.notify_all();
  g->cv.wait_for(lock, std::chrono::seconds(30), [&] { return g->release; });
  return 0;
}

TEST_F(Concurrency, OverlappingCallOnOneSessionIsRefused) {
  const Job job{5, 2, 3.0f};
  const std::vector<float> ref = run_alone(model_, job);
  diffrt_session* s = new_session(model_);
  Gate gate;
  std::vector<float> a(kFloats), b(kFloats);
  diffrt_status a_status = DIFFRT_E_INTERNAL;
  std::thread ta([&] {
    const diffrt_sample_params p = params_for(job, pause_cb, &gate);
    a_status = diffrt_sample(s, &p, a.data(), a.size(), nullptr);
  });
  {
    std::unique_lock<std::mutex> lock(gate.mu);
    ASSERT_TRUE(gate.cv.wait_for(lock, std::chrono::seconds(30), [&] { return gate.inside; }));
  }
  const diffrt_sample_params p = params_for(job);
  EXPECT_EQ(diffrt_sample(s, &p, b.data(), b.size(), nullptr), DIFFRT_E_INVALID_ARGUMENT);
  EXPECT_NE(std::string(diffrt_last_error()).find("busy"), std::string::npos) << diffrt_last_error();
  const float x[256] = {}, t[1] = {3.0f};
  const int32_t l[1] = {1};
  float y[256];
  EXPECT_EQ(diffrt_eval(s, x, 1, 16, 16, t, l, y, 256, nullptr), DIFFRT_E_INVALID_ARGUMENT);
  EXPECT_EQ(diffrt_session_release_cache(s), DIFFRT_E_INVALID_ARGUMENT);
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_E_INVALID_ARGUMENT);  // refused, not freed
  {
    std::lock_guard<std::mutex> lock(gate.mu);
    gate.release = true;
  }
  gate.cv.notify_all();
  ta.join();
  EXPECT_EQ(a_status, DIFFRT_OK);
  EXPECT_EQ(a, ref);
  // Once A is done the session is free again.
  ASSERT_EQ(diffrt_sample(s, &p, b.data(), b.size(), nullptr), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(b, ref);
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
}

// Best effort: threads race on one session; each call is either refused or fully correct.
TEST_F(Concurrency, HammeringOneSessionNeverRaces) {
  const Job job{6, 4, 1.0f};
  const std::vector<float> ref = run_alone(model_, job);
  diffrt_session* s = new_session(model_);
  std::atomic<int> ok{0}, busy{0}, other{0}, wrong{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&] {
      std::vector<float> out(kFloats);
      const diffrt_sample_params p = params_for(job);
      for (int k = 0; k < 5; ++k) {
        const diffrt_status st = diffrt_sample(s, &p, out.data(), out.size(), nullptr);
        if (st == DIFFRT_OK) {
          ++ok;
          if (out != ref) ++wrong;
        } else if (st == DIFFRT_E_INVALID_ARGUMENT && std::string(diffrt_last_error()).find("busy") != std::string::npos) {
          ++busy;
        } else {
          ++other;
        }
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_GE(ok.load(), 1);
  EXPECT_EQ(ok + busy, kThreads * 5);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
}

// The model handle is reference-counted by its sessions.
TEST_F(Concurrency, ModelFreedWhileSessionsRun) {
  const std::string path = convert_model("concurrency_free");
  diffrt_model* m = nullptr;
  ASSERT_EQ(diffrt_model_load(path.c_str(), &m), DIFFRT_OK) << diffrt_last_error();
  const Job job{7, 1, 2.0f};
  const std::vector<float> ref = run_alone(m, job);
  std::vector<diffrt_session*> sessions;
  for (int i = 0; i < 2; ++i) sessions.push_back(new_session(m));
  diffrt_model_free(m);
  std::vector<std::vector<float>> out(2, std::vector<float>(kFloats));
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i)
    threads.emplace_back([&, i] {
      const diffrt_sample_params p = params_for(job);
      EXPECT_EQ(diffrt_sample(sessions[size_t(i)], &p, out[size_t(i)].data(), kFloats, nullptr), DIFFRT_OK);
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(out[size_t(i)], ref);
    EXPECT_EQ(diffrt_session_free(sessions[size_t(i)]), DIFFRT_OK);
  }
}

// ---- text-conditioned latent model -----------------------------------------------------------

struct TextJob {
  uint64_t seed;
  float guidance;
  int batch;
  std::vector<float> pos, neg;  // [1, 77, 32]
};

TextJob text_job(uint64_t seed, float guidance, int batch) {
  TextJob j{seed, guidance, batch, {}, {}};
  std::mt19937 rng(uint32_t(seed) + 100);
  std::normal_distribution<float> normal;
  j.pos.resize(77 * 32);
  j.neg.resize(77 * 32);
  for (float& v : j.pos) v = normal(rng);
  for (float& v : j.neg) v = normal(rng);
  return j;
}

diffrt_sample_params text_params(const TextJob& j) {
  diffrt_sample_params p;
  diffrt_params_init(&p);
  p.steps = 3;
  p.seed = j.seed;
  p.batch = j.batch;
  p.guidance_scale = j.guidance;
  p.prompt_embeds = diffrt_text_embeds{j.pos.data(), 1, 77, 32};
  p.negative_prompt_embeds = diffrt_text_embeds{j.neg.data(), 1, 77, 32};
  return p;
}

TEST(ConcurrencyText, ThreeSessionsOnOneTextModelMatchRunsAlone) {
  const std::string dir = diffrt::test::temp_dir("concurrency_text");
  diffrt::ConvertOptions opt;
  opt.input = diffrt::test::source_path("tests/fixtures/sd/sd1_tiny/pipeline");
  opt.output = dir + "/sd.drt";
  diffrt::convert_diffusers(opt);
  diffrt_model* m = nullptr;
  ASSERT_EQ(diffrt_model_load(opt.output.c_str(), &m), DIFFRT_OK) << diffrt_last_error();
  const std::vector<TextJob> jobs = {text_job(1, 7.5f, 1), text_job(2, 1.0f, 2), text_job(3, 4.0f, 2)};
  const size_t image = 16 * 16 * 3;
  std::vector<std::vector<float>> ref;
  for (const TextJob& j : jobs) {
    diffrt_session* s = new_session(m);
    ref.emplace_back(image * size_t(j.batch));
    const diffrt_sample_params p = text_params(j);
    EXPECT_EQ(diffrt_sample(s, &p, ref.back().data(), ref.back().size(), nullptr), DIFFRT_OK) << diffrt_last_error();
    EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
  }
  std::vector<std::vector<float>> got(jobs.size());
  std::vector<diffrt_status> status(jobs.size(), DIFFRT_E_INTERNAL), limited(jobs.size(), DIFFRT_OK);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < jobs.size(); ++i)
    threads.emplace_back([&, i] {
      diffrt_session_options so;
      diffrt_session_options_init(&so);
      so.threads = 1;
      const diffrt_sample_params p = text_params(jobs[i]);
      uint64_t need = 0;
      diffrt_session* s = nullptr;
      if (diffrt_session_create(m, &so, &s) != DIFFRT_OK || diffrt_sample_memory_estimate(s, &p, &need) != DIFFRT_OK) return;
      diffrt_session_free(s);
      if (i == 0) so.memory_limit_bytes = need;  // enough for this job, not for a bigger one first
      if (diffrt_session_create(m, &so, &s) != DIFFRT_OK) return;
      got[i].assign(image * size_t(jobs[i].batch), -1.0f);
      if (i == 0) {
        diffrt_sample_params big = p;
        big.batch = 4;
        std::vector<float> tmp(image * 4);
        limited[i] = diffrt_sample(s, &big, tmp.data(), tmp.size(), nullptr);
      }
      status[i] = diffrt_sample(s, &p, got[i].data(), got[i].size(), nullptr);
      diffrt_session_free(s);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(limited[0], DIFFRT_E_OUT_OF_MEMORY);
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_EQ(status[i], DIFFRT_OK) << "thread " << i;
    EXPECT_EQ(got[i], ref[i]) << "thread " << i;
  }
  diffrt_model_free(m);
}

}  // namespace
